//! One pre-norm transformer block of the ViT, laid out as timm's `Block`
//! (`norm1`, `attn.{qkv,proj}`, `norm2`, `mlp.{fc1,fc2}`) so timm/DINO state dicts load by name.

use tch::{nn, Tensor};

/// Shape of one block; the ViT builds `depth` of them from its own config.
#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    /// Token width D.
    pub dim: i64,
    /// Attention heads; D must be divisible by it.
    pub num_heads: i64,
    /// Hidden width of the MLP (4·D in every ViT preset).
    pub mlp_hidden: i64,
    /// LayerNorm epsilon (1e-6 in timm's ViT).
    pub layer_norm_eps: f64,
    /// Probability of dropping the residual branch per sample in training (stochastic depth).
    pub drop_path: f64,
}

/// Multi-head self-attention with a fused qkv projection (qkv has a bias, as in timm).
#[derive(Debug)]
pub struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    num_heads: i64,
}

impl Attention {
    pub fn new(vs: nn::Path, dim: i64, num_heads: i64) -> Self {
        let qkv = nn::linear(&vs / "qkv", dim, 3 * dim, linear_init());
        let proj = nn::linear(&vs / "proj", dim, dim, linear_init());
        Self {
            qkv,
            proj,
            num_heads,
        }
    }

    /// q, k, v (B, H, N, hd) of tokens (B, N, D): views of the qkv projection whose last
    /// dimension has unit stride, as libtorch's flash and memory-efficient kernels need.
    fn heads(&self, xs: &Tensor) -> (Tensor, Tensor, Tensor) {
        let (b, n, c) = xs.size3().expect("attention input is (B, N, D)");
        // (B, N, 3, H, hd) → (3, B, H, N, hd), as timm splits q, k, v.
        let qkv = xs
            .apply(&self.qkv)
            .reshape([b, n, 3, self.num_heads, c / self.num_heads])
            .permute([2, 0, 3, 1, 4]);
        (qkv.get(0), qkv.get(1), qkv.get(2))
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, n, c) = xs.size3().expect("attention input is (B, N, D)");
        let (q, k, v) = self.heads(xs);
        // Same fused kernel as timm's F.scaled_dot_product_attention (scale = hd^-0.5).
        let attended = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        attended
            .transpose(1, 2)
            .reshape([b, n, c])
            .apply(&self.proj)
    }
}

/// fc1 → exact (erf) GELU → fc2.
#[derive(Debug)]
pub struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Mlp {
    pub fn new(vs: nn::Path, dim: i64, hidden: i64) -> Self {
        let fc1 = nn::linear(&vs / "fc1", dim, hidden, linear_init());
        let fc2 = nn::linear(&vs / "fc2", hidden, dim, linear_init());
        Self { fc1, fc2 }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.fc1).gelu("none").apply(&self.fc2)
    }
}

/// x + drop_path(attn(norm1(x))); x + drop_path(mlp(norm2(x))).
#[derive(Debug)]
pub struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    norm2: nn::LayerNorm,
    mlp: Mlp,
    drop_path: f64,
}

impl Block {
    pub fn new(vs: nn::Path, cfg: BlockConfig) -> Self {
        let ln = nn::LayerNormConfig {
            eps: cfg.layer_norm_eps,
            ..Default::default()
        };
        Self {
            norm1: nn::layer_norm(&vs / "norm1", vec![cfg.dim], ln),
            attn: Attention::new(&vs / "attn", cfg.dim, cfg.num_heads),
            norm2: nn::layer_norm(&vs / "norm2", vec![cfg.dim], ln),
            mlp: Mlp::new(&vs / "mlp", cfg.dim, cfg.mlp_hidden),
            drop_path: cfg.drop_path,
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let attn = self.attn.forward(&xs.apply(&self.norm1));
        let xs = xs + drop_path(&attn, self.drop_path, train);
        let mlp = self.mlp.forward(&xs.apply(&self.norm2));
        &xs + drop_path(&mlp, self.drop_path, train)
    }
}

/// Stochastic depth as timm's `drop_path`: keep each sample's branch with probability
/// 1 − p and rescale by 1/(1 − p). The random draw uses torch's generator, so it matches
/// timm in distribution, not bit for bit.
fn drop_path(branch: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return branch.shallow_clone();
    }
    let keep = 1.0 - p;
    let mut shape = vec![branch.size()[0]];
    shape.resize(branch.dim(), 1);
    let mask =
        Tensor::empty(shape.as_slice(), (branch.kind(), branch.device())).bernoulli_float_(keep);
    branch * mask / keep
}

/// timm's ViT init: Linear weights ~ N(0, 0.02) (timm truncates at ±2, i.e. 100σ), zero bias.
pub(crate) fn linear_init() -> nn::LinearConfig {
    nn::LinearConfig {
        ws_init: nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn attention_heads_select_a_fused_sdpa_backend() {
        let vs = nn::VarStore::new(Device::Cpu);
        let attn = Attention::new(vs.root(), 64, 4);
        let xs = Tensor::randn([2, 10, 64], (Kind::Float, Device::Cpu));
        for kind in [Kind::Float, Kind::BFloat16] {
            let (q, k, v) = attn.heads(&xs);
            let (q, k, v) = (q.to_kind(kind), k.to_kind(kind), v.to_kind(kind));
            assert_eq!(q.size(), [2, 4, 10, 16]);
            let backend = Tensor::internal_fused_sdp_choice(
                &q,
                &k,
                &v,
                None::<Tensor>,
                0.0,
                false,
                None,
                false,
            );
            assert_ne!(backend, 0, "{kind:?}: libtorch would use its math kernel");
        }
    }

    /// Stochastic depth is the identity at evaluation; in training each sample's branch is
    /// either dropped or scaled by 1/(1 − p). (That the draw repeats under a seed is the
    /// driver's per-step reseeding, tested with the resume tests.)
    #[test]
    fn drop_path_is_identity_at_eval_and_per_sample_in_training() {
        let branch = Tensor::ones([64, 5, 8], (Kind::Float, Device::Cpu));
        assert!(drop_path(&branch, 0.5, false).equal(&branch));
        assert!(drop_path(&branch, 0.0, true).equal(&branch));
        let a = drop_path(&branch, 0.5, true);
        let per_sample = a.amax([1i64, 2].as_slice(), false);
        let same_within = a.amin([1i64, 2].as_slice(), false).equal(&per_sample);
        assert!(same_within, "one draw per sample, not per element");
        let kept = Vec::<f32>::try_from(&per_sample).unwrap();
        assert!(kept.iter().all(|&v| v == 0.0 || v == 2.0), "{kept:?}");
        let n_kept = kept.iter().filter(|&&v| v == 2.0).count();
        assert!(
            (16..=48).contains(&n_kept),
            "{n_kept} of 64 kept at p = 0.5"
        );
    }

    /// A block with drop-path runs deterministically at evaluation (no draw at all).
    #[test]
    fn block_with_drop_path_is_deterministic_at_eval() {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = BlockConfig {
            dim: 16,
            num_heads: 2,
            mlp_hidden: 32,
            layer_norm_eps: 1e-6,
            drop_path: 0.5,
        };
        let block = Block::new(vs.root(), cfg);
        let xs = Tensor::randn([4, 3, 16], (Kind::Float, Device::Cpu));
        assert!(block
            .forward_t(&xs, false)
            .equal(&block.forward_t(&xs, false)));
    }
}
