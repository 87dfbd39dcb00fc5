//! Remote steps: work dispatched as a `RemoteTask` to the tasks queue of the step's group and
//! answered by a worker's `StepResult`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::attempts::{walk, AttemptState};
use crate::workflow::context::{decode, encode, OpGuard};
use crate::workflow::state::Operation;
use crate::workflow::{
    Command, EventKind, RetryPolicy, StepTimeouts, TimerId, WorkflowContext, WorkflowError,
};

/// A remote step, declared once (typically as a `const`) and shared by the workflow that calls
/// it and the worker that serves it.
///
/// ```
/// use cairn::workflow::{RemoteStep, RetryPolicy};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Charge;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Receipt;
/// pub const CHARGE_CARD: RemoteStep<Charge, Receipt> = RemoteStep::new("payments.charge-card")
///     .with_partition("eu")
///     .with_retry(RetryPolicy::DEFAULT);
/// assert_eq!(CHARGE_CARD.group(), "payments.charge-card@eu");
/// ```
pub struct RemoteStep<I, O> {
    name: &'static str,
    partition: Option<&'static str>,
    retry: RetryPolicy,
    timeouts: StepTimeouts,
    types: PhantomData<fn(I) -> O>,
}

impl<I, O> Clone for RemoteStep<I, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, O> Copy for RemoteStep<I, O> {}

impl<I, O> std::fmt::Debug for RemoteStep<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStep")
            .field("name", &self.name)
            .field("partition", &self.partition)
            .field("retry", &self.retry)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl<I, O> RemoteStep<I, O> {
    /// A step named `name` (e.g. `payments.charge-card`), default retry policy, no timeout.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            partition: None,
            retry: RetryPolicy::DEFAULT,
            timeouts: StepTimeouts::NONE,
            types: PhantomData,
        }
    }

    /// Routes the step to the partition queue `name@partition`.
    pub const fn with_partition(mut self, partition: &'static str) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the retry policy.
    pub const fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the start-to-close timeout of each attempt: how long it may run, counted from
    /// the worker's start (queue wait does not count). A cairn worker stops the handler then
    /// and the attempt fails (retryable, code `timeout`). The engine's durable timer is the
    /// backstop, at scheduling + the queue wait allowed (the schedule-to-start timeout, else
    /// [`QUEUE_WAIT_ALLOWANCE_MS`](crate::workflow::QUEUE_WAIT_ALLOWANCE_MS)) + this, fired
    /// by the reconciler (within minutes after: it only matters for an attempt nothing
    /// answers); a result that arrives after it is recorded as late (see
    /// [`WorkflowContext::late_result`]).
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeouts.start_to_close_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// Sets the schedule-to-start timeout of each attempt: how long its task may wait in the
    /// tasks queue. A cairn worker refuses an attempt that waited longer without running the
    /// handler: the step fails for good (code `timeout`, not retryable, as in Temporal: a new
    /// attempt would wait in the same queue). Unset, queue wait is not limited by the worker.
    pub const fn with_schedule_to_start(mut self, timeout: Duration) -> Self {
        self.timeouts.schedule_to_start_ms = Some(timeout.as_millis() as u64);
        self
    }

    /// The step name workers register handlers under.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The partition, if any.
    pub const fn partition(&self) -> Option<&'static str> {
        self.partition
    }

    /// The queue token: `name`, or `name@partition`.
    pub fn group(&self) -> String {
        match self.partition {
            Some(partition) => format!("{}@{partition}", self.name),
            None => self.name.to_owned(),
        }
    }

    /// The retry policy.
    pub const fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The start-to-close timeout per attempt.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeouts.start_to_close_ms.map(Duration::from_millis)
    }

    /// The schedule-to-start timeout per attempt.
    pub fn schedule_to_start(&self) -> Option<Duration> {
        self.timeouts
            .schedule_to_start_ms
            .map(Duration::from_millis)
    }

    /// Both timeouts.
    pub const fn timeouts(&self) -> StepTimeouts {
        self.timeouts
    }
}

