//! Throttled recording of a worker's progress events into the store's `progress` table:
//! a stage may report every step, thousands a second, but the dashboard reads the table
//! every second or two. The first report is written at once, later ones at most once per
//! interval, a report that completes the stage (`step >= total`) at once, and the last
//! report held back is written when its interval is over or when the worker ends, so the
//! table never stays behind the stage for longer than one interval.

use std::time::Duration;
use tokio::time::Instant;

/// At most one progress write per execution per this interval.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// One progress event of a worker: `step` of `total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressReport {
    pub step: u64,
    pub total: u64,
    pub message: Option<String>,
}

/// Decides which progress reports of one execution are written.
#[derive(Debug)]
pub struct ProgressThrottle {
    interval: Duration,
    last_write: Option<Instant>,
    /// The newest report not written yet.
    pending: Option<ProgressReport>,
}

impl ProgressThrottle {
    pub fn new(interval: Duration) -> Self {
        ProgressThrottle {
            interval,
            last_write: None,
            pending: None,
        }
    }

    /// A new report: returned when it is to be written now, else held back (replacing
    /// any report held before).
    pub fn offer(&mut self, report: ProgressReport, now: Instant) -> Option<ProgressReport> {
        let interval_over = self
            .last_write
            .is_none_or(|t| now.duration_since(t) >= self.interval);
        if interval_over || report.step >= report.total {
            self.last_write = Some(now);
            self.pending = None;
            Some(report)
        } else {
            self.pending = Some(report);
            None
        }
    }

    /// When the held-back report is due (None when none is held).
    pub fn deadline(&self) -> Option<Instant> {
        let last = self.last_write?;
        self.pending.as_ref().map(|_| last + self.interval)
    }

    /// The held-back report, once its interval is over.
    pub fn take_due(&mut self, now: Instant) -> Option<ProgressReport> {
        if self.deadline().is_some_and(|d| now >= d) {
            self.last_write = Some(now);
            return self.pending.take();
        }
        None
    }

    /// The held-back report, due or not: the worker has ended.
    pub fn flush(&mut self) -> Option<ProgressReport> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(step: u64) -> ProgressReport {
        ProgressReport {
            step,
            total: 100,
            message: None,
        }
    }

    #[test]
    fn writes_the_first_then_one_per_interval_and_the_last() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut throttle = ProgressThrottle::new(Duration::from_secs(1));
        assert_eq!(throttle.offer(report(1), ms(0)), Some(report(1)));
        assert_eq!(throttle.offer(report(2), ms(10)), None);
        assert_eq!(throttle.offer(report(3), ms(20)), None);
        assert_eq!(throttle.deadline(), Some(ms(1000)));
        assert_eq!(throttle.take_due(ms(999)), None);
        assert_eq!(throttle.take_due(ms(1000)), Some(report(3)));
        assert_eq!(throttle.deadline(), None, "nothing held back");
        assert_eq!(throttle.offer(report(4), ms(1500)), None);
        assert_eq!(throttle.offer(report(5), ms(2000)), Some(report(5)));
        assert_eq!(throttle.offer(report(6), ms(2001)), None);
        assert_eq!(throttle.flush(), Some(report(6)));
        assert_eq!(throttle.flush(), None);
    }

    #[test]
    fn the_completing_report_is_written_at_once() {
        let t0 = Instant::now();
        let mut throttle = ProgressThrottle::new(Duration::from_secs(1));
        assert!(throttle.offer(report(1), t0).is_some());
        assert_eq!(throttle.offer(report(50), t0), None);
        assert_eq!(throttle.offer(report(100), t0), Some(report(100)));
        assert_eq!(throttle.flush(), None, "the held-back report is superseded");
    }

    #[test]
    fn a_thousand_fast_reports_make_few_writes() {
        let t0 = Instant::now();
        let mut throttle = ProgressThrottle::new(Duration::from_secs(1));
        let writes = (0..1000u64)
            .filter(|&i| {
                let step = ProgressReport {
                    step: i + 1,
                    total: 1000,
                    message: None,
                };
                throttle
                    .offer(step, t0 + Duration::from_millis(i))
                    .is_some()
            })
            .count();
        assert_eq!(writes, 2, "the first report and the completing one");
    }
}
