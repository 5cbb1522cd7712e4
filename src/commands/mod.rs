//! One module per subcommand, and what they share: the registry, loading a pipeline
//! (exit 2 on any error, before the store is touched) and opening the store (exit 3).

mod artifacts;
mod export;
mod inspect;
mod kinds;
mod lineage;
mod maintain;
mod plan;
mod report;
mod rerun;
mod run;
mod run_graph;
mod serve;

use crate::cli::{Cli, Command, SetArgs};
use crate::exit::{CliError, Coded, BAD_INPUT, STORE};
pub use crate::registry::registry;
use histodiff_engine::plan::{ExecutorKind, Plan};
use histodiff_engine::registry::Registry;
use histodiff_engine::spec::{self, SettingsOverrides};
use histodiff_engine::store::{self, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub async fn dispatch(cli: Cli) -> Result<i32, CliError> {
    let executor = cli.executor.map(|e| match e {
        crate::cli::ExecutorArg::Local => ExecutorKind::Local,
        crate::cli::ExecutorArg::Slurm => ExecutorKind::Slurm,
    });
    let global = Global {
        store: cli.store,
        objects: cli.objects,
        executor,
    };
    match cli.command {
        Command::Run {
            pipeline,
            jobs,
            device,
            set,
        } => run::run(&pipeline, global.overrides(jobs, device, set)).await,
        Command::Plan { pipeline, all, set } => {
            plan::plan(&pipeline, all, global.overrides(None, None, set)).await
        }
        Command::Status { runs } => inspect::status(&*global.open().await?, runs).await,
        Command::Why { target } => inspect::why(&*global.open().await?, &target).await,
        Command::Lineage { target, format } => {
            lineage::lineage(&*global.open().await?, &target, format).await
        }
        Command::Ls => artifacts::ls(&*global.open().await?).await,
        Command::Cat { target } => artifacts::cat(&*global.open().await?, &target).await,
        Command::Export { what, target, dest } => match (what, target, dest) {
            (Some(what), _, _) => export::export(&*global.open().await?, what).await,
            (None, Some(target), Some(dest)) => {
                artifacts::export(&*global.open().await?, &target, &dest).await
            }
            _ => Err(anyhow::anyhow!("export needs TARGET DEST, or a subcommand").into()),
        },
        Command::Report { target, html } => report::report(&global, &target, &html).await,
        Command::Serve { bind, token } => serve::serve(&global, bind, token).await,
        Command::Verify => maintain::verify(&*global.open().await?).await,
        Command::Gc => maintain::gc(&*global.open().await?).await,
        Command::Kinds => kinds::kinds(&registry()),
        Command::Worker { .. } => {
            Err(anyhow::anyhow!("`worker` runs only as a child of `histodiff run`").into())
        }
    }
}

/// Options that apply to every subcommand.
pub struct Global {
    pub store: Option<String>,
    pub objects: Option<PathBuf>,
    /// `--executor`, overriding `settings.executor`.
    pub executor: Option<ExecutorKind>,
}

impl Global {
    /// The store for commands without a pipeline: `--store`, else `.histodiff` here. It
    /// must exist already: inspecting never creates a store.
    async fn open(&self) -> Result<Arc<dyn Store>, CliError> {
        let spec = self.store.clone().unwrap_or_else(|| ".histodiff".into());
        let is_dir = !spec.contains("://");
        if is_dir && !Path::new(&spec).join(store::DATABASE_FILE).exists() {
            return Err(anyhow::anyhow!(
                "no store at {spec} (run a pipeline first, or pass --store)"
            ))
            .code(STORE);
        }
        let cwd = std::env::current_dir().code(STORE)?;
        store::open(&spec, self.objects.as_deref(), &cwd)
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("cannot open the store {spec}")))
            .code(STORE)
    }

    /// What the command line sets over the pipeline file: settings flags and `--set`s.
    fn overrides(
        &self,
        jobs: Option<usize>,
        device: Option<String>,
        set: SetArgs,
    ) -> SettingsOverrides {
        SettingsOverrides {
            store: self.store.clone(),
            objects: self.objects.clone(),
            executor: self.executor,
            jobs,
            device,
            set: set.set,
            ..Default::default()
        }
    }
}

/// Loads and validates a pipeline; every error is printed, located, and exits 2.
pub fn load_plan(
    path: &Path,
    registry: &Registry,
    overrides: &SettingsOverrides,
) -> Result<Plan, CliError> {
    load_plan_with(path, registry, overrides, &mut |_, _| {})
}

/// [`load_plan`], telling `settings_known` the settings before the stages are expanded
/// (see [`spec::load_with`]).
pub fn load_plan_with(
    path: &Path,
    registry: &Registry,
    overrides: &SettingsOverrides,
    settings_known: &mut spec::SettingsKnown<'_>,
) -> Result<Plan, CliError> {
    tracing::debug!("loading {}", path.display());
    let loaded = spec::load_with(path, registry, overrides, settings_known);
    if let Ok(plan) = &loaded {
        tracing::debug!("{} instances planned", plan.instances.len());
    }
    loaded.map_err(|errors| {
        let n = errors.errors.len();
        CliError {
            code: BAD_INPUT,
            error: anyhow::anyhow!(
                "{errors}\n{n} error{} in {}",
                if n == 1 { "" } else { "s" },
                path.display()
            ),
        }
    })
}

/// Opens (creating) the pipeline's store.
pub async fn open_plan_store(plan: &Plan) -> Result<Arc<dyn Store>, CliError> {
    let s = &plan.settings;
    let opened = store::open(&s.store, s.objects.as_deref(), &plan.base_dir).await;
    store_opened(opened, &s.store)
}

/// The CLI's error for a store that could not be opened (exit code [`STORE`]).
pub fn store_opened(
    opened: store::StoreResult<Arc<dyn Store>>,
    name: &str,
) -> Result<Arc<dyn Store>, CliError> {
    tracing::debug!("store {name} opened");
    opened
        .map_err(|e| anyhow::Error::new(e).context(format!("cannot open the store {name}")))
        .code(STORE)
}
