//! The actions of a Provenance Run Crate: the run (a `CreateAction` of the workflow,
//! orchestrated by an `OrganizeAction` of the engine), each execution (a `CreateAction`
//! of its tool, orchestrated by a `ControlAction` of its step), the agents that ran them,
//! their parameter values, and the artifacts they read (`object`) and wrote (`result`).
//!
//! Artifacts are named by content: `identifier` is `blake3:<64 hex digits>` (the store's
//! object name: blake3 of a file's bytes, or of a directory's canonical manifest; not a
//! sha256). A cache hit's `result` is what it reused; its description names the source.

use super::crate_files::Placement;
use super::iso_time;
use super::ro_crate::{formal_id, fragment, id, ids, step_id, tool_id, CratePlan, Graph, ENGINE};
use crate::commands::run_graph::{ExecutionView, RunGraph};
use histodiff_engine::fingerprint::canonical_json;
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::store::{ExecStatus, ExecutionRecord, RunRecord, RunStatus};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

fn run_action(run: &RunRecord) -> String {
    format!("#run-{}", run.id)
}

/// An execution's action; a cache hit has no execution id of its own (it carries its
/// source's), so its action is named by its run and instance.
fn execution_action(r: &ExecutionRecord) -> String {
    match r.status {
        ExecStatus::Cached => format!("#run-{}-hit/{}", r.run_id, fragment(&r.instance)),
        _ => format!("#execution-{}", r.id),
    }
}

fn control_action(r: &ExecutionRecord) -> String {
    match r.status {
        ExecStatus::Cached => format!("#control-run-{}-hit/{}", r.run_id, fragment(&r.instance)),
        _ => format!("#control-{}", r.id),
    }
}

fn organize_action(run: &RunRecord) -> String {
    format!("#orchestration-run-{}", run.id)
}

/// Every action, for the root's `mentions`.
pub fn action_ids(graph: &RunGraph) -> Vec<String> {
    let mut all = vec![run_action(&graph.run), organize_action(&graph.run)];
    for e in &graph.executions {
        all.push(execution_action(&e.record));
        all.push(control_action(&e.record));
    }
    all
}

/// The crate id of an artifact: its copy's path, or a local `#artifact-<hash>`.
pub fn artifact_id(plan: &CratePlan, hash: &ArtifactHash) -> String {
    match plan.placements.get(hash) {
        Some(Placement::Copied { path, .. }) => path.clone(),
        _ => format!("#artifact-{hash}"),
    }
}

/// A parameter's values as the action records them: the fingerprint's parameters
/// (defaults filled in) and, for a `command` stage, its `run` line.
pub fn param_values(e: &ExecutionView) -> Vec<(String, Value)> {
    let mut values: Vec<(String, Value)> = e
        .params()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    if let Some(command) = e.fingerprint.as_ref().and_then(|f| f.command.as_ref()) {
        values.push(("run".to_string(), json!(command.run)));
    }
    values
}

pub fn add_actions(plan: &CratePlan, g: &mut Graph) {
    let graph = plan.graph;
    let mut formals_of: BTreeMap<ArtifactHash, BTreeSet<String>> = BTreeMap::new();
    for e in &graph.executions {
        add_execution(plan, e, g);
        for input in &e.inputs {
            let formal = formal_id(e, "input", &input.slot);
            formals_of
                .entry(input.artifact.clone())
                .or_default()
                .insert(formal);
        }
        for (name, hash) in &e.outputs {
            let formal = formal_id(e, "output", name);
            formals_of.entry(hash.clone()).or_default().insert(formal);
        }
    }
    add_run(plan, g);
    add_connections(graph, g);
    for (hash, record) in &plan.records.artifacts {
        let formals = formals_of.get(hash).into_iter().flatten();
        g.add(artifact_entity(
            plan,
            hash,
            record.kind,
            record.size,
            formals,
        ));
    }
}

fn add_run(plan: &CratePlan, g: &mut Graph) {
    let graph = plan.graph;
    let run = &graph.run;
    let agent = orchestrator(run);
    let (read, written) = run_boundary(graph);
    let mut action = json!({
        "@id": run_action(run),
        "@type": "CreateAction",
        "name": format!("Run {} of pipeline {}", run.id, run.pipeline),
        "description": format!(
            "histodiff run {} of {}: {} executions, {}.",
            run.id, run.file, graph.executions.len(), run.status
        ),
        "instrument": id(plan.workflow_id()),
        "agent": id(&agent.0),
        "startTime": iso_time(run.started),
        "actionStatus": run_status(run.status),
        "object": ids(read.iter().map(|h| artifact_id(plan, h))),
        "result": ids(written.iter().map(|h| artifact_id(plan, h))),
    });
    let mut organize = json!({
        "@id": organize_action(run),
        "@type": "OrganizeAction",
        "name": format!("Orchestration of run {} by histodiff", run.id),
        "instrument": id(ENGINE),
        "agent": id(&agent.0),
        "object": ids(graph.executions.iter().map(|e| control_action(&e.record))),
        "result": id(&run_action(run)),
        "startTime": iso_time(run.started),
        "actionStatus": run_status(run.status),
    });
    if let Some(finished) = run.finished {
        action["endTime"] = json!(iso_time(finished));
        organize["endTime"] = json!(iso_time(finished));
    }
    drop_empty(&mut action);
    g.add(action);
    g.add(organize);
    g.add(agent.1);
}

