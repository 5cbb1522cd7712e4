//! End-to-end: `histodiff serve` on port 0 over a store with a finished run (procedural
//! images → image set → a short autoencoder training → a `command` stage writing JSON, CSV,
//! Markdown, PNG and SVG). Checked over raw HTTP: the page, the JSON API, progress, the
//! SVG curve, lineage both ways, previews, traversal attempts (never file contents), no
//! write route, the token rules, a PostgreSQL store, and a clean stop on SIGTERM/SIGINT.

mod common;
mod serve_support;

use common::Project;
use serde_json::Value;
use serve_support::{request, Server};

/// Autoencoder steps; one loss point per step.
const STEPS: usize = 6;

fn pipeline() -> String {
    format!(
        r#"
version: 1
name: serve-demo
settings: {{ device: cpu, jobs: 1 }}
stages:
  demo:
    uses: data/demo
    with: {{ per_class: 2, image_size: 16, seed: 0 }}
  crc:
    uses: data/image-folder
    inputs: {{ folder: demo }}
    with: {{ image_size: 16 }}
  autoencoder:
    uses: histodiffusion/train-autoencoder
    inputs: {{ images: crc }}
    with: {{ preset: tiny, steps: {STEPS}, batch_size: 4, perceptual_weight: 0.0, disc_start: 100, checkpoint_every: 0, metric_every: 1, seed: 0 }}
  files:
    uses: command
    inputs: {{ folder: demo }}
    outs: {{ summary: summary.json, table: table.csv, notes: notes.md, figure: figure.png, drawing: drawing.svg }}
    run: |
      printf '{{"accuracy": 0.91, "classes": ["ADI", "BACK"]}}' > ${{outs.summary}}
      printf 'method,ratio,accuracy\ncentroid,0.5,0.91\n' > ${{outs.table}}
      printf '# Notes\n\nA small run.\n' > ${{outs.notes}}
      cp "$(find ${{inputs.folder}} -name '*.png' | sort | head -n 1)" ${{outs.figure}}
      printf '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="teal"/></svg>' > ${{outs.drawing}}
"#
    )
}

/// A command-only pipeline, for the tests that need a store but no training.
const SMALL: &str = r#"
version: 1
stages:
  source:
    uses: command
    run: "echo hello > ${outs.data}"
    outs: { data: data.txt }
  copy:
    uses: command
    inputs: { src: source }
    run: "cat ${inputs.src} > ${outs.copy}"
    outs: { copy: copy.txt }
"#;

fn project_with(yaml: &str) -> Project {
    let p = Project::new();
    let file = p.pipeline(yaml);
    p.run(&["run", file.to_str().unwrap()]).expect_code(0);
    p
}

/// The execution of `instance` in a run's JSON.
fn execution<'a>(run: &'a Value, instance: &str) -> &'a Value {
    run["executions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["instance"] == instance)
        .unwrap_or_else(|| panic!("no {instance} in {run}"))
}

fn output_of(server: &Server, run: &Value, instance: &str, output: &str) -> String {
    let id = &execution(run, instance)["id"];
    let detail = server.get(&format!("/api/executions/{id}")).json();
    detail["outputs"][output]
        .as_str()
        .unwrap_or_else(|| panic!("{instance}.{output} in {detail}"))
        .to_string()
}

#[test]
fn dashboard_serves_a_finished_run() {
    let p = project_with(&pipeline());
    let server = Server::start(p.path(), &["--bind", "127.0.0.1:0"]);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("/assets/dashboard.js"),
        "{}",
        page.text()
    );
    for asset in ["/assets/dashboard.js", "/assets/dashboard.css"] {
        assert_eq!(server.get(asset).status, 200, "{asset}");
    }
    let runs = server.get("/api/runs").json();
    assert_eq!(runs["runs"][0]["status"], "succeeded", "{runs}");
    assert_eq!(runs["runs"][0]["counts"]["succeeded"], 4, "{runs}");
    let run = server.get("/api/runs/1").json();
    let report = server.get("/runs/1/report");
    assert_eq!(report.status, 200, "{}", report.text());
    assert_eq!(
        report.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(report.text().contains("serve-demo"), "the run's report");
    assert_eq!(server.get("/runs/7/report").status, 404);
    progress_and_curve(&server, &run);
    lineage_both_ways(&server, &run);
    previews(&server, &run);
    traversal_is_refused(&server, &run);
    nothing_writes(&server);
    assert_eq!(server.stop(libc::SIGTERM), 0, "a clean stop on SIGTERM");
}

