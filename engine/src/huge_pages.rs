//! Transparent huge pages, off while the orchestrator plans and looks up keys.
//!
//! The orchestrator's memory is many small allocations; mimalloc asks for huge pages on
//! its arena, so the first touch of each 2 MiB region zeroes all of it. On a VM whose
//! host backs guest memory on first use, that made `plan` at N = 100,000 take 2.1–2.4 s
//! instead of 1.4 s, and a third of a no-op run at N = 10,000 was the kernel clearing
//! pages. Children inherit the setting (prctl(2)), so the one this process started with
//! is put back before the scheduler starts its first execution: stages get the system's
//! default.

use std::sync::atomic::{AtomicI32, Ordering};

/// The setting this process started with (0 or 1), while it is overridden; -1 otherwise.
static STARTED_WITH: AtomicI32 = AtomicI32::new(-1);

/// Turns transparent huge pages off for this process until [`restore_for_children`].
pub fn off_while_planning() {
    // SAFETY: prctl(2) with these options reads or sets one flag of this process.
    let was = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
    if was < 0 || unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return; // An older kernel: huge pages stay as they are.
    }
    STARTED_WITH.store(was, Ordering::SeqCst);
}

/// Puts back the setting this process started with; call before starting a stage.
pub fn restore_for_children() {
    let was = STARTED_WITH.swap(-1, Ordering::SeqCst);
    if was >= 0 {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, was as libc::c_ulong, 0, 0, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disabled() -> i32 {
        // SAFETY: reads one flag of this process.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) }
    }

    #[test]
    fn off_then_restored_to_the_starting_setting() {
        let start = disabled();
        off_while_planning();
        assert_eq!(disabled(), 1);
        restore_for_children();
        assert_eq!(disabled(), start);
        restore_for_children(); // a second call changes nothing
        assert_eq!(disabled(), start);
    }
}
