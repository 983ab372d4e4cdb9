//! The decoder blocks shared by the architectures: embedding, pre-norm attention with grouped
//! K/V heads, SwiGLU MLP, final norm and output projection — each differentiable end to end.
use candle_core::{DType, Device, Tensor};

use super::{ops, Config, Params};
use crate::Result;

/// RoPE tables for every position up to the longest sequence seen, built once and grown on demand.
struct Rope {
    theta: f64,
    half: usize,
    cos: std::sync::RwLock<(Tensor, Tensor)>,
    device: Device,
}

impl Rope {
    fn new(cfg: &Config, device: &Device) -> Result<Rope> {
        let half = cfg.head_dim / 2;
        let (c, s) = Self::tables(cfg.rope_theta, half, 512, device)?;
        Ok(Rope { theta: cfg.rope_theta, half, cos: std::sync::RwLock::new((c, s)), device: device.clone() })
    }
    fn tables(theta: f64, half: usize, len: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let inv: Vec<f32> = (0..half).map(|i| (1.0 / theta.powf(2.0 * i as f64 / (2 * half) as f64)) as f32).collect();
        let mut ang = Vec::with_capacity(len * half);
        for p in 0..len {
            for f in &inv {
                ang.push(p as f32 * f);
            }
        }
        let a = Tensor::from_vec(ang, (len, half), device)?;
        Ok((a.cos()?, a.sin()?))
    }
    /// cos, sin `[t, head_dim/2]`.
    fn get(&self, t: usize, dtype: DType) -> Result<(Tensor, Tensor)> {
        {
            let g = self.cos.read().expect("rope lock");
            if g.0.dim(0)? >= t {
                return Ok((g.0.narrow(0, 0, t)?.to_dtype(dtype)?, g.1.narrow(0, 0, t)?.to_dtype(dtype)?));
            }
        }
        let len = t.next_power_of_two();
        let fresh = Self::tables(self.theta, self.half, len, &self.device)?;
        *self.cos.write().expect("rope lock") = fresh;
        self.get(t, dtype)
    }
}

