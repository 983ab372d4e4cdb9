//! AdamW (decoupled weight decay, PyTorch's formula), global-norm gradient clipping and the
//! cosine schedule with linear warmup that the paper's trainers use.
//!
//! On CPU one step is a single pass over each parameter: a fused in-place op reads the gradient
//! and updates weight, first and second moment together (candle's AdamW runs about ten tensor ops
//! and allocations per parameter). Other devices run the same update as tensor ops.
use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Layout, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The optimiser's hyper-parameters (plain data, logged with every run).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    /// PyTorch's AdamW defaults, except weight decay 0 as in the paper's configs.
    fn default() -> Self {
        AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

enum Moments {
    /// interleaved (m, v) per element, in host memory
    Cpu(Vec<Vec<f32>>),
    /// m and v as device tensors
    Device(Vec<(Tensor, Tensor)>),
}

/// AdamW over a fixed list of Vars.
pub struct AdamW {
    pub cfg: AdamConfig,
    /// updates taken so far (bias correction uses it)
    pub t: usize,
    vars: Vec<Var>,
    moments: Moments,
}

struct FusedStep<'a> {
    state: RefCell<&'a mut [f32]>,
    c: Coeffs,
}

impl candle_core::InplaceOp2 for FusedStep<'_> {
    fn name(&self) -> &'static str {
        "adamw-fused"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, g: &CpuStorage, gl: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (dst, g) else {
            candle_core::bail!("adamw-fused: f32 weights and gradients only")
        };
        let (Some((ps, pe)), Some((gs, ge))) = (dst_l.contiguous_offsets(), gl.contiguous_offsets()) else {
            candle_core::bail!("adamw-fused: weights and gradients must be contiguous")
        };
        fused_update(&mut p[ps..pe], Some(&g[gs..ge]), &mut self.state.borrow_mut(), self.c);
        Ok(())
    }
}

/// The same update with every gradient zero, so no gradient tensor is needed.
impl candle_core::InplaceOp1 for FusedStep<'_> {
    fn name(&self) -> &'static str {
        "adamw-fused-zero-grad"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(p) = dst else { candle_core::bail!("adamw-fused: f32 weights only") };
        let Some((ps, pe)) = dst_l.contiguous_offsets() else { candle_core::bail!("adamw-fused: weights must be contiguous") };
        fused_update(&mut p[ps..pe], None, &mut self.state.borrow_mut(), self.c);
        Ok(())
    }
}

/// PyTorch's AdamW, term for term: p ← p·(1 − lr·wd) − (lr / bc1)·m / (√v / √bc2 + eps), over
/// weights `p`, gradients `g` (all zero when `None`) and interleaved moments `mv`. Iterators (no
/// bounds checks) and no per-element division by the bias corrections let LLVM vectorise the
/// loop (the optimizer column of `rner bench train`).
fn fused_update(p: &mut [f32], g: Option<&[f32]>, mv: &mut [f32], s: Coeffs) {
    let step = s.lr / s.bc1;
    let sqrt_bc2 = s.bc2.sqrt();
    let keep = 1.0 - s.lr * s.decay;
    let (c1, c2) = (1.0 - s.b1, 1.0 - s.b2);
    let one = |p: &mut f32, g: f32, mv: &mut [f32]| {
        let gi = g * s.scale;
        let m = s.b1 * mv[0] + c1 * gi;
        let v = s.b2 * mv[1] + c2 * gi * gi;
        mv[0] = m;
        mv[1] = v;
        *p = *p * keep - step * m / (v.sqrt() / sqrt_bc2 + s.eps);
    };
    const CH: usize = 1 << 14;
    let chunks = p.par_chunks_mut(CH).zip(mv.par_chunks_mut(2 * CH));
    match g {
        Some(g) => chunks.zip(g.par_chunks(CH)).for_each(|((p, mv), g)| {
            for ((p, g), mv) in p.iter_mut().zip(g).zip(mv.chunks_exact_mut(2)) {
                one(p, *g, mv);
            }
        }),
        None => chunks.for_each(|(p, mv)| {
            for (p, mv) in p.iter_mut().zip(mv.chunks_exact_mut(2)) {
                one(p, 0.0, mv);
            }
        }),
    }
}

