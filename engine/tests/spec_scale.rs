//! Scale: a 10,000-member sweep (the shape of benches/engine_vs_peers.py) resolves to
//! 30,004 instances with correct wiring. Time is not asserted here (a loaded machine would
//! make that flaky); the release figure is measured by benches/engine_vs_peers.py, and a
//! quadratic join at this size would show as a test that runs for hours.

mod spec_support;

use histodiff_engine::plan::InputBinding;
use histodiff_engine::spec::{self, SettingsOverrides};
use std::time::Instant;

fn sweep(n: usize) -> String {
    let members: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!(
        r#"version: 1
name: sweep
stages:
  prepare:
    uses: command
    run: echo data > ${{outs.data}}
    outs: {{ data: data.txt }}
  pretrain:
    uses: command
    run: cp ${{inputs.data}} ${{outs.model}}
    inputs: {{ data: prepare }}
    outs: {{ model: model.txt }}
  finetune:
    uses: command
    run: cp ${{inputs.model}} ${{outs.model}}
    inputs: {{ model: pretrain }}
    outs: {{ model: model.txt }}
  sample:
    uses: command
    matrix: {{ i: [{members}] }}
    run: echo ${{matrix.i}} > ${{outs.images}}
    inputs: {{ model: finetune }}
    outs: {{ images: images.txt }}
  select:
    uses: command
    run: cp ${{inputs.pool}} ${{outs.images}}
    inputs: {{ pool: sample }}
    outs: {{ images: images.txt }}
  evaluate:
    uses: command
    run: cp ${{inputs.images}} ${{outs.metrics}}
    inputs: {{ images: select }}
    outs: {{ metrics: metrics.txt }}
  report:
    uses: command
    run: cat ${{inputs.results}} > ${{outs.table}}
    inputs: {{ results: "evaluate[*]" }}
    outs: {{ table: table.txt }}
"#,
        members = members.join(", ")
    )
}

#[test]
fn ten_thousand_member_sweep() {
    let n = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.yaml");
    std::fs::write(&path, sweep(n)).unwrap();
    let start = Instant::now();
    let plan = spec::load(
        &path,
        &spec_support::registry(),
        &SettingsOverrides::default(),
    )
    .unwrap();
    let elapsed = start.elapsed();
    eprintln!(
        "resolved {} instances in {:.3} s (debug build)",
        plan.instances.len(),
        elapsed.as_secs_f64()
    );
    assert_eq!(plan.instances.len(), 3 * n + 4);
    // Large stages are built on every core: the order and wiring are the sequential ones.
    for (k, inst) in plan.instances[3..3 + n].iter().enumerate() {
        assert_eq!(inst.name, format!("sample[i={k}]"));
        let select = &plan.instances[3 + n + k];
        let InputBinding::One(up) = &select.inputs["pool"] else {
            panic!("one input")
        };
        assert_eq!(
            (select.name.as_str(), up.instance),
            (&*format!("select[i={k}]"), 3 + k)
        );
    }
    let eval = plan
        .find("evaluate[i=1234]")
        .expect("evaluate[i=1234] exists");
    let InputBinding::One(up) = &plan.instances[eval].inputs["images"] else {
        panic!("one input")
    };
    assert_eq!(plan.instances[up.instance].name, "select[i=1234]");
    let report = plan.instances.last().unwrap();
    let InputBinding::Many(all) = &report.inputs["results"] else {
        panic!("a gathered list")
    };
    assert_eq!(all.len(), n);
    assert_eq!(
        plan.instances[all[n - 1].instance].name,
        format!("evaluate[i={}]", n - 1)
    );
}

/// A mistake in every member of a large stage (built on several threads) is reported
/// once, as it is when built on one.
#[test]
fn a_mistake_in_every_member_of_a_large_stage_is_reported_once() {
    let yaml = sweep(5_000).replace("echo ${matrix.i} >", "echo ${matrix.nope} >");
    let file = std::path::Path::new("/work/p/sweep.yaml");
    let errors = spec::load_str(
        &yaml,
        file,
        &spec_support::registry(),
        &SettingsOverrides::default(),
    )
    .expect_err("`matrix.nope` is not an axis");
    assert_eq!(errors.errors.len(), 1, "{errors}");
    assert!(errors.to_string().contains("nope"), "{errors}");
}
