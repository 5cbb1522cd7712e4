//! What `histodiff run` would do, without running anything (`histodiff plan`): each
//! instance is cached or will run, and why — new, which fingerprint fields changed since
//! its last execution, its last execution failed, or an upstream will run (its key is
//! unknown until that upstream's outputs exist).

use super::keys::hash_externals;
use super::record::shared_hits;
use super::state::RunState;
use crate::fingerprint::{FieldChange, Fingerprint};
use crate::hash::StageKey;
use crate::plan::Plan;
use crate::store::{ExecStatus, ExecutionRecord, Store, StoreError};
use std::sync::Arc;

/// Why an instance will run.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// Never executed.
    New,
    /// Fields of the fingerprint that differ from its last execution.
    Changed(Vec<FieldChange>),
    /// Same key as the last execution, which did not succeed (failed or interrupted).
    LastAttempt(ExecStatus),
    /// Same key as an earlier success whose cache entry is gone (e.g. another instance).
    NotCached,
    /// These upstream instances will run first.
    Upstream(Vec<String>),
    /// External data could not be hashed.
    External(String),
}

/// The verdict for one instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Cached(StageKey),
    Run(Reason),
}

/// One verdict per instance, in plan order.
pub async fn preview(plan: &Plan, store: &Arc<dyn Store>) -> Result<Vec<Verdict>, StoreError> {
    let n = plan.instances.len();
    let mut verdicts: Vec<Option<Verdict>> = vec![None; n];
    let externals = match hash_externals(store, plan).await {
        Ok((x, _)) => x,
        Err((path, e)) => {
            let reason = Reason::External(format!("cannot hash {}: {e}", path.display()));
            return Ok(vec![Verdict::Run(reason); n]);
        }
    };
    // Layer by layer, with the bookkeeping `run` uses: an instance is keyed once all its
    // upstreams are cached.
    let mut state = RunState::new(plan);
    loop {
        let ready = state.take_ready();
        if ready.is_empty() {
            break;
        }
        let (wave, keys): (Vec<usize>, Vec<StageKey>) =
            state.key_all(plan, &ready, &externals).into_iter().unzip();
        tracing::debug!("keyed {} instances", keys.len());
        let hits = shared_hits(store.cached_many(&keys).await?);
        tracing::debug!("{} of them cached", hits.len());
        let mut misses = Vec::new();
        for (i, key) in wave.into_iter().zip(keys) {
            let Some((_, outputs)) = hits.get(&key) else {
                if let Some(fp) = state.fingerprint(plan, i, &externals) {
                    misses.push((i, key, fp));
                }
                continue;
            };
            state.resolve(plan, i, outputs.clone());
            verdicts[i] = Some(Verdict::Cached(key));
        }
        // Why each miss runs, from its instance's last execution (one batch per layer).
        let names: Vec<String> = misses
            .iter()
            .map(|(i, _, _)| plan.instances[*i].name.clone())
            .collect();
        let last = store.last_executions_of(&names).await?;
        for ((i, key, fp), name) in misses.into_iter().zip(names) {
            verdicts[i] = Some(Verdict::Run(reason(last.get(&name), &key, &fp)));
        }
    }
    Ok((0..n)
        .map(|i| {
            verdicts[i].clone().unwrap_or_else(|| {
                let ups = plan
                    .upstreams(i)
                    .into_iter()
                    .filter(|&u| !matches!(verdicts[u], Some(Verdict::Cached(_))));
                Verdict::Run(Reason::Upstream(
                    ups.map(|u| plan.instances[u].name.clone()).collect(),
                ))
            })
        })
        .collect())
}

/// Compares with the instance's last execution, if it has one.
fn reason(last: Option<&ExecutionRecord>, key: &StageKey, fp: &Fingerprint) -> Reason {
    let Some(last) = last else {
        return Reason::New;
    };
    if &last.stage_key == key {
        return match last.status {
            ExecStatus::Succeeded | ExecStatus::Cached => Reason::NotCached,
            other => Reason::LastAttempt(other),
        };
    }
    let old = last
        .fingerprint
        .as_deref()
        .and_then(|json| Fingerprint::from_json(json).ok());
    match old {
        Some(old) => Reason::Changed(Fingerprint::diff(&old, fp)),
        None => Reason::New,
    }
}
