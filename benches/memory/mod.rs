//! Memory: the process's as Linux reports it in /proc/self/status, resident now (VmRSS) and its peak (VmHWM); and the
//! live heap as counted by an instrumented global allocator.

use std::alloc::System;

use stats_alloc::StatsAlloc;

/// A `/proc/self/status` field in KiB (`None` off Linux or if the field is missing).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident set size now, in KiB.
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS")
}

/// Peak resident set size of the process so far, in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM")
}

/// KiB as MB (10^6 bytes), for printing.
pub fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// Bytes the program holds through `allocator` (requested sizes: no allocator overhead, nothing freed but kept).
pub fn live_heap_bytes(allocator: &StatsAlloc<System>) -> u64 {
    let stats = allocator.stats();
    stats.bytes_allocated.saturating_sub(stats.bytes_deallocated) as u64
}
