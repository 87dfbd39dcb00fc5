//! The reconciler: re-drives what runs were waiting to send.
//!
//! A crash between "commit" and "send" leaves commands in the run's outbox. Usually the
//! record is redelivered and the engine repairs it; if the record is gone (e.g. dead-lettered)
//! the run would wait forever. The reconciler runs on a schedule and, for runs that have not
//! changed for `stall`:
//! - sends the outbox of every run in the sparse `byOutbox` index, whatever its status (a
//!   finished child's report to its parent included), and settles the index marker;
//! - fires again the long-overdue timers of `running` runs (their messages lost).
//!
//! Receivers are idempotent (timer ids, `stepId`s, start-by-run-id), so a repeat is harmless.

use std::collections::HashMap;

use crate::engine::{send_outbox, EngineTransport};
use cairn::contract::ControlMessage;
use cairn::store::{CheckpointStore, StoreError};
use cairn::workflow::{EventKind, HistoryEvent, TimerId};

/// A timer this overdue is presumed lost (a hop takes at most the SQS delay plus polling).
const TIMER_GRACE_MS: u64 = 60_000;

/// Timers started and not fired whose time is long past: `(timer id, fire at)`.
fn overdue_timers(history: &[HistoryEvent], now_ms: u64) -> Vec<(TimerId, u64)> {
    let mut pending: HashMap<TimerId, u64> = HashMap::new();
    for event in history {
        match &event.kind {
            EventKind::TimerStarted {
                timer_id,
                fire_at_ms,
                ..
            } => {
                pending.insert(*timer_id, *fire_at_ms);
            }
            EventKind::TimerFired { timer_id, .. } => {
                pending.remove(timer_id);
            }
            _ => {}
        }
    }
    let mut overdue: Vec<(TimerId, u64)> = pending
        .into_iter()
        .filter(|(_, at)| at.saturating_add(TIMER_GRACE_MS) < now_ms)
        .collect();
    overdue.sort();
    overdue
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    /// Stalled runs examined.
    pub examined: usize,
    /// Runs whose outbox was re-sent.
    pub redriven: Vec<String>,
    /// Runs that are idle with nothing to send (waiting on a signal, a long timer or a worker).
    pub idle: usize,
    /// Runs with an overdue timer that was fired again.
    pub timers_refired: Vec<String>,
    /// Runs whose re-drive failed (left for the next pass).
    pub failed: Vec<String>,
}

/// How far one pass looks.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileOptions {
    /// Runs unchanged since before this time (epoch ms) count as stalled.
    pub before_ms: u64,
    /// At most this many runs are examined per pass (pages of 100).
    pub max_runs: usize,
    /// Longest single SQS delay for re-sent timers.
    pub timer_chunk_seconds: u32,
}

/// Which runs a phase of the pass lists.
#[derive(Clone, Copy)]
enum Phase {
    /// Runs with commands committed and not confirmed sent, whatever their status.
    PendingOutbox,
    /// Runs still `running` (for overdue timers).
    Stalled,
}

