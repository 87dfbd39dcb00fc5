//! Inline steps: a closure the engine runs itself, inside the activation, with its result
//! checkpointed (`InlineStepStarted`, then `StepCompleted` / `StepFailed`). Replay returns the
//! checkpoint without running the closure again. Retries wait on durable backoff timers.
//!
//! The engine waits for an inline step in flight (real I/O, driven by the activation's waker)
//! before it treats the workflow as blocked, and reveals no new event meanwhile. Racing an
//! inline step in a `select` against another operation is therefore decided by the step's own
//! timing the first time, and by replay order afterwards: do not race inline steps.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::attempts::{walk, AttemptState};
use crate::contract::StepError;
use crate::workflow::context::{decode, encode, OpGuard};
use crate::workflow::state::Operation;
use crate::workflow::{EventKind, RetryPolicy, WorkflowContext, WorkflowError};

impl WorkflowContext {
    /// Runs an inline step with the default retry policy (see [`step_with_retry`](Self::step_with_retry)).
    pub fn step<T, F, Fut>(
        &self,
        name: &str,
        f: F,
    ) -> impl Future<Output = Result<T, WorkflowError>> + Send
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        self.step_with_retry(name, RetryPolicy::DEFAULT, f)
    }

    /// Runs `f` inside the engine as the durable step `name` and checkpoints its result; on
    /// replay the checkpoint is returned and `f` is not called. `f` may do real async I/O. A
    /// failed attempt is retried per `retry` (after a durable timer); the step runs at least
    /// once per attempt, so make it idempotent.
    pub fn step_with_retry<T, F, Fut>(
        &self,
        name: &str,
        retry: RetryPolicy,
        mut f: F,
    ) -> impl Future<Output = Result<T, WorkflowError>> + Send
    where
        T: Serialize + DeserializeOwned + Send,
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        let ctx = self.clone();
        let issued = self.issue(Operation::Inline(name.to_owned()), true);
        async move {
            let seq = issued?.seq;
            let _guard = OpGuard {
                ctx: ctx.clone(),
                seq: Some(seq),
            };
            let mut started_here = 0;
            loop {
                let attempt = match (NextAttempt {
                    ctx: &ctx,
                    seq,
                    retry: &retry,
                    started_here,
                })
                .await?
                {
                    Next::Done(Ok(output)) => return decode(&output),
                    Next::Done(Err((error, attempts))) => {
                        return Err(WorkflowError::StepFailed { error, attempts })
                    }
                    Next::Run(attempt) => attempt,
                };
                started_here = attempt;
                let outcome = {
                    let _in_flight = InFlight::enter(&ctx);
                    f().await
                };
                let outcome = outcome.and_then(|value| {
                    encode(&value).map_err(|e| {
                        StepError::terminal(e.to_string())
                            .with_code(crate::contract::ErrorCode::Serialization)
                    })
                });
                let mut state = ctx.state();
                let event = match outcome {
                    Ok(output) => EventKind::StepCompleted {
                        seq,
                        attempt,
                        output,
                        started_at_ms: None,
                        events: Vec::new(),
                    },
                    Err(error) => EventKind::StepFailed {
                        seq,
                        attempt,
                        error,
                        started_at_ms: None,
                        events: Vec::new(),
                    },
                };
                state.produce(event, None);
                drop(state);
            }
        }
    }
}

enum Next {
    Done(Result<Value, (StepError, u32)>),
    Run(u32),
}

/// Resolves when the step is done or an attempt must run (recording its start).
struct NextAttempt<'a> {
    ctx: &'a WorkflowContext,
    seq: u64,
    retry: &'a RetryPolicy,
    /// The attempt this future already ran (0 = none), so a started attempt is run once here.
    started_here: u32,
}

