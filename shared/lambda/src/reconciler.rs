//! The reconciler: the backstop for what the hot path normally repairs by redelivery.
//!
//! A crash between commit and send brings the record back, and the engine sends the commands
//! again. The reconciler covers the rest, on a schedule and within its deadline, without
//! walking every running run:
//! - wide outboxes whose sender died (lease expired; sparse, sharded `byOutbox` index) are
//!   resumed where their progress says;
//! - activations that started timers or issued commands not covered by an earlier entry
//!   (sparse, sharded `byDue` index, keyed by when they are due; see `Commit::due_ms`) are
//!   looked at once, after the stall time, in due order from a stored high-water mark:
//!   overdue timers not fired are fired (again: a step's timeout backstop is fired only
//!   from here, never sent as a message), and commands of that activation and of the
//!   later ones it covered whose effect is not in the history (a task without its result, a
//!   child not started) are sent again.
//!   Runs waiting on purpose (a signal, a long sleep) are not in the window and cost nothing.
//!
//! Receivers are idempotent (timer ids, `stepId`s, start-by-run-id), so a repeat is harmless.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::engine::{send_commands, EngineTransport};
use cairn::contract::ControlMessage;
use cairn::store::{CheckpointStore, LoadedRun, StoreError};
use cairn::workflow::{Command, EventKind, HistoryEvent, TimerId};

/// The high-water mark of the due-activations pass.
const DUE_MARK: &str = "DUE";
/// On the first pass (no mark yet), look this far back.
const FIRST_LOOKBACK_MS: u64 = 24 * 3600 * 1000;

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
    /// Runs examined.
    pub examined: usize,
    /// Runs whose commands were sent again.
    pub redriven: Vec<String>,
    /// Runs examined with nothing to send (their commands had their effect).
    pub idle: usize,
    /// Runs with an overdue timer that was fired again.
    pub timers_refired: Vec<String>,
    /// Runs whose re-drive failed (left for the next pass).
    pub failed: Vec<String>,
    /// The pass stopped at its deadline or budget (the next pass goes on from its mark).
    pub stopped_early: bool,
}

/// How far one pass looks.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileOptions {
    /// Activations due at or before this time (epoch ms) are examined: now minus the stall.
    pub before_ms: u64,
    /// At most this many runs are examined per pass.
    pub max_runs: usize,
    /// Longest single SQS delay for re-sent timers.
    pub timer_chunk_seconds: u32,
    /// Stop before this instant (the Lambda deadline, less a margin).
    pub deadline: Option<Instant>,
}