/// `x [n, in] → x·wᵀ (+ b)`.
fn lin(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
    let y = x.matmul(&w.t()?)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// A linear layer: weight `[out, in]` and optional bias `[out]`.
struct Lin {
    w: Tensor,
    b: Option<Tensor>,
}

impl Lin {
    fn new(p: &Params, name: &str, out: usize, inp: usize, bias: bool) -> Result<Lin> {
        let w = p.need(&format!("{name}.weight"), &[out, inp])?;
        let b = if bias { Some(p.need(&format!("{name}.bias"), &[out])?) } else { None };
        Ok(Lin { w, b })
    }
    /// The same weights, cut from candle's autograd graph.
    fn detached(&self) -> Lin {
        Lin { w: self.w.detach(), b: self.b.as_ref().map(Tensor::detach) }
    }
    /// `x [n, in] → [n, out]`
    fn fwd(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        lin(x, &self.w, self.b.as_ref())
    }
    /// `(dx, dw, db)` for `y = x·wᵀ + b` given `dy`.
    fn bwd(&self, x: &Tensor, dy: &Tensor) -> candle_core::Result<(Tensor, Tensor, Option<Tensor>)> {
        let dx = dy.matmul(&self.w)?;
        // dyᵀ·x straight into the weight's layout: computing (xᵀ·dy)ᵀ instead and copying it
        // was 2.2× slower for the 49k-row output projection (353 ms against 159 at 256 tokens,
        // AMD EPYC, 2 threads; `cargo bench --bench weight_grad`), the copy costing more than
        // the product
        let dw = dy.t()?.matmul(x)?;
        let db = match self.b {
            Some(_) => Some(dy.sum(0)?),
            None => None,
        };
        Ok((dx, dw, db))
    }
}

/// One pre-norm block's weights.
struct Block {
    attn_norm: Tensor,
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Lin,
    up: Lin,
    down: Lin,
}

impl Block {
    fn new(cfg: &Config, p: &Params, i: usize) -> Result<Block> {
        let n = |s: &str| format!("blk.{i}.{s}");
        let (h, hd) = (cfg.hidden, cfg.head_dim);
        let (q, kv) = (cfg.heads * hd, cfg.kv_heads * hd);
        let norm = |s: &str, d: usize| p.need(&n(s), &[d]);
        Ok(Block {
            attn_norm: norm("attn_norm.weight", h)?,
            q: Lin::new(p, &n("attn_q"), q, h, cfg.qkv_bias)?,
            k: Lin::new(p, &n("attn_k"), kv, h, cfg.qkv_bias)?,
            v: Lin::new(p, &n("attn_v"), kv, h, cfg.qkv_bias)?,
            o: Lin::new(p, &n("attn_output"), h, q, false)?,
            q_norm: if cfg.qk_norm { Some(norm("attn_q_norm.weight", hd)?) } else { None },
            k_norm: if cfg.qk_norm { Some(norm("attn_k_norm.weight", hd)?) } else { None },
            ffn_norm: norm("ffn_norm.weight", h)?,
            gate: Lin::new(p, &n("ffn_gate"), cfg.ffn, h, false)?,
            up: Lin::new(p, &n("ffn_up"), cfg.ffn, h, false)?,
            down: Lin::new(p, &n("ffn_down"), h, cfg.ffn, false)?,
        })
    }

    /// The same weights, cut from candle's autograd graph (for the hand-written backward).
    fn detached(&self) -> Block {
        Block {
            attn_norm: self.attn_norm.detach(),
            q: self.q.detached(),
            k: self.k.detached(),
            v: self.v.detached(),
            o: self.o.detached(),
            q_norm: self.q_norm.as_ref().map(Tensor::detach),
            k_norm: self.k_norm.as_ref().map(Tensor::detach),
            ffn_norm: self.ffn_norm.detach(),
            gate: self.gate.detached(),
            up: self.up.detached(),
            down: self.down.detached(),
        }
    }
}

/// The whole decoder.
pub struct Decoder {
    cfg: Config,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    head: Tensor,
    rope: Rope,
}

impl Decoder {
    pub fn new(cfg: &Config, p: &Params, device: &Device) -> Result<Decoder> {
        let embed = p.need("token_embd.weight", &[cfg.vocab, cfg.hidden])?;
        let head = if cfg.tied { embed.clone() } else { p.need("output.weight", &[cfg.vocab, cfg.hidden])? };
        let blocks = (0..cfg.layers).map(|i| Block::new(cfg, p, i)).collect::<Result<Vec<_>>>()?;
        Ok(Decoder {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm: p.need("output_norm.weight", &[cfg.hidden])?,
            head,
            rope: Rope::new(cfg, device)?,
        })
    }

    fn dims(&self, b: usize, t: usize, past: usize) -> Dims {
        let cfg = &self.cfg;
        Dims {
            b,
            t,
            past,
            hd: cfg.head_dim,
            nh: cfg.heads,
            nkv: cfg.kv_heads,
            eps: cfg.rms_eps as f32,
            scale: 1.0 / (cfg.head_dim as f64).sqrt(),
            interleaved: cfg.rope_interleaved,
        }
    }

    /// The final hidden states `[b, t, hidden]` of `ids [b, t]`, differentiable through candle's
    /// autograd.
    pub fn hidden(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let d = self.dims(b, t, 0);
        let mut x = self.embed.embedding(&ids.flatten_all()?)?;
        let (cos, sin) = self.rope.get(t, self.embed.dtype())?;
        for blk in &self.blocks {
            x = blk.forward(&d, x, &cos, &sin, None)?.0;
        }
        Ok(ops::rms_norm(&x, &self.norm, d.eps)?.reshape((b, t, self.cfg.hidden))?)
    }

    /// `h [n, hidden] → logits [n, vocab]`
    pub fn logits(&self, h: &Tensor) -> Result<Tensor> {
        Ok(lin(h, &self.head, None)?)
    }
}

// ---------------------------------------------------------------- hand-written backward

/// What one block's backward needs from its forward (attention weights are recomputed).
struct Saved {
    x: Tensor,
    xn: Tensor,
    /// q and k heads before their RMSNorm (qwen3 only)
    q0: Option<Tensor>,
    k0: Option<Tensor>,
    /// q after RoPE `[b, heads, t, hd]`; k after RoPE and v `[b, kv heads, past + t, hd]` (a
    /// shared prefix's keys and values first)
    q: Tensor,
    k: Tensor,
    v: Tensor,
    y: Tensor,
    x2: Tensor,
    xn2: Tensor,
    gate: Tensor,
    up: Tensor,
    m: Tensor,
}

/// Shapes shared by the blocks of one pass.
struct Dims {
    b: usize,
    t: usize,
    /// keys before this pass's tokens, seen by every sequence (a shared prefix; 0 for none)
    past: usize,
    hd: usize,
    nh: usize,
    nkv: usize,
    eps: f32,
    scale: f64,
    interleaved: bool,
}

impl Dims {
    fn n(&self) -> usize {
        self.b * self.t
    }
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        if self.interleaved {
            ops::rope_interleaved(x, cos, sin)
        } else {
            ops::rope_halves(x, cos, sin)
        }
    }
    /// `[n, heads·hd] → [b, heads, t, hd]`
    fn heads(&self, y: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
        y.reshape((self.b, self.t, heads, self.hd))?.transpose(1, 2)?.contiguous()
    }
    /// `[b, heads, t, hd] → [n, heads·hd]`
    fn flat(&self, y: &Tensor) -> candle_core::Result<Tensor> {
        let heads = y.dim(1)?;
        y.transpose(1, 2)?.contiguous()?.reshape((self.n(), heads * self.hd))
    }
    /// Attention weights `[b, nkv, rep·t, past + t]` from roped q and k.
    fn attention(&self, q: &Tensor, k: &Tensor) -> candle_core::Result<Tensor> {
        let qg = q.reshape((self.b, self.nkv, self.nh / self.nkv * self.t, self.hd))?;
        ops::causal_softmax(&qg.matmul(&k.t()?)?, self.scale, self.past)
    }
    /// `prefix [1, kv heads, past, hd]` repeated for each sequence, then `own [b, kv heads, t, hd]`.
    fn after_prefix(&self, prefix: &Tensor, own: Tensor) -> candle_core::Result<Tensor> {
        let p = prefix.broadcast_as((self.b, self.nkv, self.past, self.hd))?;
        Tensor::cat(&[&p, &own], 2)?.contiguous()
    }
    /// A gradient of `[b, kv heads, past + t, hd]` keys split into the prefix's (summed over the
    /// sequences that share it) and the pass's own.
    fn split_prefix(&self, g: Tensor) -> candle_core::Result<(Option<Tensor>, Tensor)> {
        if self.past == 0 {
            return Ok((None, g));
        }
        Ok((Some(g.narrow(2, 0, self.past)?.sum_keepdim(0)?), g.narrow(2, self.past, self.t)?.contiguous()?))
    }
}