#[derive(Clone, Copy)]
struct Coeffs {
    lr: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    decay: f32,
    bc1: f32,
    bc2: f32,
    scale: f32,
}

impl Coeffs {
    fn new(cfg: &AdamConfig, t: usize, lr: f64, scale: f64) -> Coeffs {
        Coeffs {
            lr: lr as f32,
            b1: cfg.beta1 as f32,
            b2: cfg.beta2 as f32,
            eps: cfg.eps as f32,
            decay: cfg.weight_decay as f32,
            bc1: (1.0 - cfg.beta1.powi(t as i32)) as f32,
            bc2: (1.0 - cfg.beta2.powi(t as i32)) as f32,
            scale: scale as f32,
        }
    }
}

impl AdamW {
    pub fn new(vars: Vec<Var>, cfg: AdamConfig) -> Result<AdamW> {
        let cpu = vars.iter().all(|v| v.device().is_cpu() && v.dtype() == DType::F32);
        let moments = if cpu {
            Moments::Cpu(vars.iter().map(|v| vec![0f32; 2 * v.elem_count()]).collect())
        } else {
            Moments::Device(
                vars.iter()
                    .map(|v| Ok((v.zeros_like()?.to_dtype(DType::F32)?, v.zeros_like()?.to_dtype(DType::F32)?)))
                    .collect::<Result<Vec<_>>>()?,
            )
        };
        Ok(AdamW { cfg, t: 0, vars, moments })
    }

    /// One update with every gradient zero (a step without signal): as PyTorch's AdamW, the moments
    /// decay and still move the weights. Allocates no gradients on CPU.
    pub fn step_zero_grads(&mut self, lr: f64) -> Result<()> {
        if let Moments::Cpu(states) = &mut self.moments {
            self.t += 1;
            let c = Coeffs::new(&self.cfg, self.t, lr, 1.0);
            for (var, st) in self.vars.iter().zip(states.iter_mut()) {
                var.as_tensor().inplace_op1(&FusedStep { state: RefCell::new(st.as_mut_slice()), c })?;
            }
            return Ok(());
        }
        let zeros = self.vars.iter().map(|v| Ok(Some(v.as_tensor().zeros_like()?))).collect::<Result<Vec<_>>>()?;
        self.step(&zeros, lr, 1.0)
    }

    /// One update with learning rate `lr`; gradients are multiplied by `scale` first (clipping).
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64, scale: f64) -> Result<()> {
        self.t += 1;
        let c = Coeffs::new(&self.cfg, self.t, lr, scale);
        match &mut self.moments {
            Moments::Cpu(states) => {
                for ((var, g), st) in self.vars.iter().zip(grads).zip(states.iter_mut()) {
                    let Some(g) = g else { continue };
                    let g = g.contiguous()?;
                    let op = FusedStep { state: RefCell::new(st.as_mut_slice()), c };
                    var.as_tensor().inplace_op2(&g, &op)?;
                }
            }
            Moments::Device(states) => {
                for ((var, g), (m, v)) in self.vars.iter().zip(grads).zip(states.iter_mut()) {
                    let Some(g) = g else { continue };
                    let g = (g.to_dtype(DType::F32)? * scale)?;
                    *m = ((&*m * self.cfg.beta1)? + (&g * (1.0 - self.cfg.beta1))?)?;
                    *v = ((&*v * self.cfg.beta2)? + (g.sqr()? * (1.0 - self.cfg.beta2))?)?;
                    let upd = (&*m / ((v.sqrt()? / (c.bc2 as f64).sqrt())? + self.cfg.eps)?)?;
                    let p = var.as_tensor().to_dtype(DType::F32)?;
                    let p = ((p * (1.0 - lr * self.cfg.weight_decay))? - (upd * (lr / c.bc1 as f64))?)?;
                    var.set(&p.to_dtype(var.dtype())?)?;
                }
            }
        }
        Ok(())
    }

    /// The moments as named tensors (`m.NAME`, `v.NAME`) for a checkpoint.
    pub fn state(&self, names: &[String]) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let shape = self.vars[i].shape().clone();
            let (m, v) = match &self.moments {
                Moments::Cpu(s) => {
                    let n = s[i].len() / 2;
                    let m: Vec<f32> = (0..n).map(|j| s[i][2 * j]).collect();
                    let v: Vec<f32> = (0..n).map(|j| s[i][2 * j + 1]).collect();
                    (Tensor::from_vec(m, shape.clone(), &candle_core::Device::Cpu)?, Tensor::from_vec(v, shape, &candle_core::Device::Cpu)?)
                }
                Moments::Device(s) => (s[i].0.clone(), s[i].1.clone()),
            };
            out.insert(format!("m.{name}"), m);
            out.insert(format!("v.{name}"), v);
        }
        Ok(out)
    }

    /// Restore the moments saved by [`AdamW::state`].
    pub fn load_state(&mut self, names: &[String], t: usize, named: &HashMap<String, Tensor>) -> Result<()> {
        self.t = t;
        for (i, name) in names.iter().enumerate() {
            let get = |k: String| named.get(&k).cloned().ok_or_else(|| Error::Engine(format!("optimizer state lacks {k}")));
            let (m, v) = (get(format!("m.{name}"))?, get(format!("v.{name}"))?);
            match &mut self.moments {
                Moments::Cpu(s) => {
                    let m = m.flatten_all()?.to_vec1::<f32>()?;
                    let v = v.flatten_all()?.to_vec1::<f32>()?;
                    if m.len() * 2 != s[i].len() {
                        return Err(Error::Engine(format!("optimizer state for {name} has the wrong size")));
                    }
                    for j in 0..m.len() {
                        s[i][2 * j] = m[j];
                        s[i][2 * j + 1] = v[j];
                    }
                }
                Moments::Device(s) => {
                    let dev = self.vars[i].device();
                    s[i] = (m.to_device(dev)?, v.to_device(dev)?);
                }
            }
        }
        Ok(())
    }
}