impl ReconcileOptions {
    fn out_of_time(&self, report: &ReconcileReport) -> bool {
        report.examined >= self.max_runs || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// One reconciler pass: wide outboxes whose sender died, then activations due since the last
/// pass, oldest first, within the budget and the deadline.
///
/// A run that cannot be loaded or re-driven is reported in `failed` and the pass goes on:
/// one bad run never blocks the others.
pub async fn reconcile<S: CheckpointStore, T: EngineTransport>(
    store: &S,
    transport: &T,
    options: ReconcileOptions,
) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport::default();
    let now = cairn::clock::now_ms();
    // Wide outboxes whose lease expired.
    let mut cursor = None;
    loop {
        let page = store.pending_outbox_runs(now, 100, cursor).await?;
        for run in page.runs {
            if options.out_of_time(&report) {
                report.stopped_early = true;
                return Ok(report);
            }
            report.examined += 1;
            match store.load(&run.run_id).await {
                Ok(Some(loaded)) => {
                    resume_outboxes(store, transport, loaded, &options, &mut report).await
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(run_id = %run.run_id, error = %e, "cannot load run");
                    report.failed.push(run.run_id.into_string());
                }
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    // Activations due since the last pass.
    let mut mark = match store.mark(DUE_MARK).await? {
        Some(mark) => mark,
        None => options.before_ms.saturating_sub(FIRST_LOOKBACK_MS),
    };
    while mark < options.before_ms {
        let page = store.due_items(mark, options.before_ms, 100).await?;
        let mut by_run: HashMap<String, BTreeSet<u64>> = HashMap::new();
        for item in &page.items {
            by_run
                .entry(item.run_id.clone())
                .or_default()
                .insert(item.index);
        }
        let mut runs: Vec<_> = by_run.into_iter().collect();
        runs.sort();
        for (run_id, indexes) in runs {
            if options.out_of_time(&report) {
                report.stopped_early = true;
                return Ok(report);
            }
            report.examined += 1;
            match store.load(&run_id).await {
                Ok(Some(loaded)) => {
                    examine(transport, &loaded, &indexes, &options, &mut report).await
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%run_id, error = %e, "cannot load run");
                    report.failed.push(run_id.to_string());
                }
            }
        }
        let last = page.items.last().map(|i| i.due_ms);
        mark = match (page.more, last) {
            // Entries of the last millisecond may continue on the next page.
            (true, Some(last)) if last > mark + 1 => last - 1,
            (true, Some(last)) => last,
            _ => options.before_ms,
        };
        store.set_mark(DUE_MARK, mark).await?;
        if !page.more {
            break;
        }
    }
    Ok(report)
}

/// Resumes a run's wide outboxes whose sender is gone.
async fn resume_outboxes<S: CheckpointStore, T: EngineTransport>(
    store: &S,
    transport: &T,
    loaded: LoadedRun,
    options: &ReconcileOptions,
    report: &mut ReconcileReport,
) {
    let run = loaded.run;
    for batch in loaded.outbox {
        let result = crate::engine::resume_wide(
            transport,
            store,
            &run,
            batch,
            options.timer_chunk_seconds,
            options.deadline,
        )
        .await;
        if let Err(e) = result {
            tracing::warn!(run_id = %run.run_id, error = %e, "resuming a wide outbox failed; next pass");
            report.failed.push(run.run_id.to_string());
            return;
        }
    }
    report.redriven.push(run.run_id.into_string());
}

/// Whether the history answered attempt `attempt` of step `seq` (any attempt if `None`): a
/// result for it, or a later attempt scheduled.
pub(crate) fn answered(loaded: &LoadedRun, seq: u64, attempt: Option<u32>) -> bool {
    {
        loaded.history.iter().any(|e| match &e.kind {
            EventKind::StepCompleted {
                seq: s, attempt: a, ..
            }
            | EventKind::StepFailed {
                seq: s, attempt: a, ..
            } => *s == seq && attempt.is_none_or(|attempt| attempt == *a),
            EventKind::TaskScheduled {
                seq: s, attempt: a, ..
            } => {
                // A later attempt was scheduled: this one was answered (or timed out).
                *s == seq && attempt.is_some_and(|attempt| *a > attempt)
            }
            _ => false,
        })
    }
}

/// Commands of `batch` whose effect the history does not show.
fn unanswered(loaded: &LoadedRun, commands: &[Command]) -> Vec<Command> {
    let answered = |seq: u64, attempt: Option<u32>| answered(loaded, seq, attempt);
    let ended = loaded.run.status.is_terminal();
    commands
        .iter()
        .filter(|c| match c {
            Command::DispatchTask { seq, attempt, .. } => !ended && !answered(*seq, Some(*attempt)),
            Command::StartChild { seq, .. } => !ended && !answered(*seq, None),
            // Timers are checked against their due time (`overdue_timers`).
            Command::StartTimer { .. } => false,
            Command::CancelChild { .. }
            | Command::ReportToParent { .. }
            | Command::ContinueAsNew { .. } => true,
        })
        .cloned()
        .collect()
}

/// Looks at a run's due activations: fires overdue timers again, sends unanswered commands.
async fn examine<T: EngineTransport>(
    transport: &T,
    loaded: &LoadedRun,
    indexes: &BTreeSet<u64>,
    options: &ReconcileOptions,
    report: &mut ReconcileReport,
) {
    let run_id = loaded.run.run_id.clone();
    // The due activations and the ones after them that they covered (an activation whose
    // commands an earlier entry comes due for writes no entry: `Commit::due_ms`), as far as
    // they are past the stall time.
    let from = indexes.iter().next().copied().unwrap_or(u64::MAX);
    let committed_ms = |first: u64, len: usize| {
        let start = usize::try_from(first).unwrap_or(usize::MAX);
        loaded
            .history
            .iter()
            .skip(start)
            .take(len)
            .map(|e| e.at_ms)
            .max()
            .unwrap_or(0)
    };
    let commands: Vec<Command> = loaded
        .batches
        .iter()
        .filter(|b| {
            indexes.contains(&b.first)
                || (b.first > from && committed_ms(b.first, b.events) <= options.before_ms)
        })
        .flat_map(|b| unanswered(loaded, &b.commands))
        .collect();
    let overdue: Vec<(TimerId, u64)> = if loaded.run.status.is_terminal() {
        Vec::new()
    } else {
        overdue_timers(&loaded.history, cairn::clock::now_ms())
            .into_iter()
            // A step's timeout backstop is fired from here (it is never sent as a message),
            // unless its attempt was answered: then it is moot.
            .filter(|(timer_id, _)| match timer_id {
                TimerId::Timeout { seq, attempt } => !answered(loaded, *seq, Some(*attempt)),
                _ => true,
            })
            .collect()
    };
    if commands.is_empty() && overdue.is_empty() {
        report.idle += 1;
        return;
    }
    if !commands.is_empty() {
        match send_commands(
            transport,
            &loaded.run,
            &commands,
            options.timer_chunk_seconds,
        )
        .await
        {
            Ok(()) => {
                tracing::info!(%run_id, commands = commands.len(), "sent unanswered commands again");
                report.redriven.push(run_id.to_string());
            }
            Err(e) => {
                tracing::warn!(%run_id, error = %e, "re-drive failed; will retry next pass");
                report.failed.push(run_id.to_string());
                return;
            }
        }
    }
    if overdue.is_empty() {
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
            report.timers_refired.push(run_id.to_string());
        }
        Err(e) => {
            tracing::warn!(%run_id, error = %e, "could not re-fire timers");
            report.failed.push(run_id.to_string());
        }
    }
}

/// One pass over what is due `config.stall_seconds` ago (the reconciler Lambda's body),
/// stopping before `deadline`.
pub async fn reconcile_stalled<S: CheckpointStore, T: EngineTransport>(
    store: &S,
    transport: &T,
    config: &crate::config::Config,
    deadline: Option<Instant>,
) -> Result<ReconcileReport, StoreError> {
    let options = ReconcileOptions {
        before_ms: cairn::clock::now_ms().saturating_sub(config.stall_seconds * 1000),
        max_runs: 1000,
        timer_chunk_seconds: config.timer_chunk_seconds,
        deadline,
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
