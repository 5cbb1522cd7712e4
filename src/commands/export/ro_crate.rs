//! `export provenance --format ro-crate`: a Provenance Run Crate
//! (<https://w3id.org/ro/wfrun/provenance/0.5>, which includes the Workflow Run Crate and
//! Process Run Crate 0.5 profiles and Workflow RO-Crate 1.0) of one run.
//!
//! Layout of DEST: `ro-crate-metadata.json`, the pipeline file (the crate's main entity,
//! a `ComputationalWorkflow`), and `artifacts/<blake3>.<ext>` for the artifacts small
//! enough to copy ([`crate_files`](super::crate_files)). In the metadata: the engine is a
//! `SoftwareApplication` (the `instrument` of an `OrganizeAction`), each stage kind a
//! `SoftwareApplication` with `FormalParameter`s, each stage a `HowToStep`, the run a
//! `CreateAction` of the workflow, and each execution (a cache hit too) a `CreateAction`
//! of its kind, orchestrated by a `ControlAction` of its step. This file builds the
//! static part (root, workflow, tools, steps); `ro_crate_actions` the actions.

use super::crate_files::{self, Placement};
use super::crate_readme;
use super::{iso_time, write_file};
use crate::commands::run_graph::{ExecutionView, Records, RunGraph};
use crate::exit::{CliError, Coded, BAD_INPUT, STORE};
use histodiff_engine::hash::{hash_bytes, ArtifactHash};
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::registry::COMMAND_KIND;
use histodiff_engine::store::{ArtifactRecord, RunRecord, Store};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const PROFILES: &[(&str, &str, &str)] = &[
    (
        "https://w3id.org/ro/wfrun/process/0.5",
        "Process Run Crate",
        "0.5",
    ),
    (
        "https://w3id.org/ro/wfrun/workflow/0.5",
        "Workflow Run Crate",
        "0.5",
    ),
    (
        "https://w3id.org/ro/wfrun/provenance/0.5",
        "Provenance Run Crate",
        "0.5",
    ),
    (
        "https://w3id.org/workflowhub/workflow-ro-crate/1.0",
        "Workflow RO-Crate",
        "1.0",
    ),
];
pub const ENGINE: &str = "#histodiff";
const LANGUAGE: &str = "#histodiff-pipeline";
const LICENSE: &str = "#license-unspecified";
const BIOSCHEMAS_WORKFLOW: &str =
    "https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE";
const METADATA: &str = "ro-crate-metadata.json";

/// Everything decided before DEST is touched: the pipeline file (read now, so a missing
/// one fails first) and where each artifact goes.
pub struct CratePlan<'g> {
    pub graph: &'g RunGraph,
    pub records: &'g Records,
    workflow: WorkflowFile,
    pub placements: BTreeMap<ArtifactHash, Placement>,
}

/// The pipeline file of the run, as it is on disk now.
struct WorkflowFile {
    source: PathBuf,
    /// Its path inside the crate (its file name).
    name: String,
    bytes: Vec<u8>,
    modified: Option<i64>,
}

impl<'g> CratePlan<'g> {
    pub fn new(
        store: &dyn Store,
        graph: &'g RunGraph,
        records: &'g Records,
    ) -> Result<Self, CliError> {
        let workflow = WorkflowFile::find(store, &graph.run)?;
        let mut placements = BTreeMap::new();
        for (hash, record) in &records.artifacts {
            let placement = crate_files::place(store, record, out_file_name(graph, hash))?;
            placements.insert(hash.clone(), placement);
        }
        Ok(CratePlan {
            graph,
            records,
            workflow,
            placements,
        })
    }

    /// Writes the crate into `dir`; returns a summary line.
    pub fn write(&self, dir: &Path) -> Result<String, CliError> {
        write_file(&dir.join(&self.workflow.name), &self.workflow.bytes)?;
        let mut copied = 0;
        for placement in self.placements.values() {
            if let Placement::Copied { path, bytes, .. } = placement {
                write_file(&dir.join(path), bytes)?;
                copied += 1;
            }
        }
        write_file(
            &dir.join(crate_readme::NAME),
            crate_readme::text(self).as_bytes(),
        )?;
        let document = self.metadata();
        let text = serde_json::to_string_pretty(&document).code(STORE)? + "\n";
        write_file(&dir.join(METADATA), text.as_bytes())?;
        Ok(format!(
            "a Provenance Run Crate ({} executions, {} artifacts, {copied} copied)",
            self.graph.executions.len(),
            self.placements.len()
        ))
    }