fn progress_and_curve(server: &Server, run: &Value) {
    let ae = execution(run, "autoencoder");
    let progress = &ae["progress"];
    assert_eq!(progress["step"], STEPS, "{ae}");
    assert_eq!(progress["total"], STEPS, "{ae}");
    assert_eq!(progress["fraction"], 1.0);
    assert!(progress["eta_ms"].is_null(), "no ETA once finished: {ae}");
    let loss = ae["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "loss")
        .unwrap_or_else(|| panic!("a loss series: {ae}"));
    assert_eq!(loss["points"], STEPS);
    let svg = server.get(&format!(
        "/api/executions/{}/curve.svg?metric=loss",
        ae["id"]
    ));
    assert_eq!(svg.status, 200, "{}", svg.text());
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert_eq!(svg.header("x-points"), Some(STEPS.to_string().as_str()));
    assert!(svg.text().contains("<svg") && svg.text().contains("step"));
    let none = server.get(&format!(
        "/api/executions/{}/curve.svg?metric=nothing",
        ae["id"]
    ));
    assert_eq!(none.status, 404);
    assert_eq!(server.get("/api/runs/99").status, 404);
    assert_eq!(server.get("/api/runs/x").status, 400);
}

/// Upstream from the autoencoder to crc to demo, downstream from demo to crc and files.
fn lineage_both_ways(server: &Server, run: &Value) {
    let ae = server
        .get(&format!(
            "/api/executions/{}",
            execution(run, "autoencoder")["id"]
        ))
        .json();
    let input = &ae["inputs"][0]["artifact"];
    assert_eq!(input["producer"]["instance"], "crc", "{ae}");
    let images = input["hash"].as_str().unwrap();
    let crc = server.get(&format!("/api/artifacts/{images}")).json();
    let producer = &crc["producers"][0];
    assert_eq!(producer["execution"]["instance"], "crc");
    assert_eq!(
        producer["inputs"][0]["artifact"]["producer"]["instance"],
        "demo"
    );
    let readers: Vec<&Value> = crc["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["execution"]["instance"])
        .collect();
    assert_eq!(readers, ["autoencoder"]);
    let folder = output_of(server, run, "demo", "folder");
    let demo = server.get(&format!("/api/artifacts/{folder}")).json();
    let mut readers: Vec<&str> = demo["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["execution"]["instance"].as_str().unwrap())
        .collect();
    readers.sort();
    assert_eq!(readers, ["crc", "files"]);
    let prefix = server
        .get(&format!("/api/artifacts/{}", &images[..10]))
        .json();
    assert_eq!(prefix["hash"], images, "a unique prefix names the artifact");
}

fn previews(server: &Server, run: &Value) {
    let images = output_of(server, run, "crc", "images");
    let set = server.get(&format!("/api/artifacts/{images}")).json();
    let preview = &set["preview"];
    assert_eq!(preview["type"], "image-set", "{preview}");
    assert_eq!(preview["count"], 18);
    assert_eq!(preview["images"].as_array().unwrap().len(), 16);
    assert!(preview["images"][0]["label"].is_string(), "{preview}");
    let png = server.get(preview["images"][0]["url"].as_str().unwrap());
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert!(png.body.starts_with(b"\x89PNG"));
    assert_eq!(
        server.get(&format!("/artifact/{images}/image/18")).status,
        404
    );

    let folder = output_of(server, run, "demo", "folder");
    let dir = server.get(&format!("/api/artifacts/{folder}")).json();
    assert_eq!(dir["preview"]["type"], "directory", "{dir}");
    let member = &dir["preview"]["members"][0];
    assert_eq!(member["shown"], "png", "{member}");
    let png = server.get(member["url"].as_str().unwrap());
    assert_eq!(png.status, 200);
    assert!(png.body.starts_with(b"\x89PNG"));

    let shown = |output: &str| {
        let hash = output_of(server, run, "files", output);
        server.get(&format!("/api/artifacts/{hash}")).json()["preview"].clone()
    };
    let json = shown("summary");
    assert_eq!(
        (&json["type"], &json["format"]),
        (&"text".into(), &"json".into())
    );
    assert!(
        json["text"]
            .as_str()
            .unwrap()
            .contains("\n  \"accuracy\": 0.91"),
        "{json}"
    );
    let csv = shown("table");
    assert_eq!(csv["format"], "text");
    assert!(csv["text"].as_str().unwrap().starts_with("method,ratio"));
    assert_eq!(shown("notes")["text"], "# Notes\n\nA small run.\n");
    for (output, content_type) in [("figure", "image/png"), ("drawing", "image/svg+xml")] {
        let preview = shown(output);
        assert_eq!(preview["type"], "image", "{preview}");
        let raw = server.get(preview["url"].as_str().unwrap());
        assert_eq!(raw.header("content-type"), Some(content_type));
        let csp = raw.header("content-security-policy").unwrap_or("");
        assert!(csp.contains("sandbox"), "artifacts are sandboxed: {csp}");
    }
}

/// Every attempt answers 400 or 404, and no answer holds a byte of /etc/passwd.
fn traversal_is_refused(server: &Server, run: &Value) {
    let dir = output_of(server, run, "demo", "folder");
    let file = output_of(server, run, "files", "summary");
    let listed = server.get(&format!("/api/artifacts/{dir}")).json();
    // The last member: the first is also recorded on its own, as `files.figure`.
    let members = listed["preview"]["members"].as_array().unwrap();
    let member = members.last().unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    let member_object = server.get(&format!("/artifact/{dir}")).json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == member.as_str())
        .map(|e| e["hash"].as_str().unwrap().to_string())
        .unwrap();
    let attempts = [
        "/artifact/../../etc/passwd".to_string(),
        "/artifact/%2e%2e%2f%2e%2e%2fetc%2fpasswd".into(),
        "/artifact/..%2f..%2f..%2fetc%2fpasswd".into(),
        "/artifact/%2Fetc%2Fpasswd".into(),
        "/artifact//etc/passwd".into(),
        "/api/artifacts/..%2f..%2fetc%2fpasswd".into(),
        "/artifact/zzzzzzzz".into(),
        "/artifact/abc".into(),
        format!("/artifact/{member_object}"),
        format!("/artifact/{dir}/member/../../../../etc/passwd"),
        format!("/artifact/{dir}/member/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
        format!("/artifact/{dir}/member/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
        format!("/artifact/{dir}/member/%2Fetc%2Fpasswd"),
        format!("/artifact/{dir}/member//etc/passwd"),
        format!("/artifact/{dir}/member/..%5C..%5C..%5Cetc%5Cpasswd"),
        format!("/artifact/{dir}/member/{member}%5C..%5C..%5Cpasswd"),
        format!("/artifact/{dir}/member/{member}/../{member}"),
        format!("/artifact/{dir}/member/not-in-the-manifest.png"),
        format!("/artifact/{file}/member/anything"),
        format!("/artifact/{dir}/image/0"),
        format!("/artifact/{dir}/image/..%2f..%2fetc%2fpasswd"),
    ];
    for path in &attempts {
        let reply = server.get(path);
        assert!(
            matches!(reply.status, 400 | 404),
            "{path}: {} {}",
            reply.status,
            reply.text()
        );
        assert!(!reply.text().contains("root:"), "{path} leaked a file");
    }
    let fine = server.get(&format!("/artifact/{dir}/member/{member}"));
    assert_eq!(fine.status, 200, "the listed member itself is served");
}

fn nothing_writes(server: &Server) {
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/api/runs", "/api/runs/1", "/"] {
            let reply = request(&server.addr, method, path, &[]);
            assert_eq!(reply.status, 405, "{method} {path}");
        }
    }
}

#[test]
fn off_loopback_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_histodiff"))
        .args(["serve", "--bind", "0.0.0.0:0"])
        .current_dir(dir.path())
        .env_remove("HISTODIFF_SERVE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("without a token"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing was served");
    assert!(
        !dir.path().join(".histodiff").exists(),
        "no store was created"
    );
}

#[test]
fn without_a_store_serve_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_histodiff"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        !dir.path().join(".histodiff").exists(),
        "no store was created"
    );
}

