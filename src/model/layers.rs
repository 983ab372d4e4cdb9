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

struct Linear {
    w: Tensor,
    b: Option<Tensor>,
}

impl Linear {
    fn new(p: &Params, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        let w = p.need(&format!("{name}.weight"), &[out, inp])?;
        let b = if bias { Some(p.need(&format!("{name}.bias"), &[out])?) } else { None };
        Ok(Linear { w, b })
    }
    /// `x [.., in] → [.., out]`
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let inp = dims[dims.len() - 1];
        let rows = x.elem_count() / inp;
        let mut out = dims.clone();
        *out.last_mut().expect("rank ≥ 1") = self.w.dim(0)?;
        let y = x.reshape((rows, inp))?.matmul(&self.w.t()?)?.reshape(out)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

struct Block {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Block {
    fn new(cfg: &Config, p: &Params, i: usize) -> Result<Block> {
        let n = |s: &str| format!("blk.{i}.{s}");
        let (h, hd) = (cfg.hidden, cfg.head_dim);
        let (q, kv) = (cfg.heads * hd, cfg.kv_heads * hd);
        let norm = |s: &str, d: usize| p.need(&n(s), &[d]);
        Ok(Block {
            attn_norm: norm("attn_norm.weight", h)?,
            q: Linear::new(p, &n("attn_q"), q, h, cfg.qkv_bias)?,
            k: Linear::new(p, &n("attn_k"), kv, h, cfg.qkv_bias)?,
            v: Linear::new(p, &n("attn_v"), kv, h, cfg.qkv_bias)?,
            o: Linear::new(p, &n("attn_output"), h, q, false)?,
            q_norm: if cfg.qk_norm { Some(norm("attn_q_norm.weight", hd)?) } else { None },
            k_norm: if cfg.qk_norm { Some(norm("attn_k_norm.weight", hd)?) } else { None },
            ffn_norm: norm("ffn_norm.weight", h)?,
            gate: Linear::new(p, &n("ffn_gate"), cfg.ffn, h, false)?,
            up: Linear::new(p, &n("ffn_up"), cfg.ffn, h, false)?,
            down: Linear::new(p, &n("ffn_down"), h, cfg.ffn, false)?,
        })
    }

    fn forward(&self, cfg: &Config, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (hd, nh, nkv) = (cfg.head_dim, cfg.heads, cfg.kv_heads);
        let eps = cfg.rms_eps as f32;
        let xn = ops::rms_norm(x, &self.attn_norm, eps)?;
        let heads = |y: Tensor, n: usize| y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous();
        let mut q = heads(self.q.forward(&xn)?, nh)?;
        let mut k = heads(self.k.forward(&xn)?, nkv)?;
        let v = heads(self.v.forward(&xn)?, nkv)?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = ops::rms_norm(&q, qn, eps)?;
            k = ops::rms_norm(&k, kn, eps)?;
        }
        let (q, k) = if cfg.rope_interleaved {
            (ops::rope_interleaved(&q, cos, sin)?, ops::rope_interleaved(&k, cos, sin)?)
        } else {
            (ops::rope_halves(&q, cos, sin)?, ops::rope_halves(&k, cos, sin)?)
        };
        // query head h reads K/V head h / (nh / nkv): group the queries of each K/V head into one
        // matmul instead of repeating K and V
        let rep = nh / nkv;
        let q = q.reshape((b, nkv, rep * t, hd))?;
        let att = ops::causal_softmax(&q.matmul(&k.t()?)?, 1.0 / (hd as f64).sqrt())?;
        let y = att.matmul(&v)?.reshape((b, nh, t, hd))?.transpose(1, 2)?.reshape((b, t, nh * hd))?;
        let x = (x + self.o.forward(&y)?)?;
        let xn = ops::rms_norm(&x, &self.ffn_norm, eps)?;
        let m = ops::swiglu(&self.gate.forward(&xn)?, &self.up.forward(&xn)?)?;
        x + self.down.forward(&m)?
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

    pub fn hidden(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let dtype = self.embed.dtype();
        let mut x = self.embed.embedding(&ids.flatten_all()?)?.reshape((b, t, self.cfg.hidden))?;
        let (cos, sin) = self.rope.get(t, dtype)?;
        for blk in &self.blocks {
            x = blk.forward(&self.cfg, &x, &cos, &sin)?;
        }
        Ok(ops::rms_norm(&x, &self.norm, self.cfg.rms_eps as f32)?)
    }

    pub fn logits(&self, h: &Tensor) -> Result<Tensor> {
        Ok(Linear { w: self.head.clone(), b: None }.forward(h)?)
    }
}
