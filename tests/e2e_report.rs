//! End-to-end: the HTML report. A run ends by writing its report under the store and
//! printing where it is with a short table; `report RUN --html` and `report PIPELINE
//! --html` write one self-contained page holding Table 1 with lineage links, the report
//! stage's figures, the training curves, every execution in the timeline and the DAG, the
//! stage keys and, after a parameter change, why an instance re-ran. Bad targets fail with
//! a clear message and write nothing.

mod common;

use common::Project;
use std::collections::BTreeMap;
use std::path::Path;

/// The smallest pipeline with a training stage and a report/table stage.
const TINY: &str = include_str!("pipelines/report.yaml");

/// Two command stages, the second failing, and a third that cannot run.
const FAILING: &str = r#"
version: 1
name: failing
stages:
  source:
    uses: command
    run: "echo data > ${outs.data}"
    outs: { data: data.txt }
  broken:
    uses: command
    inputs: { src: source }
    run: "echo 'no such column: ratio' >&2; exit 3"
    outs: { out: out.txt }
  after:
    uses: command
    inputs: { src: broken }
    run: "cat ${inputs.src} > ${outs.out}"
    outs: { out: out.txt }
"#;

/// Executions of run `run` as `histodiff status` lists them: id → (instance, short key).
fn executions_of(p: &Project, run: i64) -> BTreeMap<i64, (String, String)> {
    let status = p.run(&["status", "--runs", "10"]).expect_code(0).stdout;
    let mut found = BTreeMap::new();
    let mut in_run = false;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("run ") {
            in_run = rest.split_whitespace().next() == Some(&run.to_string());
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if in_run && fields.len() >= 4 && fields[0].starts_with('#') {
            let id = fields[0][1..].parse().expect("an execution id");
            let key = fields[3].trim_matches(|c| c == '[' || c == ']').to_string();
            found.insert(id, (fields[2].to_string(), key));
        } else if in_run && fields.len() >= 6 && fields[1] == "cached" {
            // A cache hit has no id of its own: `- cached INSTANCE [KEY] reused #ID`.
            let id = fields[5]
                .trim_start_matches('#')
                .parse()
                .expect("a reused id");
            let key = fields[3].trim_matches(|c| c == '[' || c == ']').to_string();
            found.insert(id, (fields[2].to_string(), key));
        }
    }
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The page links nothing outside itself: every src/href is a fragment or a data: URI,
/// also inside the figures (an SVG embedded as percent-encoded text quotes with `%22`).
fn assert_self_contained(html: &str) {
    for attr in ["src=", "href="] {
        for (at, _) in html.match_indices(attr) {
            let value = html[at + attr.len()..].trim_start_matches(['"', '\'']);
            let value = value
                .strip_prefix("%22")
                .or_else(|| value.strip_prefix("%27"))
                .unwrap_or(value);
            assert!(
                value.starts_with('#') || value.starts_with("data:"),
                "external reference: {}",
                &html[at..(at + 80).min(html.len())]
            );
        }
    }
    for needle in [
        "url(http",
        "@import",
        "<link",
        "<iframe",
        "fetch(",
        "XMLHttpRequest",
    ] {
        assert!(
            !html.contains(needle),
            "the page must not load anything: {needle}"
        );
    }
}

/// Table 1 holds the baseline over both seeds, each seed linked to its evaluation.
fn assert_table1(html: &str, runs: &BTreeMap<i64, (String, String)>) {
    let table = &html[html.find("<table class=\"grid table1\"").expect("Table 1")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(
        table.contains("<th scope=\"row\">baseline</th><td>2</td>"),
        "{table}"
    );
    for seed in [0, 1] {
        let producer = format!("baseline_eval[seed={seed}]");
        let (id, _) = runs
            .iter()
            .find(|(_, (i, _))| *i == producer)
            .expect("evaluated");
        let link = format!(
            "seed={seed}:</span> <a class=\"producer\" href=\"#exec-{id}\" title=\"{producer}\">baseline_eval</a>"
        );
        assert!(table.contains(&link), "{link} in {table}");
        assert!(html.contains(&format!("<div class=\"exec\" id=\"exec-{id}\">")));
    }
    assert!(
        table.contains(
            "← <a href=\"#instance-baseline[seed=1]\" title=\"baseline[seed=1]\">baseline</a>"
        ),
        "inputs linked: {table}"
    );
}

/// Every execution in the timeline (a bar and a table row), every instance in the DAG,
/// every stage key in full.
fn assert_every_execution(html: &str, runs: &BTreeMap<i64, (String, String)>) {
    let timeline = &html[html.find("id=\"timeline-figure\"").expect("timeline")..];
    let timeline = &timeline[..timeline.find("</table>").unwrap()];
    let dag = &html[html.find("id=\"dag-figure\"").expect("DAG")..];
    let dag = &dag[..dag.find("</section>").unwrap()];
    assert_eq!(timeline.matches("class=\"area\"").count(), runs.len());
    assert_eq!(dag.matches("class=\"area\"").count(), runs.len());
    for (id, (instance, key)) in runs {
        assert!(
            timeline.contains(&format!("href=\"#exec-{id}\"")),
            "bar of #{id}"
        );
        assert!(
            dag.contains(&format!("href=\"#instance-{instance}\"")),
            "box of {instance}"
        );
        assert!(
            html.contains(&format!("id=\"instance-{instance}\"")),
            "section of {instance}"
        );
        assert!(
            html.contains(&format!("<td><code>{key}")),
            "full key of {instance} ({key})"
        );
    }
}

#[test]
fn run_ends_with_its_report_and_report_writes_one_self_contained_page() {
    let p = Project::new();
    let pipeline = p.pipeline(TINY);
    let pipeline = pipeline.to_str().unwrap();
    let run = p.run(&["run", pipeline]).expect_code(0);
    let stored = p.path().join(".histodiff/reports/run-1.html");
    assert!(
        run.stderr
            .contains(&format!("report: {}", stored.display())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Table 1 (report):"), "{}", run.stderr);
    assert!(run.stderr.contains("  baseline  2  "), "{}", run.stderr);
    assert!(read(&stored).contains("report-demo"));

    let out = p.path().join("run1.html");
    let written = p.run(&["report", "1", "--html", out.to_str().unwrap()]);
    written.expect_code(0);
    let html = read(&out);
    let runs = executions_of(&p, 1);
    assert_eq!(runs.len(), 9, "{runs:?}");
    assert_self_contained(&html);
    assert_table1(&html, &runs);
    assert_every_execution(&html, &runs);
    for figure in ["loss", "grid-fewshot"] {
        let caption = html.contains(&format!("<figcaption>{figure}.svg</figcaption>"))
            || html.contains(&format!("<figcaption>{figure}.png</figcaption>"));
        assert!(caption, "the report stage's {figure} figure is embedded");
    }
    assert!(html.contains("src=\"data:image/"), "figures are inlined");
    let curves = html.matches("<figure class=\"chart\"><svg").count();
    assert!(curves >= 2, "the two training executions' curves: {curves}");
    assert!(html.contains("<div class=\"curves\" id=\"curves-"));
    assert!(html.contains("first execution of this instance"));
}

#[test]
fn report_of_a_pipeline_is_its_newest_run_and_says_why_an_instance_reran() {
    let p = Project::new();
    let pipeline = p.pipeline(TINY);
    let pipeline = pipeline.to_str().unwrap();
    p.run(&["run", pipeline]).expect_code(0);
    let set = "stages.baseline.with.epochs=2";
    p.run(&["run", pipeline, "--set", set]).expect_code(0);
    let out = p.path().join("latest.html");
    p.run(&["report", pipeline, "--html", out.to_str().unwrap()])
        .expect_code(0);
    let html = read(&out);
    assert!(
        html.contains("<span class=\"run\">run 2</span>"),
        "the newest run"
    );
    assert_self_contained(&html);
    let runs = executions_of(&p, 2);
    assert_every_execution(&html, &runs);
    let (id, _) = runs
        .iter()
        .find(|(_, (i, _))| i == "baseline[seed=0]")
        .unwrap();
    let section = &html[html.find(&format!("id=\"exec-{id}\"")).unwrap()..];
    let section = &section[..section.find("</details>").unwrap()];
    assert!(
        section.contains("the key changed since execution #"),
        "{section}"
    );
    assert!(
        section.contains("<code>params.epochs</code>: <code>3</code> → <code>2</code>"),
        "{section}"
    );
    assert!(
        html.contains("cached: nothing ran"),
        "demo, crc… were reused"
    );
}

#[test]
fn a_failed_run_still_ends_with_its_report() {
    let p = Project::new();
    let pipeline = p.pipeline(FAILING);
    let run = p.run(&["run", pipeline.to_str().unwrap()]).expect_code(1);
    let stored = p.path().join(".histodiff/reports/run-1.html");
    assert!(
        run.stderr
            .contains(&format!("report: {}", stored.display())),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("instances by stage:"), "{}", run.stderr);
    let table: Vec<&str> = run
        .stderr
        .lines()
        .skip_while(|l| !l.starts_with("instances by stage"))
        .collect();
    assert!(
        table
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["stage", "ran", "failed", "not", "run"]),
        "{table:?}"
    );
    assert!(
        table
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["after", "0", "0", "1"]),
        "{table:?}"
    );
    let html = read(&stored);
    assert_self_contained(&html);
    assert!(html.contains("no such column: ratio"), "the error is shown");
    assert!(html.contains(">failed</span>") && html.contains(">not run</span>"));
    assert!(
        html.contains("id=\"instance-after\""),
        "the instance that did not run"
    );
    assert!(html.contains("This run has no report/table stage"));
}

#[test]
fn bad_targets_fail_with_a_clear_message_and_write_nothing() {
    let p = Project::new();
    let out = p.path().join("out.html");
    let out_arg = out.to_str().unwrap();
    let no_store = p.run(&["report", "1", "--html", out_arg]).expect_code(3);
    assert!(
        no_store.stderr.contains("no store at .histodiff"),
        "{}",
        no_store.stderr
    );
    let pipeline = p.pipeline(FAILING);
    let pipeline = pipeline.to_str().unwrap();
    let never_ran = p
        .run(&["report", pipeline, "--html", out_arg])
        .expect_code(3);
    assert!(
        never_ran.stderr.contains("no store at"),
        "{}",
        never_ran.stderr
    );
    assert!(
        !p.path().join(".histodiff").exists(),
        "a report creates no store"
    );

    p.run(&["run", pipeline]).expect_code(1);
    let unknown = p.run(&["report", "99", "--html", out_arg]).expect_code(2);
    assert!(
        unknown.stderr.contains("run 99 is not in the store"),
        "{}",
        unknown.stderr
    );
    let missing = p
        .run(&["report", "nope.yaml", "--html", out_arg])
        .expect_code(2);
    assert!(
        missing
            .stderr
            .contains("`nope.yaml` is neither a run id nor a pipeline file"),
        "{}",
        missing.stderr
    );
    let other = p.path().join("other.yaml");
    std::fs::write(&other, FAILING.replace("name: failing", "name: other")).unwrap();
    let no_run = p
        .run(&["report", other.to_str().unwrap(), "--html", out_arg])
        .expect_code(2);
    assert!(
        no_run.stderr.contains("pipeline `other`"),
        "{}",
        no_run.stderr
    );
    assert!(
        no_run.stderr.contains("has no run in the store"),
        "{}",
        no_run.stderr
    );
    let bad_dir = p.path().join("no/such/dir/out.html");
    let unwritable = p
        .run(&["report", "1", "--html", bad_dir.to_str().unwrap()])
        .expect_code(2);
    assert!(
        unwritable.stderr.contains("cannot write"),
        "{}",
        unwritable.stderr
    );
    assert!(!out.exists(), "nothing was written");
    let leftovers: Vec<_> = std::fs::read_dir(p.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary file is left: {leftovers:?}"
    );
}