    /// The JSON-LD document.
    fn metadata(&self) -> Value {
        let mut g = Graph::default();
        self.add_root(&mut g);
        self.add_workflow(&mut g);
        super::ro_crate_actions::add_actions(self, &mut g);
        json!({
            "@context": [
                "https://w3id.org/ro/crate/1.1/context",
                {
                    "ParameterConnection": "https://w3id.org/ro/terms/workflow-run#ParameterConnection",
                    "connection": "https://w3id.org/ro/terms/workflow-run#connection",
                    "sourceParameter": "https://w3id.org/ro/terms/workflow-run#sourceParameter",
                    "targetParameter": "https://w3id.org/ro/terms/workflow-run#targetParameter",
                    "SoftwareAgent": "http://www.w3.org/ns/prov#SoftwareAgent"
                }
            ],
            "@graph": g.entities,
        })
    }

    pub fn workflow_id(&self) -> &str {
        &self.workflow.name
    }

    fn add_root(&self, g: &mut Graph) {
        let run = &self.graph.run;
        let copied = self.placements.values().filter_map(|p| match p {
            Placement::Copied { path, .. } => Some(path.as_str()),
            Placement::Referenced { .. } => None,
        });
        let has_part: Vec<&str> = [self.workflow.name.as_str(), crate_readme::NAME]
            .into_iter()
            .chain(copied)
            .collect();
        g.add(json!({
            "@id": "./",
            "@type": "Dataset",
            "name": format!("Provenance of run {} of pipeline {}", run.id, run.pipeline),
            "description": format!(
                "What histodiff recorded of run {} ({}) of {}: each stage execution, \
                 cache hits included, with its parameters, stage key and the blake3 \
                 content hashes of the artifacts it read and wrote.",
                run.id, run.status, run.file
            ),
            "datePublished": iso_time(chrono::Utc::now().timestamp_millis()),
            "license": id(LICENSE),
            "conformsTo": PROFILES.iter().map(|p| id(p.0)).collect::<Vec<_>>(),
            "mainEntity": id(&self.workflow.name),
            "hasPart": ids(has_part),
            "mentions": ids(super::ro_crate_actions::action_ids(self.graph)),
        }));
        g.add(json!({
            "@id": crate_readme::NAME,
            "@type": "File",
            "name": "What this crate holds",
            "about": id("./"),
            "encodingFormat": "text/markdown",
        }));
        g.add(json!({
            "@id": METADATA,
            "@type": "CreativeWork",
            "about": id("./"),
            "conformsTo": [id("https://w3id.org/ro/crate/1.1"), id(PROFILES[3].0)],
        }));
        add_profiles(g);
    }

    fn add_workflow(&self, g: &mut Graph) {
        let tools = Tools::of(self.graph, &self.records.artifacts);
        let steps = stage_order(self.graph);
        let w = &self.workflow;
        let mut workflow = json!({
            "@id": w.name,
            "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
            "name": self.graph.run.pipeline,
            "description": format!("The pipeline file {}, copied when the crate was written.", w.source.display()),
            "programmingLanguage": id(LANGUAGE),
            "conformsTo": id(BIOSCHEMAS_WORKFLOW),
            "encodingFormat": "application/yaml",
            "contentSize": w.bytes.len().to_string(),
            "identifier": format!("blake3:{}", hash_bytes(&w.bytes)),
            "hasPart": ids(tools.ids()),
            "step": ids(steps.iter().map(|s| step_id(s))),
        });
        if let Some(ms) = w.modified {
            workflow["dateModified"] = json!(iso_time(ms));
        }
        g.add(workflow);
        add_engine(g);
        tools.add_to(g);
        for (position, stage) in steps.iter().enumerate() {
            let e = self
                .graph
                .executions
                .iter()
                .find(|e| &e.record.stage == stage);
            let tool = e.map(tool_id).unwrap_or_default();
            g.add(json!({
                "@id": step_id(stage),
                "@type": "HowToStep",
                "name": stage,
                "position": position.to_string(),
                "workExample": id(&tool),
            }));
        }
    }
}

/// The profiles the crate conforms to, and its (unknown) license.
fn add_profiles(g: &mut Graph) {
    g.add(json!({
        "@id": BIOSCHEMAS_WORKFLOW,
        "@type": "CreativeWork",
        "name": "Bioschemas ComputationalWorkflow profile",
        "version": "1.0-RELEASE",
    }));
    for (uri, name, version) in PROFILES {
        g.add(json!({"@id": uri, "@type": "CreativeWork", "name": name, "version": version}));
    }
    g.add(json!({
        "@id": LICENSE,
        "@type": "CreativeWork",
        "name": "No license stated",
        "description": "histodiff does not know under which terms this run's pipeline and \
                        data may be shared: state a license before publishing this crate.",
    }));
}

