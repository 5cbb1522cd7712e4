//! `report PIPELINE|RUN --html FILE`: one self-contained HTML file about a run — header,
//! Table 1 with lineage links, the report stage's figures, every training curve, the
//! timeline, the DAG, and per instance its executions, parameters, key and why it ran.
//! `run` writes the same page under the store after every run ([`after_run`]), and the
//! dashboard serves it ([`render_html`]).
//!
//! A target that parses as an integer is a run id, in the store of `--store` (default
//! `.histodiff`); otherwise it must be a pipeline file, whose newest run is reported, from
//! the file's store (`settings.store`, or `--store`). Neither command creates a store.

mod curves;
mod dag;
mod html;
mod instances;
mod model;
mod overview;
mod params;
mod report_dir;
mod summary;
mod table1;
mod timeline;
mod why;

use super::{load_plan, open_plan_store, registry, Global};
use crate::cli::SetArgs;
use crate::exit::{CliError, Coded, BAD_INPUT, OK, STORE};
use histodiff_engine::plan::Plan;
use histodiff_engine::spec::SettingsOverrides;
use histodiff_engine::store::{postgres::is_postgres_url, RunId, Store, DATABASE_FILE};
use model::{PlanSource, RunData};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A rendered report and the short text `run` prints about it.
struct Rendered {
    page: String,
    summary: String,
}

pub async fn report(global: &Global, target: &str, html: &Path) -> Result<i32, CliError> {
    let (store, run, plan) = resolve(global, target).await?;
    let rendered = render(&*store, run, plan).await?;
    write_atomically(html, &rendered.page).code(BAD_INPUT)?;
    eprintln!("report of run {run} written to {}", html.display());
    Ok(OK)
}

/// The page of run `run`; its pipeline file (the run's `file`) adds the instances that
/// did not run, when it can still be read.
pub async fn render_html(store: &dyn Store, run: RunId) -> Result<String, CliError> {
    Ok(render(store, run, None).await?.page)
}

/// Writes the run's report to `<store root>/reports/run-<id>.html` (for a PostgreSQL store
/// the root is the shared object directory) and prints its path and a summary table. A
/// failure is a warning: it never changes how the run ends.
pub async fn after_run(store: &dyn Store, run: RunId, plan: Arc<Plan>) {
    let path = store
        .layout()
        .root
        .join("reports")
        .join(format!("run-{run}.html"));
    let written = async {
        let rendered = render(store, run, Some(plan)).await?;
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("."))).code(STORE)?;
        write_atomically(&path, &rendered.page).code(STORE)?;
        Ok::<_, CliError>(rendered.summary)
    }
    .await;
    match written {
        Ok(summary) => eprintln!("report: {}\n{summary}", path.display()),
        Err(e) => eprintln!(
            "warning: the run's report was not written to {}: {:#}",
            path.display(),
            e.error
        ),
    }
}

/// The store, run and (for a pipeline target) plan a target names.
async fn resolve(
    global: &Global,
    target: &str,
) -> Result<(Arc<dyn Store>, RunId, Option<Arc<Plan>>), CliError> {
    if let Ok(id) = target.parse::<i64>() {
        return Ok((global.open().await?, RunId(id), None));
    }
    let path = Path::new(target);
    if !path.is_file() {
        return Err(anyhow::anyhow!(
            "`{target}` is neither a run id nor a pipeline file"
        ))
        .code(BAD_INPUT);
    }
    let overrides = global.overrides(None, None, SetArgs::default());
    let plan = Arc::new(load_plan(path, &registry(), &overrides)?);
    let store = open_existing_store(&plan).await?;
    let run = newest_run(&*store, &plan).await?;
    Ok((store, run, Some(plan)))
}

/// The pipeline's store, which must exist: a report never creates one.
async fn open_existing_store(plan: &Plan) -> Result<Arc<dyn Store>, CliError> {
    let spec = &plan.settings.store;
    if !is_postgres_url(spec) {
        let dir = plan.base_dir.join(spec);
        if !dir.join(DATABASE_FILE).exists() {
            return Err(anyhow::anyhow!(
                "no store at {} (run the pipeline first, or pass --store)",
                dir.display()
            ))
            .code(STORE);
        }
    }
    open_plan_store(plan).await
}

async fn newest_run(store: &dyn Store, plan: &Plan) -> Result<RunId, CliError> {
    let runs = store.runs().await.code(STORE)?;
    runs.iter()
        .find(|r| r.pipeline == plan.name)
        .map(|r| r.id)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "pipeline `{}` ({}) has no run in the store {} yet",
                plan.name,
                plan.pipeline_file.display(),
                plan.settings.store
            )
        })
        .code(BAD_INPUT)
}