impl Block {
    /// One block on flat activations `x [b·t, hidden]`; also returns what its backward needs.
    /// `prefix`: this block's saved state of a shared prefix (`d.past` tokens) every sequence
    /// continues, whose keys and values the attention sees first; `cos`/`sin` cover the pass's
    /// own positions.
    fn forward(&self, d: &Dims, x: Tensor, cos: &Tensor, sin: &Tensor, prefix: Option<&Saved>) -> candle_core::Result<(Tensor, Saved)> {
        let xn = ops::rms_norm(&x, &self.attn_norm, d.eps)?;
        let q0 = d.heads(&self.q.fwd(&xn)?, d.nh)?;
        let k0 = d.heads(&self.k.fwd(&xn)?, d.nkv)?;
        let v = d.heads(&self.v.fwd(&xn)?, d.nkv)?;
        let (q1, k1) = match (&self.q_norm, &self.k_norm) {
            (Some(qn), Some(kn)) => (ops::rms_norm(&q0, qn, d.eps)?, ops::rms_norm(&k0, kn, d.eps)?),
            _ => (q0.clone(), k0.clone()),
        };
        let (q, mut k) = (d.rope(&q1, cos, sin)?, d.rope(&k1, cos, sin)?);
        let mut v = v;
        if let Some(p) = prefix {
            (k, v) = (d.after_prefix(&p.k, k)?, d.after_prefix(&p.v, v)?);
        }
        let att = d.attention(&q, &k)?;
        let y = d.flat(&att.matmul(&v)?.reshape((d.b, d.nh, d.t, d.hd))?)?;
        drop(att);
        let x2 = (&x + self.o.fwd(&y)?)?;
        let xn2 = ops::rms_norm(&x2, &self.ffn_norm, d.eps)?;
        let (gate, up) = (self.gate.fwd(&xn2)?, self.up.fwd(&xn2)?);
        let m = ops::swiglu(&gate, &up)?;
        let out = (&x2 + self.down.fwd(&m)?)?;
        let qk = self.q_norm.is_some();
        let saved = Saved { x, xn, q0: qk.then_some(q0), k0: qk.then_some(k0), q, k, v, y, x2, xn2, gate, up, m };
        Ok((out, saved))
    }

