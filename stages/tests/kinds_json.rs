//! `stages/kinds.json` is the registry the CLI embeds (it does not link libtorch, so it
//! cannot ask the kinds themselves). It must equal what the kinds say of themselves;
//! after changing a kind's spec, regenerate it with
//! `HISTODIFF_BLESS=1 cargo test -p histodiff-stages --test kinds_json`.

use histodiff_stages::kinds;
use std::path::Path;

#[test]
fn kinds_json_matches_the_kinds() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("kinds.json");
    let expected = kinds::specs_json();
    if std::env::var_os("HISTODIFF_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
        return;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    if found != expected {
        let line = found
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .map_or(found.lines().count().min(expected.lines().count()), |i| i)
            + 1;
        panic!(
            "{} is out of date (first difference at line {line}); regenerate it with \
             HISTODIFF_BLESS=1 cargo test -p histodiff-stages --test kinds_json",
            path.display()
        );
    }
}

#[test]
fn kinds_json_round_trips() {
    let specs: Vec<histodiff_engine::registry::KindSpec> =
        serde_json::from_str(&kinds::specs_json()).unwrap();
    let names: Vec<_> = kinds::all().iter().map(|k| k.spec().name).collect();
    assert_eq!(
        specs.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        names
    );
}

#[test]
fn kinds_json_keeps_optional_apart_from_required() {
    let parsed: Vec<histodiff_engine::registry::KindSpec> =
        serde_json::from_str(&kinds::specs_json()).unwrap();
    let direct: Vec<_> = kinds::all().iter().map(|k| k.spec()).collect();
    assert_eq!(parsed, direct);
    let optional = direct
        .iter()
        .flat_map(|k| &k.params)
        .filter(|p| p.default == Some(serde_json::Value::Null))
        .count();
    assert!(
        optional > 0,
        "some kind has an optional (null-default) parameter"
    );
}
