//! `histodiff plan PIPELINE`: what `run` would execute, and why.

use super::{load_plan, open_plan_store, registry};
use crate::exit::{CliError, Coded, OK, STORE};
use histodiff_engine::scheduler::preview::{preview, Reason, Verdict};
use histodiff_engine::spec::SettingsOverrides;
use std::fmt::Write;
use std::path::Path;

/// `overrides`: the settings flags and `--set`s of the command line.
pub async fn plan(
    pipeline: &Path,
    all: bool,
    overrides: SettingsOverrides,
) -> Result<i32, CliError> {
    let plan = load_plan(pipeline, &registry(), &overrides)?;
    let store = open_plan_store(&plan).await?;
    let verdicts = preview(&plan, &store).await.code(STORE)?;
    let mut out = String::new();
    let (mut cached, mut run) = (0, 0);
    for (inst, verdict) in plan.instances.iter().zip(&verdicts) {
        match verdict {
            Verdict::Cached(key) => {
                cached += 1;
                if all {
                    let _ = writeln!(out, "cached  {}  [{}]", inst.name, key.short());
                }
            }
            Verdict::Run(reason) => {
                run += 1;
                let _ = writeln!(out, "run     {}  ({})", inst.name, describe(reason));
            }
        }
    }
    let _ = writeln!(out, "{run} to run, {cached} cached");
    crate::exit::print_out(&out);
    // The process exits next; freeing a 30,000-instance plan piece by piece would only
    // add to the time the user waits.
    std::mem::forget(verdicts);
    std::mem::forget(plan);
    Ok(OK)
}

fn describe(reason: &Reason) -> String {
    match reason {
        Reason::New => "new".into(),
        Reason::Changed(changes) if changes.is_empty() => "changed".into(),
        Reason::Changed(changes) => {
            let parts: Vec<String> = changes.iter().map(ToString::to_string).collect();
            format!("changed {}", parts.join("; "))
        }
        Reason::LastAttempt(status) => format!("last attempt {status}"),
        Reason::NotCached => "result no longer cached".into(),
        Reason::Upstream(ups) => format!("upstream will run: {}", name_some(ups)),
        Reason::External(e) => e.clone(),
    }
}

/// How many upstream names a plan line shows; a gather over a 10,000-member sweep would
/// otherwise print one line of 10,000 names.
const SHOWN_UPSTREAMS: usize = 3;

fn name_some(names: &[String]) -> String {
    if names.len() <= SHOWN_UPSTREAMS + 1 {
        return names.join(", ");
    }
    let more = names.len() - SHOWN_UPSTREAMS;
    format!("{} and {more} more", names[..SHOWN_UPSTREAMS].join(", "))
}

#[cfg(test)]
mod tests {
    use super::name_some;

    #[test]
    fn long_upstream_lists_are_cut() {
        let names: Vec<String> = (0..10).map(|i| format!("e[i={i}]")).collect();
        assert_eq!(name_some(&names[..4]), "e[i=0], e[i=1], e[i=2], e[i=3]");
        assert_eq!(name_some(&names), "e[i=0], e[i=1], e[i=2] and 7 more");
    }
}
