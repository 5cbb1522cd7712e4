//! `weights/import`: a safetensors file made by `scripts/convert_checkpoint.py` (or exported
//! from another store) as the artifact a training kind would have produced, so downstream
//! stages accept it and its training is skipped. The model of the chosen preset is built
//! on the CPU and the file must match it exactly (every tensor name and shape; missing,
//! unexpected or misshapen tensors fail, nothing is written). The artifact is then written
//! by its artifact module, the one its producer writes with, so its layout cannot drift
//! from the producer's:
//!
//! | `artifact` | producer (output) | written by (crate::artifact) |
//! |---|---|---|
//! | autoencoder | train-autoencoder / finetune-decoder (`autoencoder`) | `autoencoder::save` |
//! | unet | train-diffusion (`unet`) | `unet::write` (weights, `ema.*`, `scale_factor`) |
//! | latent-classifier | train-latent-classifier (`classifier`) | `unet_classifier::save` |
//! | image-classifier | train-image-classifier (`classifier`) | `unet_classifier::save` |
//! | vit | train-classifier (`model`) | `classifier::save_imported` |

use super::declare::kind;
use super::invalid;
use super::params::{choice, one_of, optional, range, required, ExternalPath};
use crate::artifact::classifier::{self, ClassifierConfig};
use crate::artifact::{autoencoder, unet, unet_classifier, ImageSet};
use crate::models::unet::EncoderUNetConfig;
use crate::models::vit::VisionTransformer;
use crate::presets::{Preset, VIT_PRESETS};
use crate::train::ema::Ema;
use crate::weights::{load_strict, load_tensors_strict, read_tensors};
use histodiff_engine::stage::{StageContext, StageError};
use std::collections::BTreeMap;
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Tensor};

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

choice!(Artifact {
    "autoencoder" => Autoencoder,
    "unet" => Unet,
    "latent-classifier" => LatentClassifier,
    "image-classifier" => ImageClassifier,
    "vit" => Vit,
});

kind! {
    /// a converted checkpoint (AE, UNet + EMA, ϕ, φ, ViT) as a validated artifact
    WeightsImport("weights/import", version: 1) -> [weights] {
        /// safetensors file (scripts/convert_checkpoint.py, docs/weights.md); its content
        /// enters the key
        path: ExternalPath = required(),
        /// artifact to make: autoencoder (train-autoencoder), unet (train-diffusion),
        /// latent-classifier, image-classifier, vit (train-classifier's model)
        artifact: Artifact = required(),
        /// model size the file must match, as the producing kind's preset (official: vit only)
        preset: Preset = one_of(&VIT_PRESETS).default(Preset::Paper),
        /// unet: latent scale factor s when the file carries none (LDM's `scale_factor`)
        scale_factor: Option<f64> = range(0.0..).optional(),
        /// unet: the EMA weights (convert_checkpoint.py ldm --ema); default: the file's
        /// `ema.*`, else its weights
        ema_path: Option<ExternalPath> = optional(),
        /// classifier artifacts: class names in label order (default: input `images`)
        classes: Option<Vec<String>> = optional(),
        /// latent-/image-classifier: image side the classifier was trained on (default:
        /// input `images`)
        image_size: Option<usize> = range(8..=4096).optional(),
    }
    inputs {
        /// labeled image set giving class names and image size (classifier artifacts)
        images: Optional,
    }
}

/// The parameters, with class names and image size taken from the `images` input
/// where the parameters leave them out.
struct Request {
    p: Params,
    classes: Option<Vec<String>>,
    image_size: Option<usize>,
}

fn run(ctx: &mut StageContext, p: Params) -> Result<(), StageError> {
    let (classes, image_size) = class_info(ctx, &p)?;
    let request = Request {
        p,
        classes,
        image_size,
    };
    let out = ctx.output_path("weights");
    let message = match request.p.artifact {
        Artifact::Autoencoder => import_autoencoder(&request, &out)?,
        Artifact::Unet => import_unet(&request, &out)?,
        Artifact::LatentClassifier => import_unet_classifier(&request, true, &out)?,
        Artifact::ImageClassifier => import_unet_classifier(&request, false, &out)?,
        Artifact::Vit => import_vit(&request, &out)?,
    };
    for line in message {
        ctx.log(line);
    }
    Ok(())
}

/// Class names and image size from the parameters, else from the `images` input; when
/// both are given they must agree, since a classifier sized for other data would load
/// here and fail (or mislabel) downstream.
fn class_info(
    ctx: &StageContext,
    p: &Params,
) -> Result<(Option<Vec<String>>, Option<usize>), StageError> {
    let (classes, size) = (p.classes.clone(), p.image_size);
    let Some(input) = ctx.inputs("images").first() else {
        return Ok((classes, size));
    };
    let set = ImageSet::open(&input.path)?;
    let manifest = set.manifest();
    let set_size = manifest.image_size;
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
            request.p.path.text
        ))),
    }
}

/// The image side a latent or image classifier was built for.
fn require_image_size(request: &Request) -> Result<usize, StageError> {
    request.image_size.ok_or_else(|| {
        invalid(format!(
            "{}: a classifier import needs the image size: set `image_size` or bind an `images` input",
            request.p.path.text
        ))
    })
}

/// One line saying what was imported.
fn imported(request: &Request, what: &str) -> String {
    format!(
        "imported {} as a {what} artifact (preset {}), every tensor name and shape checked",
        request.p.path.text,
        request.p.preset.name()
    )
}

