//! `weights/import`: a safetensors file made by `scripts/convert_checkpoint.py` (or exported
//! from another store) as the artifact a training kind would have produced, so downstream
//! stages accept it and its training is skipped. The model of the chosen preset is built
//! on the CPU and the file must match it exactly (every tensor name and shape; missing,
//! unexpected or misshapen tensors fail, nothing is written). The artifact is then written
//! by the producer's own writer, so its layout cannot drift from the producer's:
//!
//! | `artifact` | producer (output) | written by |
//! |---|---|---|
//! | autoencoder | train-autoencoder / finetune-decoder (`autoencoder`) | `weights::save` |
//! | unet | train-diffusion (`unet`) | `train_diffusion::write_unet` (weights, `ema.*`, `scale_factor`) |
//! | latent-classifier | train-latent-classifier (`classifier`) | `weights::save` |
//! | image-classifier | train-image-classifier (`classifier`) | `weights::save` |
//! | vit | train-classifier (`model`) | `classifier::save` + `history.csv` + `training.json` |

use super::classifier::{self, ClassifierConfig};
use super::schema::{float, int, invalid, list, one_of, optional, optional_path, param, slot};
use super::train_classifier::{vit_config, TRAINING_FILE};
use super::train_diffusion::{load_autoencoder, write_unet};
use super::train_image_classifier::build_image_classifier;
use super::train_latent_classifier::build_latent_classifier;
use crate::artifact::ImageSet;
use crate::models::unet::presets::{histodiffaug_unet, tiny_unet};
use crate::models::unet::UNetModel;
use crate::models::vit::VisionTransformer;
use crate::train::driver::HISTORY_HEADER;
use crate::train::ema::Ema;
use crate::weights::{load_strict, load_tensors_strict, read_tensors};
use histodiff_engine::registry::{KindSpec, ParamSpec, ParamType};
use histodiff_engine::stage::{Stage, StageContext, StageError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub struct WeightsImport;

/// Values of `artifact`.
pub const ARTIFACTS: [&str; 5] = [
    "autoencoder",
    "unet",
    "latent-classifier",
    "image-classifier",
    "vit",
];

/// The output slot (a bare reference to the stage means this one).
pub const OUTPUT: &str = "weights";

/// The EMA decay is not part of the artifact; the shadow only needs a value to exist.
const UNUSED_EMA_DECAY: f64 = 0.9999;

/// Which producer's artifact to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Artifact {
    Autoencoder,
    Unet,
    LatentClassifier,
    ImageClassifier,
    Vit,
}

impl Artifact {
    fn parse(name: &str) -> Result<Self, StageError> {
        Ok(match name {
            "autoencoder" => Self::Autoencoder,
            "unet" => Self::Unet,
            "latent-classifier" => Self::LatentClassifier,
            "image-classifier" => Self::ImageClassifier,
            "vit" => Self::Vit,
            other => return Err(invalid(format!("unknown artifact `{other}`"))),
        })
    }

    /// The presets the producing kind accepts (only train-classifier has `official`).
    fn presets(self) -> &'static [&'static str] {
        match self {
            Self::Vit => &["tiny", "paper", "official"],
            _ => &["tiny", "paper"],
        }
    }
}

/// The parameters and inputs, read and checked once.
struct Request {
    /// The file as written in the pipeline (for messages) and its absolute path.
    shown: String,
    path: PathBuf,
    artifact: Artifact,
    preset: String,
    scale_factor: Option<f64>,
    ema_path: Option<PathBuf>,
    classes: Option<Vec<String>>,
    image_size: Option<i64>,
}

impl Stage for WeightsImport {
    fn spec(&self) -> KindSpec {
        KindSpec {
            name: "weights/import".into(),
            version: 1,
            params: params(),
            inputs: vec![slot(
                "images",
                false,
                false,
                "labeled image set giving class names and image size (classifier artifacts)",
            )],
            outputs: vec![OUTPUT.into()],
            resumable: false,
            doc: "a converted checkpoint (AE, UNet + EMA, ϕ, φ, ViT) as a validated artifact"
                .into(),
        }
    }

    fn run(&self, ctx: &mut StageContext) -> Result<(), StageError> {
        let request = read_request(ctx)?;
        let out = ctx.output_path(OUTPUT);
        let message = match request.artifact {
            Artifact::Autoencoder => import_autoencoder(&request, &out)?,
            Artifact::Unet => import_unet(&request, &out)?,
            Artifact::LatentClassifier => import_latent_classifier(&request, &out)?,
            Artifact::ImageClassifier => import_image_classifier(&request, &out)?,
            Artifact::Vit => import_vit(&request, &out)?,
        };
        for line in message {
            ctx.log(line);
        }
        Ok(())
    }
}

