//! What an activation receives: [`Incoming`] items, checked against the run's history and
//! turned into events, or dropped as duplicates ("a stepId is applied at most once").

use serde_json::Value;

use super::state::{Operation, State};
use super::{EventKind, TimerId};
use crate::contract::{StepError, StepEvent};

/// One message for a run, decoded by the engine Lambda from the results queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Start the run (ignored if it already started).
    Start {
        /// Registered workflow name.
        workflow: String,
        /// Workflow input.
        input: Value,
    },
    /// The outcome of a remote step attempt or of a child run.
    StepResult {
        /// Operation number.
        seq: u64,
        /// The attempt it answers; `None` means the latest dispatched one.
        attempt: Option<u32>,
        /// Output or error.
        outcome: Result<Value, StepError>,
        /// When the worker started the attempt, by its clock (`startedAt`): tells a redelivered
        /// or late result of an earlier attempt from the current one when `attempt` is absent.
        started_at_ms: Option<u64>,
        /// What the worker logged during the attempt (kept in the history).
        events: Vec<StepEvent>,
    },
    /// A durable timer is due.
    TimerFired {
        /// The id from the `StartTimer` command.
        timer_id: TimerId,
    },
    /// A signal (deduplicated by the caller, e.g. by signal id).
    Signal {
        /// Signal name.
        name: String,
        /// Payload.
        payload: Value,
        /// Dedupe key (the control message's `signalId`, else the SQS message id): a
        /// redelivered signal is applied once.
        signal_id: Option<String>,
    },
    /// Cancel the run.
    Cancel {
        /// Why, if said.
        reason: Option<String>,
    },
}

impl Incoming {
    /// What kind of item this is, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Start { .. } => "start",
            Self::StepResult { .. } => "step_result",
            Self::TimerFired { .. } => "timer_fired",
            Self::Signal { .. } => "signal",
            Self::Cancel { .. } => "cancel",
        }
    }

    /// Orders one run's batch for its activation: step results first. A result and a timeout
    /// that arrived in one batch (after an outage, a backlog) are both there to see, so the
    /// step's result decides, not the order they happened to queue in. The order among the
    /// results, and among the rest, is kept. (The engine calls this; `activate` itself applies
    /// items in the order given, so a replay reproduces exactly what was recorded.)
    pub fn results_first(batch: &mut [Incoming]) {
        batch.sort_by_key(|item| !matches!(item, Incoming::StepResult { .. }));
    }

    /// A completed result for `seq`'s latest attempt.
    pub fn completed(seq: u64, output: Value) -> Self {
        Self::StepResult {
            seq,
            attempt: None,
            outcome: Ok(output),
            started_at_ms: None,
            events: Vec::new(),
        }
    }

    /// A failed result for `seq`'s latest attempt.
    pub fn failed(seq: u64, error: StepError) -> Self {
        Self::StepResult {
            seq,
            attempt: None,
            outcome: Err(error),
            started_at_ms: None,
            events: Vec::new(),
        }
    }
}

/// Why an incoming item was dropped (for logs; dropping is never an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    AlreadyStarted,
    UnknownSeq,
    /// For an attempt not dispatched yet.
    FutureAttempt,
    /// A redelivery of a result already in the history.
    DuplicateResult,
    /// For an earlier attempt that has no outcome (attempts start after the previous ended).
    StaleAttempt,
    UnknownTimer,
    TimerAlreadyFired,
    AlreadyCancelled,
    DuplicateSignal,
}

impl Dropped {
    /// The reason, as logged and counted (`IgnoredMessages` by `Reason`).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::AlreadyStarted => "duplicate_start",
            Self::UnknownSeq => "unknown_seq",
            Self::FutureAttempt => "future_attempt",
            Self::StaleAttempt => "stale_attempt",
            Self::DuplicateResult => "duplicate_result",
            Self::UnknownTimer => "unknown_timer",
            Self::TimerAlreadyFired => "timer_already_fired",
            Self::AlreadyCancelled => "already_cancelled",
            Self::DuplicateSignal => "duplicate_signal",
        }
    }
}

/// How far a worker's clock may run behind the engine's before a result of the current
/// attempt could be taken for one of an earlier attempt (see [`State::attempt_of`]).
const CLOCK_SKEW_MS: u64 = 1_000;

