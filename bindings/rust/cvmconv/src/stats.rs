// SPDX-License-Identifier: MIT
//! [`Stats`]: the counters of `cvmconv_get_stats()` (docs/stats.md).

use cvmconv_sys as sys;

/// The library's counters (`struct cvmconv_stats` without `sz`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Guest requests seen (hypercalls and memory faults).
    pub exits: u64,
    /// Guest requests refused (malformed or by policy).
    pub rejected: u64,
    /// Guest requests not granule aligned.
    pub unaligned: u64,
    /// Bytes that changed state to private.
    pub to_private_bytes: u64,
    /// Bytes that changed state to shared.
    pub to_shared_bytes: u64,
    /// Attribute updates issued (rollbacks included).
    pub attr_updates: u64,
    /// Punch/discard calls issued.
    pub punches: u64,
    /// Of those, failed.
    pub punch_failures: u64,
    /// Live on one side, held on the other.
    pub double_alloc_bytes: u64,
    /// Maximum of double_alloc_bytes.
    pub double_alloc_peak_bytes: u64,
    /// 2 MiB extents with both private and shared pages.
    pub mixed_extents: u64,
    /// 2 MiB extents tracked.
    pub extents: u64,
    /// Bytes in registered regions.
    pub guest_bytes: u64,
    /// Bytes in whole, uniform 2 MiB extents.
    pub huge_mappable_bytes: u64,
    /// Stale bytes still allocated (failed or deferred punches).
    pub punch_pending_bytes: u64,
    /// Heap bytes used by the extent tracker.
    pub tracker_bytes: u64,
    /// Log lines dropped by the rate limit.
    pub log_suppressed: u64,
    /// 1 once a rollback failed (every call then fails with ENOTRECOVERABLE).
    pub broken: u64,
    /// Bookkeeping operations (docs/security.md bounds them per request).
    pub bookkeeping_steps: u64,
    /// Requests rolled back because the shared side could not be allocated.
    pub shared_alloc_failures: u64,
}

impl From<sys::cvmconv_stats> for Stats {
    fn from(st: sys::cvmconv_stats) -> Stats {
        Stats {
            exits: st.exits,
            rejected: st.rejected,
            unaligned: st.unaligned,
            to_private_bytes: st.to_private_bytes,
            to_shared_bytes: st.to_shared_bytes,
            attr_updates: st.attr_updates,
            punches: st.punches,
            punch_failures: st.punch_failures,
            double_alloc_bytes: st.double_alloc_bytes,
            double_alloc_peak_bytes: st.double_alloc_peak_bytes,
            mixed_extents: st.mixed_extents,
            extents: st.extents,
            guest_bytes: st.guest_bytes,
            huge_mappable_bytes: st.huge_mappable_bytes,
            punch_pending_bytes: st.punch_pending_bytes,
            tracker_bytes: st.tracker_bytes,
            log_suppressed: st.log_suppressed,
            broken: st.broken,
            bookkeeping_steps: st.bookkeeping_steps,
            shared_alloc_failures: st.shared_alloc_failures,
        }
    }
}