fn params() -> Vec<ParamSpec> {
    let null = Some(Value::Null);
    vec![
        param(
            "path",
            ParamType::Path,
            None,
            "safetensors file (scripts/convert_checkpoint.py, docs/weights.md); its content enters the key",
        ),
        param(
            "artifact",
            one_of(&ARTIFACTS),
            None,
            "artifact to make: autoencoder (train-autoencoder), unet (train-diffusion), latent-classifier, image-classifier, vit (train-classifier's model)",
        ),
        param(
            "preset",
            one_of(&["tiny", "paper", "official"]),
            Some("paper".into()),
            "model size the file must match, as the producing kind's preset (official: vit only)",
        ),
        param(
            "scale_factor",
            float(Some(0.0), None),
            null.clone(),
            "unet: latent scale factor s when the file carries none (LDM's `scale_factor`)",
        ),
        param(
            "ema_path",
            ParamType::Path,
            null.clone(),
            "unet: the EMA weights (convert_checkpoint.py ldm --ema); default: the file's `ema.*`, else its weights",
        ),
        param(
            "classes",
            list(ParamType::String),
            null.clone(),
            "classifier artifacts: class names in label order (default: input `images`)",
        ),
        param(
            "image_size",
            int(Some(8), Some(4096)),
            null,
            "latent-/image-classifier: image side the classifier was trained on (default: input `images`)",
        ),
    ]
}

fn read_request(ctx: &StageContext) -> Result<Request, StageError> {
    let (shown, path) = optional_path(ctx, "path")?
        .ok_or_else(|| invalid("weights/import needs the parameter `path`"))?;
    let artifact = Artifact::parse(ctx.param_str("artifact")?)?;
    let preset = ctx.param_str("preset")?.to_string();
    if !artifact.presets().contains(&preset.as_str()) {
        return Err(invalid(format!(
            "preset `{preset}` does not exist for artifact `{}` (one of {})",
            ctx.param_str("artifact")?,
            artifact.presets().join(", ")
        )));
    }
    let (classes, image_size) = class_info(ctx)?;
    Ok(Request {
        shown,
        path,
        artifact,
        preset,
        scale_factor: optional(ctx, "scale_factor").and_then(Value::as_f64),
        ema_path: optional_path(ctx, "ema_path")?.map(|(_, p)| p),
        classes,
        image_size,
    })
}

/// Class names and image size from the parameters, else from the `images` input; when
/// both are given they must agree, since a classifier sized for other data would load
/// here and fail (or mislabel) downstream.
fn class_info(ctx: &StageContext) -> Result<(Option<Vec<String>>, Option<i64>), StageError> {
    let classes = super::schema::string_list(ctx, "classes")?;
    let size = optional(ctx, "image_size").and_then(Value::as_i64);
    let Some(input) = ctx.inputs("images").first() else {
        return Ok((classes, size));
    };
    let set = ImageSet::open(&input.path)?;
    let manifest = set.manifest();
    let set_size = manifest.image_size as i64;
    if classes.as_ref().is_some_and(|c| *c != manifest.classes) {
        return Err(invalid(format!(
            "parameter `classes` {:?} differs from input `images`' classes {:?}",
            classes.unwrap_or_default(),
            manifest.classes
        )));
    }
    if size.is_some_and(|s| s != set_size) {
        return Err(invalid(format!(
            "parameter `image_size` {} differs from input `images`' image size {set_size}",
            size.unwrap_or_default()
        )));
    }
    Ok((Some(manifest.classes.clone()), Some(set_size)))
}

/// The class names a classifier artifact needs.
fn require_classes(request: &Request) -> Result<&[String], StageError> {
    match &request.classes {
        Some(c) if !c.is_empty() => Ok(c),
        _ => Err(invalid(format!(
            "{}: a classifier import needs its class names: set `classes` or bind a labeled `images` input",
            request.shown
        ))),
    }
}

/// The image side a latent or image classifier was built for.
fn require_image_size(request: &Request) -> Result<i64, StageError> {
    request.image_size.ok_or_else(|| {
        invalid(format!(
            "{}: a classifier import needs the image size: set `image_size` or bind an `images` input",
            request.shown
        ))
    })
}

/// One line saying what was imported.
fn imported(request: &Request, what: &str) -> String {
    format!(
        "imported {} as a {what} artifact (preset {}), every tensor name and shape checked",
        request.shown, request.preset
    )
}

