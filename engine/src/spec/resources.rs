//! `resources:` and `retries:` — scheduling only, never part of a stage key.
//! Memory takes binary units (`16G` = 16 GiB, as Slurm reads it); time takes unit
//! sequences (`12h`, `1h30m`) or Slurm's `D-HH:MM:SS`, `HH:MM:SS`, `MM:SS` forms.

use super::error::{Ctx, Diagnostics};
use super::raw::{mapping, unique_keys};
use super::yaml::{Node, Value};
use crate::plan::Resources;

const RESOURCE_KEYS: &[&str] = &["gpus", "cpus", "memory", "time"];

/// Parses `resources:`; a stage without it asks for one CPU and no GPU.
pub fn resources(node: Option<&Node>, ctx: Ctx<'_>, diag: &mut Diagnostics) -> Resources {
    let mut r = Resources {
        cpus: 1,
        ..Resources::default()
    };
    let Some(node) = node else { return r };
    let ctx = ctx.key("resources");
    let Some(entries) = mapping(node, ctx, "`resources`", diag) else {
        return r;
    };
    for (key, kpos, v) in unique_keys(entries, ctx, diag) {
        match key {
            "gpus" => r.gpus = count(v, 0, ctx, "gpus", diag).unwrap_or(r.gpus),
            "cpus" => r.cpus = count(v, 1, ctx, "cpus", diag).unwrap_or(r.cpus),
            "memory" => match v.as_str().and_then(memory_bytes) {
                Some(b) => r.memory = Some(b),
                None => diag.report(
                    v.pos,
                    ctx,
                    "memory must be a size with a unit, e.g. `16G`, `512M`",
                ),
            },
            "time" => match v.as_str().and_then(time_seconds) {
                Some(s) => r.time = Some(s),
                None => diag.report(
                    v.pos,
                    ctx,
                    "time must be a duration, e.g. `12h`, `30m`, `1-00:00:00`",
                ),
            },
            other => diag.report(
                kpos,
                ctx,
                format!(
                    "unknown resource `{other}`; expected one of {}",
                    RESOURCE_KEYS.join(", ")
                ),
            ),
        }
    }
    r
}

/// `retries:`: how many times a failed execution is tried again (0 to 100).
pub fn retries(node: Option<&Node>, ctx: Ctx<'_>, diag: &mut Diagnostics) -> u32 {
    match node.map(|n| (n, &n.value)) {
        None => 0,
        Some((_, Value::Int(n))) if (0..=100).contains(n) => *n as u32,
        Some((n, _)) => {
            diag.report(
                n.pos,
                ctx.key("retries"),
                "retries must be an integer from 0 to 100",
            );
            0
        }
    }
}

fn count(v: &Node, min: i64, ctx: Ctx<'_>, what: &str, diag: &mut Diagnostics) -> Option<u32> {
    match v.value {
        Value::Int(n) if n >= min && n <= u32::MAX as i64 => Some(n as u32),
        _ => {
            diag.report(
                v.pos,
                ctx,
                format!("{what} must be an integer of at least {min}"),
            );
            None
        }
    }
}

/// `16G`, `512M`, `1.5G`, `100KiB`, `2TB` → bytes (binary multiples).
pub fn memory_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    let bytes = n * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// `12h`, `30m`, `45s`, `2d`, `1h30m`, `1-00:00:00`, `12:00:00`, `30:00` → seconds.
pub fn time_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    let secs = if s.contains(':') || s.contains('-') {
        slurm_time(s)?
    } else {
        unit_sequence(s)?
    };
    (secs > 0).then_some(secs)
}

fn unit_sequence(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        num.clear();
    }
    num.is_empty().then_some(total)
}

fn slurm_time(s: &str) -> Option<u64> {
    let (days, clock) = match s.split_once('-') {
        Some((d, rest)) => (d.parse::<u64>().ok()?, rest),
        None => (0, s),
    };
    let parts: Vec<u64> = clock
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let within_day = match (s.contains('-'), parts.as_slice()) {
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        (_, [h, m, sec]) => h * 3600 + m * 60 + sec,
        (false, [m, sec]) => m * 60 + sec,
        _ => return None,
    };
    days.checked_mul(86_400)?.checked_add(within_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(memory_bytes("16G"), Some(16 << 30));
        assert_eq!(memory_bytes("512M"), Some(512 << 20));
        assert_eq!(memory_bytes("1.5GiB"), Some(3 << 29));
        assert_eq!(memory_bytes("16"), None);
        assert_eq!(memory_bytes("16Q"), None);
    }

    #[test]
    fn time_forms() {
        assert_eq!(time_seconds("12h"), Some(43_200));
        assert_eq!(time_seconds("30m"), Some(1_800));
        assert_eq!(time_seconds("1h30m"), Some(5_400));
        assert_eq!(time_seconds("1-00:00:00"), Some(86_400));
        assert_eq!(time_seconds("2-12"), Some(216_000));
        assert_eq!(time_seconds("12:00:00"), Some(43_200));
        assert_eq!(time_seconds("30:00"), Some(1_800));
        assert_eq!(time_seconds("12x"), None);
        assert_eq!(time_seconds("0m"), None);
    }
}
