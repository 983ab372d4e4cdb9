//! The decoder's elementwise pieces, differentiable: RMSNorm, RoPE in both layouts, causal
//! softmax, SwiGLU and token cross-entropy.
//!
//! On CPU each is one fused pass forward and one backward (candle's composed versions take five
//! to ten tensor ops and as many allocations, and its fast kernels have no backward), which is
//! what brings a training step near the matmul bound. Other devices use the composed ops.
use std::sync::Arc;

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// The contiguous f32 data of a CPU tensor argument.
fn data<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("{op}: f32 tensors only") };
    let Some((a, b)) = l.contiguous_offsets() else { bail!("{op}: contiguous tensors only") };
    Ok(&v[a..b])
}

fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}

/// Rows processed per rayon task (small rows are grouped so a task is worth scheduling).
fn group(row: usize) -> usize {
    (4096 / row.max(1)).max(1)
}

// ---------------------------------------------------------------- RMSNorm

struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-fused"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (data(s1, l1, self.name())?, data(s2, l2, self.name())?);
        let h = w.len();
        let mut y = vec![0f32; x.len()];
        let eps = self.eps;
        y.par_chunks_mut(h * group(h)).zip(x.par_chunks(h * group(h))).for_each(|(y, x)| {
            for (y, x) in y.chunks_mut(h).zip(x.chunks(h)) {
                let ms = x.iter().map(|v| v * v).sum::<f32>() / h as f32;
                let r = 1.0 / (ms + eps).sqrt();
                for i in 0..h {
                    y[i] = x[i] * r * w[i];
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, w: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = x.elem_count();
        let packed = x.apply_op3_no_bwd(w, &dy.contiguous()?, &RmsNormBwd { eps: self.eps })?;
        let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
        let dw = packed.narrow(0, n, w.elem_count())?;
        Ok((Some(dx), Some(dw)))
    }
}

/// `[dx (all of x), dw (one row)]` in one buffer.
struct RmsNormBwd {
    eps: f32,
}

impl CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "rms-norm-fused-bwd"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w, dy) = (data(s1, l1, self.name())?, data(s2, l2, self.name())?, data(s3, l3, self.name())?);
        let h = w.len();
        let mut out = vec![0f32; x.len() + h];
        let (dx, dw_out) = out.split_at_mut(x.len());
        let eps = self.eps;
        let g = h * group(h);
        let dw = dx
            .par_chunks_mut(g)
            .zip(x.par_chunks(g))
            .zip(dy.par_chunks(g))
            .map(|((dx, x), dy)| {
                let mut dw = vec![0f32; h];
                for ((dx, x), dy) in dx.chunks_mut(h).zip(x.chunks(h)).zip(dy.chunks(h)) {
                    let ms = x.iter().map(|v| v * v).sum::<f32>() / h as f32;
                    let r = 1.0 / (ms + eps).sqrt();
                    // xhat = x·r; g = dy·w; dx = r·(g − xhat·mean(g·xhat))
                    let mut dot = 0f32;
                    for i in 0..h {
                        let xh = x[i] * r;
                        dw[i] += dy[i] * xh;
                        dot += dy[i] * w[i] * xh;
                    }
                    let mean = dot / h as f32;
                    for i in 0..h {
                        dx[i] = r * (dy[i] * w[i] - x[i] * r * mean);
                    }
                }
                dw
            })
            .collect::<Vec<Vec<f32>>>();
        // partial sums added in chunk order: the same bits on every run (a resumed run must
        // retrace an uninterrupted one)
        for part in dw {
            for i in 0..h {
                dw_out[i] += part[i];
            }
        }
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
}

/// `x / sqrt(mean(x²) + eps) * w` over the last dimension.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    if fused(x) {
        return x.contiguous()?.apply_op2(w, RmsNorm { eps });
    }
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let r = (ms + eps as f64)?.sqrt()?.recip()?;
    x.broadcast_mul(&r)?.broadcast_mul(w)
}

// ---------------------------------------------------------------- RoPE