#[test]
fn with_a_token_every_request_needs_it() {
    let p = project_with(SMALL);
    // Off loopback with a token starts (reached here through loopback).
    let server = Server::start(p.path(), &["--bind", "0.0.0.0:0", "--token", "s3cret"]);
    assert_eq!(server.get("/api/runs").status, 401);
    assert_eq!(server.get("/").status, 401);
    let wrong = server.get_with("/api/runs", &[("Authorization", "Bearer s3cre")]);
    assert_eq!(wrong.status, 401);
    let right = server.get_with("/api/runs", &[("Authorization", "Bearer s3cret")]);
    assert_eq!(right.status, 200);
    let welcome = server.get("/?token=s3cret");
    assert_eq!(welcome.status, 303);
    assert_eq!(welcome.header("location"), Some("/"));
    let set = welcome.header("set-cookie").unwrap().to_string();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(
        !set.contains("s3cret"),
        "the cookie holds a digest, not the token"
    );
    let cookie = set.split(';').next().unwrap();
    let with_cookie = server.get_with("/api/runs", &[("Cookie", cookie)]);
    assert_eq!(with_cookie.status, 200);
    let forged = server.get_with("/api/runs", &[("Cookie", "histodiff_token=00")]);
    assert_eq!(forged.status, 401);
    assert_eq!(server.get("/?token=wrong").status, 401);
    assert_eq!(server.stop(libc::SIGINT), 0, "Ctrl-C stops it cleanly");
}