/// The pipeline language and the engine that runs it.
fn add_engine(g: &mut Graph) {
    g.add(json!({
        "@id": LANGUAGE,
        "@type": "ComputerLanguage",
        "name": "histodiff pipeline",
        "alternateName": "histodiff YAML",
        "description": "A YAML file of stages, each a stage kind with parameters and inputs; see docs/cli.md of histodiff.",
        "version": "1",
    }));
    g.add(json!({
        "@id": ENGINE,
        "@type": "SoftwareApplication",
        "name": "histodiff",
        "softwareVersion": env!("CARGO_PKG_VERSION"),
        "description": env!("CARGO_PKG_DESCRIPTION"),
    }));
}

impl WorkflowFile {
    /// The run's pipeline file: `runs.file` as recorded (absolute since the scheduler
    /// records the resolved path), or, for a relative one, against the current directory
    /// and the store's parent directory. Gone: a clear error, nothing written.
    fn find(store: &dyn Store, run: &RunRecord) -> Result<Self, CliError> {
        let recorded = Path::new(&run.file);
        let mut candidates = vec![recorded.to_path_buf()];
        if recorded.is_relative() {
            if let Some(base) = store.layout().root.parent() {
                candidates.push(base.join(recorded));
            }
        }
        let source = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            anyhow::anyhow!(
                "run {} read its pipeline from {}, which is gone; the crate's main entity is \
                 that file (histodiff keeps its parameters, not its text): restore it and export again",
                run.id,
                run.file
            )
        });
        let source = source.code(BAD_INPUT)?.clone();
        let bytes = std::fs::read(&source)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", source.display()))
            .code(BAD_INPUT)?;
        let modified = std::fs::metadata(&source)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        if modified.is_some_and(|m| m > run.started) {
            eprintln!(
                "warning: {} was modified after run {} started; the crate holds it as it is now",
                source.display(),
                run.id
            );
        }
        let name = crate_name(&source);
        Ok(WorkflowFile {
            source,
            name,
            bytes,
            modified,
        })
    }
}

/// The pipeline's file name, unless it would collide with what else the crate holds.
fn crate_name(source: &Path) -> String {
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline.yaml".to_string());
    if [METADATA, crate_readme::NAME, "artifacts"].contains(&name.as_str()) || name.starts_with('#')
    {
        format!("pipeline-{name}")
    } else {
        name
    }
}

/// The file name a `command` stage gave an output (its `outs:`), if `hash` is one.
fn out_file_name<'a>(graph: &'a RunGraph, hash: &ArtifactHash) -> Option<&'a str> {
    let (e, name) = graph.producer(hash)?;
    let command = e.fingerprint.as_ref()?.command.as_ref()?;
    command.outs.get(name).map(String::as_str)
}

/// Stage ids in the order their first execution appears.
fn stage_order(graph: &RunGraph) -> Vec<String> {
    let mut seen = BTreeSet::new();
    graph
        .executions
        .iter()
        .filter(|e| seen.insert(e.record.stage.clone()))
        .map(|e| e.record.stage.clone())
        .collect()
}

/// The entities of a JSON-LD `@graph`, each `@id` once (the first wins).
#[derive(Default)]
pub struct Graph {
    pub entities: Vec<Value>,
    seen: BTreeSet<String>,
}

impl Graph {
    pub fn add(&mut self, entity: Value) {
        let key = entity["@id"].as_str().unwrap_or_default().to_string();
        if self.seen.insert(key) {
            self.entities.push(entity);
        }
    }

    /// Sets `key` on the entity `target`, added earlier.
    pub fn patch(&mut self, target: &str, key: &str, value: Value) {
        if let Some(entity) = self.entities.iter_mut().find(|e| e["@id"] == target) {
            entity[key] = value;
        }
    }
}

/// `{"@id": …}`.
pub fn id(target: &str) -> Value {
    json!({ "@id": target })
}

/// References: one as a single value, several as a list (RO-Crate 1.1 prefers no
/// singleton lists), repeated ids once.
pub fn ids<S: AsRef<str>>(targets: impl IntoIterator<Item = S>) -> Value {
    let mut seen = BTreeSet::new();
    let mut list: Vec<Value> = targets
        .into_iter()
        .filter(|t| seen.insert(t.as_ref().to_string()))
        .map(|t| id(t.as_ref()))
        .collect();
    match list.len() {
        1 => list.remove(0),
        _ => Value::Array(list),
    }
}