fn import_autoencoder(request: &Request, out: &Path) -> Result<Vec<String>, StageError> {
    // The reader train-diffusion, train-latent-classifier and sample use: it checks the
    // file exactly as they will.
    let (vs, _ae) = autoencoder::load(&request.p.path.path, request.p.preset, Device::Cpu)?;
    autoencoder::save(&vs, out)?;
    Ok(vec![imported(request, "train-autoencoder")])
}

/// ϕ or φ, loaded strictly as the kinds downstream load it, then written as its producer
/// writes it.
fn import_unet_classifier(
    request: &Request,
    latent: bool,
    out: &Path,
) -> Result<Vec<String>, StageError> {
    let config = unet_classifier_config(request, latent)?;
    let (vs, _model) = unet_classifier::load(&request.p.path.path, &config, Device::Cpu)?;
    unet_classifier::save(&vs, out)?;
    let producer = if latent {
        "train-latent-classifier"
    } else {
        "train-image-classifier"
    };
    Ok(vec![imported(request, producer)])
}

/// ϕ's or φ's configuration for the request's classes and image size. ϕ's attention pool
/// is sized for the latent side, as train-latent-classifier and sample compute it from the
/// AE of the same preset.
fn unet_classifier_config(
    request: &Request,
    latent: bool,
) -> Result<EncoderUNetConfig, StageError> {
    let classes = require_classes(request)?.len() as i64;
    let side = require_image_size(request)? as i64;
    let preset = request.p.preset;
    if !latent {
        return preset.unet_classifier(classes, side);
    }
    let factor = preset.autoencoder()?.0.downsampling_factor();
    preset.unet_classifier(classes, side / factor)
}

fn import_vit(request: &Request, out: &Path) -> Result<Vec<String>, StageError> {
    let classes = require_classes(request)?.to_vec();
    let preset = request.p.preset;
    let config = preset.vit(classes.len() as i64);
    let mut vs = VarStore::new(Device::Cpu);
    VisionTransformer::new(&vs.root(), config.clone()).map_err(invalid)?;
    load_strict(&mut vs, &request.p.path.path, |_| false).map_err(invalid)?;
    let arch = format!("vit-{}", preset.name());
    let config = ClassifierConfig::from_vit(&arch, classes, &config);
    classifier::save_imported(out, &config, &vs, &request.p.path.text, preset)?;
    Ok(vec![imported(request, "train-classifier model")])
}

/// The UNet of the preset, as train-diffusion and sample build it.
fn unet_store(preset: Preset) -> Result<VarStore, StageError> {
    Ok(unet::build(preset, Device::Cpu)?.0)
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
    let file = split_unet_file(read_tensors(&request.p.path.path).map_err(invalid)?);
    let scale_factor = resolve_scale_factor(request, file.scale_factor)?;
    let mut vs = unet_store(request.p.preset)?;
    load_tensors_strict(
        &mut vs,
        &request.p.path.path.display().to_string(),
        file.weights,
    )
    .map_err(invalid)?;
    let (ema, ema_note) = unet_ema(request, &vs, file.ema)?;
    unet::write(&vs, &ema, scale_factor, out)?;
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
    let shown = &request.p.path.text;
    match (&request.p.ema_path, in_file.is_empty()) {
        (Some(_), false) => Err(invalid(format!(
            "{shown}: the file has `ema.*` weights and `ema_path` is set too: use one of them"
        ))),
        (Some(ema_path), true) => {
            let mut ema_vs = unet_store(request.p.preset)?;
            load_strict(&mut ema_vs, &ema_path.path, |_| false).map_err(invalid)?;
            let note = format!("EMA weights from {}", ema_path.path.display());
            Ok((Ema::new(&ema_vs, UNUSED_EMA_DECAY, true), note))
        }
        (None, false) => {
            // LitEma's update count is not needed downstream; a file without it starts at 0.
            in_file
                .entry("ema.num_updates".into())
                .or_insert_with(|| Tensor::from(0i64));
            ema.load_state_tensors("ema.", &in_file).map_err(|e| {
                invalid(format!(
                    "{}: EMA weights: {e}",
                    request.p.path.path.display()
                ))
            })?;
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
        None => metadata_scale_factor(&request.p.path.path)?,
    };
    let value = match (from_file, request.p.scale_factor) {
        (Some(f), Some(p)) if f as f32 != p as f32 => {
            return Err(invalid(format!(
                "{}: the file's scale_factor {f} differs from the parameter `scale_factor` {p}",
                request.p.path.text
            )))
        }
        (Some(s), _) | (None, Some(s)) => s,
        (None, None) => {
            return Err(invalid(format!(
                "{}: no scale_factor in the file (tensor or metadata): set the parameter \
                 `scale_factor` (the LDM checkpoint's, see convert_checkpoint.py ldm --buffers)",
                request.p.path.text
            )))
        }
    };
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid(format!(
            "{}: scale_factor {value} must be positive",
            request.p.path.text
        )));
    }
    Ok(value)
}

/// `scale_factor` from the safetensors header's `__metadata__`, if present. Only the
/// header is read: a paper-scale UNet file is large.
fn metadata_scale_factor(path: &Path) -> Result<Option<f64>, StageError> {
    let metadata = crate::weights::read_metadata(path).map_err(StageError::Invalid)?;
    let Some(text) = metadata.get("scale_factor") else {
        return Ok(None);
    };
    let parsed = text.trim().parse::<f64>().map_err(|_| {
        invalid(format!(
            "{}: metadata scale_factor `{text}` is not a number",
            path.display()
        ))
    })?;
    Ok(Some(parsed))
}
