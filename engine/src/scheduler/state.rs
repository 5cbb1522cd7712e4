//! Dependency bookkeeping of one run: which instances are ready, which keys are in
//! flight (and which instances wait on each), and what was skipped.

use super::keys::{fingerprint, ExternalHashes, Outputs};
use super::observer::{InstanceOutcome, Observer, RunEvent};
use crate::fingerprint::Fingerprint;
use crate::hash::StageKey;
use crate::plan::Plan;
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

pub struct RunState {
    names: Vec<String>,
    outputs: Vec<Option<Arc<Outputs>>>,
    missing: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    status: Vec<Status>,
    ready: Vec<usize>,
    in_flight: HashMap<StageKey, Vec<usize>>,
}

impl RunState {
    pub fn new(plan: &Plan) -> Self {
        let n = plan.instances.len();
        let mut dependents = vec![Vec::new(); n];
        let mut ready = Vec::new();
        let missing: Vec<usize> = (0..n)
            .map(|i| {
                let ups = plan.upstreams(i);
                if ups.is_empty() {
                    ready.push(i);
                }
                for &u in &ups {
                    dependents[u].push(i);
                }
                ups.len()
            })
            .collect();
        RunState {
            names: plan.instances.iter().map(|i| i.name.clone()).collect(),
            outputs: vec![None; n],
            missing,
            dependents,
            status: vec![Status::Open; n],
            ready,
            in_flight: HashMap::new(),
        }
    }

    pub fn take_ready(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.ready)
    }

    /// Fingerprints of ready instances (all their upstreams are resolved).
    pub fn key_all(
        &self,
        plan: &Plan,
        ready: &[usize],
        externals: &ExternalHashes,
    ) -> Vec<(usize, Fingerprint)> {
        ready
            .iter()
            .filter_map(|&i| {
                let fp = fingerprint(plan, i, &self.outputs, externals);
                if fp.is_none() {
                    tracing::error!("{}: ready but an input hash is unknown", self.names[i]);
                }
                fp.map(|fp| (i, fp))
            })
            .collect()
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
    pub fn resolve(&mut self, i: usize, outputs: Arc<Outputs>) {
        self.outputs[i] = Some(outputs);
        self.status[i] = Status::Resolved;
        for k in 0..self.dependents[i].len() {
            let d = self.dependents[i][k];
            self.missing[d] -= 1;
            if self.missing[d] == 0 && self.status[d] == Status::Open {
                self.ready.push(d);
            }
        }
    }

    /// Closes `i` and every open instance downstream of it; returns how many were skipped.
    pub fn skip_dependents(&mut self, i: usize, failed: &str, observer: &dyn Observer) -> usize {
        self.status[i] = Status::Closed;
        let mut stack = self.dependents[i].clone();
        let mut skipped = 0;
        while let Some(d) = stack.pop() {
            if self.status[d] != Status::Open {
                continue;
            }
            self.status[d] = Status::Closed;
            skipped += 1;
            let why = format!("upstream {failed} failed");
            observer.on(RunEvent::Finished {
                instance: self.names[d].clone(),
                outcome: InstanceOutcome::Skipped(why),
            });
            stack.extend_from_slice(&self.dependents[d]);
        }
        skipped
    }

    /// Closes whatever is still open at the end of the run (after an interrupt, or
    /// downstream of an interrupted stage); returns how many.
    pub fn skip_unfinished(&mut self, observer: &dyn Observer, interrupted: bool) -> usize {
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
                    instance: self.names[i].clone(),
                    outcome: InstanceOutcome::Skipped(why.into()),
                });
            }
        }
        skipped
    }
}