/// One reconciler pass: runs with an unsent outbox (any status), then stalled running runs
/// with overdue timers; oldest first, page after page, up to `max_runs` in all.
///
/// A run that cannot be loaded or re-driven is reported in `failed` and the pass goes on:
/// one bad run never blocks the others.
pub async fn reconcile<S: CheckpointStore, T: EngineTransport>(
    store: &S,
    transport: &T,
    options: ReconcileOptions,
) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport::default();
    for phase in [Phase::PendingOutbox, Phase::Stalled] {
        let mut cursor = None;
        loop {
            let page = match phase {
                Phase::PendingOutbox => {
                    store
                        .pending_outbox_runs(options.before_ms, 100, cursor)
                        .await?
                }
                Phase::Stalled => store.stalled_runs(options.before_ms, 100, cursor).await?,
            };
            for run in page.runs {
                if report.examined >= options.max_runs {
                    return Ok(report);
                }
                report.examined += 1;
                match store.load(&run.run_id).await {
                    Ok(Some(loaded)) => match phase {
                        Phase::PendingOutbox => {
                            redrive(store, transport, loaded, &options, &mut report).await
                        }
                        Phase::Stalled => refire_timers(transport, loaded, &mut report).await,
                    },
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(run_id = %run.run_id, error = %e, "cannot load stalled run");
                        report.failed.push(run.run_id.into_string());
                    }
                }
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    Ok(report)
}

/// Sends a run's leftover outbox, then takes it out of the pending-outbox index.
async fn redrive<S: CheckpointStore, T: EngineTransport>(
    store: &S,
    transport: &T,
    loaded: cairn::store::LoadedRun,
    options: &ReconcileOptions,
    report: &mut ReconcileReport,
) {
    let run = loaded.run;
    let had_outbox = !loaded.outbox.is_empty();
    if had_outbox {
        if let Err(e) = send_outbox(
            transport,
            store,
            &run,
            loaded.outbox,
            options.timer_chunk_seconds,
        )
        .await
        {
            tracing::warn!(run_id = %run.run_id, error = %e, "re-drive failed; will retry next pass");
            report.failed.push(run.run_id.into_string());
            return;
        }
        tracing::info!(run_id = %run.run_id, "re-drove pending commands");
    }
    // Sent now, or already sent on the hot path (which leaves the marker to us).
    if let Err(e) = store.settle_outbox_marker(&run).await {
        tracing::warn!(run_id = %run.run_id, error = %e, "could not settle the outbox marker");
    }
    if had_outbox {
        report.redriven.push(run.run_id.into_string());
    } else {
        report.idle += 1;
    }
}

/// Fires a stalled run's overdue timers again (their messages were lost).
async fn refire_timers<T: EngineTransport>(
    transport: &T,
    loaded: cairn::store::LoadedRun,
    report: &mut ReconcileReport,
) {
    let run_id = loaded.run.run_id;
    let overdue = overdue_timers(&loaded.history, cairn::clock::now_ms());
    if overdue.is_empty() {
        report.idle += 1;
        return;
    }
    let messages: Vec<(ControlMessage, u32)> = overdue
        .into_iter()
        .map(|(timer_id, fire_at_ms)| {
            let run_id = run_id.clone();
            (
                ControlMessage::TimerFired {
                    run_id,
                    timer_id: timer_id.to_string(),
                    fire_at_ms,
                },
                0,
            )
        })
        .collect();
    match transport.send_control(&messages).await {
        Ok(()) => {
            tracing::info!(%run_id, timers = messages.len(), "fired overdue timers again");
            report.timers_refired.push(run_id.into_string());
        }
        Err(e) => {
            tracing::warn!(%run_id, error = %e, "could not re-fire timers");
            report.failed.push(run_id.into_string());
        }
    }
}

/// One pass over runs idle for `config.stall_seconds` (the reconciler Lambda's body).
pub async fn reconcile_stalled<S: CheckpointStore, T: EngineTransport>(
    store: &S,
    transport: &T,
    config: &crate::config::Config,
) -> Result<ReconcileReport, StoreError> {
    let options = ReconcileOptions {
        before_ms: cairn::clock::now_ms().saturating_sub(config.stall_seconds * 1000),
        max_runs: 1000,
        timer_chunk_seconds: config.timer_chunk_seconds,
    };
    reconcile(store, transport, options).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: EventKind) -> HistoryEvent {
        HistoryEvent::new(0, kind)
    }

    #[test]
    fn only_unfired_timers_past_their_grace_are_overdue() {
        let history = vec![
            event(EventKind::RunStarted {
                format: cairn::workflow::HISTORY_FORMAT,
                workflow: "w".into(),
                input: json!(null),
            }),
            event(EventKind::TimerStarted {
                seq: 1,
                timer_id: TimerId::Sleep(1),
                fire_at_ms: 1_000,
            }),
            event(EventKind::TimerFired {
                seq: 1,
                timer_id: TimerId::Sleep(1),
            }),
            event(EventKind::TimerStarted {
                seq: 2,
                timer_id: TimerId::Sleep(2),
                fire_at_ms: 2_000,
            }),
            event(EventKind::TimerStarted {
                seq: 3,
                timer_id: TimerId::Sleep(3),
                fire_at_ms: 500_000,
            }),
        ];
        let now = 2_000 + TIMER_GRACE_MS + 1;
        assert_eq!(
            overdue_timers(&history, now),
            vec![(TimerId::Sleep(2), 2_000)]
        );
        assert!(
            overdue_timers(&history, 2_000).is_empty(),
            "not overdue within the grace"
        );
    }
}
