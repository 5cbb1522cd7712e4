//! `histodiff verify` (re-hash every object; exit 3 on damage) and `histodiff gc`
//! (remove objects no row refers to).

use crate::exit::{CliError, Coded, OK, STORE};
use histodiff_engine::store::Store;

pub async fn verify(store: &dyn Store) -> Result<i32, CliError> {
    let objects = store.objects();
    let report = objects.verify().code(STORE)?;
    let mut damaged = report.corrupt.len();
    for bad in &report.corrupt {
        eprintln!(
            "corrupt: {} ({}): {}",
            bad.hash,
            bad.path.display(),
            bad.reason
        );
    }
    let mut referenced: Vec<_> = store
        .all_referenced_artifacts()
        .await
        .code(STORE)?
        .into_iter()
        .collect();
    referenced.sort();
    for hash in referenced.iter().filter(|h| !objects.contains(h)) {
        damaged += 1;
        eprintln!("missing: {hash} (recorded in the database, absent from the objects)");
    }
    if damaged > 0 {
        return Err(anyhow::anyhow!(
            "{damaged} damaged or missing object(s) among {} checked",
            report.checked
        ))
        .code(STORE);
    }
    crate::exit::print_out(&format!(
        "{} objects verified, all intact\n",
        report.checked
    ));
    Ok(OK)
}

pub async fn gc(store: &dyn Store) -> Result<i32, CliError> {
    let keep = store.all_referenced_artifacts().await.code(STORE)?;
    let report = store.objects().gc(&keep).code(STORE)?;
    crate::exit::print_out(&format!(
        "removed {} objects ({} bytes); kept {}\n",
        report.removed, report.freed_bytes, report.kept
    ));
    Ok(OK)
}