impl WorkflowContext {
    /// Calls a remote step: dispatches its input to the step's queue and resolves with the
    /// worker's output (after retries per the step's policy), or
    /// [`WorkflowError::StepFailed`] when it fails for good.
    pub fn remote<I, O>(&self, step: &RemoteStep<I, O>, input: I) -> RemoteCall<O>
    where
        I: Serialize,
        O: DeserializeOwned,
    {
        let call = RemoteCall {
            guard: OpGuard {
                ctx: self.clone(),
                seq: None,
            },
            name: step.name,
            group: step.group(),
            retry: step.retry,
            timeouts: step.timeouts,
            input: Value::Null,
            early: None,
            output: PhantomData,
        };
        self.start_remote(call, &input)
    }

    fn start_remote<I: Serialize, O>(&self, mut call: RemoteCall<O>, input: &I) -> RemoteCall<O> {
        match encode(input) {
            Ok(input) => call.input = input,
            Err(e) => {
                call.early = Some(e);
                return call;
            }
        }
        match self.issue(Operation::Remote(call.name.to_owned()), true) {
            Ok(issued) => call.guard.seq = Some(issued.seq),
            Err(e) => call.early = Some(e),
        }
        call
    }
}

impl WorkflowContext {
    /// A late result of the remote step at `seq`: a worker's result for an attempt the engine
    /// had already failed on its start-to-close timeout (see [`RemoteCall::seq`]). `Some(Ok)`
    /// once a late success has arrived, `Some(Err)` when only late failures have; `None`
    /// until then. Deterministic: it sees what had arrived at this point of the run, on replay
    /// too. So after a step failed on timeouts, a workflow can wait a while (`ctx.sleep`) and
    /// ask whether the step in fact ran, e.g. to refund a charge it is compensating for.
    pub fn late_result<O: DeserializeOwned>(&self, seq: u64) -> Option<Result<O, WorkflowError>> {
        let state = self.state();
        let slot = state.slot(seq)?;
        let mut late = slot.results.iter().filter(|r| r.late && r.visible);
        let first = late.clone().next()?;
        match late.find(|r| r.outcome.is_ok()).map(|r| &r.outcome) {
            Some(Ok(output)) => Some(decode(output)),
            _ => match &first.outcome {
                Err(error) => Some(Err(WorkflowError::StepFailed {
                    error: error.clone(),
                    attempts: first.attempt,
                })),
                Ok(output) => Some(decode(output)),
            },
        }
    }
}

/// The future of a remote step call.
#[derive(Debug)]
#[must_use = "a remote step is dispatched when called, but its result arrives only when awaited"]
pub struct RemoteCall<O> {
    guard: OpGuard,
    name: &'static str,
    group: String,
    retry: RetryPolicy,
    timeouts: StepTimeouts,
    input: Value,
    early: Option<WorkflowError>,
    output: PhantomData<fn() -> O>,
}

impl<O> Unpin for RemoteCall<O> {}

impl<O> RemoteCall<O> {
    /// The step's operation number (`None` if the call could not be issued), e.g. for
    /// [`WorkflowContext::late_result`].
    pub fn seq(&self) -> Option<u64> {
        self.guard.seq
    }
}

