//! Every stage kind this crate implements, for the worker and the CLI's registry. Each kind
//! is one module: a `declare::kind!` declaration (its spec and typed `Params`) and its
//! `run`. [`declare`] and [`params`] are how kinds are declared, [`train_common`] what the
//! training kinds share; the artifacts kinds exchange are read and written by
//! [`crate::artifact`], the models' sizes come from [`crate::presets`].

pub mod declare;
pub mod demo;
pub mod evaluate;
pub mod fid;
pub mod finetune_decoder;
pub mod image_folder;
pub mod images;
pub mod npy;
pub mod params;
pub mod report_table;
pub mod sample;
pub mod select;
pub mod stylegan2_sample;
pub mod stylegan2_train;
pub mod subset;
pub mod train_autoencoder;
pub mod train_classifier;
pub mod train_common;
pub mod train_diffusion;
pub mod train_image_classifier;
pub mod train_latent_classifier;
pub mod weights_import;

use histodiff_engine::stage::Stage;

/// All stage kinds of the stages crate (the engine adds `command`).
pub fn all() -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(demo::Demo),
        Box::new(image_folder::ImageFolder),
        Box::new(images::Images),
        Box::new(npy::Npy),
        Box::new(subset::Subset),
        Box::new(report_table::ReportTable),
        Box::new(evaluate::Evaluate),
        Box::new(select::Select),
        Box::new(train_classifier::TrainClassifier),
        Box::new(fid::Fid),
        Box::new(train_autoencoder::TrainAutoencoder),
        Box::new(train_image_classifier::TrainImageClassifier),
        Box::new(finetune_decoder::FinetuneDecoder),
        Box::new(train_diffusion::TrainDiffusion),
        Box::new(train_latent_classifier::TrainLatentClassifier),
        Box::new(sample::Sample),
        Box::new(weights_import::WeightsImport),
        Box::new(stylegan2_train::Stylegan2Train),
        Box::new(stylegan2_sample::Stylegan2Sample),
    ]
}

/// The specs of [`all`] as pretty JSON: the content of `stages/kinds.json`, which the
/// CLI embeds so that it knows the kinds without loading libtorch.
pub fn specs_json() -> String {
    let specs: Vec<_> = all().iter().map(|k| k.spec()).collect();
    let mut json = serde_json::to_string_pretty(&specs).expect("kind specs serialise");
    json.push('\n');
    json
}

/// The kind called `name`, if this crate implements it.
pub fn find(name: &str) -> Option<Box<dyn Stage>> {
    all().into_iter().find(|k| k.spec().name == name)
}

pub use crate::artifact::invalid;
