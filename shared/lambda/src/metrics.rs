//! Counters as CloudWatch embedded metric format (EMF) lines: one JSON object per line on
//! stdout, which Lambda's log pipeline turns into metrics (namespace `cairn`, one `Reason`
//! dimension) with no API call and no agent.
//!
//! - `IgnoredMessages`: a message that changed nothing and was deleted (duplicate start,
//!   stale or future attempt, unknown seq or timer, anything for a finished run, ...).
//! - `RejectedMessages`: a message that cannot be decoded; it is reported for redelivery and
//!   ends in the DLQ.
//! - `DeadLetteredMessages`: a record that failed its last receive (SQS moves it to the DLQ);
//!   reason `transient` or `failed`.
//!
//! - `WideOutboxHandedOn`: a wide outbox (a fan-out) whose sender ran out of time and handed
//!   the rest on with a `resumeOutbox`; reason `deadline` or `slice`.
//! - `FailedRuns`: a run the engine failed instead of retrying its record into the DLQ;
//!   reason `unstorable` (what the workflow recorded cannot be stored).
//!
//! Each count is also a log line with the reason, at INFO (ignored) or WARN (rejected).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

/// A message that changed nothing.
pub const IGNORED: &str = "IgnoredMessages";
/// A message that cannot be decoded (bound for the DLQ).
pub const REJECTED: &str = "RejectedMessages";
/// A record that failed its last receive before the DLQ.
pub const DEAD_LETTERED: &str = "DeadLetteredMessages";
/// A wide outbox handed on to a `resumeOutbox` (reason `deadline` or `slice`).
pub const WIDE_OUTBOX_HANDED_ON: &str = "WideOutboxHandedOn";
/// A run the engine failed itself instead of retrying its record (reason `unstorable`: what
/// it recorded cannot be stored).
pub const FAILED_RUNS: &str = "FailedRuns";

/// The EMF line counting one `metric` for `reason` at `timestamp_ms`.
pub fn emf_line(metric: &str, reason: &str, timestamp_ms: u64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "cairn",
                "Dimensions": [["Reason"]],
                "Metrics": [{"Name": metric, "Unit": "Count"}],
            }],
        },
        "Reason": reason,
        metric: 1,
    })
    .to_string()
}

/// What this process counted, by metric and reason (see [`counted`]).
static COUNTS: Mutex<BTreeMap<(String, String), u64>> = Mutex::new(BTreeMap::new());

/// How many `metric`s for `reason` this process has counted: what its EMF lines add up to
/// (for tests and the dev loop; counts are rare, one per ignored or rejected message).
pub fn counted(metric: &str, reason: &str) -> u64 {
    COUNTS.lock().map_or(0, |counts| {
        counts
            .get(&(metric.to_owned(), reason.to_owned()))
            .copied()
            .unwrap_or(0)
    })
}

/// Counts one `metric` for `reason` (writes its EMF line to stdout).
pub fn count(metric: &str, reason: &str) {
    if let Ok(mut counts) = COUNTS.lock() {
        *counts
            .entry((metric.to_owned(), reason.to_owned()))
            .or_default() += 1;
    }
    let line = emf_line(metric, reason, cairn::clock::now_ms());
    // A metric that cannot be written must not fail the record: the log line stays.
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_are_embedded_metric_format() {
        let line: serde_json::Value =
            serde_json::from_str(&emf_line(IGNORED, "stale_attempt", 7)).unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 7);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "cairn");
        assert_eq!(directive["Dimensions"][0][0], "Reason");
        assert_eq!(directive["Metrics"][0]["Name"], IGNORED);
        assert_eq!(line["Reason"], "stale_attempt");
        assert_eq!(line[IGNORED], 1);
    }
}