/// A PostgreSQL store (`--store postgres://… --objects DIR`) is served through the same
/// trait. Needs HISTODIFF_TEST_PG_URL (`source scripts/services/postgres.sh`); without
/// it the test FAILS, it does not skip.
#[test]
fn a_postgres_store_is_served() {
    let server_url = std::env::var("HISTODIFF_TEST_PG_URL").unwrap_or_else(|_| {
        panic!("HISTODIFF_TEST_PG_URL is not set: `source scripts/services/postgres.sh` first")
    });
    let name = format!("hd_serve_{}", std::process::id());
    let created = std::process::Command::new("psql")
        .args([&server_url, "-q", "-v", "ON_ERROR_STOP=1", "-c"])
        .arg(format!("CREATE DATABASE {name}"))
        .status()
        .expect("psql runs");
    assert!(created.success(), "CREATE DATABASE {name}");
    let url = format!("{}/{name}", server_url.rsplit_once('/').unwrap().0);
    let p = Project::new();
    let file = p.pipeline(SMALL);
    let store = ["--store", url.as_str(), "--objects", "shared"];
    let mut args = store.to_vec();
    args.extend(["run", file.to_str().unwrap()]);
    p.run(&args).expect_code(0);
    let mut args = store.to_vec();
    args.extend(["--bind", "127.0.0.1:0"]);
    let server = Server::start(p.path(), &args);
    let runs = server.get("/api/runs").json();
    assert_eq!(runs["runs"][0]["status"], "succeeded", "{runs}");
    let run = server.get("/api/runs/1").json();
    let data = output_of(&server, &run, "source", "data");
    let artifact = server.get(&format!("/api/artifacts/{data}")).json();
    assert_eq!(artifact["producers"][0]["execution"]["instance"], "source");
    assert_eq!(artifact["consumers"][0]["execution"]["instance"], "copy");
    assert_eq!(artifact["preview"]["text"], "hello\n");
    drop(server);
    let _ = std::process::Command::new("psql")
        .args([&server_url, "-q", "-c"])
        .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .status();
}
