//! Stage keys: golden values pinned to exact hex, and the invariants that make them
//! trustworthy — map order irrelevant, list order relevant, an absent slot differs from an
//! empty list, scheduling fields never enter, every parameter change changes the key.

use histodiff_engine::fingerprint::{
    canonical_json, dep_key, CommandFingerprint, Fingerprint, SlotHashes, KEY_SCHEMA,
};
use histodiff_engine::hash::ArtifactHash;
use histodiff_engine::plan::SmallMap;
use histodiff_engine::plan::{CommandSpec, Instance, Resources};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn h(c: char) -> ArtifactHash {
    ArtifactHash(c.to_string().repeat(64))
}

fn instance(params: Value) -> Instance {
    Instance {
        name: "select[method=centroid,ratio=0.5]".into(),
        stage: "select".into(),
        kind: "histodiffusion/select".into(),
        kind_version: 3,
        coords: SmallMap::new(),
        params: params.as_object().unwrap().clone(),
        external_paths: BTreeMap::new(),
        inputs: SmallMap::new(),
        command: None,
        resources: Resources::default(),
        retries: 0,
        outputs: vec!["images".into()],
    }
}

fn golden() -> Fingerprint {
    let inst = instance(json!({"ratio": 0.5, "method": "centroid", "seed": 0}));
    let inputs = SmallMap::from_iter([
        ("pool".to_string(), SlotHashes::One(h('a'))),
        ("real".to_string(), SlotHashes::Many(vec![h('b'), h('c')])),
    ]);
    let externals = SmallMap::from_iter([("path".to_string(), h('d'))]);
    Fingerprint::of(&inst, inputs, externals, "")
}

#[test]
fn golden_canonical_json_and_key() {
    let fp = golden();
    let a = "a".repeat(64);
    let (b, c, d) = ("b".repeat(64), "c".repeat(64), "d".repeat(64));
    let expected = format!(
        r#"{{"command":null,"externals":{{"path":"{d}"}},"inputs":{{"pool":{{"one":"{a}"}},"real":{{"many":["{b}","{c}"]}}}},"key_schema":1,"kind":"histodiffusion/select","kind_version":3,"params":{{"method":"centroid","ratio":0.5,"seed":0}},"salt":""}}"#
    );
    assert_eq!(fp.canonical_json(), expected);
    assert_eq!(
        fp.key().0,
        "b1f8dcf8d72ee29efbaa9c1e870d76d51a92a41648ecddc1fe1073af69276dad"
    );
}

