//! `export provenance --format prov-json`: the run as a W3C PROV-JSON document
//! (<https://www.w3.org/submissions/prov-json/>), DEST/prov.json. The same graph as the
//! RO-Crate: artifacts are entities named by content (`blake3:<hex>`, the prefix standing
//! for `urn:blake3:`), the run and its executions are activities, the orchestrator and the
//! stage processes agents. `used` and `wasGeneratedBy` carry the slot and output names as
//! roles; `wasInformedBy` links an execution to the one that provided an input; a cache
//! hit generated nothing: it was informed by the execution whose outputs it reused, which
//! is the activity that generated them.

use super::{iso_time, write_file};
use crate::commands::run_graph::{ExecutionView, Records, RunGraph};
use crate::exit::{CliError, Coded, STORE};
use histodiff_engine::fingerprint::canonical_json;
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::store::{ExecStatus, ExecutionRecord, RunRecord};
use serde_json::{json, Map, Value};
use std::path::Path;

pub const FILE: &str = "prov.json";

/// The PROV-JSON document of a run.
pub fn document(graph: &RunGraph, records: &Records) -> Value {
    let mut p = Prov::default();
    p.add_run(&graph.run);
    for source in records.sources.values() {
        p.add(
            "activity",
            &activity_id(source),
            execution_attributes(source),
        );
    }
    for e in &graph.executions {
        p.add_execution(graph, e);
    }
    for (hash, record) in &records.artifacts {
        let label = match graph.producer(hash) {
            Some((e, output)) => format!("{}.{output}", e.record.instance),
            None => format!("artifact {}", hash.short()),
        };
        let kind = if record.kind == ArtifactKind::Dir {
            "dir"
        } else {
            "file"
        };
        let attributes =
            json!({"prov:label": label, "histodiff:kind": kind, "histodiff:size": record.size});
        p.add("entity", &entity_id(hash), attributes);
    }
    let mut doc = Map::new();
    doc.insert(
        "prefix".into(),
        json!({"histodiff": "urn:histodiff:", "blake3": "urn:blake3:"}),
    );
    doc.extend(p.sections);
    Value::Object(doc)
}

pub fn write(doc: &Value, dir: &Path) -> Result<String, CliError> {
    let text = serde_json::to_string_pretty(doc).code(STORE)? + "\n";
    write_file(&dir.join(FILE), text.as_bytes())?;
    Ok(format!("a PROV-JSON document ({FILE})"))
}

fn entity_id(hash: &ArtifactHash) -> String {
    format!("blake3:{hash}")
}

/// A cache hit has no execution id of its own (it carries its source's): its activity is
/// named by its run and instance.
fn activity_id(r: &ExecutionRecord) -> String {
    match r.status {
        ExecStatus::Cached => format!("histodiff:run-{}-hit-{}", r.run_id, local(&r.instance)),
        _ => format!("histodiff:execution-{}", r.id),
    }
}

fn run_id(run: &RunRecord) -> String {
    format!("histodiff:run-{}", run.id)
}

