//! The Inception-v3 blocks of the FID feature extractor with torchvision / pytorch-fid
//! attribute names (`branch1x1`, `branch5x5_1`, …). Blocks A, C and E are pytorch-fid's
//! `FIDInceptionA/C/E_1/E_2`: their average pools exclude padding (count_include_pad=False)
//! and `Mixed_7c` max-pools, as in the TensorFlow graph the FID weights come from.

use tch::{nn, nn::ModuleT, Tensor};

/// Conv (no bias) → BatchNorm (eps 1e-3) → ReLU, torchvision's `BasicConv2d`.
#[derive(Debug)]
pub struct BasicConv2d {
    conv: nn::Conv<[i64; 2]>,
    bn: nn::BatchNorm,
}

impl BasicConv2d {
    /// `kernel`, `stride`, `padding` are (height, width) as in torchvision.
    pub fn new(
        vs: nn::Path,
        c_in: i64,
        c_out: i64,
        kernel: [i64; 2],
        stride: i64,
        padding: [i64; 2],
    ) -> Self {
        let config = nn::ConvConfigND::<[i64; 2]> {
            stride: [stride, stride],
            padding,
            dilation: [1, 1],
            groups: 1,
            bias: false,
            ws_init: nn::Init::Kaiming {
                dist: nn::init::NormalOrUniform::Normal,
                fan: nn::init::FanInOut::FanIn,
                non_linearity: nn::init::NonLinearity::ReLU,
            },
            bs_init: nn::Init::Const(0.0),
            padding_mode: nn::PaddingMode::Zeros,
        };
        let conv = nn::conv(&vs / "conv", c_in, c_out, kernel, config);
        let bn = nn::batch_norm2d(
            &vs / "bn",
            c_out,
            nn::BatchNormConfig {
                eps: 1e-3,
                ..Default::default()
            },
        );
        Self { conv, bn }
    }

    /// Square kernel with symmetric padding.
    pub fn square(
        vs: nn::Path,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
    ) -> Self {
        Self::new(
            vs,
            c_in,
            c_out,
            [kernel, kernel],
            stride,
            [padding, padding],
        )
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        // FID features are always computed with frozen BatchNorm statistics.
        xs.apply(&self.conv).apply_t(&self.bn, false).relu()
    }
}

/// 3×3 average pool, stride 1, padding 1, padding excluded from the mean (the TF behaviour).
fn avg_pool_same(xs: &Tensor) -> Tensor {
    xs.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None)
}

/// 3×3 max pool with the given stride and padding.
fn max_pool(xs: &Tensor, stride: i64, padding: i64) -> Tensor {
    xs.max_pool2d([3, 3], [stride, stride], [padding, padding], [1, 1], false)
}

/// `FIDInceptionA` (Mixed_5b/5c/5d): 1×1, 5×5, double 3×3 and pooled branches.
#[derive(Debug)]
pub struct InceptionA {
    branch1x1: BasicConv2d,
    branch5x5_1: BasicConv2d,
    branch5x5_2: BasicConv2d,
    branch3x3dbl_1: BasicConv2d,
    branch3x3dbl_2: BasicConv2d,
    branch3x3dbl_3: BasicConv2d,
    branch_pool: BasicConv2d,
}

