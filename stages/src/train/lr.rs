//! Learning-rate schedules as functions of the optimizer step: LDM's LambdaLinearScheduler
//! warm-up (SPEC §4.2), guided-diffusion's linear anneal (SPEC §5.2), and timm's cosine
//! schedule with linear warm-up (the DeiT recipe of the official `eval.py`, SPEC §8.2); the
//! anneal and the constant rate can take the same warm-up ([`WarmupSchedule`]).

/// A schedule gives the learning rate for step n (0-based) from the base rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    /// lr · f(n) with f rising linearly from `f_start` to `f_max` over `warm_up_steps`, then
    /// f_min + (f_max − f_min)(L − n)/L as LDM's single-cycle schedule (L = cycle length).
    /// The paper config (f_start 1e-6, f_max = f_min = 1, L = 1e13) is a 10k-step warm-up.
    LambdaLinear {
        warm_up_steps: u64,
        f_start: f64,
        f_min: f64,
        f_max: f64,
        cycle_length: f64,
    },
    /// lr · (1 − n / total_steps), guided-diffusion's `anneal_lr`.
    LinearAnneal { total_steps: u64 },
    /// timm CosineLRScheduler (warmup_prefix=False, one cycle) at step granularity:
    /// warm-up warmup_init + n(lr − warmup_init)/warmup_steps for n < warmup_steps, then
    /// min_lr + ½(lr − min_lr)(1 + cos(π n / total_steps)), and min_lr after total_steps.
    Cosine {
        total_steps: u64,
        warmup_steps: u64,
        warmup_init: f64,
        min_lr: f64,
    },
    /// The base rate throughout.
    Constant,
    /// [`LrSchedule::LinearAnneal`] whose first `warmup_steps` are replaced by the linear
    /// warm-up of [`LrSchedule::Cosine`] (timm's `warmup_prefix=False`: the anneal keeps
    /// counting from step 0, so warm-up does not lengthen the run).
    LinearAnnealWarmup {
        total_steps: u64,
        warmup_steps: u64,
        warmup_init: f64,
    },
    /// The base rate after the same linear warm-up.
    ConstantWarmup { warmup_steps: u64, warmup_init: f64 },
}

/// The decay shape of a schedule chosen by name (a kind's `schedule` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// timm's cosine ([`LrSchedule::Cosine`]), down to `min_lr`.
    Cosine,
    /// guided-diffusion's linear anneal to 0 ([`LrSchedule::LinearAnneal`]).
    Anneal,
    /// The base rate ([`LrSchedule::Constant`]).
    Constant,
}

impl ScheduleKind {
    /// The names a kind's `schedule` parameter takes.
    pub const NAMES: [&'static str; 3] = ["cosine", "anneal", "constant"];

    /// Parses `cosine`, `anneal` or `constant`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cosine" => Some(Self::Cosine),
            "anneal" => Some(Self::Anneal),
            "constant" => Some(Self::Constant),
            _ => None,
        }
    }
}

/// A run's schedule: its shape, its length and the linear warm-up in front of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupSchedule {
    pub kind: ScheduleKind,
    pub total_steps: u64,
    /// Steps of linear warm-up from `warmup_init` (0: none).
    pub warmup_steps: u64,
    /// Learning rate of step 0 when warming up (timm's `warmup_lr_init`).
    pub warmup_init: f64,
    /// Floor of the cosine (timm's `lr_min`); the anneal and the constant ignore it.
    pub min_lr: f64,
}

impl WarmupSchedule {
    /// The [`LrSchedule`] it describes.
    pub fn schedule(&self) -> LrSchedule {
        let (total_steps, warmup_steps, warmup_init) =
            (self.total_steps, self.warmup_steps, self.warmup_init);
        match (self.kind, warmup_steps) {
            (ScheduleKind::Cosine, _) => LrSchedule::Cosine {
                total_steps,
                warmup_steps,
                warmup_init,
                min_lr: self.min_lr,
            },
            (ScheduleKind::Anneal, 0) => LrSchedule::LinearAnneal { total_steps },
            (ScheduleKind::Anneal, _) => LrSchedule::LinearAnnealWarmup {
                total_steps,
                warmup_steps,
                warmup_init,
            },
            (ScheduleKind::Constant, 0) => LrSchedule::Constant,
            (ScheduleKind::Constant, _) => LrSchedule::ConstantWarmup {
                warmup_steps,
                warmup_init,
            },
        }
    }
}

impl LrSchedule {
    /// SPEC §4.2: LambdaLinearScheduler(warm_up_steps [10000], f_start [1e-6], f_min [1], f_max [1],
    /// cycle_lengths [1e13]).
    pub fn ldm_warm_up() -> Self {
        Self::LambdaLinear {
            warm_up_steps: 10_000,
            f_start: 1e-6,
            f_min: 1.0,
            f_max: 1.0,
            cycle_length: 1e13,
        }
    }