struct Rope {
    cos: Arc<Vec<f32>>,
    sin: Arc<Vec<f32>>,
    interleaved: bool,
    /// −1 rotates back (the backward pass)
    sign: f32,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope-fused"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, self.name())?;
        let (_, _, t, d) = l.shape().dims4()?;
        let half = d / 2;
        if self.cos.len() < t * half {
            bail!("rope-fused: tables for {} positions, sequence of {t}", self.cos.len() / half.max(1));
        }
        let mut y = vec![0f32; x.len()];
        let (cos, sin, sign, inter) = (&self.cos, &self.sin, self.sign, self.interleaved);
        // one task per (batch, head): t rows of d
        y.par_chunks_mut(t * d).zip(x.par_chunks(t * d)).for_each(|(y, x)| {
            for p in 0..t {
                let (y, x) = (&mut y[p * d..(p + 1) * d], &x[p * d..(p + 1) * d]);
                let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
                for i in 0..half {
                    let (a, b) = if inter { (2 * i, 2 * i + 1) } else { (i, i + half) };
                    let sn = s[i] * sign;
                    y[a] = x[a] * c[i] - x[b] * sn;
                    y[b] = x[a] * sn + x[b] * c[i];
                }
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let back = Rope { cos: self.cos.clone(), sin: self.sin.clone(), interleaved: self.interleaved, sign: -self.sign };
        Ok(Some(dy.contiguous()?.apply_op1_no_bwd(&back)?))
    }
}

fn rope_fused(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    let cos = Arc::new(cos.flatten_all()?.to_vec1::<f32>()?);
    let sin = Arc::new(sin.flatten_all()?.to_vec1::<f32>()?);
    x.contiguous()?.apply_op1(Rope { cos, sin, interleaved, sign: 1.0 })
}

/// RoPE on adjacent pairs `(x[2i], x[2i+1])` of `x [b, h, t, d]`; cos/sin `[t, d/2]`.
pub fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return rope_fused(x, cos, sin, true);
    }
    candle_nn::rotary_emb::rope_i_slow(x, cos, sin)
}

/// RoPE on the two halves `(x[i], x[i + d/2])` (NeoX layout).
pub fn rope_halves(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return rope_fused(x, cos, sin, false);
    }
    candle_nn::rotary_emb::rope_slow(x, cos, sin)
}

// ---------------------------------------------------------------- causal softmax

/// softmax(scale·x) over the last dimension, keys after the query masked out. Rows come in groups
/// of `tq` queries over `tk = past + tq` keys: query `q` of a group sees keys `0..=past + q` (the
/// `past` keys are a shared prefix every query follows; 0 for plain causal attention).
struct CausalSoftmax {
    scale: f32,
    tq: usize,
    past: usize,
}

impl CausalSoftmax {
    fn tk(&self) -> usize {
        self.past + self.tq
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax-fused"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, self.name())?;
        let (tq, tk, past) = (self.tq, self.tk(), self.past);
        let mut y = vec![0f32; x.len()];
        let scale = self.scale;
        y.par_chunks_mut(tq * tk).zip(x.par_chunks(tq * tk)).for_each(|(y, x)| {
            for q in 0..tq {
                let (y, x) = (&mut y[q * tk..(q + 1) * tk], &x[q * tk..(q + 1) * tk]);
                let last = past + q;
                let m = x[..=last].iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) * scale;
                let mut sum = 0f32;
                for k in 0..=last {
                    let e = (x[k] * scale - m).exp();
                    y[k] = e;
                    sum += e;
                }
                let inv = 1.0 / sum;
                for v in y[..=last].iter_mut() {
                    *v *= inv;
                }
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&dy.contiguous()?, &CausalSoftmaxBwd { scale: self.scale, tq: self.tq, past: self.past })?))
    }
}

struct CausalSoftmaxBwd {
    scale: f32,
    tq: usize,
    past: usize,
}