/// What the run read from outside (artifacts no execution of it wrote) and what it left
/// (artifacts it wrote that none of its successful executions read).
fn run_boundary(graph: &RunGraph) -> (BTreeSet<ArtifactHash>, BTreeSet<ArtifactHash>) {
    let mut read = BTreeSet::new();
    let mut written = BTreeSet::new();
    for e in &graph.executions {
        for input in &e.inputs {
            if graph.producer(&input.artifact).is_none() {
                read.insert(input.artifact.clone());
            }
        }
        for hash in e.outputs.values() {
            if !graph.is_consumed(hash) {
                written.insert(hash.clone());
            }
        }
    }
    (read, written)
}

fn add_execution(plan: &CratePlan, e: &ExecutionView, g: &mut Graph) {
    let r = &e.record;
    let action = execution_action(r);
    let agent = worker(e, &plan.graph.run);
    let mut object: Vec<String> = e
        .inputs
        .iter()
        .map(|i| artifact_id(plan, &i.artifact))
        .collect();
    object.extend(e.externals.values().map(|h| format!("#external-{h}")));
    let params = param_values(e);
    object.extend(
        params
            .iter()
            .map(|(name, _)| format!("{action}/param/{}", super::ro_crate::fragment(name))),
    );
    let mut entity = json!({
        "@id": action,
        "@type": "CreateAction",
        "name": match r.status {
            ExecStatus::Cached => format!("{} (cache hit of execution {})", r.instance, r.id),
            _ => format!("{} (execution {})", r.instance, r.id),
        },
        "description": describe(r),
        "instrument": id(&tool_id(e)),
        "agent": id(&agent.0),
        "identifier": id(&format!("#stage-key-{}", r.stage_key)),
        "actionStatus": exec_status(r.status),
        "object": ids(&object),
        "result": ids(e.outputs.values().map(|h| artifact_id(plan, h))),
    });
    if let Some(started) = r.started {
        entity["startTime"] = json!(iso_time(started));
    }
    if let Some(finished) = r.finished {
        entity["endTime"] = json!(iso_time(finished));
    }
    if let (Some(error), ExecStatus::Failed | ExecStatus::Interrupted) = (&r.error, r.status) {
        entity["error"] = json!(error);
    }
    drop_empty(&mut entity);
    g.add(entity);
    add_control(r, g);
    g.add(agent.1);
    add_params(e, &action, params, g);
    add_externals(e, g);
}

/// The execution's `ControlAction` (its step orchestrating it) and its stage key.
fn add_control(r: &ExecutionRecord, g: &mut Graph) {
    g.add(json!({
        "@id": control_action(r),
        "@type": "ControlAction",
        "name": format!("orchestrate {}", r.instance),
        "instrument": id(&step_id(&r.stage)),
        "object": id(&execution_action(r)),
        "actionStatus": exec_status(r.status),
    }));
    g.add(json!({
        "@id": format!("#stage-key-{}", r.stage_key),
        "@type": "PropertyValue",
        "propertyID": "histodiff stage key",
        "name": "stage key",
        "description": "blake3 of the canonical fingerprint JSON (kind, version, parameters, \
                        input hashes, external data hashes, salt): the cache key",
        "value": r.stage_key.0,
    }));
}

fn describe(r: &ExecutionRecord) -> String {
    let place = r
        .host
        .as_deref()
        .map(|h| format!(" on {h}"))
        .unwrap_or_default();
    let device = r
        .device
        .as_deref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    match (r.status, r.cached_from) {
        (ExecStatus::Cached, Some(source)) => format!(
            "Cache hit: {} was not executed; its stage key was cached, so the outputs of execution {source} were reused.",
            r.instance
        ),
        _ => format!(
            "{} v{}, attempt {}, {}{place}{device}.",
            r.kind, r.kind_version, r.attempt, r.status
        ),
    }
}

fn add_params(e: &ExecutionView, action: &str, params: Vec<(String, Value)>, g: &mut Graph) {
    for (name, value) in params {
        let value = match value {
            Value::Bool(_) | Value::Number(_) | Value::String(_) => value,
            other => json!(canonical_json(&other)),
        };
        g.add(json!({
            "@id": format!("{action}/param/{}", super::ro_crate::fragment(&name)),
            "@type": "PropertyValue",
            "name": name,
            "value": value,
            "exampleOfWork": id(&formal_id(e, "param", &name)),
        }));
    }
}

/// External data (a path parameter, a command's `deps`): named and hashed, never copied.
fn add_externals(e: &ExecutionView, g: &mut Graph) {
    for (name, hash) in &e.externals {
        g.add(json!({
            "@id": format!("#external-{hash}"),
            "@type": "CreativeWork",
            "name": name,
            "identifier": format!("blake3:{hash}"),
            "description": "External data the stage read from outside the store (a path parameter or a command's deps); described by its blake3 content hash, not copied.",
            "exampleOfWork": id(&formal_id(e, "external", name)),
        }));
    }
}