impl State {
    /// Which attempt a result answers. With `attempt` absent (nestjs-durable workers never send
    /// it), the worker's `startedAt` decides: a redelivery carries the start time of a recorded
    /// result; and an attempt cannot start before it was scheduled, so a start well before the
    /// latest attempt was scheduled belongs to an earlier one. Without either, the latest.
    fn attempt_of(&self, seq: u64, attempt: Option<u32>, started_at_ms: Option<u64>) -> u32 {
        let Some(slot) = self.slot(seq) else {
            return 0;
        };
        if let Some(attempt) = attempt {
            return attempt;
        }
        let Some(started) = started_at_ms else {
            return slot.attempts;
        };
        if let Some(same) = slot
            .results
            .iter()
            .find(|r| r.started_at_ms == Some(started))
        {
            return same.attempt;
        }
        (1..=slot.attempts)
            .rev()
            .find(|&a| {
                slot.scheduled_at(a)
                    .is_none_or(|at| at <= started.saturating_add(CLOCK_SKEW_MS))
            })
            .unwrap_or(1)
    }

    /// Records a worker's (or a child run's) result: as the attempt's outcome, as a late result
    /// of an attempt already failed on its timeout, or not at all (a duplicate).
    fn apply_result(
        &mut self,
        seq: u64,
        attempt: Option<u32>,
        outcome: Result<Value, StepError>,
        started_at_ms: Option<u64>,
        events: Vec<crate::contract::StepEvent>,
    ) -> Result<(), Dropped> {
        let attempt = self.attempt_of(seq, attempt, started_at_ms);
        let slot = self.slot(seq).ok_or(Dropped::UnknownSeq)?;
        if !matches!(slot.kind, Some(Operation::Remote(_) | Operation::Child(_)))
            || slot.attempts == 0
        {
            return Err(Dropped::UnknownSeq);
        }
        if attempt == 0 || attempt > slot.attempts {
            return Err(Dropped::FutureAttempt);
        }
        let recorded: Vec<&super::state::AttemptResult> = slot
            .results
            .iter()
            .filter(|r| r.attempt == attempt)
            .collect();
        let timed_out = slot.timed_out.contains(&attempt);
        if recorded.is_empty() {
            if attempt != slot.attempts {
                return Err(Dropped::StaleAttempt);
            }
            self.append(match outcome {
                Ok(output) => EventKind::StepCompleted {
                    seq,
                    attempt,
                    output,
                    started_at_ms,
                    events,
                },
                Err(error) => EventKind::StepFailed {
                    seq,
                    attempt,
                    error,
                    started_at_ms,
                    events,
                },
            });
            return Ok(());
        }
        // The attempt has its outcome: a worker's result again (redelivered), or the engine's
        // timeout failure, after which the worker's own result is late, and recorded once.
        if !timed_out || recorded.iter().any(|r| r.late) {
            return Err(Dropped::DuplicateResult);
        }
        // A success that arrives while the step is still undecided (a later attempt running or
        // a backoff pending) wins: attempts are at-least-once anyway, and its effect happened.
        let kept = outcome.is_ok() && !slot.resolved && slot.kept.is_none();
        let (output, error) = match outcome {
            Ok(output) => (Some(output), None),
            Err(error) => (None, Some(error)),
        };
        self.append(EventKind::LateResult {
            seq,
            attempt,
            output,
            error,
            started_at_ms,
            events,
            kept,
        });
        Ok(())
    }

    /// Appends the events of one incoming item (queued for reveal), or drops it.
    pub(crate) fn apply_incoming(&mut self, incoming: Incoming) -> Result<(), Dropped> {
        match incoming {
            Incoming::Start { .. } => Err(Dropped::AlreadyStarted),
            Incoming::StepResult {
                seq,
                attempt,
                outcome,
                started_at_ms,
                events,
            } => self.apply_result(seq, attempt, outcome, started_at_ms, events),
            Incoming::TimerFired { timer_id } => {
                let &(seq, index) = self.timer_ids.get(&timer_id).ok_or(Dropped::UnknownTimer)?;
                let slot = self.slot(seq).ok_or(Dropped::UnknownTimer)?;
                if slot.timers[index].fired {
                    return Err(Dropped::TimerAlreadyFired);
                }
                // The timeout timer of the current attempt (the engine's backstop) fails it.
                let attempt = slot.attempts;
                let times_out = matches!(slot.kind, Some(Operation::Remote(_)))
                    && timer_id == TimerId::Timeout { seq, attempt }
                    && slot.result(attempt).is_none()
                    && slot.kept.is_none();
                let error = times_out.then(|| timeout_error(slot, attempt, self.now_ms));
                self.append(EventKind::TimerFired { seq, timer_id });
                if let Some(error) = error {
                    self.append(EventKind::StepFailed {
                        seq,
                        attempt,
                        error,
                        started_at_ms: None,
                        events: Vec::new(),
                    });
                }
                Ok(())
            }
            Incoming::Signal {
                name,
                payload,
                signal_id,
            } => {
                if signal_id
                    .as_ref()
                    .is_some_and(|id| self.signal_ids.contains(id))
                {
                    return Err(Dropped::DuplicateSignal);
                }
                self.append(EventKind::SignalReceived {
                    name,
                    payload,
                    signal_id,
                });
                Ok(())
            }
            Incoming::Cancel { reason } => {
                if self.cancel.requested {
                    return Err(Dropped::AlreadyCancelled);
                }
                self.append(EventKind::CancelRequested { reason });
                Ok(())
            }
        }
    }
}