    /// `dx` of the block input and the weights' gradients under their GGUF names. With a shared
    /// prefix (`d.past > 0`) also the gradient of the prefix's roped keys and values, summed over
    /// the sequences; `into_kv` is such a gradient arriving at this pass's own keys and values
    /// (when this pass is the prefix).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        d: &Dims,
        s: Saved,
        dout: Tensor,
        cos: &Tensor,
        sin: &Tensor,
        i: usize,
        grads: &mut Vec<(String, Tensor)>,
        into_kv: Option<(Tensor, Tensor)>,
    ) -> candle_core::Result<(Tensor, Option<(Tensor, Tensor)>)> {
        let mut put = |name: &str, g: Tensor| grads.push((format!("blk.{i}.{name}"), g));
        // MLP: out = x2 + down(swiglu(gate(xn2), up(xn2)))
        let (dm, dwd, _) = self.down.bwd(&s.m, &dout)?;
        put("ffn_down.weight", dwd);
        let (dgate, dup) = ops::bwd::swiglu(&s.gate, &s.up, &dm)?;
        drop(dm);
        let (dxg, dwg, _) = self.gate.bwd(&s.xn2, &dgate)?;
        let (dxu, dwu, _) = self.up.bwd(&s.xn2, &dup)?;
        put("ffn_gate.weight", dwg);
        put("ffn_up.weight", dwu);
        let (dx2n, dfn) = ops::bwd::rms_norm(&s.x2, &self.ffn_norm, &(dxg + dxu)?, d.eps)?;
        put("ffn_norm.weight", dfn);
        let dx2 = (dout + dx2n)?;
        // attention: x2 = x + o(attention(q, k, v))
        let (dy, dwo, _) = self.o.bwd(&s.y, &dx2)?;
        put("attn_output.weight", dwo);
        let g = (d.b, d.nkv, d.nh / d.nkv * d.t, d.hd);
        let dyh = d.heads(&dy, d.nh)?.reshape(g)?;
        let att = d.attention(&s.q, &s.k)?;
        let datt = dyh.matmul(&s.v.t()?)?;
        let (dv_past, mut dv) = d.split_prefix(att.t()?.matmul(&dyh)?)?;
        let ds = ops::bwd::causal_softmax(&att, &datt, d.scale, d.past)?;
        drop((att, datt));
        let qg = s.q.reshape(g)?;
        let dq = ds.matmul(&s.k)?.reshape((d.b, d.nh, d.t, d.hd))?;
        let (dk_past, mut dk) = d.split_prefix(ds.t()?.matmul(&qg)?)?;
        if let Some((ek, ev)) = into_kv {
            (dk, dv) = ((dk + ek)?, (dv + ev)?);
        }
        let (mut dq, mut dk) = (ops::bwd::rope(&dq, cos, sin, d.interleaved)?, ops::bwd::rope(&dk, cos, sin, d.interleaved)?);
        if let (Some(qn), Some(kn), Some(q0), Some(k0)) = (&self.q_norm, &self.k_norm, &s.q0, &s.k0) {
            let (a, dqn) = ops::bwd::rms_norm(q0, qn, &dq, d.eps)?;
            let (b, dkn) = ops::bwd::rms_norm(k0, kn, &dk, d.eps)?;
            put("attn_q_norm.weight", dqn);
            put("attn_k_norm.weight", dkn);
            (dq, dk) = (a, b);
        }
        let mut dxn = None;
        for (name, l, dh) in [("attn_q", &self.q, d.flat(&dq)?), ("attn_k", &self.k, d.flat(&dk)?), ("attn_v", &self.v, d.flat(&dv)?)] {
            let (dx, dw, db) = l.bwd(&s.xn, &dh)?;
            put(&format!("{name}.weight"), dw);
            if let Some(db) = db {
                put(&format!("{name}.bias"), db);
            }
            dxn = Some(match dxn {
                None => dx,
                Some(acc) => (acc + dx)?,
            });
        }
        let dxn = dxn.expect("three projections");
        let (dxa, dan) = ops::bwd::rms_norm(&s.x, &self.attn_norm, &dxn, d.eps)?;
        put("attn_norm.weight", dan);
        Ok(((dx2 + dxa)?, dk_past.zip(dv_past)))
    }
}

