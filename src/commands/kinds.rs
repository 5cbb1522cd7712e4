//! `histodiff kinds`: every registered stage kind with its version, slots, outputs and
//! parameters.

use crate::exit::{CliError, OK};
use histodiff_engine::registry::{ParamType, Registry};
use std::fmt::Write;

pub fn kinds(registry: &Registry) -> Result<i32, CliError> {
    let mut out = String::new();
    for kind in registry.kinds() {
        let _ = writeln!(
            out,
            "{} (v{}){}",
            kind.name,
            kind.version,
            if kind.resumable { " [resumable]" } else { "" }
        );
        let _ = writeln!(out, "    {}", kind.doc);
        for slot in &kind.inputs {
            let many = if slot.many { " (list)" } else { "" };
            let req = if slot.required { "" } else { " (optional)" };
            let _ = writeln!(out, "    input  {}{many}{req}: {}", slot.name, slot.doc);
        }
        if !kind.outputs.is_empty() {
            let _ = writeln!(out, "    output {}", kind.outputs.join(", "));
        }
        for p in &kind.params {
            let default = match &p.default {
                Some(v) => format!(" = {v}"),
                None => " (required)".into(),
            };
            let _ = writeln!(
                out,
                "    param  {}: {}{default} — {}",
                p.name,
                type_name(&p.ty),
                p.doc
            );
        }
    }
    crate::exit::print_out(&out);
    Ok(OK)
}

fn type_name(ty: &ParamType) -> String {
    let range = |min: Option<String>, max: Option<String>| match (min, max) {
        (None, None) => String::new(),
        (a, b) => format!(" [{}..{}]", a.unwrap_or_default(), b.unwrap_or_default()),
    };
    match ty {
        ParamType::Bool => "bool".into(),
        ParamType::Int { min, max } => format!(
            "int{}",
            range(min.map(|v| v.to_string()), max.map(|v| v.to_string()))
        ),
        ParamType::Float { min, max } => format!(
            "float{}",
            range(min.map(|v| v.to_string()), max.map(|v| v.to_string()))
        ),
        ParamType::String => "string".into(),
        ParamType::Enum { values } => values.join(" | "),
        ParamType::Path => "path".into(),
        ParamType::List { item } => format!("list of {}", type_name(item)),
    }
}