#[test]
fn golden_command_key() {
    let mut inst = instance(json!({}));
    inst.kind = "command".into();
    inst.kind_version = 1;
    inst.command = Some(CommandSpec {
        run: "python scripts/extra.py --in ${inputs.data} --out ${outs.result}".into(),
        deps: vec![PathBuf::from("scripts/extra.py")],
        outs: SmallMap::from_iter([("result".to_string(), PathBuf::from("result.json"))]),
    });
    let inputs = SmallMap::from_iter([("data".to_string(), SlotHashes::One(h('e')))]);
    let externals = SmallMap::from_iter([(dep_key(&PathBuf::from("scripts/extra.py")), h('f'))]);
    let fp = Fingerprint::of(&inst, inputs, externals, "v2");
    assert!(fp.canonical_json().contains(r#""deps:scripts/extra.py""#));
    assert!(fp
        .canonical_json()
        .contains(r#""outs":{"result":"result.json"}"#));
    assert_eq!(
        fp.key().0,
        "3262c4ea04cfb2fdcaa8f1f1f90c2a2d72718f0a85cbf9cc10590596b6b120f4"
    );
}

#[test]
fn json_round_trip_keeps_the_key() {
    let fp = golden();
    let back = Fingerprint::from_json(&fp.canonical_json()).unwrap();
    assert_eq!(back, fp);
    assert_eq!(back.key(), fp.key());
    assert_eq!(fp.key_schema, KEY_SCHEMA);
}

#[test]
fn canonical_json_sorts_nested_keys() {
    let v = json!({"b": {"z": 1, "a": [3, {"y": null, "x": true}]}, "a": "s\"q"});
    assert_eq!(
        canonical_json(&v),
        r#"{"a":"s\"q","b":{"a":[3,{"x":true,"y":null}],"z":1}}"#
    );
}

#[test]
fn diff_names_the_changed_fields() {
    let old = golden();
    let mut new = old.clone();
    new.params.insert("ratio".into(), json!(1.0));
    new.inputs.remove("pool");
    new.kind_version = 4;
    new.salt = "x".into();
    let fields: Vec<String> = Fingerprint::diff(&old, &new)
        .into_iter()
        .map(|c| c.field)
        .collect();
    assert_eq!(
        fields,
        ["kind_version", "params.ratio", "inputs.pool", "salt"]
    );
    let change = &Fingerprint::diff(&old, &new)[1];
    assert_eq!(change.to_string(), "params.ratio: 0.5 → 1.0");
    assert!(Fingerprint::diff(&old, &old).is_empty());
}

#[test]
fn absent_slot_differs_from_empty_list_in_diff() {
    let inst = instance(json!({"seed": 0}));
    let absent = Fingerprint::of(&inst, SmallMap::new(), SmallMap::new(), "");
    let empty = SmallMap::from_iter([("extra".to_string(), SlotHashes::Many(vec![]))]);
    let empty = Fingerprint::of(&inst, empty, SmallMap::new(), "");
    assert_ne!(absent.key(), empty.key());
    assert_eq!(Fingerprint::diff(&absent, &empty)[0].field, "inputs.extra");
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
    ]
}

fn params() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::btree_map("[a-z_]{1,8}", scalar(), 1..8).prop_map(|m| m.into_iter().collect())
}

fn with_params(pairs: &[(String, Value)]) -> Fingerprint {
    let map: Map<String, Value> = pairs.iter().cloned().collect();
    Fingerprint::of(
        &instance(Value::Object(map)),
        SmallMap::new(),
        SmallMap::new(),
        "",
    )
}

proptest! {
    #[test]
    fn direct_canonical_json_equals_the_value_route(
        pairs in params(),
        slots in prop::collection::vec(("[a-z\\\\\"é]{1,6}", prop::collection::vec(0u8..6, 0..3), any::<bool>()), 0..4),
        externals in prop::collection::vec(("[a-z:/\\.]{1,10}", 0u8..6), 0..3),
        command in prop::option::of(("[ -~]{0,20}", prop::collection::vec(("[a-z]{1,5}", "[a-z/.]{1,8}"), 0..3))),
        salt in "[ -~é]{0,6}",
    ) {
        let inputs: SmallMap<String, SlotHashes> = slots
            .into_iter()
            .map(|(name, hs, many)| {
                let hs: Vec<ArtifactHash> = hs.iter().map(|c| h(char::from(b'a' + c))).collect();
                let slot = match (many, hs.first()) {
                    (false, Some(one)) => SlotHashes::One(one.clone()),
                    _ => SlotHashes::Many(hs),
                };
                (name, slot)
            })
            .collect();
        let externals = externals.into_iter().map(|(k, c)| (k, h(char::from(b'a' + c)))).collect();
        let mut fp = Fingerprint::of(&instance(Value::Object(pairs.into_iter().collect())), inputs, externals, &salt);
        fp.command = command.map(|(run, outs)| CommandFingerprint { run, outs: outs.into_iter().collect() });
        let via_value = histodiff_engine::fingerprint::canonical_json(&serde_json::to_value(&fp).unwrap());
        prop_assert_eq!(fp.canonical_json(), via_value);
    }

    #[test]
    fn map_order_is_irrelevant(pairs in params()) {
        let mut reversed = pairs.clone();
        reversed.reverse();
        prop_assert_eq!(with_params(&pairs).key(), with_params(&reversed).key());
    }

    #[test]
    fn absent_slot_differs_from_empty_list(slot in "[a-z]{1,8}", others in prop::collection::vec(0u8..6, 0..4)) {
        let base: SmallMap<String, SlotHashes> = others
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("other{i}"), SlotHashes::One(h(char::from(b'a' + c)))))
            .collect();
        let mut with_empty = base.clone();
        with_empty.insert(slot, SlotHashes::Many(vec![]));
        let inst = instance(json!({"seed": 0}));
        let absent = Fingerprint::of(&inst, base, SmallMap::new(), "");
        let empty = Fingerprint::of(&inst, with_empty, SmallMap::new(), "");
        prop_assert_ne!(absent.key(), empty.key());
    }

    #[test]
    fn list_order_is_relevant(n in 2usize..6) {
        let list: Vec<ArtifactHash> = (0..n).map(|i| h(char::from(b'a' + i as u8))).collect();
        let mut swapped = list.clone();
        swapped.swap(0, n - 1);
        let key = |l: Vec<ArtifactHash>| {
            let inputs = SmallMap::from_iter([("train".to_string(), SlotHashes::Many(l))]);
            Fingerprint::of(&instance(json!({})), inputs, SmallMap::new(), "").key()
        };
        prop_assert_ne!(key(list), key(swapped));
    }

    #[test]
    fn any_param_change_changes_the_key(pairs in params(), which in any::<prop::sample::Index>(), v in scalar()) {
        let i = which.index(pairs.len());
        prop_assume!(pairs[i].1 != v);
        let mut changed = pairs.clone();
        changed[i].1 = v;
        prop_assert_ne!(with_params(&pairs).key(), with_params(&changed).key());
    }

    #[test]
    fn scheduling_fields_and_names_never_enter(gpus in 0u32..8, cpus in 1u32..64, retries in 0u32..5, name in "[a-z]{1,8}") {
        let base = instance(json!({"seed": 1}));
        let mut moved = base.clone();
        moved.resources = Resources { gpus, cpus, memory: Some(1 << 30), time: Some(3600) };
        moved.retries = retries;
        moved.stage = name.clone();
        moved.name = format!("{name}[ratio=1]");
        moved.coords.insert("ratio".into(), json!(1));
        let key = |i: &Instance| Fingerprint::of(i, SmallMap::new(), SmallMap::new(), "").key();
        prop_assert_eq!(key(&base), key(&moved));
    }
}