/// Add a backward pass's gradients into running sums.
pub fn accumulate(acc: &mut Vec<Option<Tensor>>, vars: &[Var], store: &GradStore) -> Result<()> {
    add_grads(acc, vars.iter().map(|v| store.get(v.as_tensor()).cloned()).collect())
}

/// Add gradients (one slot per variable, `None` where a pass gave none) into running sums.
pub fn add_grads(acc: &mut Vec<Option<Tensor>>, new: Vec<Option<Tensor>>) -> Result<()> {
    if acc.is_empty() {
        acc.resize(new.len(), None);
    }
    for (a, g) in acc.iter_mut().zip(new) {
        if let Some(g) = g {
            *a = Some(match a.take() {
                None => g,
                Some(x) => (x + g)?,
            });
        }
    }
    Ok(())
}

/// Σ x² of a tensor: one pass over a contiguous CPU f32 tensor (summed in f32 per 16k block, in
/// f64 across blocks), candle's ops elsewhere.
fn sum_sq(g: &Tensor) -> Result<f64> {
    if g.dtype() == DType::F32 && g.device().is_cpu() {
        let (storage, layout) = g.storage_and_layout();
        if let (candle_core::Storage::Cpu(CpuStorage::F32(x)), Some((a, b))) = (&*storage, layout.contiguous_offsets()) {
            return Ok(x[a..b].par_chunks(1 << 14).map(|c| c.iter().map(|v| v * v).sum::<f32>() as f64).sum());
        }
    }
    Ok(g.to_dtype(DType::F32)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64)
}

/// The global L2 norm of the gradients, and the factor that clips it to `max_norm` (1 when
/// below; `max_norm` ≤ 0 disables clipping), as `torch.nn.utils.clip_grad_norm_`.
pub fn clip_factor(grads: &[Option<Tensor>], max_norm: f64) -> Result<(f64, f64)> {
    let mut sq = 0f64;
    for g in grads.iter().flatten() {
        sq += sum_sq(g)?;
    }
    let norm = sq.sqrt();
    let factor = if max_norm > 0.0 && norm > max_norm { max_norm / (norm + 1e-6) } else { 1.0 };
    Ok((norm, factor))
}