/// Percent-encodes what may not appear in an IRI fragment (e.g. `[`, `]`, spaces).
pub fn fragment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn step_id(stage: &str) -> String {
    format!("#step/{}", fragment(stage))
}

/// A stage kind at one version is one tool; each `command` stage is a tool of its own,
/// since its inputs and outputs are declared by the stage.
pub fn tool_id(e: &ExecutionView) -> String {
    let r = &e.record;
    let base = format!("#tool/{}@{}", fragment(&r.kind), r.kind_version);
    if r.kind == COMMAND_KIND {
        format!("{base}/{}", fragment(&r.stage))
    } else {
        base
    }
}

/// A tool's formal parameter: `role` is `input`, `output`, `param` or `external`.
pub fn formal_id(e: &ExecutionView, role: &str, name: &str) -> String {
    format!("{}/{role}/{}", tool_id(e), fragment(name))
}

/// The tools of a run and the formal parameters seen in its executions.
#[derive(Default)]
struct Tools {
    tools: BTreeMap<String, Tool>,
}

#[derive(Default)]
struct Tool {
    name: String,
    version: u32,
    doc: Option<String>,
    /// Formal parameter id → (name, additionalType, is output).
    formals: BTreeMap<String, (String, String, bool)>,
}

impl Tools {
    fn of(graph: &RunGraph, artifacts: &BTreeMap<ArtifactHash, ArtifactRecord>) -> Self {
        let registry = crate::registry::registry();
        let mut tools = Tools::default();
        for e in &graph.executions {
            let r = &e.record;
            let tool = tools.tools.entry(tool_id(e)).or_default();
            tool.name = if r.kind == COMMAND_KIND {
                format!("command (stage {})", r.stage)
            } else {
                r.kind.clone()
            };
            tool.version = r.kind_version;
            tool.doc = registry
                .get(&r.kind)
                .filter(|k| k.version == r.kind_version)
                .map(|k| k.doc.clone());
            tool.collect(artifacts, e);
        }
        tools
    }

    fn ids(&self) -> impl Iterator<Item = &String> {
        self.tools.keys()
    }

    fn add_to(&self, g: &mut Graph) {
        for (tool_id, tool) in &self.tools {
            let (outputs, inputs): (Vec<_>, Vec<_>) =
                tool.formals.iter().partition(|(_, (_, _, out))| *out);
            let mut entity = json!({
                "@id": tool_id,
                "@type": "SoftwareApplication",
                "name": tool.name,
                "softwareVersion": tool.version.to_string(),
                "input": ids(inputs.iter().map(|(id, _)| id.as_str())),
                "output": ids(outputs.iter().map(|(id, _)| id.as_str())),
            });
            if let Some(doc) = &tool.doc {
                entity["description"] = json!(doc);
            }
            super::ro_crate_actions::drop_empty(&mut entity);
            g.add(entity);
            for (formal, (name, additional_type, _)) in &tool.formals {
                g.add(json!({
                    "@id": formal,
                    "@type": "FormalParameter",
                    "name": name,
                    "additionalType": additional_type,
                }));
            }
        }
    }
}

impl Tool {
    /// Adds the formal parameters one execution shows: its input slots, outputs,
    /// parameters (a command's `run` line is one) and external data.
    fn collect(&mut self, artifacts: &BTreeMap<ArtifactHash, ArtifactRecord>, e: &ExecutionView) {
        let kind_of = |hash: &ArtifactHash| match artifacts.get(hash).map(|a| a.kind) {
            Some(ArtifactKind::Dir) => "Dataset",
            _ => "File",
        };
        for input in &e.inputs {
            let entry = (
                input.slot.clone(),
                kind_of(&input.artifact).to_string(),
                false,
            );
            self.formals
                .entry(formal_id(e, "input", &input.slot))
                .or_insert(entry);
        }
        for (name, hash) in &e.outputs {
            let entry = (name.clone(), kind_of(hash).to_string(), true);
            self.formals
                .entry(formal_id(e, "output", name))
                .or_insert(entry);
        }
        for (name, value) in super::ro_crate_actions::param_values(e) {
            let entry = (name.clone(), value_type(&value).to_string(), false);
            self.formals
                .entry(formal_id(e, "param", &name))
                .or_insert(entry);
        }
        for name in e.externals.keys() {
            let entry = (name.clone(), "File".to_string(), false);
            self.formals
                .entry(formal_id(e, "external", name))
                .or_insert(entry);
        }
    }
}

/// The `additionalType` of a parameter's formal parameter, from its value.
fn value_type(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "Integer",
        Value::Number(_) => "Float",
        Value::String(_) => "Text",
        _ => "PropertyValue",
    }
}
