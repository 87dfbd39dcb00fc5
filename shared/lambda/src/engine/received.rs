//! Decoded results-queue messages and what each becomes for an activation ([`Incoming`]).

use super::*;

/// A decoded results-queue record.
pub(super) struct Received {
    pub(super) message_id: String,
    pub(super) message: ResultsMessage,
    /// SQS delivered it before (`ApproximateReceiveCount` > 1).
    pub(super) redelivered: bool,
}

pub(super) fn redelivered(record: &SqsMessage) -> bool {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n > 1)
}

/// The engine input for a message, and the parent of a starting child run; `None` (logged)
/// for a message no run can take.
pub(super) fn to_incoming(
    message: ResultsMessage,
    message_id: &str,
) -> Option<(Incoming, Option<cairn::contract::ParentRef>)> {
    Some(match message {
        ResultsMessage::Step(result) => {
            let outcome = match result.status {
                StepStatus::Completed => Ok(result.output.unwrap_or(serde_json::Value::Null)),
                StepStatus::Failed => Err(result.error.unwrap_or_else(|| {
                    cairn::contract::StepError::retryable(
                        "worker reported failure without an error",
                    )
                })),
            };
            (
                Incoming::StepResult {
                    seq: result.seq,
                    attempt: result.attempt,
                    started_at_ms: result.started_at,
                    outcome,
                    events: result.events.unwrap_or_default(),
                },
                None,
            )
        }
        ResultsMessage::Control(control) => match control {
            ControlMessage::StartRun {
                workflow,
                input,
                parent,
                ..
            } => (Incoming::Start { workflow, input }, parent),
            ControlMessage::Signal {
                name,
                payload,
                signal_id,
                ..
            } => {
                let signal_id =
                    signal_id.or_else(|| (!message_id.is_empty()).then(|| message_id.to_owned()));
                (
                    Incoming::Signal {
                        name,
                        payload,
                        signal_id,
                    },
                    None,
                )
            }
            ControlMessage::TimerFired {
                run_id, timer_id, ..
            } => match timer_id.parse() {
                Ok(timer_id) => (Incoming::TimerFired { timer_id }, None),
                Err(error) => {
                    // No timer of any run has such an id: nothing to fire.
                    tracing::info!(%run_id, message_id, %error, "timerFired dropped");
                    return None;
                }
            },
            ControlMessage::CancelRun { reason, .. } => (Incoming::Cancel { reason }, None),
            // Taken out before (`wide::take_resumes`): no run input.
            ControlMessage::ResumeOutbox { .. } => return None,
        },
    })
}