/// What [`Decoder::target_grads`] asks of a loss: from the target rows' logits, the loss and
/// (unless only the forward is wanted) its derivative with respect to each row's cross-entropy.
pub type Weigh<'a> = dyn FnMut(&Tensor) -> Result<(f64, Option<Tensor>)> + 'a;

impl Decoder {
    /// The summed token cross-entropy of `rows` (flat positions of `ids [b, t]`) predicting
    /// `targets`, times `scale`, and the gradient of that of every weight, by a hand-written
    /// backward pass (CPU f32): no autograd graph, each gradient written once, each block's
    /// activations freed as soon as its backward is done, attention weights recomputed rather
    /// than kept. Gradients come under the weights' GGUF names (the tied embedding once).
    ///
    /// `prefix`: tokens every sequence of `ids` continues (a shared prompt start, no target among
    /// them). They run once, as a sequence of their own whose keys and values each sequence's
    /// attention sees first, and gradients flow back into them summed over the sequences: the
    /// same loss and gradients as with the prefix written before each sequence, for
    /// `|prefix|·(b−1)` fewer tokens through the model.
    pub fn nll_grads(&self, prefix: &[u32], ids: &Tensor, rows: &[u32], targets: &[u32], scale: f64) -> Result<(f64, Vec<(String, Tensor)>)> {
        self.target_grads(prefix, ids, rows, targets, 1.0, &mut |logits| {
            let loss = ops::nll(logits, targets)?.sum_all()?.to_scalar::<f32>()? as f64 * scale;
            Ok((loss, Some(Tensor::full(scale as f32, targets.len(), logits.device())?)))
        })
    }

