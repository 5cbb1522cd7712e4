//! Pipeline files → validated [`Plan`].
//!
//! Three layers, as ripgrep separates low-level from high-level arguments:
//! [`yaml`] reads text into a span-carrying tree under input budgets; [`raw`] reads that
//! tree into pipeline-shaped structs, checking structure; the resolvers ([`stages`],
//! [`dag`], [`expand`]) check kinds, schemas and references against the [`Registry`] and
//! expand matrices into instances. Every problem is collected with its file, line, column,
//! stage and key, and reported together in [`SpecErrors`]. Command-line `--set` overrides
//! (`overrides`) edit the tree between the first two layers, so they act exactly as the
//! same values written in the file.

mod command;
mod dag;
mod error;
mod expand;
pub mod fanout;
pub mod interp;
pub mod matrix;
mod overrides;
mod raw;
pub mod resources;
mod schema;
mod settings;
mod stages;
mod suggest;
mod wiring;
pub mod yaml;

pub use error::{SpecError, SpecErrors};
pub use settings::SettingsOverrides;
pub use yaml::{Pos, MAX_FILE_BYTES};

use crate::plan::{Plan, Settings};
use crate::registry::Registry;
use error::{Ctx, Diagnostics};
use petgraph::graph::DiGraph;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Reads, validates and expands the pipeline file at `path`.
pub fn load(
    path: &Path,
    registry: &Registry,
    overrides: &SettingsOverrides,
) -> Result<Plan, SpecErrors> {
    load_with(path, registry, overrides, &mut |_, _| {})
}

/// Called with the resolved settings and the pipeline's directory once they are known
/// and nothing before them was wrong, before the stages are expanded (which is most of
/// the work for a large sweep). The plan may still turn out invalid afterwards.
pub type SettingsKnown<'a> = dyn FnMut(&Settings, &Path) + 'a;

/// [`load`], telling `settings_known` the settings before the stages are expanded.
pub fn load_with(
    path: &Path,
    registry: &Registry,
    overrides: &SettingsOverrides,
    settings_known: &mut SettingsKnown<'_>,
) -> Result<Plan, SpecErrors> {
    let mut diag = Diagnostics::new(path.to_path_buf());
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_FILE_BYTES as u64 => {
            diag.report(Pos::default(), Ctx::default(), format!("file is {} bytes, more than the {MAX_FILE_BYTES} byte limit for pipeline files", m.len()));
            return Err(diag.into_errors());
        }
        Ok(_) => {}
        Err(e) => {
            diag.report(
                Pos::default(),
                Ctx::default(),
                format!("cannot read the pipeline file: {e}"),
            );
            return Err(diag.into_errors());
        }
    }
    match std::fs::read(path).map(String::from_utf8) {
        Ok(Ok(text)) => load_str_with(&text, path, registry, overrides, settings_known),
        Ok(Err(_)) => {
            diag.report(
                Pos::default(),
                Ctx::default(),
                "the pipeline file is not UTF-8 text",
            );
            Err(diag.into_errors())
        }
        Err(e) => {
            diag.report(
                Pos::default(),
                Ctx::default(),
                format!("cannot read the pipeline file: {e}"),
            );
            Err(diag.into_errors())
        }
    }
}

/// Validates pipeline `text` as if read from `path` (relative paths in it are resolved
/// against `path`'s directory; errors name `path`). `overrides.set` edits the parsed
/// document first, so everything below sees the overridden values.
pub fn load_str(
    text: &str,
    path: &Path,
    registry: &Registry,
    overrides: &SettingsOverrides,
) -> Result<Plan, SpecErrors> {
    load_str_with(text, path, registry, overrides, &mut |_, _| {})
}

fn load_str_with(
    text: &str,
    path: &Path,
    registry: &Registry,
    overrides: &SettingsOverrides,
    settings_known: &mut SettingsKnown<'_>,
) -> Result<Plan, SpecErrors> {
    let mut diag = Diagnostics::new(path.to_path_buf()).with_sets(&overrides.set);
    // Malformed `--set`s are reported even when the file does not parse.
    let sets = overrides::parse_all(&overrides.set, &mut diag);
    let mut root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            diag.report(e.pos, Ctx::default(), e.message);
            return Err(diag.into_errors());
        }
    };
    overrides::apply(&mut root, &sets, &mut diag);
    let raw = raw::read(&root, &mut diag);
    let base_dir = base_dir(path);
    let context = Resolve {
        path,
        base_dir: &base_dir,
        registry,
        overrides,
    };
    let plan = resolve(raw, &context, settings_known, &mut diag);
    match plan {
        Some(plan) if diag.is_empty() => Ok(plan),
        _ => Err(diag.into_errors()),
    }
}

/// The absolute directory of the pipeline file.
fn base_dir(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_default();
    let parent = path.parent().unwrap_or(Path::new(""));
    schema::absolute(&cwd, parent)
}

/// What resolving a parsed pipeline reads besides the pipeline.
struct Resolve<'a> {
    path: &'a Path,
    base_dir: &'a Path,
    registry: &'a Registry,
    overrides: &'a SettingsOverrides,
}

fn resolve(
    raw: raw::RawPipeline,
    context: &Resolve<'_>,
    settings_known: &mut SettingsKnown<'_>,
    diag: &mut Diagnostics,
) -> Option<Plan> {
    let Resolve {
        path,
        base_dir,
        registry,
        overrides,
    } = *context;
    let scope = interp::Scope {
        params: &raw.params,
        matrix: None,
        command: None,
    };
    let settings_node = raw
        .settings
        .as_ref()
        .map(|n| interp::node(n, &scope, Ctx::top("settings"), diag));
    let settings = settings::resolve(settings_node.as_ref(), base_dir, overrides, diag);
    if diag.is_empty() {
        settings_known(&settings, base_dir);
    }
    let ids: Vec<String> = raw.stages.iter().map(|s| s.id.clone()).collect();
    let by_id: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let infos = stages::infos(&raw, registry, diag);
    let edges = stages::check_inputs(&raw, &infos, &by_id, diag);
    let order = dag::order(&ids, &edges, diag)?;
    let expander = expand::Expander {
        raw: &raw,
        infos: &infos,
        by_id: &by_id,
        base_dir,
    };
    let instances = expander.expand(&order, diag)?;
    let mut plan = Plan {
        name: raw.name.clone().unwrap_or_else(|| default_name(path)),
        pipeline_file: schema::absolute(&std::env::current_dir().unwrap_or_default(), path),
        base_dir: base_dir.to_path_buf(),
        settings,
        instances,
        graph: DiGraph::new(),
    };
    build_graph(&mut plan);
    Some(plan)
}

/// A pipeline without `name:` is named after its file.
fn default_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".to_string())
}

fn build_graph(plan: &mut Plan) {
    let n = plan.instances.len();
    let mut graph = DiGraph::with_capacity(n, n);
    // Node i is instance i: `Plan::node` relies on adding them in order.
    for i in 0..n {
        graph.add_node(i);
    }
    for i in 0..n {
        for u in plan.upstreams(i) {
            graph.add_edge(plan.node(u), plan.node(i), ());
        }
    }
    plan.graph = graph;
}
