//! Turning commands into messages, sending them, and finding what a redelivered record's
//! activation issued.

use cairn::contract::{
    ControlMessage, ParentRef, RemoteTask, RunId, StepId, StepResult, StepStatus,
};
use cairn::store::{CheckpointStore, LoadedRun, OutboxBatch, RunRecord};
use cairn::workflow::{Command, EventKind, HistoryEvent, Incoming, RunOutcome, RunStatus, TimerId};

use super::{EngineTransport, RecordError};

/// Seconds to delay the next hop of a timer due at `fire_at_ms`.
pub(crate) fn delay_seconds(fire_at_ms: u64, now_ms: u64, chunk_seconds: u32) -> u32 {
    let remaining = fire_at_ms.saturating_sub(now_ms).div_ceil(1000);
    remaining.min(u64::from(chunk_seconds)) as u32
}

/// Adds a `ReportToParent` for a child run that just finished, if the engine did not.
pub(crate) fn ensure_parent_report(run: &RunRecord, commands: &mut Vec<Command>) {
    // A run that continued as new is not done: the last run of the chain reports.
    if run.parent.is_none()
        || run.status == RunStatus::ContinuedAsNew
        || commands
            .iter()
            .any(|c| matches!(c, Command::ReportToParent { .. }))
    {
        return;
    }
    let outcome = match (&run.status, &run.output, &run.error) {
        (RunStatus::Completed, output, _) => RunOutcome::Completed {
            output: output.clone().unwrap_or_default(),
        },
        (_, _, Some(error)) => RunOutcome::Failed {
            error: error.clone(),
        },
        (status, _, None) => RunOutcome::Failed {
            error: cairn::contract::StepError::terminal(format!("child run ended {status}"))
                .with_code(cairn::contract::ErrorCode::ChildFailed),
        },
    };
    commands.push(Command::ReportToParent { outcome });
}

/// A child run's outcome as the parent receives it: a `StepResult` for the parent's `seq`.
pub(crate) fn parent_result(
    parent: &ParentRef,
    outcome: RunOutcome,
    started_at: Option<u64>,
) -> StepResult {
    let (status, output, error) = match outcome {
        RunOutcome::Completed { output } => (StepStatus::Completed, Some(output), None),
        RunOutcome::Failed { error } => (StepStatus::Failed, None, Some(error)),
    };
    StepResult {
        run_id: parent.run_id.clone(),
        seq: parent.seq,
        step_id: StepId::new(&parent.run_id, parent.seq),
        status,
        output,
        error,
        started_at,
        events: None,
        attempt: None,
    }
}

/// The messages a list of commands turns into, by kind (one batched send each).
#[derive(Default)]
pub(crate) struct Messages {
    pub(crate) tasks: Vec<RemoteTask>,
    pub(crate) results: Vec<StepResult>,
    pub(crate) control: Vec<(ControlMessage, u32)>,
}

pub(crate) fn messages_for(
    run: &RunRecord,
    commands: &[Command],
    now_ms: u64,
    timer_chunk_seconds: u32,
) -> Messages {
    let mut out = Messages::default();
    for command in commands {
        match command {
            Command::DispatchTask { .. } => {
                out.tasks
                    .extend(command.remote_task(&run.run_id, Some(&run.workflow), now_ms));
            }
            // A step's timeout backstop is not a message: the worker enforces the step's
            // timeouts itself, and the backstop (for an attempt nothing answers) is fired by
            // the reconciler from the activation's `byDue` entry. Sending it cost a send, a
            // receive and a delete per timed step, nearly always for a moot timer.
            Command::StartTimer {
                timer_id: TimerId::Timeout { .. },
                ..
            } => {}
            Command::StartTimer {
                timer_id,
                fire_at_ms,
                ..
            } => {
                let delay = delay_seconds(*fire_at_ms, now_ms, timer_chunk_seconds);
                let message = ControlMessage::TimerFired {
                    run_id: run.run_id.clone(),
                    timer_id: timer_id.to_string(),
                    fire_at_ms: *fire_at_ms,
                };
                out.control.push((message, delay));
            }
            Command::StartChild {
                seq,
                workflow,
                input,
                ..
            } => out.control.push((
                ControlMessage::StartRun {
                    // The id the workflow recorded is derived the same way from the parent.
                    run_id: run.run_id.child(*seq),
                    workflow: workflow.clone(),
                    input: input.clone(),
                    parent: Some(ParentRef {
                        run_id: run.run_id.clone(),
                        seq: *seq,
                    }),
                },
                0,
            )),
            Command::CancelChild { run_id } => match RunId::parse(run_id.clone()) {
                Ok(run_id) => out.control.push((
                    ControlMessage::CancelRun {
                        run_id,
                        reason: Some(format!("parent {} cancelled", run.run_id)),
                    },
                    0,
                )),
                // Derived from this run's own valid id, so only a damaged outbox gets here.
                Err(error) => {
                    tracing::error!(run_id = %run.run_id, %error, "child to cancel has an invalid id; skipped")
                }
            },
            Command::ReportToParent { outcome } => {
                if let Some(parent) = &run.parent {
                    let result = parent_result(parent, outcome.clone(), Some(run.created_at_ms));
                    out.results.push(result);
                }
            }
            Command::ContinueAsNew { workflow, input } => out.control.push((
                ControlMessage::StartRun {
                    run_id: run.run_id.next_in_chain(),
                    workflow: workflow.clone(),
                    input: input.clone(),
                    parent: run.parent.clone(),
                },
                0,
            )),
        }
    }
    out
}