/// Reads everything about the run and assembles the page.
async fn render(
    store: &dyn Store,
    run: RunId,
    plan: Option<Arc<Plan>>,
) -> Result<Rendered, CliError> {
    let data = model::gather(store, run, plan, plan_from_file).await?;
    let graph = dag::RunGraph::build(&data)?;
    let reports = report_dir::read_reports(store, &data);
    let now_ms = now_ms_since_epoch();
    let large = graph.nodes.len() > instances::DETAIL_LIMIT;
    let sections = vec![
        html::Section {
            id: "table1",
            title: "Table 1",
            body: table1::section(&reports, &data, &graph),
        },
        html::Section {
            id: "figures",
            title: "Figures",
            body: report_dir::figures_section(&reports),
        },
        html::Section {
            id: "curves",
            title: "Training curves",
            body: curves::section(&data)?,
        },
        html::Section {
            id: "timeline",
            title: "Timeline",
            body: if large {
                overview::timeline_section(&data, &graph)?
            } else {
                timeline::section(&data, now_ms)?
            },
        },
        html::Section {
            id: "dag",
            title: "DAG",
            body: if large {
                overview::dag_section(&data, &graph)?
            } else {
                graph.section()?
            },
        },
        html::Section {
            id: "instances",
            title: "Instances",
            body: instances::section(&data, &graph),
        },
    ];
    let run = &data.graph.run;
    let title = format!("{} — run {}", run.pipeline, run.id);
    Ok(Rendered {
        page: html::page(&title, &header(&data, store, now_ms), &sections),
        summary: summary::text(&graph, &reports),
    })
}

/// The plan of the file a run was started from, as the file is now.
fn plan_from_file(file: &str) -> PlanSource {
    let path = PathBuf::from(file);
    if !path.is_file() {
        return PlanSource::Unavailable(format!("the pipeline file {file} no longer exists"));
    }
    match load_plan(&path, &registry(), &SettingsOverrides::default()) {
        Ok(plan) => PlanSource::Loaded(Arc::new(plan)),
        Err(e) => PlanSource::Unavailable(format!(
            "the pipeline file {file} does not load now: {}",
            e.error
        )),
    }
}

fn now_ms_since_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Pipeline, run, status, times, host, counts.
fn header(data: &RunData, store: &dyn Store, now_ms: i64) -> String {
    use html::{duration, esc, utc};
    let r = &data.graph.run;
    let count = |f: &dyn Fn(&histodiff_engine::store::ExecutionRecord) -> bool| {
        data.graph
            .executions
            .iter()
            .filter(|e| f(&e.record))
            .count()
    };
    use histodiff_engine::store::ExecStatus as S;
    let executed = count(&|e| e.status != S::Cached);
    let cached = count(&|e| e.status == S::Cached);
    let failed = count(&|e| e.status == S::Failed);
    let interrupted = count(&|e| e.status == S::Interrupted);
    let ended = match r.finished {
        Some(f) => format!("{} (took {})", utc(f), duration(f - r.started)),
        None => format!("not finished ({} so far)", duration(now_ms - r.started)),
    };
    let plan_note = match &data.plan {
        PlanSource::Loaded(p) => format!(
            "pipeline file {}",
            esc(&p.pipeline_file.display().to_string())
        ),
        PlanSource::Unavailable(why) => {
            format!("{} — instances that did not run are not shown", esc(why))
        }
    };
    format!(
        "<header id=\"top\"><h1>{} <span class=\"run\">run {}</span> <span class=\"status status-{}\">{}</span></h1>\n\
         <dl class=\"facts\"><dt>started</dt><dd>{}</dd><dt>ended</dt><dd>{}</dd>\
         <dt>orchestrator</dt><dd>{} pid {}</dd><dt>store</dt><dd>{}</dd>\
         <dt>executions</dt><dd id=\"counts\"><b>{executed}</b> executed, <b>{cached}</b> cached, <b>{failed}</b> failed{}</dd></dl>\n\
         <p class=\"note\">{plan_note}. Generated by histodiff {} at {}.</p></header>\n",
        esc(&r.pipeline),
        r.id,
        r.status,
        r.status,
        utc(r.started),
        ended,
        esc(&r.host),
        r.pid,
        esc(&store.layout().root.display().to_string()),
        if interrupted > 0 { format!(", <b>{interrupted}</b> interrupted") } else { String::new() },
        env!("CARGO_PKG_VERSION"),
        utc(now_ms)
    )
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`, so a
/// reader never sees half a page and a failure leaves any earlier file as it was.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{} names no file", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow::anyhow!("cannot write {}: {e}", path.display()));
    }
    Ok(())
}