impl<O: DeserializeOwned> Future for RemoteCall<O> {
    type Output = Result<O, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (seq, mut state) = match this.guard.begin_poll(&mut this.early) {
            Ok(begun) => begun,
            Err(end) => return end,
        };
        loop {
            match walk(&mut state, seq, &this.retry) {
                AttemptState::Done(Ok(output), _) => return state.resolve(seq, decode(&output)),
                AttemptState::Done(Err(error), attempts) => {
                    return state.resolve(seq, Err(WorkflowError::StepFailed { error, attempts }))
                }
                AttemptState::Waiting | AttemptState::Running(_) => return state.park(seq, cx),
                AttemptState::Start(attempt) => {
                    if state.fatal.is_some() {
                        return Poll::Pending;
                    }
                    let now_ms = state.now_ms;
                    state.produce(
                        EventKind::TaskScheduled {
                            seq,
                            name: this.name.to_owned(),
                            group: this.group.clone(),
                            input: this.input.clone(),
                            attempt,
                            // Later attempts follow the policy recorded here.
                            retry: (attempt == 1).then_some(this.retry),
                            timeouts: (!this.timeouts.is_none()).then_some(this.timeouts),
                        },
                        Some(Command::DispatchTask {
                            seq,
                            name: this.name.to_owned(),
                            group: this.group.clone(),
                            input: this.input.clone(),
                            attempt,
                            timeout_ms: this.timeouts.start_to_close_ms,
                            schedule_to_start_ms: this.timeouts.schedule_to_start_ms,
                            scheduled_at_ms: Some(now_ms),
                        }),
                    );
                    // The backstop: the worker enforces both timeouts from the task; this
                    // timer fails an attempt that never answers (see `StepTimeouts`).
                    if let Some(fire_at_ms) = this.timeouts.backstop_ms(now_ms) {
                        state.start_timer(TimerId::Timeout { seq, attempt }, fire_at_ms);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::*;
    use super::*;
    use crate::contract::StepError;
    use crate::workflow::{Incoming, RunStatus};

    const DOUBLE: RemoteStep<u32, u32> = RemoteStep::new("math.double").with_partition("eu");
    const FLAKY: RemoteStep<u32, u32> = RemoteStep::new("flaky")
        .with_retry(RetryPolicy::fixed(2, Duration::from_secs(5)))
        .with_timeout(Duration::from_secs(30));

    fn workflows() -> crate::workflow::Workflows {
        let mut w = crate::workflow::Workflows::new();
        w.register("double", |ctx: WorkflowContext, n: u32| async move {
            ctx.remote(&DOUBLE, n).await
        });
        w.register("flaky", |ctx: WorkflowContext, n: u32| async move {
            match ctx.remote(&FLAKY, n).await {
                Ok(v) => Ok(v),
                Err(WorkflowError::StepFailed { attempts, .. }) => Ok(1000 + attempts),
                Err(e) => Err(e),
            }
        });
        w
    }

    #[test]
    fn dispatches_then_completes() {
        let w = workflows();
        let mut sim = Sim::new(&w, "r1");
        let a = sim.step(vec![start("double", 21)]);
        assert_eq!(a.status, RunStatus::Running);
        assert!(
            matches!(&a.commands[..], [Command::DispatchTask { seq: 1, group, attempt: 1, .. }] if group == "math.double@eu")
        );
        let a = sim.step(vec![ok(1, 42)]);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(sim.output(), Some(Value::from(42)));
    }

    #[test]
    fn timeout_fails_attempt_and_retries() {
        let w = workflows();
        let mut sim = Sim::new(&w, "r2");
        let a = sim.step(vec![start("flaky", 1)]);
        assert_eq!(
            a.commands.len(),
            2,
            "dispatch + timeout timer: {:?}",
            a.commands
        );
        let a = sim.step(vec![Incoming::TimerFired {
            timer_id: TimerId::Timeout { seq: 1, attempt: 1 },
        }]);
        assert!(matches!(
            &a.commands[..],
            [Command::StartTimer {
                timer_id: TimerId::Retry { seq: 1, attempt: 1 },
                ..
            }]
        ));
        // Attempt 1's result, late, while the backoff runs: the step is undecided, so its
        // success wins (kept, and recorded as late).
        let mut late = Sim::new(&w, "r2");
        late.history = sim.history.clone();
        let a = late.step(vec![ok(1, 5)]);
        assert!(matches!(
            a.appended[0].kind,
            EventKind::LateResult {
                attempt: 1,
                kept: true,
                ..
            }
        ));
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(late.output(), Some(Value::from(5)));
        // Without it: the next attempt after the backoff.
        let a = sim.step(vec![Incoming::TimerFired {
            timer_id: TimerId::Retry { seq: 1, attempt: 1 },
        }]);
        assert!(matches!(
            &a.commands[0],
            Command::DispatchTask { attempt: 2, .. }
        ));
        let a = sim.step(vec![Incoming::StepResult {
            started_at_ms: None,
            seq: 1,
            attempt: Some(2),
            outcome: Err(StepError::retryable("x")),
            events: Vec::new(),
        }]);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(sim.output(), Some(Value::from(1002)));
    }
}
