//! The layers of the Whisper network and their weights as each use keeps them: the encoder's
//! linear layers through `gemm` ([`Lin`]), the decoder's on slices with f16 weights when the
//! file's are ([`StepLin`], [`Stored`]), layer norms, attention projections, the MLP, and the
//! encoder and decoder blocks built from them.

use super::{with_values, SMALL_ROWS};
use crate::kernels::few_rows::{few_rows_product, Weights};
use crate::{kernels, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use half::f16;

/// A linear layer of the encoder (and of the decoder's cross-attention keys and values, over
/// the window's 1500 frames), through `gemm`.
pub(super) struct Lin {
    pub(super) w: Tensor,
    pub(super) b: Option<Tensor>,
}

impl Lin {
    /// `x · wᵀ + b`, plus `residual` when given, for `rows` rows of `x` on slices
    /// ([`kernels::linear`]: the bias and residual are in place before the product adds to
    /// them, so no pass over the result follows it).
    pub(super) fn forward_rows(
        &self,
        x: &[f32],
        rows: usize,
        residual: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let (n, k) = self.w.dims2()?;
        let mut out = Vec::new();
        with_values(&self.w, |w| match &self.b {
            Some(b) => with_values(b, |b| {
                kernels::linear(x, w, Some(b), residual, &mut out, (rows, k, n))
            }),
            None => {
                kernels::linear(x, w, None, residual, &mut out, (rows, k, n));
                Ok(())
            }
        })??;
        Ok(out)
    }
}

/// The values of a weight matrix as stored for decoder steps: f16 when every value is one
/// (CTranslate2's files store f16; the f32 copy would be the same numbers in twice the bytes,
/// and a step is bound by reading them), else f32.
pub(super) enum Stored {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

impl Stored {
    /// The values of `t`, as f16 when that loses nothing.
    pub(super) fn of(t: &Tensor) -> Result<Self> {
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        Ok(if values.iter().all(|&v| f16::from_f32(v).to_f32() == v) {
            Stored::F16(values.into_iter().map(f16::from_f32).collect())
        } else {
            Stored::F32(values)
        })
    }

    pub(super) fn weights(&self) -> Weights<'_> {
        match self {
            Stored::F32(w) => Weights::F32(w),
            Stored::F16(w) => Weights::F16(w),
        }
    }

    /// The values as f32 (a copy when stored as f16).
    pub(super) fn to_f32(&self) -> std::borrow::Cow<'_, [f32]> {
        match self {
            Stored::F32(w) => std::borrow::Cow::Borrowed(w),
            Stored::F16(w) => std::borrow::Cow::Owned(w.iter().map(|v| v.to_f32()).collect()),
        }
    }

    /// Row `i` (of `width` values) as f32, into `out`.
    pub(super) fn row_into(&self, i: usize, width: usize, out: &mut [f32]) {
        match self {
            Stored::F32(w) => out.copy_from_slice(&w[i * width..][..width]),
            Stored::F16(w) => out
                .iter_mut()
                .zip(&w[i * width..][..width])
                .for_each(|(o, v)| *o = v.to_f32()),
        }
    }
}

/// A linear layer of the decoder, on slices: `x · wᵀ + b` with `w` stored `[n, k]`.
pub(super) struct StepLin {
    pub(super) w: Stored,
    pub(super) b: Option<Vec<f32>>,
    pub(super) n: usize,
    pub(super) k: usize,
}

impl StepLin {
    pub(super) fn of(l: &Lin) -> Result<Self> {
        let (n, k) = l.w.dims2()?;
        Ok(StepLin {
            w: Stored::of(&l.w)?,
            b: l.b.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?,
            n,
            k,
        })
    }

    /// The product for `rows` rows of `x`: streamed ([`few_rows_product`], each row rounded as
    /// alone, columns over the pool) when `streamed` or for at most [`SMALL_ROWS`] rows, else
    /// through `gemm` (prompts).
    pub(super) fn forward(&self, x: &[f32], rows: usize, streamed: bool) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let mut out = match &self.b {
            Some(b) => b.repeat(rows),
            None => vec![0f32; rows * n],
        };
        if streamed || rows <= SMALL_ROWS {
            few_rows_product(&mut out, x, self.w.weights(), (rows, k, n));
        } else {
            let w = self.w.to_f32();
            kernels::matmul(
                (rows, k, n),
                &mut out,
                kernels::View::rows(0, n),
                x,
                kernels::View::rows(0, k),
                &w,
                kernels::View::transposed(0, k),
                1.0,
                true,
                true,
            );
        }
        out
    }
}

pub(super) fn linear(vb: &VarBuilder, d_in: usize, d_out: usize, bias: bool) -> Result<Lin> {
    let w = vb.get((d_out, d_in), "weight")?.contiguous()?;
    let b = if bias {
        Some(vb.get(d_out, "bias")?)
    } else {
        None
    };
    Ok(Lin { w, b })
}

/// A layer norm, on slices.
pub(super) struct Norm {
    pub(super) gamma: Vec<f32>,
    pub(super) beta: Vec<f32>,
}

impl Norm {
    pub(super) fn load(vb: &VarBuilder, d: usize) -> Result<Self> {
        Ok(Norm {
            gamma: vb.get(d, "weight")?.to_vec1::<f32>()?,
            beta: vb.get(d, "bias")?.to_vec1::<f32>()?,
        })
    }

    /// The normalised rows of `x`.
    pub(super) fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut h = x.to_vec();
        kernels::layer_norm(&mut h, &self.gamma, &self.beta, 1e-5);
        h
    }
}

/// `x += y`.
pub(super) fn add_into(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
}