    /// The learning rate at step n for base rate `lr`.
    pub fn lr_at(&self, lr: f64, n: u64) -> f64 {
        match *self {
            Self::LambdaLinear {
                warm_up_steps,
                f_start,
                f_min,
                f_max,
                cycle_length,
            } => lr * lambda_linear(n, warm_up_steps, f_start, f_min, f_max, cycle_length),
            Self::LinearAnneal { total_steps } => {
                let frac_done = (n as f64 / total_steps.max(1) as f64).min(1.0);
                lr * (1.0 - frac_done)
            }
            Self::Cosine {
                total_steps,
                warmup_steps,
                warmup_init,
                min_lr,
            } => cosine(lr, n, total_steps, warmup_steps, warmup_init, min_lr),
            Self::Constant => lr,
            Self::LinearAnnealWarmup {
                total_steps,
                warmup_steps,
                warmup_init,
            } => warm_up(lr, n, warmup_steps, warmup_init)
                .unwrap_or_else(|| Self::LinearAnneal { total_steps }.lr_at(lr, n)),
            Self::ConstantWarmup {
                warmup_steps,
                warmup_init,
            } => warm_up(lr, n, warmup_steps, warmup_init).unwrap_or(lr),
        }
    }
}

/// timm's linear warm-up: warmup_init + n(lr − warmup_init)/warmup_steps while n is
/// below warmup_steps, else None.
fn warm_up(lr: f64, n: u64, warmup_steps: u64, warmup_init: f64) -> Option<f64> {
    (n < warmup_steps).then(|| warmup_init + n as f64 * (lr - warmup_init) / warmup_steps as f64)
}

/// LDM `LambdaWarmUpCosineScheduler2`-family linear multiplier for a single cycle.
fn lambda_linear(n: u64, warm: u64, f_start: f64, f_min: f64, f_max: f64, cycle: f64) -> f64 {
    let n = n as f64;
    if n < warm as f64 {
        (f_max - f_start) / warm as f64 * n + f_start
    } else {
        f_min + (f_max - f_min) * (cycle - n) / cycle
    }
}

/// timm `CosineLRScheduler._get_lr` with cycle_mul 1, cycle_decay 1, one cycle, no limit.
fn cosine(lr: f64, n: u64, total: u64, warmup: u64, warmup_init: f64, min_lr: f64) -> f64 {
    if let Some(warming) = warm_up(lr, n, warmup, warmup_init) {
        return warming;
    }
    if n >= total {
        return min_lr;
    }
    let t = n as f64 / total as f64;
    min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldm_warm_up_matches_spec_formula() {
        let s = LrSchedule::ldm_warm_up();
        let lr = 5e-5;
        assert!((s.lr_at(lr, 0) - lr * 1e-6).abs() < 1e-20);
        // f(5000) = 1e-6 + (1 − 1e-6)·0.5
        assert!((s.lr_at(lr, 5000) - lr * (1e-6 + (1.0 - 1e-6) * 0.5)).abs() < 1e-18);
        assert!((s.lr_at(lr, 9999) - lr * (1e-6 + (1.0 - 1e-6) * 0.9999)).abs() < 1e-18);
        assert_eq!(s.lr_at(lr, 10_000), lr);
        assert_eq!(s.lr_at(lr, 1_000_000), lr);
    }

    #[test]
    fn linear_anneal_reaches_zero() {
        let s = LrSchedule::LinearAnneal {
            total_steps: 300_000,
        };
        assert_eq!(s.lr_at(3e-4, 0), 3e-4);
        assert!((s.lr_at(3e-4, 150_000) - 1.5e-4).abs() < 1e-18);
        assert_eq!(s.lr_at(3e-4, 300_000), 0.0);
        assert_eq!(s.lr_at(3e-4, 400_000), 0.0);
    }

    /// Every shape starts at warmup_init, rises linearly, then follows its schedule from
    /// the warm-up's last step on, counted from step 0 (timm's warmup_prefix=False).
    #[test]
    fn warm_up_precedes_every_shape() {
        let lr = 1e-3;
        for kind in [
            ScheduleKind::Cosine,
            ScheduleKind::Anneal,
            ScheduleKind::Constant,
        ] {
            let spec = WarmupSchedule {
                kind,
                total_steps: 100,
                warmup_steps: 10,
                warmup_init: 1e-6,
                min_lr: 1e-5,
            };
            let s = spec.schedule();
            assert_eq!(s.lr_at(lr, 0), 1e-6, "{kind:?}");
            assert!((s.lr_at(lr, 5) - (1e-6 + 5.0 * (lr - 1e-6) / 10.0)).abs() < 1e-18);
            let after = s.lr_at(lr, 10);
            let expected = match kind {
                ScheduleKind::Cosine => {
                    1e-5 + 0.5 * (lr - 1e-5) * (1.0 + (std::f64::consts::PI * 0.1).cos())
                }
                ScheduleKind::Anneal => lr * 0.9,
                ScheduleKind::Constant => lr,
            };
            assert!(
                (after - expected).abs() < 1e-18,
                "{kind:?}: {after} vs {expected}"
            );
        }
    }

    #[test]
    fn no_warm_up_gives_the_plain_schedules() {
        let plain = |kind| WarmupSchedule {
            kind,
            total_steps: 50,
            warmup_steps: 0,
            warmup_init: 1e-6,
            min_lr: 0.0,
        };
        assert_eq!(
            plain(ScheduleKind::Anneal).schedule(),
            LrSchedule::LinearAnneal { total_steps: 50 }
        );
        assert_eq!(
            plain(ScheduleKind::Constant).schedule(),
            LrSchedule::Constant
        );
        for name in ScheduleKind::NAMES {
            assert!(ScheduleKind::parse(name).is_some());
        }
        assert_eq!(ScheduleKind::parse("step"), None);
    }
}
