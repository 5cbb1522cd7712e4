//! docs/schema.md is a supported interface, so it is tested: every table and column the
//! migrations create is documented, and every example query runs against a real store
//! and returns what it promises.

use histodiff_engine::hash::StageKey;
use histodiff_engine::protocol::OutputArtifact;
use histodiff_engine::store::sql::{SqlStore, StoreOptions};
use histodiff_engine::store::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo_file(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (table, columns) of every CREATE TABLE in the SQLite migrations.
fn migrated_tables() -> Vec<(String, Vec<String>)> {
    let sql = repo_file("migrations/sqlite/0001_initial.sql");
    let mut tables = Vec::new();
    for block in sql.split("CREATE TABLE ").skip(1) {
        let name = block.split_whitespace().next().unwrap().to_string();
        let body = &block[block.find('(').unwrap() + 1..block.find(");").unwrap()];
        let columns = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("PRIMARY KEY") && !l.starts_with('('))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_string)
            .collect();
        tables.push((name, columns));
    }
    tables
}

#[test]
fn every_table_and_column_is_documented() {
    let docs = repo_file("docs/schema.md");
    let tables = migrated_tables();
    assert_eq!(tables.len(), 10);
    for (table, columns) in tables {
        assert!(
            docs.contains(&format!("`{table}`")) || docs.contains(&format!("## {table}")),
            "table {table}"
        );
        for c in columns {
            assert!(
                docs.contains(&format!("| {c} |")),
                "column {table}.{c} is not documented"
            );
        }
    }
}

fn sql_examples() -> Vec<String> {
    let docs = repo_file("docs/schema.md");
    docs.split("```sql\n")
        .skip(1)
        .map(|b| {
            b[..b.find("```").unwrap()]
                .trim()
                .trim_end_matches(';')
                .to_string()
        })
        .collect()
}

fn output(store: &SqlStore, dir: &Path, bytes: &[u8]) -> OutputArtifact {
    let src = dir.join("src");
    let _ = std::fs::remove_file(&src);
    std::fs::write(&src, bytes).unwrap();
    store.objects().put(&src).unwrap()
}

#[tokio::test]
async fn the_example_queries_run_and_answer() {
    let dir = tempfile::tempdir().unwrap();
    let layout = StoreLayout::under(&dir.path().join(".histodiff"), None);
    let store = SqlStore::open_sqlite(layout, StoreOptions::default())
        .await
        .unwrap();
    let run = store
        .begin_run(&NewRun {
            pipeline: "p".into(),
            file: "p.yaml".into(),
            host: "h".into(),
            pid: 1,
        })
        .await
        .unwrap();
    // crc → fewshot → evaluate, each one output; evaluate reports accuracy.
    let mut previous: Vec<InputEdge> = Vec::new();
    let mut outs = Vec::new();
    for name in ["crc", "fewshot", "evaluate[ratio=1]"] {
        let new = NewExecution {
            run_id: run,
            stage_key: StageKey(blake3::hash(name.as_bytes()).to_hex().to_string()),
            stage: name.split('[').next().unwrap().into(),
            instance: name.into(),
            kind: "k".into(),
            kind_version: 1,
            attempt: 1,
            fingerprint: "{}".into(),
        };
        let id = store.start_execution(&new).await.unwrap();
        let out = output(&store, dir.path(), name.as_bytes());
        let outcome = Outcome::Succeeded {
            outputs: BTreeMap::from([("out".to_string(), out.clone())]),
            inputs: previous.clone(),
            metrics: BTreeMap::from([("accuracy".to_string(), 0.9)]),
        };
        store.finish_execution(id, &outcome).await.unwrap();
        previous = vec![InputEdge {
            slot: "data".into(),
            position: 0,
            artifact: out.hash.clone(),
        }];
        outs.push(out);
    }
    let examples = sql_examples();
    assert_eq!(examples.len(), 5);
    // (bound value, expected number of rows) per example, in document order.
    let last = outs[2].hash.0.clone();
    let first = outs[0].hash.0.clone();
    let cases = [
        (Some(last), 3),                  // lineage of evaluate's output
        (Some("fewshot".to_string()), 2), // fewshot read crc, wrote one output
        (Some(first), 2),                 // downstream of crc's output
        (None, 3),                        // accuracy of every instance
        (None, 1),                        // one kind, one status
    ];
    for (sql, (arg, rows)) in examples.into_iter().zip(cases) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
        if let Some(arg) = arg {
            q = q.bind(arg);
        }
        let found = q
            .fetch_all(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}\n{sql}"));
        assert_eq!(found.len(), rows, "{sql}");
    }
}