/// The failure of an attempt whose timeout timer fired with no result: the engine's backstop
/// (the worker enforces the timeouts themselves). Histories that recorded no timeouts had a
/// start-to-close timer counted from dispatch.
fn timeout_error(slot: &super::state::OpSlot, attempt: u32, now_ms: u64) -> StepError {
    let code = crate::contract::ErrorCode::Timeout;
    let Some(timeouts) = slot.timeouts.filter(|t| t.start_to_close_ms.is_some()) else {
        return StepError::retryable(format!("attempt {attempt} timed out (start-to-close)"))
            .with_code(code);
    };
    let waited = slot
        .scheduled_at(attempt)
        .map_or(0, |at| now_ms.saturating_sub(at));
    let wait = timeouts.queue_wait_ms();
    let run = timeouts.start_to_close_ms.unwrap_or_default();
    let allowed = match timeouts.schedule_to_start_ms {
        Some(_) => "schedule-to-start",
        None => "default queue wait",
    };
    StepError::retryable(format!(
        "attempt {attempt} has no result {waited} ms after it was scheduled ({allowed} \
         {wait} ms + start-to-close {run} ms): the task was lost, its worker died, or its \
         result is late"
    ))
    .with_code(code)
    .with_details(serde_json::json!({
        "timeout": "noResult",
        "queueWaitMs": wait,
        "startToCloseMs": run,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduled() -> State {
        let mut state = State::new("r", 5);
        state.append(EventKind::TaskScheduled {
            retry: None,
            seq: 1,
            name: "s".into(),
            group: "s".into(),
            input: Value::Null,
            attempt: 2,
            timeouts: None,
        });
        state
    }

    #[test]
    fn results_apply_once_for_the_current_attempt() {
        let mut state = scheduled();
        assert_eq!(
            state.apply_incoming(Incoming::completed(9, Value::Null)),
            Err(Dropped::UnknownSeq)
        );
        let stale = Incoming::StepResult {
            started_at_ms: None,
            seq: 1,
            attempt: Some(1),
            outcome: Ok(Value::Null),
            events: Vec::new(),
        };
        assert_eq!(state.apply_incoming(stale), Err(Dropped::StaleAttempt));
        assert_eq!(
            state.apply_incoming(Incoming::completed(1, Value::from(1))),
            Ok(())
        );
        assert_eq!(
            state.apply_incoming(Incoming::completed(1, Value::from(2))),
            Err(Dropped::DuplicateResult)
        );
        assert_eq!(state.appended.len(), 2);
    }

    #[test]
    fn timers_and_cancel_apply_once() {
        let mut state = scheduled();
        state.append(EventKind::TimerStarted {
            seq: 1,
            timer_id: TimerId::Timeout { seq: 1, attempt: 2 },
            fire_at_ms: 9,
        });
        assert_eq!(
            state.apply_incoming(Incoming::TimerFired {
                timer_id: TimerId::Sleep(7)
            }),
            Err(Dropped::UnknownTimer)
        );
        assert_eq!(
            state.apply_incoming(Incoming::TimerFired {
                timer_id: TimerId::Timeout { seq: 1, attempt: 2 }
            }),
            Ok(())
        );
        assert!(matches!(
            state.appended.last().map(|e| &e.kind),
            Some(EventKind::StepFailed { attempt: 2, .. })
        ));
        let again = Incoming::TimerFired {
            timer_id: TimerId::Timeout { seq: 1, attempt: 2 },
        };
        assert_eq!(state.apply_incoming(again), Err(Dropped::TimerAlreadyFired));
        assert_eq!(
            state.apply_incoming(Incoming::Cancel { reason: None }),
            Ok(())
        );
        assert_eq!(
            state.apply_incoming(Incoming::Cancel { reason: None }),
            Err(Dropped::AlreadyCancelled)
        );
    }

    #[test]
    fn a_redelivered_signal_applies_once_and_unnamed_ones_always_apply() {
        let mut state = scheduled();
        let signal = |id: Option<&str>| Incoming::Signal {
            name: "approval".into(),
            payload: Value::from(true),
            signal_id: id.map(str::to_owned),
        };
        assert_eq!(state.apply_incoming(signal(Some("m-1"))), Ok(()));
        assert_eq!(
            state.apply_incoming(signal(Some("m-1"))),
            Err(Dropped::DuplicateSignal)
        );
        assert_eq!(state.apply_incoming(signal(Some("m-2"))), Ok(()));
        assert_eq!(state.apply_incoming(signal(None)), Ok(()));
        assert_eq!(state.appended.len(), 4);
    }
}