impl Future for NextAttempt<'_> {
    type Output = Result<Next, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut state = this.ctx.state();
        if let Some(early) = state.poll_prelude(this.seq) {
            return early;
        }
        match walk(&mut state, this.seq, this.retry) {
            AttemptState::Done(Ok(output), _) => {
                state.resolve(this.seq, Ok(Next::Done(Ok(output))))
            }
            AttemptState::Done(Err(error), attempts) => {
                state.resolve(this.seq, Ok(Next::Done(Err((error, attempts)))))
            }
            AttemptState::Waiting => state.park(this.seq, cx),
            AttemptState::Start(attempt) => {
                if state.fatal.is_some() {
                    return Poll::Pending;
                }
                let name = match state.slot(this.seq).and_then(|s| s.kind.clone()) {
                    Some(Operation::Inline(name)) => name,
                    _ => String::new(),
                };
                state.produce(
                    EventKind::InlineStepStarted {
                        seq: this.seq,
                        name,
                        attempt,
                        retry: (attempt == 1).then_some(*this.retry),
                    },
                    None,
                );
                Poll::Ready(Ok(Next::Run(attempt)))
            }
            // Started in an earlier activation that never recorded a result: run it again
            // (at least once per attempt).
            AttemptState::Running(attempt) if attempt != this.started_here => {
                Poll::Ready(Ok(Next::Run(attempt)))
            }
            AttemptState::Running(_) => state.park(this.seq, cx),
        }
    }
}

/// Counts an inline step as in flight: the engine waits for it (real I/O) instead of treating
/// the workflow as blocked.
struct InFlight<'a>(&'a WorkflowContext);

impl<'a> InFlight<'a> {
    fn enter(ctx: &'a WorkflowContext) -> Self {
        ctx.state().inline_in_flight += 1;
        Self(ctx)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.inline_in_flight = state.inline_in_flight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::test_support::*;
    use super::*;
    use crate::workflow::{Command, RunStatus, Workflows};

    #[test]
    fn runs_once_and_replays_checkpoint() {
        let calls = Arc::new(AtomicU32::new(0));
        let mut w = Workflows::new();
        let c = calls.clone();
        w.register("wf", move |ctx: WorkflowContext, _: ()| {
            let c = c.clone();
            async move {
                let v: u32 = ctx
                    .step("count", || {
                        let c = c.clone();
                        async move {
                            // Real async work: yield to the executor once.
                            yield_now().await;
                            Ok(c.fetch_add(1, Ordering::SeqCst) + 7)
                        }
                    })
                    .await?;
                ctx.sleep(Duration::from_secs(1)).await?;
                Ok(v)
            }
        });
        let mut sim = Sim::new(&w, "r");
        let a = sim.step(vec![start("wf", ())]);
        assert!(matches!(
            a.appended[1].kind,
            EventKind::InlineStepStarted { seq: 1, .. }
        ));
        assert!(matches!(
            a.appended[2].kind,
            EventKind::StepCompleted { seq: 1, .. }
        ));
        assert!(matches!(a.commands[..], [Command::StartTimer { .. }]));
        let a = sim.step(vec![fire("2")]);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(sim.output(), Some(Value::from(7)));
    }

    #[test]
    fn failures_retry_after_timer_then_give_up() {
        let mut w = Workflows::new();
        w.register("wf", |ctx: WorkflowContext, _: ()| async move {
            let r: Result<u32, _> = ctx
                .step_with_retry(
                    "boom",
                    RetryPolicy::fixed(2, Duration::from_secs(3)),
                    || async { Err(StepError::retryable("boom")) },
                )
                .await;
            match r {
                Err(WorkflowError::StepFailed { attempts, .. }) => Ok(attempts),
                other => other,
            }
        });
        let mut sim = Sim::new(&w, "r");
        let a = sim.step(vec![start("wf", ())]);
        assert!(matches!(
            &a.commands[..],
            [Command::StartTimer {
                timer_id: crate::workflow::TimerId::Retry { seq: 1, attempt: 1 },
                ..
            }]
        ));
        let a = sim.step(vec![fire("1:retry:1")]);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(sim.output(), Some(Value::from(2)));
    }
}
