//! Multi-head self-attention over the spatial positions (openaimodel `AttentionBlock`,
//! `QKVAttentionLegacy`, `QKVAttention`) and CLIP-style `AttentionPool2d`.
//!
//! The 3C channels of a fused qkv projection are ordered head-major in the legacy layout
//! ([h0: q,k,v | h1: q,k,v | …], used by every AttentionBlock of the presets) and
//! q-k-v-major in the new layout ([q: h0,h1,… | k | v], used by AttentionPool2d); getting
//! this wrong still runs, so the parity tests cover both.

use super::norm::GroupNorm32;
use tch::{nn, Kind, Tensor};

/// How the fused qkv channels are laid out (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkvOrder {
    Legacy,
    New,
}

/// How attention weights are evaluated. All give the reference's result up to f32
/// rounding; they differ in peak memory (64² tokens × 8 heads × batch 4 = 2 GiB of scores).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionKernel {
    /// Full (T × T) score matrix, as the reference computes it.
    Naive,
    /// Queries in chunks of the given size: exact (softmax is per query row), memory
    /// O(chunk × T) per head.
    QueryChunked(i64),
    /// libtorch's `scaled_dot_product_attention` on (B, H, T, d): flash attention on CPU and
    /// CUDA (memory-efficient or cuDNN kernels where flash does not apply), O(T) memory in
    /// the forward and the backward pass. Same math; under autocast it runs in the low dtype
    /// with f32 accumulation and softmax inside the kernel.
    Fused,
}

/// Attention of `qkv` (B, 3·H·d, T) with `num_heads` heads → (B, H·d, T).
pub fn qkv_attention(
    qkv: &Tensor,
    num_heads: i64,
    order: QkvOrder,
    kernel: AttentionKernel,
) -> Tensor {
    let size = qkv.size();
    let (bs, width, length) = (size[0], size[1], size[2]);
    let ch = width / (3 * num_heads);
    if kernel == AttentionKernel::Fused {
        return fused_attention(qkv, num_heads, order);
    }
    let (q, k, v) = match order {
        QkvOrder::Legacy => {
            let parts = qkv.reshape([bs * num_heads, 3 * ch, length]).split(ch, 1);
            (
                parts[0].shallow_clone(),
                parts[1].shallow_clone(),
                parts[2].shallow_clone(),
            )
        }
        QkvOrder::New => {
            let parts = qkv.chunk(3, 1);
            let heads = |t: &Tensor| t.reshape([bs * num_heads, ch, length]);
            (heads(&parts[0]), heads(&parts[1]), heads(&parts[2]))
        }
    };
    attend(&q, &k, &v, kernel).reshape([bs, num_heads * ch, length])
}

/// [`AttentionKernel::Fused`]: libtorch's `scaled_dot_product_attention` on (B, H, T, d)
/// views. Its flash (CPU, CUDA) and memory-efficient (CUDA) kernels only take 4-D inputs
/// whose last dimension has stride 1 and fall back to the math kernel — the full (T × T)
/// matrix, kept for backward — otherwise; hence one copy of qkv into (B, H, T, 3, d) order
/// first, from which q, k and v are views.
fn fused_attention(qkv: &Tensor, num_heads: i64, order: QkvOrder) -> Tensor {
    let (q, k, v) = heads_last(qkv, num_heads, order);
    let (bs, _, length, ch) = q.size4().expect("heads_last returns (B, H, T, d)");
    // softmax(q·kᵀ/√d)·v: the reference's d^(-1/4) on q and on k is the same product, and
    // the kernels apply the scale in f32 (the math fallback splits it over q and k, too).
    let scale = 1.0 / (ch as f64).sqrt();
    Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, scale, false)
        .transpose(2, 3)
        .reshape([bs, num_heads * ch, length])
}

/// q, k, v (B, H, T, d) with unit stride along d, from qkv (B, 3·H·d, T) in either layout.
fn heads_last(qkv: &Tensor, num_heads: i64, order: QkvOrder) -> (Tensor, Tensor, Tensor) {
    let size = qkv.size();
    let (bs, width, length) = (size[0], size[1], size[2]);
    let ch = width / (3 * num_heads);
    // Both layouts as (B, H, 3, d, T): legacy is head-major already, new is q-k-v-major.
    let split = match order {
        QkvOrder::Legacy => qkv.reshape([bs, num_heads, 3, ch, length]),
        QkvOrder::New => qkv.reshape([bs, 3, num_heads, ch, length]).transpose(1, 2),
    };
    let tokens = split.permute([0, 1, 4, 2, 3]).contiguous();
    (
        tokens.select(3, 0),
        tokens.select(3, 1),
        tokens.select(3, 2),
    )
}

/// q, k, v (N, d, T) → (N, d, T): a = softmax(qᵀk/√d)·v per query position, with the
/// reference's explicit score matrix (whole, or a chunk of query rows at a time).
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, kernel: AttentionKernel) -> Tensor {
    let ch = q.size()[1];
    // The reference scales q and k by d^(-1/4) each (more stable in f16 than 1/√d once).
    let scale = 1.0 / (ch as f64).sqrt().sqrt();
    let (q, k) = (q * scale, k * scale);
    match kernel {
        AttentionKernel::QueryChunked(chunk) => {
            let length = q.size()[2];
            let chunks: Vec<Tensor> = (0..length)
                .step_by(chunk.max(1) as usize)
                .map(|start| attend_rows(&q.narrow(2, start, chunk.min(length - start)), &k, v))
                .collect();
            Tensor::cat(&chunks, 2)
        }
        // Fused never gets here (see `qkv_attention`).
        AttentionKernel::Naive | AttentionKernel::Fused => attend_rows(&q, &k, v),
    }
}

