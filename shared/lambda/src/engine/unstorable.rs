//! An activation the store refuses to write ([`StoreError::TooLarge`]: something nested past
//! the store's depth limit, or more than one commit holds) fails its run with the reason,
//! instead of its record retrying into the DLQ.
//!
//! Bad input cannot get here (the decoder refuses bodies nested past 64 levels), but a
//! workflow can build such a value itself: its output, a step's or a child's input, an inline
//! step's result. The run keeps the activation's events that can be stored, in order, up to
//! the first that cannot, then ends with `RunFailed` (code `unstorable`); it sends nothing
//! but the report to its parent.

use cairn::contract::StepError;
use cairn::store::Commit;
use cairn::workflow::{EventKind, HistoryEvent, RunStatus};

/// The error a run fails with when its activation cannot be stored.
pub(crate) fn error(reason: &str) -> StepError {
    cairn::store::unstorable_error(reason)
}

/// The commit that fails the run instead of `refused`: the events that can be stored
/// (all of them before the first that cannot, if `keep_prefix`; else only a new run's
/// `RunStarted`), then `RunFailed`; no commands but a child's report to its parent.
pub(crate) fn failed_commit(
    refused: &Commit,
    error: &StepError,
    keep_prefix: bool,
    now_ms: u64,
) -> Commit {
    let mut events: Vec<HistoryEvent> = if keep_prefix {
        refused
            .events
            .iter()
            .take_while(|e| storable(e))
            .filter(|e| !e.kind.ends_run())
            .cloned()
            .collect()
    } else {
        // The run's first activation must still start it.
        refused
            .events
            .iter()
            .take(1)
            .filter(|e| matches!(e.kind, EventKind::RunStarted { .. }) && storable(e))
            .cloned()
            .collect()
    };
    events.push(HistoryEvent::new(
        now_ms,
        EventKind::RunFailed {
            error: error.clone(),
        },
    ));
    let mut run = refused.run.clone();
    let before = run.history_len.saturating_sub(refused.events.len() as u64);
    run.history_len = before + events.len() as u64;
    run.status = RunStatus::Failed;
    run.output = None;
    run.error = Some(error.clone());
    // Nothing the refused activation asked for is sent; a child run reports its failure.
    let mut outbox = Vec::new();
    super::outbox::ensure_parent_report(&run, &mut outbox);
    Commit {
        run,
        expected_version: refused.expected_version,
        events,
        outbox,
        lease: None,
        earlier_due_ms: refused.earlier_due_ms,
    }
}

fn storable(event: &HistoryEvent) -> bool {
    cairn::store::unstorable_event(event).is_none()
}
