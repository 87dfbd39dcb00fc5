//! The attempt walk shared by remote and inline steps: which attempt is current, and whether
//! the step is done, waiting, or needs its next attempt started (after a durable backoff timer).

use serde_json::Value;

use super::super::state::State;
use super::super::{EngineError, RetryPolicy, TimerId};
use crate::contract::StepError;

/// Where a step stands, as far as the workflow may see.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AttemptState {
    /// Finished: the output, or the error of the last attempt, and how many attempts it took.
    Done(Result<Value, StepError>, u32),
    /// Waiting for a result or a backoff timer.
    Waiting,
    /// This attempt has no start record yet: start it.
    Start(u32),
    /// This attempt was started and has no visible result.
    Running(u32),
}

/// Walks the attempts of `seq` from the first, starting backoff timers as failures call for
/// them. O(attempts).
///
/// The retry policy is the one the history recorded with the first attempt; `code_policy` (the
/// policy in the code now) only for a step the history has no policy for (a new step, or a
/// format 1 history). A history whose attempts that policy would not have made fails the
/// activation ([`EngineError::RetryDiverged`](crate::workflow::EngineError::RetryDiverged)).
pub(crate) fn walk(state: &mut State, seq: u64, code_policy: &RetryPolicy) -> AttemptState {
    let policy = state
        .slot(seq)
        .and_then(|s| s.policy)
        .unwrap_or(*code_policy);
    let policy = &policy;
    let mut attempt = 1;
    loop {
        let Some(slot) = state.slot(seq) else {
            return AttemptState::Start(attempt);
        };
        // A late success the run kept decides the step, whatever later attempts do.
        if let Some(kept) = slot.kept_result() {
            if let Ok(output) = &kept.outcome {
                return AttemptState::Done(Ok(output.clone()), kept.attempt);
            }
        }
        if attempt > slot.attempts {
            return AttemptState::Start(attempt);
        }
        let error = match slot.result(attempt) {
            Some(result) if !result.visible => return AttemptState::Running(attempt),
            None => return AttemptState::Running(attempt),
            Some(result) => match &result.outcome {
                Ok(output) => return AttemptState::Done(Ok(output.clone()), attempt),
                Err(error) => error,
            },
        };
        if !policy.should_retry(attempt, error) {
            if slot.attempts > attempt && slot.recorded {
                // The history went on to another attempt: the policy it ran under is not
                // this one (format 1 did not record it). Never reinterpret the history.
                let error = EngineError::RetryDiverged {
                    seq,
                    step: slot.kind.clone(),
                    gave_up_after: attempt,
                    recorded_attempts: slot.attempts,
                };
                state.fail(error);
                return AttemptState::Waiting;
            }
            return AttemptState::Done(Err(error.clone()), attempt);
        }
        let delay = policy.delay_ms(attempt, state.seed(seq));
        if delay > 0 {
            let timer_id = TimerId::Retry { seq, attempt };
            match slot.timer(timer_id) {
                Some(timer) if timer.visible => {}
                Some(_) => return AttemptState::Waiting,
                None => {
                    let fire_at_ms = state.now_ms.saturating_add(delay);
                    state.start_timer(timer_id, fire_at_ms);
                    return AttemptState::Waiting;
                }
            }
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::state::Operation;
    use crate::workflow::{Command, EventKind};
    use std::time::Duration;

    fn remote_state() -> State {
        let mut state = State::new("run", 1_000);
        state.append(EventKind::TaskScheduled {
            retry: None,
            seq: 1,
            name: "s".into(),
            group: "s".into(),
            input: Value::Null,
            attempt: 1,
            timeouts: None,
        });
        assert_eq!(
            state.slot(1).and_then(|s| s.kind.clone()),
            Some(Operation::Remote("s".into()))
        );
        state
    }

    #[test]
    fn running_until_result_revealed() {
        let mut state = remote_state();
        let policy = RetryPolicy::none();
        assert_eq!(walk(&mut state, 1, &policy), AttemptState::Running(1));
        state.append(EventKind::StepCompleted {
            started_at_ms: None,
            seq: 1,
            attempt: 1,
            output: Value::from(5),
            events: Vec::new(),
        });
        assert_eq!(walk(&mut state, 1, &policy), AttemptState::Running(1));
        assert!(state.reveal_next());
        assert_eq!(
            walk(&mut state, 1, &policy),
            AttemptState::Done(Ok(Value::from(5)), 1)
        );
    }

    #[test]
    fn failure_starts_backoff_then_next_attempt() {
        let mut state = remote_state();
        let policy = RetryPolicy::fixed(3, Duration::from_secs(2));
        state.append(EventKind::StepFailed {
            started_at_ms: None,
            seq: 1,
            attempt: 1,
            error: StepError::retryable("x"),
            events: Vec::new(),
        });
        state.reveal_next();
        assert_eq!(walk(&mut state, 1, &policy), AttemptState::Waiting);
        assert_eq!(
            state.commands,
            vec![Command::StartTimer {
                seq: 1,
                timer_id: TimerId::Retry { seq: 1, attempt: 1 },
                fire_at_ms: 3_000
            }]
        );
        assert_eq!(
            walk(&mut state, 1, &policy),
            AttemptState::Waiting,
            "timer started once"
        );
        assert_eq!(state.commands.len(), 1);
        state.append(EventKind::TimerFired {
            seq: 1,
            timer_id: TimerId::Retry { seq: 1, attempt: 1 },
        });
        state.reveal_next();
        assert_eq!(walk(&mut state, 1, &policy), AttemptState::Start(2));
    }

    #[test]
    fn terminal_error_is_done() {
        let mut state = remote_state();
        state.append(EventKind::StepFailed {
            started_at_ms: None,
            seq: 1,
            attempt: 1,
            error: StepError::terminal("no"),
            events: Vec::new(),
        });
        state.reveal_next();
        let got = walk(&mut state, 1, &RetryPolicy::DEFAULT);
        assert!(matches!(got, AttemptState::Done(Err(_), 1)));
    }
}