/// The learning rate at update `step` (0-based) of `total`: linear warmup over `warmup` updates
/// from 0, then cosine decay to 0 (`get_cosine_schedule_with_warmup`).
pub fn cosine_lr(base: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_zero_gradient_step_equals_stepping_with_zero_tensors() {
        let cfg = AdamConfig { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.1 };
        // more elements than one parallel chunk, so the chunked loop is covered
        let p0: Vec<f32> = (0..40_000).map(|i| ((i % 97) as f32 - 48.0) / 10.0).collect();
        let g: Vec<f32> = (0..40_000).map(|i| ((i % 13) as f32 - 6.0) / 100.0).collect();
        let run = |zero_step: bool| {
            let var = Var::from_tensor(&Tensor::new(p0.as_slice(), &Device::Cpu).unwrap()).unwrap();
            let mut opt = AdamW::new(vec![var.clone()], cfg).unwrap();
            opt.step(&[Some(Tensor::new(g.as_slice(), &Device::Cpu).unwrap())], 0.01, 0.5).unwrap();
            let before = var.as_tensor().to_vec1::<f32>().unwrap();
            if zero_step {
                opt.step_zero_grads(0.02).unwrap();
            } else {
                opt.step(&[Some(var.as_tensor().zeros_like().unwrap())], 0.02, 1.0).unwrap();
            }
            assert_eq!(opt.t, 2);
            let after = var.as_tensor().to_vec1::<f32>().unwrap();
            assert!(before.iter().zip(&after).filter(|(b, a)| b != a).count() > 39_000, "the momentum moves the weights");
            (after, opt.state(&["w".to_string()]).unwrap()["v.w"].to_vec1::<f32>().unwrap())
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    fn fused_adamw_matches_the_formula_over_steps() {
        let p0 = [0.5f32, -1.0, 2.0];
        let var = Var::from_tensor(&Tensor::new(&p0, &Device::Cpu).unwrap()).unwrap();
        let cfg = AdamConfig { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.1 };
        let mut opt = AdamW::new(vec![var.clone()], cfg).unwrap();
        let grads = [[0.1f32, -0.2, 0.3], [0.05, 0.1, -0.3]];
        let (mut p, mut m, mut v) = (p0.map(|x| x as f64), [0f64; 3], [0f64; 3]);
        for (t, g) in grads.iter().enumerate() {
            let gt = Tensor::new(g, &Device::Cpu).unwrap();
            opt.step(&[Some(gt)], 0.01, 0.5).unwrap();
            let t = (t + 1) as i32;
            for i in 0..3 {
                let gi = g[i] as f64 * 0.5;
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.99 * v[i] + 0.01 * gi * gi;
                let upd = (m[i] / (1.0 - 0.9f64.powi(t))) / ((v[i] / (1.0 - 0.99f64.powi(t))).sqrt() + 1e-8);
                p[i] = p[i] * (1.0 - 0.01 * 0.1) - 0.01 * upd;
            }
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for i in 0..3 {
            assert!((got[i] as f64 - p[i]).abs() < 1e-6, "{i}: {} vs {}", got[i], p[i]);
        }
        // the state round-trips through a checkpoint
        let names = vec!["w".to_string()];
        let st = opt.state(&names).unwrap();
        let m_saved = st["m.w"].to_vec1::<f32>().unwrap();
        assert!((m_saved[2] as f64 - m[2]).abs() < 1e-7);
        let mut fresh = AdamW::new(vec![var], cfg).unwrap();
        fresh.load_state(&names, 2, &st).unwrap();
        assert_eq!(fresh.state(&names).unwrap()["v.w"].to_vec1::<f32>().unwrap(), st["v.w"].to_vec1::<f32>().unwrap());
    }

    #[test]
    fn clipping_and_schedule() {
        let g = Tensor::new(&[3f32, 4.0], &Device::Cpu).unwrap();
        let (norm, f) = clip_factor(&[Some(g), None], 1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-9 && (f - 0.2).abs() < 1e-6);
        assert_eq!(clip_factor(&[Some(Tensor::new(&[0.3f32], &Device::Cpu).unwrap())], 1.0).unwrap().1, 1.0);
        assert_eq!(cosine_lr(1.0, 0, 10, 2), 0.0);
        assert_eq!(cosine_lr(1.0, 1, 10, 2), 0.5);
        assert!((cosine_lr(1.0, 2, 10, 2) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(1.0, 6, 10, 2) - 0.5).abs() < 1e-12);
        assert!(cosine_lr(1.0, 10, 10, 2).abs() < 1e-12);
    }
}