/// Scaled q (N, d, Tq), k (N, d, S), v (N, d, S) → (N, d, Tq); softmax in f32.
fn attend_rows(q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
    let weight = q.transpose(1, 2).bmm(k);
    let weight = weight
        .to_kind(Kind::Float)
        .softmax(-1, Kind::Float)
        .to_kind(v.kind());
    v.bmm(&weight.transpose(1, 2))
}

/// Heads, layout and kernel of one attention layer.
#[derive(Debug, Clone, Copy)]
pub struct AttentionConfig {
    pub channels: i64,
    pub num_heads: i64,
    pub order: QkvOrder,
    pub kernel: AttentionKernel,
}

/// Residual self-attention: `norm`, `qkv` (conv1d C→3C), `proj_out` (conv1d C→C,
/// zero-initialised).
#[derive(Debug)]
pub struct AttentionBlock {
    norm: GroupNorm32,
    qkv: nn::Conv1D,
    proj_out: nn::Conv1D,
    config: AttentionConfig,
}

impl AttentionBlock {
    pub fn new(vs: nn::Path, config: AttentionConfig) -> Self {
        let c = config.channels;
        let zero = nn::ConvConfig {
            ws_init: nn::Init::Const(0.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        Self {
            norm: GroupNorm32::new(&vs / "norm", c),
            qkv: nn::conv1d(&vs / "qkv", c, 3 * c, 1, Default::default()),
            proj_out: nn::conv1d(&vs / "proj_out", c, c, 1, zero),
            config,
        }
    }

    /// Changes how attention is evaluated (the weights are unaffected).
    pub fn set_kernel(&mut self, kernel: AttentionKernel) {
        self.config.kernel = kernel;
    }

    /// x (B, C, *spatial) → same shape.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let shape = xs.size();
        let x = xs.reshape([shape[0], shape[1], -1]);
        let qkv = x.apply(&self.norm).apply(&self.qkv);
        let h = qkv_attention(
            &qkv,
            self.config.num_heads,
            self.config.order,
            self.config.kernel,
        );
        (x + h.apply(&self.proj_out)).reshape(shape.as_slice())
    }
}

/// CLIP attention pooling: the spatial mean is prepended as token 0, a learned
/// `positional_embedding` (C, S²+1) is added, new-order attention runs over the S²+1
/// tokens, and `c_proj` maps token 0 to the output.
#[derive(Debug)]
pub struct AttentionPool2d {
    positional_embedding: Tensor,
    qkv_proj: nn::Conv1D,
    c_proj: nn::Conv1D,
    num_heads: i64,
    kernel: AttentionKernel,
}

impl AttentionPool2d {
    /// `spatial`: side of the incoming feature map; heads = embed_dim / head_channels.
    pub fn new(
        vs: nn::Path,
        spatial: i64,
        embed_dim: i64,
        head_channels: i64,
        output_dim: i64,
        kernel: AttentionKernel,
    ) -> Self {
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0 / (embed_dim as f64).sqrt(),
        };
        Self {
            positional_embedding: vs.var(
                "positional_embedding",
                &[embed_dim, spatial * spatial + 1],
                init,
            ),
            qkv_proj: nn::conv1d(
                &vs / "qkv_proj",
                embed_dim,
                3 * embed_dim,
                1,
                Default::default(),
            ),
            c_proj: nn::conv1d(&vs / "c_proj", embed_dim, output_dim, 1, Default::default()),
            num_heads: embed_dim / head_channels,
            kernel,
        }
    }

    /// Changes how attention is evaluated (the weights are unaffected).
    pub fn set_kernel(&mut self, kernel: AttentionKernel) {
        self.kernel = kernel;
    }

    /// Number of tokens the positional embedding was built for (S² + 1).
    pub fn tokens(&self) -> i64 {
        self.positional_embedding.size()[1]
    }

    /// x (B, C, S, S) → (B, output_dim).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let shape = xs.size();
        let x = xs.reshape([shape[0], shape[1], -1]);
        let x = Tensor::cat(&[x.mean_dim(-1, true, x.kind()), x], -1);
        let x = x + self.positional_embedding.to_kind(xs.kind()).unsqueeze(0);
        let h = qkv_attention(
            &x.apply(&self.qkv_proj),
            self.num_heads,
            QkvOrder::New,
            self.kernel,
        );
        h.apply(&self.c_proj).select(2, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// libtorch's `_fused_sdp_choice` code of its math (non-fused) kernel.
    const SDP_MATH: i64 = 0;

    fn backend(q: &Tensor, k: &Tensor, v: &Tensor) -> i64 {
        Tensor::internal_fused_sdp_choice(q, k, v, None::<Tensor>, 0.0, false, None, false)
    }

    #[test]
    fn fused_kernel_inputs_select_a_fused_backend() {
        let qkv = Tensor::randn([2, 3 * 64, 100], (Kind::Float, Device::Cpu));
        for kind in [Kind::Float, Kind::BFloat16] {
            for order in [QkvOrder::Legacy, QkvOrder::New] {
                let (q, k, v) = heads_last(&qkv.to_kind(kind), 4, order);
                assert_eq!(q.size(), [2, 4, 100, 16]);
                assert_ne!(backend(&q, &k, &v), SDP_MATH, "{kind:?} {order:?}");
            }
        }
        // What the kernel used to pass: 3-D (B·H, T, d) transposed views, math only.
        let q = qkv.narrow(1, 0, 64).reshape([8, 16, 100]).transpose(1, 2);
        assert_eq!(backend(&q, &q, &q), SDP_MATH);
    }
}