/// Sends `commands` of `run` (tasks, results, control messages: one batched send each).
pub async fn send_commands<T: EngineTransport>(
    transport: &T,
    run: &RunRecord,
    commands: &[Command],
    timer_chunk_seconds: u32,
) -> Result<(), RecordError> {
    let messages = messages_for(run, commands, super::now_ms(), timer_chunk_seconds);
    if !messages.tasks.is_empty() {
        transport.send_tasks(&messages.tasks).await?;
    }
    if !messages.results.is_empty() {
        transport.send_results(&messages.results).await?;
    }
    if !messages.control.is_empty() {
        transport.send_control(&messages.control).await?;
    }
    Ok(())
}

/// Sends the commands of `batches` and clears them from the store once all were sent
/// (legacy outbox items, finished wide outboxes).
///
/// If a send fails, the batches stay: the record is redelivered (or the reconciler finds the
/// run) and they are sent again. Receivers are idempotent (`stepId` dedupe, timer ids,
/// start-by-run-id), so a repeat is harmless.
pub async fn send_outbox<T: EngineTransport, S: CheckpointStore>(
    transport: &T,
    store: &S,
    run: &RunRecord,
    batches: Vec<OutboxBatch>,
    timer_chunk_seconds: u32,
) -> Result<(), RecordError> {
    let commands: Vec<Command> = batches
        .iter()
        .flat_map(|b| b.commands.iter().skip(b.sent).cloned())
        .collect();
    send_commands(transport, run, &commands, timer_chunk_seconds).await?;
    store.clear_outbox(&run.run_id, &batches).await?;
    Ok(())
}

/// The history index of the event that recorded `incoming`, if it is recorded.
fn recorded_at(history: &[HistoryEvent], incoming: &Incoming) -> Option<u64> {
    let found = history.iter().rposition(|e| match (incoming, &e.kind) {
        (Incoming::Start { .. }, EventKind::RunStarted { .. }) => true,
        (
            Incoming::StepResult { seq, attempt, .. },
            EventKind::StepCompleted {
                seq: s, attempt: a, ..
            }
            | EventKind::StepFailed {
                seq: s, attempt: a, ..
            },
        ) => seq == s && attempt.is_none_or(|attempt| attempt == *a),
        (Incoming::TimerFired { timer_id }, EventKind::TimerFired { timer_id: t, .. }) => {
            timer_id == t
        }
        (
            Incoming::Signal {
                signal_id: Some(id),
                ..
            },
            EventKind::SignalReceived {
                signal_id: Some(s), ..
            },
        ) => id == s,
        (Incoming::Cancel { .. }, EventKind::CancelRequested { .. }) => true,
        _ => false,
    })?;
    Some(found as u64)
}

/// The activations (batch keys) whose commands redelivered records ask to send again: for
/// each redelivered item already in the history, the activation that recorded it.
pub(crate) fn batches_to_resend(loaded: &LoadedRun, incoming: &[(Incoming, bool)]) -> Vec<u64> {
    let mut keys: Vec<u64> = incoming
        .iter()
        .filter(|(_, redelivered)| *redelivered)
        .filter_map(|(item, _)| recorded_at(&loaded.history, item))
        .filter_map(|index| loaded.batch_of(index))
        .filter(|batch| !batch.commands.is_empty())
        .map(|batch| batch.first)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_longer_than_a_chunk_are_chained() {
        assert_eq!(delay_seconds(10_000, 0, 900), 10);
        assert_eq!(delay_seconds(3_600_000, 0, 900), 900);
        assert_eq!(delay_seconds(5_000, 0, 2), 2);
        assert_eq!(delay_seconds(0, 10, 900), 0);
    }
}
