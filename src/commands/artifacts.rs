//! Getting artifacts out: `ls` (outputs of each instance's latest result), `cat` (print
//! one), `export` (copy one out as ordinary writable files). A target is an object hash
//! (a unique prefix of at least 6 hex digits is enough) or `INSTANCE[.output]`.

use crate::exit::{CliError, Coded, BAD_INPUT, OK, STORE};
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::protocol::ArtifactKind;
use histodiff_engine::store::{ExecStatus, ExecutionRecord, Store};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

/// Latest succeeded-or-cached execution of each instance, by instance name.
async fn latest_results(store: &dyn Store) -> Result<BTreeMap<String, ExecutionRecord>, CliError> {
    let mut latest = BTreeMap::new();
    for e in store.executions(None).await.code(STORE)? {
        if matches!(e.status, ExecStatus::Succeeded | ExecStatus::Cached) {
            latest.insert(e.instance.clone(), e);
        }
    }
    Ok(latest)
}

pub async fn ls(store: &dyn Store) -> Result<i32, CliError> {
    let latest = latest_results(store).await?;
    let keys: Vec<_> = latest.values().map(|e| e.stage_key.clone()).collect();
    let hits = store.cached_many(&keys).await.code(STORE)?;
    let mut out = String::new();
    for (instance, e) in &latest {
        let Some(hit) = hits.get(&e.stage_key) else {
            continue;
        };
        for (name, a) in &hit.outputs {
            let kind = if a.kind == ArtifactKind::Dir {
                "dir "
            } else {
                "file"
            };
            let _ = writeln!(
                out,
                "{}  {kind} {:>12}  {instance}.{name}",
                a.hash.short(),
                a.size
            );
        }
    }
    crate::exit::print_out(&out);
    Ok(OK)
}

/// A full hash from a unique prefix, found in the object directory.
pub fn resolve_hash_prefix(store: &dyn Store, target: &str) -> Option<ArtifactHash> {
    let hex =
        target.len() >= 6 && target.len() <= 64 && target.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return None;
    }
    let target = target.to_ascii_lowercase();
    let shard = store.objects().dir().join(&target[..2]);
    let found: Vec<String> = std::fs::read_dir(shard)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| format!("{}{}", &target[..2], e.file_name().to_string_lossy()))
        .filter(|h| h.starts_with(&target))
        .collect();
    (found.len() == 1).then(|| ArtifactHash(found[0].clone()))
}

/// `INSTANCE[.output]` or a hash prefix → the artifact's hash.
async fn resolve(store: &dyn Store, target: &str) -> Result<ArtifactHash, CliError> {
    if let Some(hash) = resolve_hash_prefix(store, target) {
        return Ok(hash);
    }
    let latest = latest_results(store).await?;
    let (instance, output) = match latest.get(target) {
        Some(_) => (target, None),
        None => match target.rsplit_once('.') {
            Some((i, o)) if !o.contains(']') => (i, Some(o)),
            _ => (target, None),
        },
    };
    let e = latest
        .get(instance)
        .ok_or_else(|| {
            anyhow::anyhow!("`{target}` is neither an object hash nor an instance with a result")
        })
        .code(BAD_INPUT)?;
    let hit = store.cached(&e.stage_key).await.code(STORE)?;
    let outputs = hit.map(|h| h.outputs).unwrap_or_default();
    let names: Vec<&str> = outputs.keys().map(String::as_str).collect();
    let chosen = match output {
        Some(o) => outputs.get(o),
        None if outputs.len() == 1 => outputs.values().next(),
        None => None,
    };
    chosen
        .map(|a| a.hash.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`{target}`: name one output of {instance}: {}",
                names.join(", ")
            )
        })
        .code(BAD_INPUT)
}

pub async fn cat(store: &dyn Store, target: &str) -> Result<i32, CliError> {
    let hash = resolve(store, target).await?;
    let objects = store.objects();
    match objects.kind_of(&hash).code(STORE)? {
        ArtifactKind::File => {
            let mut file = std::fs::File::open(objects.path_of(&hash).code(STORE)?).code(STORE)?;
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = std::io::copy(&mut file, &mut stdout);
            let _ = stdout.flush();
        }
        ArtifactKind::Dir => {
            let mut out = String::new();
            for entry in objects.manifest(&hash).code(STORE)?.entries {
                let hash = entry
                    .hash
                    .as_ref()
                    .map(|h| h.short().to_string())
                    .unwrap_or_else(|| "-".repeat(12));
                let _ = writeln!(out, "{hash}  {:>12}  {}", entry.size, entry.path);
            }
            crate::exit::print_out(&out);
        }
    }
    Ok(OK)
}

/// Copies (never links) the artifact to `dest`, writable, so editing it cannot touch the store.
pub async fn export(store: &dyn Store, target: &str, dest: &Path) -> Result<i32, CliError> {
    let hash = resolve(store, target).await?;
    if std::fs::symlink_metadata(dest).is_ok() {
        return Err(anyhow::anyhow!("{} exists already", dest.display())).code(BAD_INPUT);
    }
    let objects = store.objects();
    let copy = |h: &ArtifactHash, to: &Path| -> Result<(), CliError> {
        let from = objects.path_of(h).code(STORE)?;
        std::fs::copy(&from, to)
            .map_err(|e| anyhow::anyhow!("cannot copy to {}: {e}", to.display()))
            .code(STORE)?;
        let mut perms = std::fs::metadata(to).code(STORE)?.permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(to, perms).code(STORE)
    };
    match objects.kind_of(&hash).code(STORE)? {
        ArtifactKind::File => copy(&hash, dest)?,
        ArtifactKind::Dir => {
            std::fs::create_dir_all(dest).code(STORE)?;
            for entry in objects.manifest(&hash).code(STORE)?.entries {
                let to = dest.join(&entry.path);
                match &entry.hash {
                    None => std::fs::create_dir_all(&to).code(STORE)?,
                    Some(h) => {
                        if let Some(parent) = to.parent() {
                            std::fs::create_dir_all(parent).code(STORE)?;
                        }
                        copy(h, &to)?
                    }
                }
            }
        }
    }
    eprintln!("exported {} to {}", hash.short(), dest.display());
    Ok(OK)
}