impl CustomOp2 for CausalSoftmaxBwd {
    fn name(&self) -> &'static str {
        "causal-softmax-fused-bwd"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (y, dy) = (data(s1, l1, self.name())?, data(s2, l2, self.name())?);
        let (tq, past) = (self.tq, self.past);
        let tk = past + tq;
        let scale = self.scale;
        let mut dx = vec![0f32; y.len()];
        dx.par_chunks_mut(tq * tk).zip(y.par_chunks(tq * tk)).zip(dy.par_chunks(tq * tk)).for_each(|((dx, y), dy)| {
            for q in 0..tq {
                let r = q * tk..q * tk + past + q + 1;
                let (dx, y, dy) = (&mut dx[r.clone()], &y[r.clone()], &dy[r]);
                let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
                for k in 0..dx.len() {
                    dx[k] = scale * y[k] * (dy[k] - dot);
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// The query count of scores `[.., tk]` whose first `past` keys are a shared prefix.
fn queries(x: &Tensor, past: usize) -> Result<usize> {
    let tk = x.dim(D::Minus1)?;
    if tk <= past {
        bail!("causal softmax: {tk} keys leave no query after a {past}-key prefix");
    }
    Ok(tk - past)
}

/// Attention weights from raw scores `[.., tq, past + tq]`: softmax(scale·x) with future keys
/// masked; the first `past` keys (a shared prefix) are seen by every query. Rows may stack
/// several `tq`-query groups (grouped heads): a row's query is its index modulo `tq`.
pub fn causal_softmax(x: &Tensor, scale: f64, past: usize) -> Result<Tensor> {
    let tq = queries(x, past)?;
    if fused(x) {
        return x.contiguous()?.apply_op1(CausalSoftmax { scale: scale as f32, tq, past });
    }
    let tk = past + tq;
    let mask: Vec<f32> = (0..tq).flat_map(|i| (0..tk).map(move |j| if j <= past + i { 0.0 } else { f32::NEG_INFINITY })).collect();
    let mask = Tensor::from_vec(mask, (tq, tk), x.device())?.to_dtype(x.dtype())?;
    let rows = x.elem_count() / tk;
    let lead = rows / tq;
    let s = (x.reshape((lead, tq, tk))? * scale)?.broadcast_add(&mask)?;
    candle_nn::ops::softmax(&s, D::Minus1)?.reshape(x.shape())
}

// ---------------------------------------------------------------- SwiGLU

struct SwiGlu;

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu-fused"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g, u) = (data(s1, l1, self.name())?, data(s2, l2, self.name())?);
        let mut y = vec![0f32; g.len()];
        y.par_chunks_mut(4096).zip(g.par_chunks(4096)).zip(u.par_chunks(4096)).for_each(|((y, g), u)| {
            for i in 0..y.len() {
                y[i] = g[i] * sigmoid(g[i]) * u[i];
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(&self, g: &Tensor, u: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = g.elem_count();
        let packed = g.apply_op3_no_bwd(u, &dy.contiguous()?, &SwiGluBwd)?;
        Ok((Some(packed.narrow(0, 0, n)?.reshape(g.shape())?), Some(packed.narrow(0, n, n)?.reshape(u.shape())?)))
    }
}

/// `[dgate, dup]` in one buffer.
struct SwiGluBwd;

impl CustomOp3 for SwiGluBwd {
    fn name(&self) -> &'static str {
        "swiglu-fused-bwd"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g, u, dy) = (data(s1, l1, self.name())?, data(s2, l2, self.name())?, data(s3, l3, self.name())?);
        let n = g.len();
        let mut out = vec![0f32; 2 * n];
        let (dg, du) = out.split_at_mut(n);
        dg.par_chunks_mut(4096)
            .zip(du.par_chunks_mut(4096))
            .zip(g.par_chunks(4096).zip(u.par_chunks(4096)).zip(dy.par_chunks(4096)))
            .for_each(|((dg, du), ((g, u), dy))| {
                for i in 0..dg.len() {
                    let s = sigmoid(g[i]);
                    let silu = g[i] * s;
                    du[i] = dy[i] * silu;
                    dg[i] = dy[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

/// `silu(gate) · up`.
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if fused(gate) {
        return gate.contiguous()?.apply_op2(&up.contiguous()?, SwiGlu);
    }
    candle_nn::ops::silu(gate)? * up
}

// ---------------------------------------------------------------- cross-entropy

/// Per-row negative log-likelihood of `targets` under `logits [n, vocab]`.
struct Nll {
    targets: Arc<Vec<u32>>,
}

impl CustomOp1 for Nll {
    fn name(&self) -> &'static str {
        "nll-fused"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, self.name())?;
        let (n, v) = l.shape().dims2()?;
        if self.targets.len() != n {
            bail!("nll-fused: {} targets for {n} rows", self.targets.len());
        }
        let out: Vec<f32> = x
            .par_chunks(v)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let lse = m + row.iter().map(|&z| (z - m).exp()).sum::<f32>().ln();
                lse - row[t as usize]
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&dy.contiguous()?, &NllBwd { targets: self.targets.clone() })?))
    }
}

struct NllBwd {
    targets: Arc<Vec<u32>>,
}

impl CustomOp2 for NllBwd {
    fn name(&self) -> &'static str {
        "nll-fused-bwd"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, dy) = (data(s1, l1, self.name())?, data(s2, l2, self.name())?);
        let (_, v) = l1.shape().dims2()?;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(v).zip(x.par_chunks(v)).zip(self.targets.par_iter().zip(dy.par_iter())).for_each(|((dx, row), (&t, &g))| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0f32;
            for i in 0..v {
                let e = (row[i] - m).exp();
                dx[i] = e;
                sum += e;
            }
            let k = g / sum;
            for d in dx.iter_mut() {
                *d *= k;
            }
            dx[t as usize] -= g;
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// Per row of `logits [n, vocab]`, the row's NLL of its target and the entropy of its softmax,
/// in one pass over the row (CPU f32): `[n, 2]`. Entropy = lse − Σ p·logit.
struct NllEntropy {
    targets: Arc<Vec<u32>>,
}

impl CustomOp1 for NllEntropy {
    fn name(&self) -> &'static str {
        "nll-entropy"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, self.name())?;
        let (n, v) = l.shape().dims2()?;
        if self.targets.len() != n {
            bail!("nll-entropy: {} targets for {n} rows", self.targets.len());
        }
        let mut out = vec![0f32; 2 * n];
        out.par_chunks_mut(2).zip(x.par_chunks(v)).zip(self.targets.par_iter()).for_each(|((o, row), &t)| {
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let (mut sum, mut dot) = (0f32, 0f32);
            for &z in row {
                let e = (z - m).exp();
                sum += e;
                // a −∞ logit adds nothing (0·−∞ would be NaN)
                if e > 0.0 {
                    dot += e * (z - m);
                }
            }
            // with logits shifted by m: lse' = ln sum, entropy = lse' − Σ e·z' / sum
            let lse = sum.ln();
            o[0] = lse + m - row[t as usize];
            o[1] = lse - dot / sum;
        });
        Ok((CpuStorage::F32(out), Shape::from((n, 2))))
    }
}

/// Each row's NLL of its target (`[n]`, as [`nll`]) and the mean entropy of the rows' softmax
/// (0 with no row), without gradients; one pass over the logits on CPU f32.
pub fn nll_entropy(logits: &Tensor, targets: &[u32]) -> Result<(Vec<f32>, f64)> {
    let n = targets.len();
    if n == 0 && logits.dim(0)? == 0 {
        return Ok((Vec::new(), 0.0));
    }
    if fused(logits) {
        let both = logits.contiguous()?.apply_op1_no_bwd(&NllEntropy { targets: Arc::new(targets.to_vec()) })?.to_vec2::<f32>()?;
        let entropy = both.iter().map(|r| r[1] as f64).sum::<f64>() / n as f64;
        return Ok((both.into_iter().map(|r| r[0]).collect(), entropy));
    }
    let l = logits.detach().to_dtype(candle_core::DType::F32)?;
    let lp = candle_nn::ops::log_softmax(&l, D::Minus1)?;
    let t = Tensor::from_vec(targets.to_vec(), (n, 1), l.device())?;
    let nll = lp.gather(&t, 1)?.squeeze(1)?.neg()?.to_vec1::<f32>()?;
    // a −∞ logit has probability 0 and adds nothing (0 × −∞ would be NaN)
    let lp = lp.maximum(f32::MIN)?;
    let entropy = (lp.exp()? * &lp)?.sum(1)?.neg()?.mean_all()?.to_scalar::<f32>()? as f64;
    Ok((nll, entropy))
}

/// `−log softmax(logits)[target]` per row of `logits [n, vocab]`: `[n]`.
pub fn nll(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    if fused(logits) {
        return logits.contiguous()?.apply_op1(Nll { targets: Arc::new(targets.to_vec()) });
    }
    let n = targets.len();
    let logp = candle_nn::ops::log_softmax(&logits.to_dtype(candle_core::DType::F32)?, D::Minus1)?;
    let t = Tensor::from_vec(targets.to_vec(), (n, 1), logits.device())?;
    logp.gather(&t, 1)?.squeeze(1)?.neg()
}

// ---------------------------------------------------------------- backward, for hand-written passes

/// The backward kernels of the ops above, called directly (CPU f32, contiguous inputs): what a
/// hand-written backward pass ([`super::layers::Decoder::nll_grads`]) needs without candle's graph.
pub(crate) mod bwd {
    use super::*;

    /// `(dx, dw)` of [`rms_norm`].
    pub fn rms_norm(x: &Tensor, w: &Tensor, dy: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
        let n = x.elem_count();
        let packed = x.apply_op3_no_bwd(w, &dy.contiguous()?, &RmsNormBwd { eps })?;
        Ok((packed.narrow(0, 0, n)?.reshape(x.shape())?, packed.narrow(0, n, w.elem_count())?))
    }

    /// `dx` of RoPE (`dy` rotated back); cos/sin `[t, d/2]`.
    pub fn rope(dy: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
        let cos = Arc::new(cos.flatten_all()?.to_vec1::<f32>()?);
        let sin = Arc::new(sin.flatten_all()?.to_vec1::<f32>()?);
        dy.contiguous()?.apply_op1_no_bwd(&Rope { cos, sin, interleaved, sign: -1.0 })
    }

    /// `dx` of [`causal_softmax`] from its output `y`.
    pub fn causal_softmax(y: &Tensor, dy: &Tensor, scale: f64, past: usize) -> Result<Tensor> {
        let tq = queries(y, past)?;
        y.apply_op2_no_bwd(&dy.contiguous()?, &CausalSoftmaxBwd { scale: scale as f32, tq, past })
    }

    /// `(dgate, dup)` of [`swiglu`].
    pub fn swiglu(g: &Tensor, u: &Tensor, dy: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = g.elem_count();
        let packed = g.apply_op3_no_bwd(u, &dy.contiguous()?, &SwiGluBwd)?;
        Ok((packed.narrow(0, 0, n)?.reshape(g.shape())?, packed.narrow(0, n, n)?.reshape(u.shape())?))
    }

    /// `dlogits` of [`nll`] given the gradient `dy [n]` of each row's loss.
    pub fn nll(logits: &Tensor, targets: &[u32], dy: &Tensor) -> Result<Tensor> {
        logits.apply_op2_no_bwd(&dy.contiguous()?, &NllBwd { targets: Arc::new(targets.to_vec()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Each fused op and its composed reference agree in value and in every gradient.
    fn check(name: &str, fused: impl Fn(&[Tensor]) -> Result<Tensor>, reference: impl Fn(&[Tensor]) -> Result<Tensor>, shapes: &[&[usize]]) {
        let dev = Device::Cpu;
        let vars: Vec<Var> = shapes.iter().enumerate().map(|(i, s)| Var::from_tensor(&(Tensor::randn(0f32, 1.0, *s, &dev).unwrap() + i as f64 * 0.1).unwrap()).unwrap()).collect();
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let a = fused(&ts).unwrap();
        let b = reference(&ts).unwrap();
        let w = Tensor::randn(0f32, 1.0, a.shape(), &dev).unwrap();
        let la = (&a * &w).unwrap().sum_all().unwrap();
        let lb = (&b * &w).unwrap().sum_all().unwrap();
        let diff = (&a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "{name}: values differ by {diff}");
        let (ga, gb) = (la.backward().unwrap(), lb.backward().unwrap());
        for (i, v) in vars.iter().enumerate() {
            let (x, y) = (ga.get(v.as_tensor()).unwrap(), gb.get(v.as_tensor()).unwrap());
            let d = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-3, "{name}: gradient of input {i} differs by {d}");
        }
    }

    #[test]
    fn fused_ops_match_composed_ops() {
        check(
            "rms_norm",
            |t| rms_norm(&t[0], &t[1], 1e-5),
            |t| {
                let r = (t[0].sqr()?.mean_keepdim(D::Minus1)? + 1e-5)?.sqrt()?.recip()?;
                t[0].broadcast_mul(&r)?.broadcast_mul(&t[1])
            },
            &[&[2, 3, 8], &[8]],
        );
        let cs = |t: usize| {
            let a = Tensor::arange(0f32, (t * 4) as f32, &Device::Cpu).unwrap().reshape((t, 4)).unwrap();
            ((&a * 0.37).unwrap().cos().unwrap(), (&a * 0.37).unwrap().sin().unwrap())
        };
        let (c, s) = cs(5);
        check("rope_i", |t| rope_interleaved(&t[0], &c, &s), |t| candle_nn::rotary_emb::rope_i_slow(&t[0], &c, &s), &[&[2, 3, 5, 8]]);
        check("rope", |t| rope_halves(&t[0], &c, &s), |t| candle_nn::rotary_emb::rope_slow(&t[0], &c, &s), &[&[2, 3, 5, 8]]);
        // square scores, and grouped rows (two 3-query groups per head) after a 2-key prefix
        for (past, shape) in [(0usize, [2usize, 3, 5, 5]), (2, [2, 3, 6, 5])] {
            let tq = 5 - past;
            check(
                "causal_softmax",
                |t| causal_softmax(&t[0], 0.5, past),
                |t| {
                    let mask: Vec<f32> = (0..shape[2]).flat_map(|r| (0..5).map(move |j| if j <= past + r % tq { 0.0 } else { f32::NEG_INFINITY })).collect();
                    let mask = Tensor::from_vec(mask, (shape[2], 5), &Device::Cpu)?;
                    candle_nn::ops::softmax(&(&t[0] * 0.5)?.broadcast_add(&mask)?, D::Minus1)
                },
                &[&shape],
            );
        }
        // the composed path (other devices and dtypes) masks grouped rows after a prefix alike
        let x = Tensor::randn(0f32, 1.0, (2, 3, 6, 5), &Device::Cpu).unwrap();
        let fast = causal_softmax(&x, 0.5, 2).unwrap();
        let slow = causal_softmax(&x.to_dtype(candle_core::DType::F64).unwrap(), 0.5, 2).unwrap().to_dtype(candle_core::DType::F32).unwrap();
        let diff = (fast - slow).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "composed causal softmax differs by {diff}");
        check("swiglu", |t| swiglu(&t[0], &t[1]), |t| candle_nn::ops::silu(&t[0])? * &t[1], &[&[4, 6], &[4, 6]]);
        let targets = [3u32, 0, 6];
        check(
            "nll",
            |t| nll(&t[0], &targets),
            |t| {
                let logp = candle_nn::ops::log_softmax(&t[0], D::Minus1)?;
                logp.gather(&Tensor::new(&targets, &Device::Cpu)?.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
            },
            &[&[3, 7]],
        );
        // NLL and entropy in one pass, against both computed in f64 from candle's ops, on shifted
        // rows and on a row with a −∞ logit
        let mut x = (Tensor::randn(0f32, 4.0, (3, 7), &Device::Cpu).unwrap() + 30.0).unwrap().to_vec2::<f32>().unwrap();
        x[1][2] = f32::NEG_INFINITY;
        let x = Tensor::new(x, &Device::Cpu).unwrap();
        let (nl, ent) = nll_entropy(&x, &targets).unwrap();
        let lp = candle_nn::ops::log_softmax(&x.to_dtype(candle_core::DType::F64).unwrap(), D::Minus1).unwrap();
        let want = lp.gather(&Tensor::new(&targets, &Device::Cpu).unwrap().unsqueeze(1).unwrap(), 1).unwrap().squeeze(1).unwrap().neg().unwrap().to_vec1::<f64>().unwrap();
        for (a, b) in nl.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-4, "nll-entropy: nll {a} vs {b}");
        }
        let p = lp.exp().unwrap().to_vec2::<f64>().unwrap();
        let l = lp.to_vec2::<f64>().unwrap();
        let want_ent = p.iter().zip(&l).map(|(p, l)| -p.iter().zip(l).filter(|(p, _)| **p > 0.0).map(|(p, l)| p * l).sum::<f64>()).sum::<f64>() / 3.0;
        assert!((ent - want_ent).abs() < 1e-4 && ent > 0.0, "nll-entropy: entropy {ent} vs {want_ent}");
        // the composed path other devices and dtypes take agrees, −∞ logit included
        let (nl64, ent64) = nll_entropy(&x.to_dtype(candle_core::DType::F64).unwrap(), &targets).unwrap();
        assert!(nl64.iter().zip(&nl).all(|(a, b)| (a - b).abs() < 1e-4), "composed nll {nl64:?} vs {nl:?}");
        assert!((ent64 - ent).abs() < 1e-4, "composed entropy {ent64} vs {ent}");
        assert_eq!(nll_entropy(&x.narrow(0, 0, 0).unwrap(), &[]).unwrap(), (Vec::new(), 0.0));
        assert!(nll_entropy(&x, &[]).is_err(), "rows without targets");
    }
}