    /// [`Decoder::nll_grads`] for any loss of the target log-probs: `weigh` gets the logits
    /// `[rows, vocab]` and returns the loss and its derivative with respect to each row's
    /// cross-entropy (−log-prob of its target), which the backward pass takes from there (a
    /// policy-gradient loss is a weighted sum of log-probs whose weights depend on their values).
    /// With no derivative the pass stops after the forward and returns no gradient: the shared
    /// prefix's savings for log-probs alone. `weigh` sees the logits divided by `temperature` (the
    /// distribution a policy sampled from), and the backward pass carries that division.
    pub fn target_grads(&self, prefix: &[u32], ids: &Tensor, rows: &[u32], targets: &[u32], temperature: f64, weigh: &mut Weigh) -> Result<(f64, Vec<(String, Tensor)>)> {
        let (b, t) = ids.dims2()?;
        let cfg = &self.cfg;
        let past = prefix.len();
        let (dp, d) = (self.dims(1, past, 0), self.dims(b, t, past));
        let dev = self.embed.device().clone();
        let embed = self.embed.detach();
        let flat_ids = ids.flatten_all()?;
        let pre_ids = Tensor::from_vec(prefix.to_vec(), past, &dev)?;
        let (cos_all, sin_all) = self.rope.get(past + t, embed.dtype())?;
        let (cos_p, sin_p) = (cos_all.narrow(0, 0, past)?, sin_all.narrow(0, 0, past)?);
        let (cos, sin) = (cos_all.narrow(0, past, t)?, sin_all.narrow(0, past, t)?);
        let blocks: Vec<Block> = self.blocks.iter().map(Block::detached).collect();
        // the prefix through every block first (its keys and values are the sequences' context)
        let mut saved_p: Vec<Saved> = Vec::new();
        if past > 0 {
            let mut x = embed.embedding(&pre_ids)?;
            for blk in &blocks {
                let (out, s) = blk.forward(&dp, x, &cos_p, &sin_p, None)?;
                saved_p.push(s);
                x = out;
            }
        }
        let mut x = embed.embedding(&flat_ids)?;
        let mut saved = Vec::with_capacity(blocks.len());
        for (i, blk) in blocks.iter().enumerate() {
            let (out, s) = blk.forward(&d, x, &cos, &sin, saved_p.get(i))?;
            saved.push(s);
            x = out;
        }
        let norm = self.norm.detach();
        let hf = ops::rms_norm(&x, &norm, d.eps)?;
        let rows_t = Tensor::from_vec(rows.to_vec(), rows.len(), &dev)?;
        let sel = hf.index_select(&rows_t, 0)?;
        drop(hf);
        let head = Lin { w: self.head.detach(), b: None };
        let logits = head.fwd(&sel)?;
        let logits = if temperature == 1.0 { logits } else { (logits / temperature)? };
        let (loss, dnll) = weigh(&logits)?;
        let Some(dnll) = dnll else { return Ok((loss, Vec::new())) };
        let dlogits = ops::bwd::nll(&logits, targets, &dnll)?;
        let dlogits = if temperature == 1.0 { dlogits } else { (dlogits / temperature)? };
        drop(logits);
        let (dsel, dhead, _) = head.bwd(&sel, &dlogits)?;
        drop((dlogits, sel));
        let mut grads: Vec<(String, Tensor)> = Vec::new();
        let dhf = Tensor::zeros((d.n(), cfg.hidden), embed.dtype(), &dev)?.index_add(&rows_t, &dsel, 0)?;
        let (mut dx, dnorm) = ops::bwd::rms_norm(&x, &norm, &dhf, d.eps)?;
        drop((x, dhf));
        grads.push(("output_norm.weight".into(), dnorm));
        // no target in the prefix: its gradient starts at its keys and values
        let mut dx_p = Tensor::zeros((past, cfg.hidden), embed.dtype(), &dev)?;
        for (i, blk) in blocks.iter().enumerate().rev() {
            let s = saved.pop().expect("one saved state per block");
            let (dxi, into_prefix) = blk.backward(&d, s, dx, &cos, &sin, i, &mut grads, None)?;
            dx = dxi;
            if let Some(kv) = into_prefix {
                let sp = saved_p.pop().expect("one saved prefix state per block");
                let mut gp = Vec::new();
                dx_p = blk.backward(&dp, sp, dx_p, &cos_p, &sin_p, i, &mut gp, Some(kv))?.0;
                // the prefix pass put the same names in the same order as the block's pass did
                let at = grads.len() - gp.len();
                for ((name, g), (pname, pg)) in grads[at..].iter_mut().zip(gp) {
                    debug_assert_eq!(*name, pname);
                    *g = (&*g + pg)?;
                }
            }
        }
        let (all_ids, dx) = if past > 0 { (Tensor::cat(&[&pre_ids, &flat_ids], 0)?, Tensor::cat(&[&dx_p, &dx], 0)?) } else { (flat_ids, dx) };
        if cfg.tied {
            // the lookup's gradient added onto (a copy of) the output projection's, without the
            // zeroed 49k-row buffer and the sum of the two
            grads.push(("token_embd.weight".into(), dhead.index_add(&all_ids, &dx, 0)?));
        } else {
            let dembed = Tensor::zeros(embed.shape(), embed.dtype(), &dev)?.index_add(&all_ids, &dx, 0)?;
            grads.push(("token_embd.weight".into(), dembed));
            grads.push(("output.weight".into(), dhead));
        }
        Ok((loss, grads))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{configs, tiny};
    use candle_core::{Device, Tensor};

    #[test]
    fn a_shared_prefix_run_once_gives_the_loss_and_gradients_of_writing_it_out() {
        for cfg in configs() {
            let m = tiny(&cfg);
            let dev = Device::Cpu;
            let prefix: Vec<u32> = vec![3, 7, 11, 2, 9];
            // three continuations (the last right-padded), targets in each
            let own: Vec<Vec<u32>> = vec![vec![4, 30, 8, 5], vec![12, 6, 1, 44], vec![21, 17, 0, 0]];
            let rows_own: Vec<(usize, usize)> = vec![(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 0)];
            let target = |b: usize, j: usize| own[b][j + 1];
            let targets: Vec<u32> = rows_own.iter().map(|&(b, j)| target(b, j)).collect();
            let scale = 1.0 / 6.0;
            // shared: the continuations alone, the prefix passed once
            let ids = Tensor::from_vec(own.concat(), (3, 4), &dev).unwrap();
            let rows: Vec<u32> = rows_own.iter().map(|&(b, j)| (b * 4 + j) as u32).collect();
            let (shared_loss, shared) = m.nll_grads(&prefix, &ids, &rows, &targets, scale).unwrap();
            // written out: prefix + continuation per sequence, the same targets
            let full: Vec<u32> = own.iter().flat_map(|o| prefix.iter().chain(o).copied().collect::<Vec<_>>()).collect();
            let t = prefix.len() + 4;
            let ids_full = Tensor::from_vec(full, (3, t), &dev).unwrap();
            let rows_full: Vec<u32> = rows_own.iter().map(|&(b, j)| (b * t + prefix.len() + j) as u32).collect();
            let (full_loss, written) = m.nll_grads(&[], &ids_full, &rows_full, &targets, scale).unwrap();
            assert!((shared_loss - full_loss).abs() < 1e-5 * full_loss.abs().max(1.0), "{:?}: loss {shared_loss} vs {full_loss}", cfg.arch);
            for (i, (name, _)) in m.params.iter().enumerate() {
                let (a, b) = (shared[i].as_ref().unwrap(), written[i].as_ref().unwrap());
                let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let size = b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(size > 0.0, "{:?} {name}: no gradient to compare", cfg.arch);
                assert!(diff <= 1e-4 * size.max(1e-3), "{:?} {name}: max |Δ| {diff} against max |g| {size}", cfg.arch);
            }
        }
    }

    #[test]
    fn the_hand_written_backward_matches_autograd_for_every_architecture() {
        for cfg in configs() {
            let m = tiny(&cfg);
            // two sequences, the second right-padded; targets at some positions of each
            let ids: Vec<u32> = vec![3, 7, 11, 2, 9, 4, 30, 8, 5, 12, 0, 0];
            let ids = Tensor::from_vec(ids, (2, 6), &Device::Cpu).unwrap();
            let rows: Vec<u32> = vec![1, 2, 3, 4, 6, 7, 8];
            let targets: Vec<u32> = vec![11, 2, 9, 4, 8, 5, 12];
            let scale = 1.0 / 7.0;
            // autograd
            let h = m.hidden(&ids).unwrap().reshape((12, cfg.hidden)).unwrap();
            let h = h.index_select(&Tensor::from_vec(rows.clone(), rows.len(), &Device::Cpu).unwrap(), 0).unwrap();
            let loss = (super::ops::nll(&m.logits(&h).unwrap(), &targets).unwrap().sum_all().unwrap() * scale).unwrap();
            let store = loss.backward().unwrap();
            // by hand
            let (manual_loss, grads) = m.nll_grads(&[], &ids, &rows, &targets, scale).unwrap();
            let auto_loss = loss.to_scalar::<f32>().unwrap() as f64;
            assert!((manual_loss - auto_loss).abs() < 1e-5 * auto_loss.abs().max(1.0), "{:?}: loss {manual_loss} vs {auto_loss}", cfg.arch);
            for (i, (name, var)) in m.params.iter().enumerate() {
                let want = store.get(var.as_tensor()).unwrap_or_else(|| panic!("{name}: autograd gave no gradient"));
                let got = grads[i].as_ref().unwrap_or_else(|| panic!("{:?} {name}: no hand-written gradient", cfg.arch));
                assert_eq!(got.dims(), want.dims(), "{name}");
                let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                let size = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(diff <= 1e-4 * size.max(1e-3), "{:?} {name}: max |Δ| {diff} against max |g| {size}", cfg.arch);
            }
        }
    }
}
