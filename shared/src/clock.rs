//! The wall clock, in one place. Workflow code never reads it (it gets recorded time from
//! `ctx.now()`); the engine, workers and tools do, through this function.

/// Wall-clock time, epoch milliseconds (0 before 1970, saturating far in the future).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