pub(super) struct Attention {
    pub(super) q: Lin,
    pub(super) k: Lin,
    pub(super) v: Lin,
    pub(super) out: Lin,
}

impl Attention {
    pub(super) fn load(vb: &VarBuilder, d: usize) -> Result<Self> {
        Ok(Attention {
            q: linear(&vb.pp("q_proj"), d, d, true)?,
            k: linear(&vb.pp("k_proj"), d, d, false)?,
            v: linear(&vb.pp("v_proj"), d, d, true)?,
            out: linear(&vb.pp("out_proj"), d, d, true)?,
        })
    }

    /// The query, key and value projections as one `[3d, d]` product (a missing bias is 0).
    pub(super) fn fused_qkv(&self, d: usize) -> Result<Lin> {
        let bias = |l: &Lin| match &l.b {
            Some(b) => Ok(b.clone()),
            None => Tensor::zeros(d, candle_core::DType::F32, &Device::Cpu),
        };
        Ok(Lin {
            w: Tensor::cat(&[&self.q.w, &self.k.w, &self.v.w], 0)?.contiguous()?,
            b: Some(Tensor::cat(
                &[bias(&self.q)?, bias(&self.k)?, bias(&self.v)?],
                0,
            )?),
        })
    }
}

/// `[b, t, d]` -> `[b, heads, t, d / heads]`.
pub(super) fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    Ok(x.reshape((b, t, heads, d / heads))?
        .transpose(1, 2)?
        .contiguous()?)
}

/// The attention of projected queries `q` (`[b, t, d]`) over keys (split and transposed,
/// contiguous) and values (split), before the output projection: `[b, t, d]`, and the scaled
/// scores when `keep_scores` is set (a prompt's cross-attention, through `gemm`).
pub(super) fn mix(
    q: &Tensor,
    kt: &Tensor,
    v: &Tensor,
    heads: usize,
    keep_scores: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let (b, t, d) = q.dims3()?;
    let hd = d / heads;
    let q = (split_heads(q, heads)? * (1.0 / (hd as f64).sqrt()))?;
    let w = q.matmul(kt)?;
    let scores = keep_scores.then(|| w.clone());
    let w = candle_nn::ops::softmax_last_dim(&w)?;
    Ok((w.matmul(v)?.transpose(1, 2)?.reshape((b, t, d))?, scores))
}

/// The feed-forward half of a layer, with its norm.
pub(super) struct Mlp {
    pub(super) ln: Norm,
    pub(super) fc1: Lin,
    pub(super) fc2: Lin,
}

impl Mlp {
    pub(super) fn load(vb: &VarBuilder, d: usize) -> Result<Self> {
        Ok(Mlp {
            ln: Norm::load(&vb.pp("final_layer_norm"), d)?,
            fc1: linear(&vb.pp("fc1"), d, 4 * d, true)?,
            fc2: linear(&vb.pp("fc2"), 4 * d, d, true)?,
        })
    }

    /// `x + fc2(gelu(fc1(ln(x))))` for `rows` rows of `x`.
    pub(super) fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut h = self.fc1.forward_rows(&self.ln.forward(x), rows, None)?;
        kernels::Activation::Gelu.apply(&mut h);
        self.fc2.forward_rows(&h, rows, Some(x))
    }
}

/// An encoder layer, its query, key and value projections fused into one `[3d, d]` product.
pub(super) struct Block {
    pub(super) attn_ln: Norm,
    pub(super) qkv: Lin,
    pub(super) attn_out: Lin,
    pub(super) heads: usize,
    pub(super) mlp: Mlp,
}

impl Block {
    pub(super) fn load(vb: &VarBuilder, d: usize, heads: usize) -> Result<Self> {
        let a = Attention::load(&vb.pp("self_attn"), d)?;
        Ok(Block {
            attn_ln: Norm::load(&vb.pp("self_attn_layer_norm"), d)?,
            qkv: a.fused_qkv(d)?,
            attn_out: a.out,
            heads,
            mlp: Mlp::load(vb, d)?,
        })
    }
}

/// A decoder layer: self-attention with its query, key and value projections fused into one
/// `[3d, d]` product, cross-attention over the window's audio (its keys and values computed
/// once per window, through `gemm`), and the MLP.
pub(super) struct DecoderBlock {
    pub(super) attn_ln: Norm,
    pub(super) qkv: StepLin,
    pub(super) attn_out: StepLin,
    pub(super) cross_ln: Norm,
    pub(super) cross_q: StepLin,
    pub(super) cross_k: Lin,
    pub(super) cross_v: Lin,
    pub(super) cross_out: StepLin,
    pub(super) mlp_ln: Norm,
    pub(super) fc1: StepLin,
    pub(super) fc2: StepLin,
}

impl DecoderBlock {
    pub(super) fn load(vb: &VarBuilder, d: usize) -> Result<Self> {
        let a = Attention::load(&vb.pp("self_attn"), d)?;
        let qkv = a.fused_qkv(d)?;
        let cross = Attention::load(&vb.pp("encoder_attn"), d)?;
        let mlp = Mlp::load(vb, d)?;
        Ok(DecoderBlock {
            attn_ln: Norm::load(&vb.pp("self_attn_layer_norm"), d)?,
            qkv: StepLin::of(&qkv)?,
            attn_out: StepLin::of(&a.out)?,
            cross_ln: Norm::load(&vb.pp("encoder_attn_layer_norm"), d)?,
            cross_q: StepLin::of(&cross.q)?,
            cross_k: cross.k,
            cross_v: cross.v,
            cross_out: StepLin::of(&cross.out)?,
            mlp_ln: mlp.ln,
            fc1: StepLin::of(&mlp.fc1)?,
            fc2: StepLin::of(&mlp.fc2)?,
        })
    }
}
