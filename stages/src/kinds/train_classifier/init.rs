//! `init_weights`: start the downstream ViT from the user's weights instead of random ones
//! — a timm / DINO / iBOT ViT converted to safetensors by `scripts/convert_checkpoint.py vit`
//! (docs/weights.md), whose names are the model's own (`cls_token`, `pos_embed`,
//! `patch_embed.proj.*`, `blocks.{i}.*`, `norm.*`, `head.*`; SPEC §10.4).
//!
//! Strict: every tensor of the preset must be in the file with its shape and the file may
//! hold nothing else, so a ViT-S file given to the ViT-B preset, or a 224-px file given to
//! the 32-px tiny preset, fails with the file and tensor named instead of training from a
//! half-loaded model. The one exception is the classification head: a file whose head has
//! another number of classes (an ImageNet model's 1,000) or none at all (a self-supervised
//! backbone) keeps the fresh, seeded head, and the log says so.

use crate::weights::{copy_strict, read_tensors};
use histodiff_engine::stage::StageError;
use std::collections::HashMap;
use std::path::Path;
use tch::nn::VarStore;
use tch::Tensor;

const HEAD: [&str; 2] = ["head.weight", "head.bias"];

/// What happened to the classification head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// The file's head fits the classes and was loaded.
    Loaded,
    /// The file's head has `file_classes` classes; a fresh head was kept.
    Reinitialised { file_classes: i64 },
    /// The file has no head; a fresh head was kept.
    Absent,
}

impl Head {
    /// The log line and `training.json` text.
    pub fn describe(&self, classes: i64) -> String {
        match self {
            Head::Loaded => format!("head loaded ({classes} classes)"),
            Head::Reinitialised { file_classes } => format!(
                "head re-initialised: the file's head has {file_classes} classes, the training set {classes}"
            ),
            Head::Absent => "head initialised fresh: the file has no head".into(),
        }
    }
}

/// Copies the weights of `path` (shown as `shown`) into `vs`, strictly, except the head;
/// `model` names the model in errors ("the tiny preset's ViT").
pub fn load(vs: &mut VarStore, path: &Path, shown: &str, model: &str) -> Result<Head, StageError> {
    let fail = |what: String| {
        StageError::Invalid(format!(
            "init_weights {shown} does not fit {model}: {what} (expected a ViT converted by \
             scripts/convert_checkpoint.py vit, docs/weights.md)"
        ))
    };
    let file: HashMap<String, Tensor> = read_tensors(path)
        .map_err(|e| StageError::Invalid(format!("init_weights: {e}")))?
        .into_iter()
        .collect();
    let vars = vs.variables();
    let head = head_fate(&file, &vars).map_err(fail)?;
    // The head is copied only when it fits; otherwise it stays fresh (and seeded), and
    // neither side's head takes part in the strict match.
    let keep = |name: &str| head == Head::Loaded || !HEAD.contains(&name);
    let vars: HashMap<String, Tensor> = vars.into_iter().filter(|(k, _)| keep(k)).collect();
    let tensors: Vec<(String, Tensor)> = file.into_iter().filter(|(k, _)| keep(k)).collect();
    copy_strict(&vars, shown, tensors).map_err(|e| fail(e.to_string()))?;
    Ok(head)
}

/// Whether the file's head can be loaded: both tensors or neither, of the model's width.
fn head_fate(
    file: &HashMap<String, Tensor>,
    vars: &HashMap<String, Tensor>,
) -> Result<Head, String> {
    let (w, b) = (file.get(HEAD[0]), file.get(HEAD[1]));
    let (Some(w), Some(b)) = (w, b) else {
        return match (w, b) {
            (None, None) => Ok(Head::Absent),
            (None, _) => Err(format!(
                "missing tensors [{}] (the head's bias is there)",
                HEAD[0]
            )),
            _ => Err(format!(
                "missing tensors [{}] (the head's weight is there)",
                HEAD[1]
            )),
        };
    };
    let expected = vars
        .get(HEAD[0])
        .map(Tensor::size)
        .ok_or_else(|| format!("the model has no `{}`", HEAD[0]))?;
    let (ws, bs) = (w.size(), b.size());
    if ws.len() != 2 || ws[1] != expected[1] || bs != [ws[0]] {
        return Err(format!(
            "head tensors have shapes {ws:?} and {bs:?}, expected [K, {}] and [K]",
            expected[1]
        ));
    }
    Ok(if ws[0] == expected[0] {
        Head::Loaded
    } else {
        Head::Reinitialised {
            file_classes: ws[0],
        }
    })
}