impl InceptionA {
    pub fn new(vs: nn::Path, c_in: i64, pool_features: i64) -> Self {
        Self {
            branch1x1: BasicConv2d::square(&vs / "branch1x1", c_in, 64, 1, 1, 0),
            branch5x5_1: BasicConv2d::square(&vs / "branch5x5_1", c_in, 48, 1, 1, 0),
            branch5x5_2: BasicConv2d::square(&vs / "branch5x5_2", 48, 64, 5, 1, 2),
            branch3x3dbl_1: BasicConv2d::square(&vs / "branch3x3dbl_1", c_in, 64, 1, 1, 0),
            branch3x3dbl_2: BasicConv2d::square(&vs / "branch3x3dbl_2", 64, 96, 3, 1, 1),
            branch3x3dbl_3: BasicConv2d::square(&vs / "branch3x3dbl_3", 96, 96, 3, 1, 1),
            branch_pool: BasicConv2d::square(&vs / "branch_pool", c_in, pool_features, 1, 1, 0),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let b1 = self.branch1x1.forward(xs);
        let b5 = self.branch5x5_2.forward(&self.branch5x5_1.forward(xs));
        let b3 = self.branch3x3dbl_1.forward(xs);
        let b3 = self
            .branch3x3dbl_3
            .forward(&self.branch3x3dbl_2.forward(&b3));
        let bp = self.branch_pool.forward(&avg_pool_same(xs));
        Tensor::cat(&[b1, b5, b3, bp], 1)
    }
}

/// `InceptionB` (Mixed_6a): grid reduction 35 → 17.
#[derive(Debug)]
pub struct InceptionB {
    branch3x3: BasicConv2d,
    branch3x3dbl_1: BasicConv2d,
    branch3x3dbl_2: BasicConv2d,
    branch3x3dbl_3: BasicConv2d,
}

impl InceptionB {
    pub fn new(vs: nn::Path, c_in: i64) -> Self {
        Self {
            branch3x3: BasicConv2d::square(&vs / "branch3x3", c_in, 384, 3, 2, 0),
            branch3x3dbl_1: BasicConv2d::square(&vs / "branch3x3dbl_1", c_in, 64, 1, 1, 0),
            branch3x3dbl_2: BasicConv2d::square(&vs / "branch3x3dbl_2", 64, 96, 3, 1, 1),
            branch3x3dbl_3: BasicConv2d::square(&vs / "branch3x3dbl_3", 96, 96, 3, 2, 0),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let b3 = self.branch3x3.forward(xs);
        let bd = self.branch3x3dbl_1.forward(xs);
        let bd = self
            .branch3x3dbl_3
            .forward(&self.branch3x3dbl_2.forward(&bd));
        Tensor::cat(&[b3, bd, max_pool(xs, 2, 0)], 1)
    }
}

/// `FIDInceptionC` (Mixed_6b..6e): factorised 7×7 branches of width `c7`.
#[derive(Debug)]
pub struct InceptionC {
    branch1x1: BasicConv2d,
    branch7x7: [BasicConv2d; 3],
    branch7x7dbl: [BasicConv2d; 5],
    branch_pool: BasicConv2d,
}

impl InceptionC {
    pub fn new(vs: nn::Path, c_in: i64, c7: i64) -> Self {
        let conv = |name: &str, i: i64, o: i64, k: [i64; 2], p: [i64; 2]| {
            BasicConv2d::new(&vs / name, i, o, k, 1, p)
        };
        let (row, col) = ([1, 7], [7, 1]);
        let (row_pad, col_pad) = ([0, 3], [3, 0]);
        Self {
            branch1x1: conv("branch1x1", c_in, 192, [1, 1], [0, 0]),
            branch7x7: [
                conv("branch7x7_1", c_in, c7, [1, 1], [0, 0]),
                conv("branch7x7_2", c7, c7, row, row_pad),
                conv("branch7x7_3", c7, 192, col, col_pad),
            ],
            branch7x7dbl: [
                conv("branch7x7dbl_1", c_in, c7, [1, 1], [0, 0]),
                conv("branch7x7dbl_2", c7, c7, col, col_pad),
                conv("branch7x7dbl_3", c7, c7, row, row_pad),
                conv("branch7x7dbl_4", c7, c7, col, col_pad),
                conv("branch7x7dbl_5", c7, 192, row, row_pad),
            ],
            branch_pool: conv("branch_pool", c_in, 192, [1, 1], [0, 0]),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let b1 = self.branch1x1.forward(xs);
        let b7 = chain(&self.branch7x7, xs);
        let bd = chain(&self.branch7x7dbl, xs);
        let bp = self.branch_pool.forward(&avg_pool_same(xs));
        Tensor::cat(&[b1, b7, bd, bp], 1)
    }
}

/// `InceptionD` (Mixed_7a): grid reduction 17 → 8.
#[derive(Debug)]
pub struct InceptionD {
    branch3x3: [BasicConv2d; 2],
    branch7x7x3: [BasicConv2d; 4],
}

impl InceptionD {
    pub fn new(vs: nn::Path, c_in: i64) -> Self {
        Self {
            branch3x3: [
                BasicConv2d::square(&vs / "branch3x3_1", c_in, 192, 1, 1, 0),
                BasicConv2d::square(&vs / "branch3x3_2", 192, 320, 3, 2, 0),
            ],
            branch7x7x3: [
                BasicConv2d::square(&vs / "branch7x7x3_1", c_in, 192, 1, 1, 0),
                BasicConv2d::new(&vs / "branch7x7x3_2", 192, 192, [1, 7], 1, [0, 3]),
                BasicConv2d::new(&vs / "branch7x7x3_3", 192, 192, [7, 1], 1, [3, 0]),
                BasicConv2d::square(&vs / "branch7x7x3_4", 192, 192, 3, 2, 0),
            ],
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let b3 = chain(&self.branch3x3, xs);
        let b7 = chain(&self.branch7x7x3, xs);
        Tensor::cat(&[b3, b7, max_pool(xs, 2, 0)], 1)
    }
}

/// Which pool feeds the pooled branch of an E block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EPool {
    /// `FIDInceptionE_1` (Mixed_7b): average pool without padding.
    Average,
    /// `FIDInceptionE_2` (Mixed_7c): max pool, a quirk of the TF graph kept by pytorch-fid.
    Max,
}

/// `FIDInceptionE_1/E_2` (Mixed_7b, Mixed_7c): expanded 3×3 branches.
#[derive(Debug)]
pub struct InceptionE {
    branch1x1: BasicConv2d,
    branch3x3_1: BasicConv2d,
    branch3x3_2a: BasicConv2d,
    branch3x3_2b: BasicConv2d,
    branch3x3dbl_1: BasicConv2d,
    branch3x3dbl_2: BasicConv2d,
    branch3x3dbl_3a: BasicConv2d,
    branch3x3dbl_3b: BasicConv2d,
    branch_pool: BasicConv2d,
    pool: EPool,
}

impl InceptionE {
    pub fn new(vs: nn::Path, c_in: i64, pool: EPool) -> Self {
        let conv = |name: &str, i: i64, o: i64, k: [i64; 2], p: [i64; 2]| {
            BasicConv2d::new(&vs / name, i, o, k, 1, p)
        };
        Self {
            branch1x1: conv("branch1x1", c_in, 320, [1, 1], [0, 0]),
            branch3x3_1: conv("branch3x3_1", c_in, 384, [1, 1], [0, 0]),
            branch3x3_2a: conv("branch3x3_2a", 384, 384, [1, 3], [0, 1]),
            branch3x3_2b: conv("branch3x3_2b", 384, 384, [3, 1], [1, 0]),
            branch3x3dbl_1: conv("branch3x3dbl_1", c_in, 448, [1, 1], [0, 0]),
            branch3x3dbl_2: conv("branch3x3dbl_2", 448, 384, [3, 3], [1, 1]),
            branch3x3dbl_3a: conv("branch3x3dbl_3a", 384, 384, [1, 3], [0, 1]),
            branch3x3dbl_3b: conv("branch3x3dbl_3b", 384, 384, [3, 1], [1, 0]),
            branch_pool: conv("branch_pool", c_in, 192, [1, 1], [0, 0]),
            pool,
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let b1 = self.branch1x1.forward(xs);
        let b3 = self.branch3x3_1.forward(xs);
        let b3 = Tensor::cat(
            &[
                self.branch3x3_2a.forward(&b3),
                self.branch3x3_2b.forward(&b3),
            ],
            1,
        );
        let bd = self
            .branch3x3dbl_2
            .forward(&self.branch3x3dbl_1.forward(xs));
        let bd = Tensor::cat(
            &[
                self.branch3x3dbl_3a.forward(&bd),
                self.branch3x3dbl_3b.forward(&bd),
            ],
            1,
        );
        let pooled = match self.pool {
            EPool::Average => avg_pool_same(xs),
            EPool::Max => max_pool(xs, 1, 1),
        };
        let bp = self.branch_pool.forward(&pooled);
        Tensor::cat(&[b1, b3, bd, bp], 1)
    }
}

/// Applies convolutions in sequence.
fn chain(convs: &[BasicConv2d], xs: &Tensor) -> Tensor {
    convs
        .iter()
        .fold(xs.shallow_clone(), |acc, conv| conv.forward(&acc))
}

impl ModuleT for BasicConv2d {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        self.forward(xs)
    }
}