fn import_autoencoder(request: &Request, out: &Path) -> Result<Vec<String>, StageError> {
    // The loader train-diffusion, train-latent-classifier and sample use: it checks the
    // file exactly as they will.
    let (vs, _ae) = load_autoencoder(Device::Cpu, &request.preset, &request.path)?;
    crate::weights::save(&vs, out).map_err(StageError::other)?;
    Ok(vec![imported(request, "train-autoencoder")])
}

fn import_latent_classifier(request: &Request, out: &Path) -> Result<Vec<String>, StageError> {
    let classes = require_classes(request)?;
    // ϕ's attention pool is sized for the latent side, as train-latent-classifier and
    // sample compute it from the AE of the same preset.
    let ae = crate::train::autoencoder::preset(&request.preset)?.0;
    let latent_size = require_image_size(request)? / ae.downsampling_factor();
    let mut vs = VarStore::new(Device::Cpu);
    build_latent_classifier(&vs, &request.preset, classes.len() as i64, latent_size)?;
    load_strict(&mut vs, &request.path, |_| false).map_err(invalid)?;
    crate::weights::save(&vs, out).map_err(StageError::other)?;
    Ok(vec![imported(request, "train-latent-classifier")])
}

fn import_image_classifier(request: &Request, out: &Path) -> Result<Vec<String>, StageError> {
    let classes = require_classes(request)?;
    let size = usize::try_from(require_image_size(request)?).map_err(invalid)?;
    let mut vs = VarStore::new(Device::Cpu);
    build_image_classifier(&vs, &request.preset, classes.len() as i64, size)?;
    load_strict(&mut vs, &request.path, |_| false).map_err(invalid)?;
    crate::weights::save(&vs, out).map_err(StageError::other)?;
    Ok(vec![imported(request, "train-image-classifier")])
}

fn import_vit(request: &Request, out: &Path) -> Result<Vec<String>, StageError> {
    let classes = require_classes(request)?.to_vec();
    let config = vit_config(&request.preset, classes.len() as i64);
    let mut vs = VarStore::new(Device::Cpu);
    VisionTransformer::new(&vs.root(), config.clone()).map_err(invalid)?;
    load_strict(&mut vs, &request.path, |_| false).map_err(invalid)?;
    let arch = format!("vit-{}", request.preset);
    classifier::save(
        out,
        &ClassifierConfig::from_vit(&arch, classes, &config),
        &vs,
    )?;
    // train-classifier's other files: an empty loss history (nothing was trained here)
    // and a training record that says where the weights came from.
    write_text(&out.join("history.csv"), HISTORY_HEADER)?;
    let record = json!({
        "format": "histodiff/classifier-training",
        "imported": request.shown,
        "preset": request.preset,
        "chosen": Value::Null,
    });
    write_text(
        &out.join(TRAINING_FILE),
        &serde_json::to_string_pretty(&record).map_err(StageError::other)?,
    )?;
    Ok(vec![imported(request, "train-classifier model")])
}