/// A QName-safe local name: anything but letters, digits, `-`, `_` and `.` becomes `_`.
fn local(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The sections of a PROV-JSON document, filled one record at a time.
#[derive(Default)]
struct Prov {
    sections: Map<String, Value>,
    relations: usize,
}

impl Prov {
    fn add(&mut self, section: &str, id: &str, attributes: Value) {
        let entry = self.sections.entry(section).or_insert_with(|| json!({}));
        if let Some(map) = entry.as_object_mut() {
            map.entry(id).or_insert(attributes);
        }
    }

    /// A relation under a fresh blank-node id.
    fn relate(&mut self, section: &str, attributes: Value) {
        self.relations += 1;
        let id = format!("_:{section}{}", self.relations);
        self.add(section, &id, attributes);
    }

    fn agent(&mut self, id: String, label: String) -> String {
        let attributes = json!({
            "prov:type": {"$": "prov:SoftwareAgent", "type": "prov:QUALIFIED_NAME"},
            "prov:label": label,
        });
        self.add("agent", &id, attributes);
        id
    }

    fn add_run(&mut self, run: &RunRecord) {
        let mut attributes = json!({
            "prov:label": format!("run {} of pipeline {}", run.id, run.pipeline),
            "prov:startTime": iso_time(run.started),
            "histodiff:status": run.status.as_str(),
            "histodiff:file": run.file,
        });
        if let Some(finished) = run.finished {
            attributes["prov:endTime"] = json!(iso_time(finished));
        }
        self.add("activity", &run_id(run), attributes);
        let agent = self.agent(
            format!("histodiff:process-{}-{}", local(&run.host), run.pid),
            format!(
                "histodiff orchestrator, process {} on {}",
                run.pid, run.host
            ),
        );
        let link = json!({"prov:activity": run_id(run), "prov:agent": agent});
        self.relate("wasAssociatedWith", link);
    }

    fn add_execution(&mut self, graph: &RunGraph, e: &ExecutionView) {
        let r = &e.record;
        let act = activity_id(r);
        let mut attributes = execution_attributes(r);
        let params: Map<String, Value> = e
            .params()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        attributes["histodiff:params"] = json!(canonical_json(&Value::Object(params)));
        if let Some(command) = e.fingerprint.as_ref().and_then(|f| f.command.as_ref()) {
            attributes["histodiff:command"] = json!(command.run);
        }
        self.add("activity", &act, attributes);
        let started = json!({"prov:activity": act, "prov:starter": run_id(&graph.run)});
        self.relate("wasStartedBy", started);
        if let Some(agent) = self.worker(e, &graph.run) {
            self.relate(
                "wasAssociatedWith",
                json!({"prov:activity": act, "prov:agent": agent}),
            );
        }
        self.add_reads(graph, e);
        self.add_writes(e);
    }

    fn add_reads(&mut self, graph: &RunGraph, e: &ExecutionView) {
        let act = activity_id(&e.record);
        for input in &e.inputs {
            let used = json!({"prov:activity": act, "prov:entity": entity_id(&input.artifact), "prov:role": input.slot});
            self.relate("used", used);
            if let Some((producer, _)) = graph.producer(&input.artifact) {
                let informed =
                    json!({"prov:informed": act, "prov:informant": activity_id(&producer.record)});
                self.relate("wasInformedBy", informed);
            }
        }
        for (name, hash) in &e.externals {
            let attributes = json!({"prov:label": name, "histodiff:external": true});
            self.add("entity", &entity_id(hash), attributes);
            let used =
                json!({"prov:activity": act, "prov:entity": entity_id(hash), "prov:role": name});
            self.relate("used", used);
        }
    }

    fn add_writes(&mut self, e: &ExecutionView) {
        let r = &e.record;
        let generator = match (r.status, r.cached_from) {
            (ExecStatus::Cached, Some(source)) => {
                let informed = json!({"prov:informed": activity_id(r), "prov:informant": format!("histodiff:execution-{source}")});
                self.relate("wasInformedBy", informed);
                format!("histodiff:execution-{source}")
            }
            _ => activity_id(r),
        };
        for (name, hash) in &e.outputs {
            let generated = json!({"prov:entity": entity_id(hash), "prov:activity": generator, "prov:role": name});
            self.relate("wasGeneratedBy", generated);
        }
    }

    /// The agent that executed `e`: its Slurm job or process (a cache hit: none).
    fn worker(&mut self, e: &ExecutionView, run: &RunRecord) -> Option<String> {
        let r = &e.record;
        let host = r.host.as_deref().unwrap_or(&run.host);
        match (&r.slurm_job_id, r.worker_pid, r.status) {
            (_, _, ExecStatus::Cached) => None,
            (Some(job), _, _) => Some(self.agent(
                format!("histodiff:slurm-job-{}", local(job)),
                format!("Slurm job {job} on {host}"),
            )),
            (None, Some(pid), _) => Some(self.agent(
                format!("histodiff:process-{}-{pid}", local(host)),
                format!("stage process {pid} on {host}"),
            )),
            (None, None, _) => None,
        }
    }
}

fn execution_attributes(r: &ExecutionRecord) -> Value {
    let mut a = json!({
        "prov:label": r.instance,
        "histodiff:stage": r.stage,
        "histodiff:kind": r.kind,
        "histodiff:kindVersion": r.kind_version,
        "histodiff:status": r.status.as_str(),
        "histodiff:attempt": r.attempt,
        "histodiff:run": r.run_id.0,
        "histodiff:stageKey": r.stage_key.0,
    });
    if let Some(t) = r.started {
        a["prov:startTime"] = json!(iso_time(t));
    }
    if let Some(t) = r.finished {
        a["prov:endTime"] = json!(iso_time(t));
    }
    if let Some(source) = r.cached_from {
        a["histodiff:cachedFrom"] = json!(source.0);
    }
    if let Some(error) = &r.error {
        a["histodiff:error"] = json!(error);
    }
    a
}
