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

/// The migrations of one dialect (`sqlite`, `postgres`), every file in order.
fn migrations_of(dialect: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(dialect);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap() + "\n")
        .collect()
}

/// The column names of a CREATE TABLE body (constraint lines skipped).
fn create_columns(body: &str) -> Vec<String> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .filter(|l| {
            !["PRIMARY KEY", "UNIQUE", "FOREIGN KEY", "("]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_string)
        .collect()
}

/// (table, columns) as the migrations leave them: their statements applied in file
/// order (`CREATE TABLE`, `ALTER TABLE … ADD COLUMN` and `… RENAME TO`, `DROP TABLE`).
fn migrated_tables(dialect: &str) -> BTreeMap<String, Vec<String>> {
    let sql: String = migrations_of(dialect)
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| l.to_string() + "\n")
        .collect();
    let mut tables = BTreeMap::new();
    for stmt in sql.split(';').map(str::trim) {
        let words: Vec<&str> = stmt.split_whitespace().collect();
        match words[..] {
            ["CREATE", "TABLE", name, ..] => {
                let body = &stmt[stmt.find('(').unwrap() + 1..stmt.rfind(')').unwrap()];
                tables.insert(name.to_string(), create_columns(body));
            }
            ["ALTER", "TABLE", table, "ADD", "COLUMN", column, ..] => {
                let columns: &mut Vec<String> = tables
                    .get_mut(table)
                    .unwrap_or_else(|| panic!("{dialect}: ALTER TABLE of unknown table {table}"));
                columns.push(column.to_string());
            }
            ["ALTER", "TABLE", table, "RENAME", "TO", new_name] => {
                let columns = tables
                    .remove(table)
                    .unwrap_or_else(|| panic!("{dialect}: RENAME of unknown table {table}"));
                tables.insert(new_name.to_string(), columns);
            }
            ["DROP", "TABLE", table] => {
                tables.remove(table);
            }
            _ => {}
        }
    }
    tables
}

/// The text of the section of docs/schema.md whose `## ` heading names `table` as a word.
fn section_of<'a>(docs: &'a str, table: &str) -> Option<&'a str> {
    docs.split("\n## ").skip(1).find(|section| {
        let heading = section.lines().next().unwrap_or("");
        heading
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == table)
    })
}

#[test]
fn both_dialects_migrate_to_the_same_tables_and_columns() {
    let sqlite = migrated_tables("sqlite");
    assert!(sqlite.len() >= 10, "parsed only {sqlite:?}");
    assert_eq!(sqlite, migrated_tables("postgres"));
}

#[test]
fn every_table_and_column_is_documented_in_its_own_section() {
    let docs = repo_file("docs/schema.md");
    for (table, columns) in migrated_tables("sqlite") {
        let section =
            section_of(&docs, &table).unwrap_or_else(|| panic!("no `## {table}` section"));
        for c in columns {
            assert!(
                section.contains(&format!("| {c} |")),
                "column {table}.{c} is not documented in the section of {table}"
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

fn new_run() -> NewRun {
    NewRun {
        pipeline: "p".into(),
        file: "p.yaml".into(),
        host: "h".into(),
        pid: 1,
    }
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
    let run = store.begin_run(&new_run()).await.unwrap();
    // crc → fewshot → evaluate, each one output; evaluate reports accuracy.
    let mut previous: Vec<InputEdge> = Vec::new();
    let (mut outs, mut ids) = (Vec::new(), Vec::new());
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
        ids.push(id);
        let out = output(&store, dir.path(), name.as_bytes());
        let outcome = Outcome::Succeeded {
            outputs: BTreeMap::from([("out".to_string(), out.clone())]),
            inputs: previous.clone(),
            metrics: BTreeMap::from([("accuracy".to_string(), 0.9)]),
        };
        store.finish_execution(id, &outcome, None).await.unwrap();
        previous = vec![InputEdge {
            slot: "data".into(),
            position: 0,
            artifact: out.hash.clone(),
        }];
        outs.push(out);
    }
    // A second run finds crc and fewshot in the cache.
    let second = store.begin_run(&new_run()).await.unwrap();
    let hits: Vec<NewCacheHit> = ["crc", "fewshot"]
        .into_iter()
        .zip(&ids)
        .map(|(name, &source)| NewCacheHit {
            stage: name,
            instance: name,
            source,
        })
        .collect();
    store.record_cache_hits(second, 0, &hits).await.unwrap();
    let examples = sql_examples();
    assert_eq!(examples.len(), 6);
    // (bound value, expected number of rows) per example, in document order.
    let last = outs[2].hash.0.clone();
    let first = outs[0].hash.0.clone();
    let cases = [
        (Some(second.0.to_string()), 2),  // the second run's cache hits
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