fn write_text(path: &Path, text: &str) -> Result<(), StageError> {
    std::fs::write(path, text).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// The UNet of a preset, as train-diffusion and sample build it.
fn unet_store(preset: &str) -> Result<VarStore, StageError> {
    let config = match preset {
        "tiny" => tiny_unet(),
        "paper" => histodiffaug_unet(),
        other => return Err(invalid(format!("unknown UNet preset `{other}`"))),
    };
    let vs = VarStore::new(Device::Cpu);
    UNetModel::new(&vs.root(), &config).map_err(invalid)?;
    Ok(vs)
}

/// A UNet file split into its parts: the weights, an `ema.*` copy (a histodiff `unet`
/// artifact exported from another store has one) and a 0-d `scale_factor` tensor.
struct UnetFile {
    weights: Vec<(String, Tensor)>,
    ema: BTreeMap<String, Tensor>,
    scale_factor: Option<f64>,
}

fn split_unet_file(tensors: Vec<(String, Tensor)>) -> UnetFile {
    let mut file = UnetFile {
        weights: Vec::new(),
        ema: BTreeMap::new(),
        scale_factor: None,
    };
    for (name, t) in tensors {
        if name == "scale_factor" && t.dim() == 0 {
            file.scale_factor = Some(t.double_value(&[]));
        } else if name.starts_with("ema.") {
            file.ema.insert(name, t);
        } else {
            file.weights.push((name, t));
        }
    }
    file
}

fn import_unet(request: &Request, out: &Path) -> Result<Vec<String>, StageError> {
    let file = split_unet_file(read_tensors(&request.path).map_err(invalid)?);
    let scale_factor = resolve_scale_factor(request, file.scale_factor)?;
    let mut vs = unet_store(&request.preset)?;
    load_tensors_strict(&mut vs, &request.path.display().to_string(), file.weights)
        .map_err(invalid)?;
    let (ema, ema_note) = unet_ema(request, &vs, file.ema)?;
    write_unet(&vs, &ema, scale_factor, out)?;
    Ok(vec![
        imported(request, "train-diffusion"),
        ema_note,
        format!("scale_factor {scale_factor}"),
    ])
}

/// The EMA shadow: the file's `ema.*`, or the strictly loaded `ema_path`, or — when the
/// file holds one set of weights — those weights (what sampling with `use_ema` then uses).
fn unet_ema(
    request: &Request,
    vs: &VarStore,
    mut in_file: BTreeMap<String, Tensor>,
) -> Result<(Ema, String), StageError> {
    let mut ema = Ema::new(vs, UNUSED_EMA_DECAY, true);
    let shown = &request.shown;
    match (&request.ema_path, in_file.is_empty()) {
        (Some(_), false) => Err(invalid(format!(
            "{shown}: the file has `ema.*` weights and `ema_path` is set too: use one of them"
        ))),
        (Some(ema_path), true) => {
            let mut ema_vs = unet_store(&request.preset)?;
            load_strict(&mut ema_vs, ema_path, |_| false).map_err(invalid)?;
            let note = format!("EMA weights from {}", ema_path.display());
            Ok((Ema::new(&ema_vs, UNUSED_EMA_DECAY, true), note))
        }
        (None, false) => {
            // LitEma's update count is not needed downstream; a file without it starts at 0.
            in_file
                .entry("ema.num_updates".into())
                .or_insert_with(|| Tensor::from(0i64));
            ema.load_state_tensors("ema.", &in_file)
                .map_err(|e| invalid(format!("{}: EMA weights: {e}", request.path.display())))?;
            Ok((
                ema,
                format!("EMA weights from the `ema.*` tensors of {shown}"),
            ))
        }
        (None, true) => Ok((
            ema,
            format!(
                "{shown} holds one set of UNet weights: using them as both the raw and the EMA \
                 weights (set `ema_path` to the EMA file from convert_checkpoint.py ldm --ema)"
            ),
        )),
    }
}

/// s from the file (a `scale_factor` tensor, or the safetensors metadata that
/// convert_checkpoint.py writes) or the parameter; when both exist they must agree in f32,
/// the precision the artifact stores.
fn resolve_scale_factor(request: &Request, tensor: Option<f64>) -> Result<f64, StageError> {
    let from_file = match tensor {
        Some(s) => Some(s),
        None => metadata_scale_factor(&request.path)?,
    };
    let value = match (from_file, request.scale_factor) {
        (Some(f), Some(p)) if f as f32 != p as f32 => {
            return Err(invalid(format!(
                "{}: the file's scale_factor {f} differs from the parameter `scale_factor` {p}",
                request.shown
            )))
        }
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) => {
            return Err(invalid(format!(
                "{}: no scale_factor in the file (tensor or metadata): set the parameter \
                 `scale_factor` (the LDM checkpoint's, see convert_checkpoint.py ldm --buffers)",
                request.shown
            )))
        }
    };
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid(format!(
            "{}: scale_factor {value} must be positive",
            request.shown
        )));
    }
    Ok(value)
}

/// `scale_factor` from the safetensors header's `__metadata__`, if present. Only the
/// header is read: a paper-scale UNet file is large.
fn metadata_scale_factor(path: &Path) -> Result<Option<f64>, StageError> {
    let header = read_safetensors_header(path)?;
    let Some(text) = header
        .get("__metadata__")
        .and_then(|m| m.get("scale_factor"))
    else {
        return Ok(None);
    };
    let parsed = text.as_str().and_then(|s| s.trim().parse::<f64>().ok());
    parsed.map(Some).ok_or_else(|| {
        invalid(format!(
            "{}: metadata scale_factor {text} is not a number",
            path.display()
        ))
    })
}

/// The JSON header of a safetensors file (8-byte little-endian length, then JSON).
fn read_safetensors_header(path: &Path) -> Result<Value, StageError> {
    let bad = |e: String| invalid(format!("{}: not a safetensors file: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|e| bad(e.to_string()))?;
    let len = u64::from_le_bytes(len);
    // The format caps the header at 100 MB; a larger length is a damaged file.
    if len > 100_000_000 {
        return Err(bad(format!("header length {len}")));
    }
    let mut text = vec![0u8; len as usize];
    file.read_exact(&mut text).map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))
}
