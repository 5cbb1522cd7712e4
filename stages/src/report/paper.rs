//! The paper's reported numbers (Table 1 and supplementary Table 1, test set
//! CRC-VAL-HE-7K; SPEC Appendix B), printed next to measured rows with the same setting:
//! HistoDiffusion (`full`), its two ablations and the class-conditional StyleGAN2.

/// A setting: which model variant, which selection method, which augmentation ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    /// `full`, `no-finetune` (w/o conditional fine-tuning), `no-pretrain`, or
    /// `stylegan2` (the class-conditional StyleGAN2 of Table 1, [`STYLEGAN2`]).
    pub variant: &'static str,
    /// `none` (baseline), `random` or `centroid` (the paper's "selective").
    pub method: &'static str,
    /// Synthetic images per real image (0 for the baseline).
    pub ratio: f64,
}

/// One reported row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperRow {
    pub setting: Setting,
    pub fid: Option<f64>,
    pub accuracy: f64,
    pub f1: f64,
    pub sensitivity: f64,
    pub specificity: f64,
}

const fn row(
    variant: &'static str,
    method: &'static str,
    ratio: f64,
    fid: Option<f64>,
    m: [f64; 4],
) -> PaperRow {
    PaperRow {
        setting: Setting {
            variant,
            method,
            ratio,
        },
        fid,
        accuracy: m[0],
        f1: m[1],
        sensitivity: m[2],
        specificity: m[3],
    }
}

/// The variant of Table 1's StyleGAN2 rows (a generator, not a HistoDiffusion variant).
pub const STYLEGAN2: &str = "stylegan2";

/// HistoDiffusion and StyleGAN2 rows of Table 1 and both ablations of supplementary Table 1.
pub const PAPER_ROWS: &[PaperRow] = &[
    row("full", "none", 0.0, None, [0.855, 0.850, 0.855, 0.983]),
    row(
        STYLEGAN2,
        "random",
        0.5,
        Some(5.714),
        [0.860, 0.856, 0.860, 0.980],
    ),
    row(
        STYLEGAN2,
        "centroid",
        0.5,
        Some(5.088),
        [0.868, 0.861, 0.867, 0.978],
    ),
    row(
        STYLEGAN2,
        "centroid",
        1.0,
        Some(5.927),
        [0.879, 0.876, 0.879, 0.982],
    ),
    row(
        STYLEGAN2,
        "centroid",
        2.0,
        Some(7.550),
        [0.895, 0.888, 0.895, 0.983],
    ),
    row(
        STYLEGAN2,
        "centroid",
        3.0,
        Some(10.643),
        [0.898, 0.896, 0.898, 0.987],
    ),
    row(
        "full",
        "random",
        0.5,
        Some(4.921),
        [0.870, 0.869, 0.870, 0.982],
    ),
    row(
        "full",
        "centroid",
        0.5,
        Some(4.544),
        [0.891, 0.888, 0.891, 0.983],
    ),
    row(
        "full",
        "centroid",
        1.0,
        Some(3.874),
        [0.903, 0.902, 0.903, 0.991],
    ),
    row(
        "full",
        "centroid",
        2.0,
        Some(4.583),
        [0.919, 0.916, 0.919, 0.992],
    ),
    row(
        "full",
        "centroid",
        3.0,
        Some(8.326),
        [0.910, 0.912, 0.910, 0.988],
    ),
    row(
        "no-finetune",
        "random",
        0.5,
        Some(18.254),
        [0.865, 0.867, 0.865, 0.986],
    ),
    row(
        "no-finetune",
        "centroid",
        0.5,
        Some(19.887),
        [0.875, 0.870, 0.875, 0.982],
    ),
    row(
        "no-finetune",
        "centroid",
        1.0,
        Some(18.418),
        [0.880, 0.879, 0.880, 0.985],
    ),
    row(
        "no-finetune",
        "centroid",
        2.0,
        Some(19.229),
        [0.897, 0.892, 0.897, 0.989],
    ),
    row(
        "no-finetune",
        "centroid",
        3.0,
        Some(21.682),
        [0.905, 0.908, 0.905, 0.988],
    ),
    row(
        "no-pretrain",
        "random",
        0.5,
        Some(5.687),
        [0.870, 0.867, 0.870, 0.984],
    ),
    row(
        "no-pretrain",
        "centroid",
        0.5,
        Some(5.256),
        [0.884, 0.882, 0.884, 0.986],
    ),
    row(
        "no-pretrain",
        "centroid",
        1.0,
        Some(4.387),
        [0.890, 0.891, 0.890, 0.988],
    ),
    row(
        "no-pretrain",
        "centroid",
        2.0,
        Some(3.618),
        [0.895, 0.894, 0.895, 0.988],
    ),
    row(
        "no-pretrain",
        "centroid",
        3.0,
        Some(4.446),
        [0.892, 0.887, 0.892, 0.983],
    ),
];

/// The paper's row for a setting; the baseline has no variant (it uses no synthetic data).
pub fn lookup(variant: &str, method: &str, ratio: f64) -> Option<&'static PaperRow> {
    PAPER_ROWS.iter().find(|r| {
        let s = r.setting;
        s.method == method
            && (s.ratio - ratio).abs() < 1e-9
            && (s.variant == variant || method == "none")
    })
}

/// How a variant is written in labels: `StyleGAN2` for [`STYLEGAN2`], else as given.
pub fn variant_name(variant: &str) -> &str {
    if variant == STYLEGAN2 {
        "StyleGAN2"
    } else {
        variant
    }
}

/// The generator a variant's synthetic images come from: `stylegan2` for [`STYLEGAN2`],
/// `histodiffusion` for every other variant (`full` and the ablations).
pub fn generator_of_variant(variant: &str) -> &'static str {
    if variant == STYLEGAN2 {
        STYLEGAN2
    } else {
        "histodiffusion"
    }
}

/// "baseline", "random 50 %", "selective 200 %", with the variant when not `full`
/// ("StyleGAN2: selective 200 %", "no-finetune: random 50 %").
pub fn label(variant: &str, method: &str, ratio: f64) -> String {
    let base = match method {
        "none" => "baseline".to_string(),
        "centroid" => format!("selective {} %", (ratio * 100.0).round()),
        other => format!("{other} {} %", (ratio * 100.0).round()),
    };
    if variant == "full" || method == "none" {
        base
    } else {
        format!("{}: {base}", variant_name(variant))
    }
}
