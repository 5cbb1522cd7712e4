//! The checkpoint converter's output loads strictly; paper-scale key sets, shapes and
//! parameter counts match the reference.

use crate::fixtures::*;
use histodiff_stages::losses::{AeLossConfig, LpipsWithDiscriminator};
use histodiff_stages::models::autoencoder::{AutoencoderConfig, AutoencoderKL};
use histodiff_stages::weights::load_strict;
use std::collections::BTreeMap;
use tch::nn::VarStore;
use tch::{Device, Tensor};

#[test]
fn converted_checkpoint_loads_strictly() {
    let (vs, _ae) = load_ae("ae_loss.safetensors", AutoencoderConfig::tiny());
    let mut converted = VarStore::new(Device::Cpu);
    let _ae2 = AutoencoderKL::new(&converted.root(), AutoencoderConfig::tiny()).unwrap();
    // No ignore: the converter must have dropped loss.* and num_batches_tracked.
    load_strict(&mut converted, &fixture("ae_converted.safetensors"), |_| {
        false
    })
    .expect("strict load");
    let original = vs.variables();
    for (name, var) in converted.variables() {
        assert_eq!(
            max_abs(&var, &original[&name]),
            0.0,
            "{name} changed in conversion"
        );
    }
    let mut with_loss = VarStore::new(Device::Cpu);
    let _ae3 = AutoencoderKL::new(&with_loss.root(), AutoencoderConfig::tiny()).unwrap();
    let _loss = LpipsWithDiscriminator::new(&(with_loss.root() / "loss"), AeLossConfig::default());
    load_strict(
        &mut with_loss,
        &fixture("ae_converted_keep_loss.safetensors"),
        |_| false,
    )
    .expect("strict load");
}

fn shapes(vs: &VarStore) -> BTreeMap<String, Vec<i64>> {
    vs.variables()
        .into_iter()
        .map(|(k, v)| (k, v.size()))
        .collect()
}

fn reference_shapes(doc: &serde_json::Value, part: &str) -> BTreeMap<String, Vec<i64>> {
    serde_json::from_value(doc[part].clone()).expect("{name: shape} object")
}

fn parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum()
}

#[test]
fn paper_scale_keys_shapes_and_counts() {
    let doc: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("autoencoder_paper_keys.json")).unwrap(),
    )
    .unwrap();
    let _guard = tch::no_grad_guard();
    let ae_vs = VarStore::new(Device::Cpu);
    let _ae = AutoencoderKL::new(&ae_vs.root(), AutoencoderConfig::default()).unwrap();
    assert_eq!(shapes(&ae_vs), reference_shapes(&doc, "autoencoder"));
    assert_eq!(
        parameter_count(&ae_vs),
        55_312_063,
        "SPEC §2.3 AE parameter count"
    );
    assert_eq!(doc["autoencoder_parameters"], 55_312_063);

    let loss_vs = VarStore::new(Device::Cpu);
    let _loss = LpipsWithDiscriminator::new(&loss_vs.root(), AeLossConfig::default());
    assert_eq!(shapes(&loss_vs), reference_shapes(&doc, "loss"));
    assert_eq!(
        parameter_count(&loss_vs),
        2_765_633,
        "SPEC §2.3 discriminator parameter count"
    );
    assert_eq!(doc["discriminator_parameters"], 2_765_633);
}