fn artifact_entity<'a>(
    plan: &CratePlan,
    hash: &ArtifactHash,
    kind: ArtifactKind,
    size: u64,
    formals: impl Iterator<Item = &'a String>,
) -> Value {
    let name = match plan.graph.producer(hash) {
        Some((e, output)) => format!("{}.{output}", e.record.instance),
        None => format!("artifact {} (written before this run)", hash.short()),
    };
    let mut entity = json!({
        "@id": artifact_id(plan, hash),
        "@type": if kind == ArtifactKind::Dir { "Dataset" } else { "File" },
        "name": name,
        "identifier": format!("blake3:{hash}"),
        "contentSize": size.to_string(),
        "exampleOfWork": ids(formals),
    });
    match plan.placements.get(hash) {
        Some(Placement::Copied { media_type, .. }) => {
            entity["encodingFormat"] = json!(media_type);
        }
        Some(Placement::Referenced { why }) => {
            entity["description"] = json!(format!(
                "{why}; in the store as object {hash} (`histodiff export {hash} DEST`)"
            ));
        }
        None => {}
    }
    entity
}

/// Removes properties whose value is an empty list (an action that read or wrote nothing
/// says nothing rather than `[]`).
pub fn drop_empty(entity: &mut Value) {
    if let Value::Object(map) = entity {
        map.retain(|_, v| v.as_array().is_none_or(|list| !list.is_empty()));
    }
}

/// An agent: its id and its entity.
struct Agent(String, Value);

/// The orchestrator process of the run.
fn orchestrator(run: &RunRecord) -> Agent {
    process_agent(&run.host, run.pid, "histodiff orchestrator")
}

/// Who executed: the Slurm job, or the worker (or command) process; a cache hit, or an
/// execution that never started, is the orchestrator's doing.
fn worker(e: &ExecutionView, run: &RunRecord) -> Agent {
    let r = &e.record;
    let host = r.host.as_deref().unwrap_or(&run.host);
    match (&r.slurm_job_id, r.worker_pid) {
        (Some(job), _) => Agent(
            format!("#slurm-job-{}", super::ro_crate::fragment(job)),
            json!({
                "@id": format!("#slurm-job-{}", super::ro_crate::fragment(job)),
                "@type": "SoftwareAgent",
                "name": format!("Slurm job {job} on {host}"),
            }),
        ),
        (None, Some(pid)) if r.status != ExecStatus::Cached => {
            process_agent(host, pid, "stage process")
        }
        _ => orchestrator(run),
    }
}

/// A process on a host, as a PROV `SoftwareAgent` (the profile suggests a Person or an
/// Organization; histodiff records processes, not people).
fn process_agent(host: &str, pid: i64, role: &str) -> Agent {
    let agent_id = format!("#process-{}-{pid}", super::ro_crate::fragment(host));
    Agent(
        agent_id.clone(),
        json!({
            "@id": agent_id,
            "@type": "SoftwareAgent",
            "name": format!("{role}, process {pid} on {host}"),
        }),
    )
}

/// An action status is the schema.org IRI as a string, as the Workflow Run Crate
/// examples and the profile's checks have it.
fn run_status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Succeeded => "http://schema.org/CompletedActionStatus",
        RunStatus::Running => "http://schema.org/ActiveActionStatus",
        RunStatus::Failed | RunStatus::Interrupted => "http://schema.org/FailedActionStatus",
    }
}

fn exec_status(status: ExecStatus) -> &'static str {
    match status {
        ExecStatus::Succeeded | ExecStatus::Cached => "http://schema.org/CompletedActionStatus",
        ExecStatus::Pending => "http://schema.org/PotentialActionStatus",
        ExecStatus::Running => "http://schema.org/ActiveActionStatus",
        ExecStatus::Failed | ExecStatus::Interrupted => "http://schema.org/FailedActionStatus",
    }
}

/// `ParameterConnection`s: an output of one execution of the run that another read,
/// from the producer tool's output to the reader tool's input, on the reader's step.
fn add_connections(graph: &RunGraph, g: &mut Graph) {
    let mut by_step: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for e in &graph.executions {
        for input in &e.inputs {
            if let Some((producer, output)) = graph.producer(&input.artifact) {
                let link = (
                    formal_id(producer, "output", output),
                    formal_id(e, "input", &input.slot),
                );
                by_step
                    .entry(step_id(&e.record.stage))
                    .or_default()
                    .insert(link);
            }
        }
    }
    for (step, links) in by_step {
        let mut connection_ids = Vec::new();
        for (source, target) in links {
            let connection = format!("{step}/connection/{}", connection_ids.len());
            g.add(json!({
                "@id": connection,
                "@type": "ParameterConnection",
                "sourceParameter": id(&source),
                "targetParameter": id(&target),
            }));
            connection_ids.push(connection);
        }
        g.patch(&step, "connection", ids(&connection_ids));
    }
}
