//! Dependency bookkeeping of one run: which instances are ready, which keys are in
//! flight (and which instances wait on each), and what was skipped.

use super::keys::{fingerprint, key, ExternalHashes, Outputs};
use super::observer::{InstanceOutcome, Observer, RunEvent};
use crate::fingerprint::Fingerprint;
use crate::hash::StageKey;
use crate::plan::Plan;
use petgraph::Direction;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Waiting for upstreams, ready, or running.
    Open,
    Resolved,
    /// Failed or skipped: its dependents never run in this run.
    Closed,
}

/// Edges come from the plan's instance graph (`Plan::graph`, node `i` = instance `i`): the
/// state keeps only counters and statuses, so a 300,000-instance sweep holds no second copy
/// of its adjacency.
pub struct RunState {
    outputs: Vec<Option<Arc<Outputs>>>,
    /// Upstreams of each instance not yet resolved.
    missing: Vec<usize>,
    status: Vec<Status>,
    ready: Vec<usize>,
    in_flight: HashMap<StageKey, Vec<usize>>,
}

impl RunState {
    pub fn new(plan: &Plan) -> Self {
        let n = plan.instances.len();
        let missing: Vec<usize> = plan
            .graph
            .node_indices()
            .map(|node| {
                plan.graph
                    .neighbors_directed(node, Direction::Incoming)
                    .count()
            })
            .collect();
        let ready = (0..n).filter(|&i| missing[i] == 0).collect();
        RunState {
            outputs: vec![None; n],
            missing,
            status: vec![Status::Open; n],
            ready,
            in_flight: HashMap::new(),
        }
    }

    pub fn take_ready(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.ready)
    }

    /// Stage keys of ready instances (all their upstreams are resolved).
    pub fn key_all(
        &self,
        plan: &Plan,
        ready: &[usize],
        externals: &ExternalHashes,
    ) -> Vec<(usize, StageKey)> {
        ready
            .iter()
            .filter_map(|&i| {
                let key = key(plan, i, &self.outputs, externals);
                if key.is_none() {
                    let name = &plan.instances[i].name;
                    tracing::error!("{name}: ready but an input hash is unknown");
                }
                key.map(|key| (i, key))
            })
            .collect()
    }

    /// The fingerprint of a ready instance (kept with its execution), as
    /// [`RunState::key_all`] keyed it.
    pub fn fingerprint(
        &self,
        plan: &Plan,
        i: usize,
        externals: &ExternalHashes,
    ) -> Option<Fingerprint> {
        fingerprint(plan, i, &self.outputs, externals)
    }

    /// True if `key` already runs for another instance (then `i` waits on it).
    pub fn join_in_flight(&mut self, i: usize, key: &StageKey) -> bool {
        match self.in_flight.get_mut(key) {
            Some(waiters) => {
                waiters.push(i);
                true
            }
            None => {
                self.in_flight.insert(key.clone(), vec![i]);
                false
            }
        }
    }

    /// The instances that waited on `key`, which is no longer in flight.
    pub fn abandon_key(&mut self, key: &StageKey) -> Vec<usize> {
        self.in_flight.remove(key).unwrap_or_default()
    }

    /// Records `i`'s outputs; dependents whose upstreams are all known become ready.
    pub fn resolve(&mut self, plan: &Plan, i: usize, outputs: Arc<Outputs>) {
        self.outputs[i] = Some(outputs);
        self.status[i] = Status::Resolved;
        for d in plan.dependents(i) {
            self.missing[d] -= 1;
            if self.missing[d] == 0 && self.status[d] == Status::Open {
                self.ready.push(d);
            }
        }
    }

    /// Closes `i` and every open instance downstream of it; returns how many were skipped.
    /// Its descendants in the plan's graph: an open one cannot have started, since `i` was
    /// one of its ancestors and never resolved.
    pub fn skip_dependents(
        &mut self,
        plan: &Plan,
        i: usize,
        failed: &str,
        observer: &dyn Observer,
    ) -> usize {
        self.status[i] = Status::Closed;
        let mut skipped = 0;
        for d in plan.descendants(i) {
            if self.status[d] != Status::Open {
                continue;
            }
            self.status[d] = Status::Closed;
            skipped += 1;
            observer.on(RunEvent::Finished {
                instance: plan.instances[d].name.clone(),
                outcome: InstanceOutcome::Skipped(format!("upstream {failed} failed")),
            });
        }
        skipped
    }

    /// Closes whatever is still open at the end of the run (after an interrupt, or
    /// downstream of an interrupted stage); returns how many.
    pub fn skip_unfinished(
        &mut self,
        plan: &Plan,
        observer: &dyn Observer,
        interrupted: bool,
    ) -> usize {
        let mut skipped = 0;
        for i in 0..self.status.len() {
            if self.status[i] == Status::Open {
                self.status[i] = Status::Closed;
                skipped += 1;
                let why = if interrupted {
                    "the run was interrupted"
                } else {
                    "an upstream did not finish"
                };
                observer.on(RunEvent::Finished {
                    instance: plan.instances[i].name.clone(),
                    outcome: InstanceOutcome::Skipped(why.into()),
                });
            }
        }
        skipped
    }
}
