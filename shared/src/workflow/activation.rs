//! The activation: `(history, incoming) -> (new events, commands, status)`.
//!
//! The run moves through explicit states ([`Phase`]): the workflow is first replayed against
//! the recorded history (recorded incoming events revealed one by one, in order), then each
//! new incoming item is applied and revealed the same way, until the workflow is blocked or
//! finished. Between reveals the workflow *settles*: it is polled until it is blocked on
//! durable operations with no inline step in flight.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use serde_json::Value;

use super::registry::WorkflowFuture;
use super::state::{lock, State, Terminal};
use super::{
    CodeAction, Command, EngineError, EventKind, HistoryEvent, Incoming, RunStatus, TimerId,
    WorkflowContext, WorkflowError, Workflows, HISTORY_FORMAT,
};

/// One activation of one run.
#[derive(Debug)]
pub struct ActivationRequest<'a> {
    /// The run.
    pub run_id: &'a str,
    /// Its checkpointed history, in order (empty for a new run).
    pub history: &'a [HistoryEvent],
    /// What arrived for it, in arrival order.
    pub incoming: Vec<Incoming>,
    /// The engine's clock, epoch milliseconds (stamps new events, bases new timers).
    pub now_ms: u64,
}

/// What an activation decided. Persist `appended` (after the history) and the run status in
/// one write, then send `commands` (outbox).
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    /// New events, in order.
    pub appended: Vec<HistoryEvent>,
    /// Commands to send after persisting.
    pub commands: Vec<Command>,
    /// The run's status afterwards.
    pub status: RunStatus,
    /// Why each incoming item that changed nothing was ignored (`duplicate_start`,
    /// `stale_attempt`, `run_finished`, ...), for the engine to count; each is also
    /// logged at INFO here.
    pub ignored: Vec<&'static str>,
    /// Timers no longer awaited since this activation (their operation resolved without them,
    /// or the run ended) that have not fired: a transport that can withdraw a pending timer
    /// (a scheduled long wait) should, after the commit. Ids, in timer-id order.
    pub released_timers: Vec<TimerId>,
}

/// Reason of the items that arrive for a run that has already finished.
pub const RUN_FINISHED: &str = "run_finished";

fn ignore(run_id: &str, reason: &'static str, item: &'static str, ignored: &mut Vec<&'static str>) {
    tracing::info!(run_id, reason, item, "incoming message ignored");
    ignored.push(reason);
}

/// The engine's states and transitions within one activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Replaying the recorded history: recorded incoming events are revealed in order.
    Replaying,
    /// Applying new incoming items, each revealed then settled.
    Live,
    /// The workflow returned (this activation or before): nothing more is applied.
    Finished,
}

/// Runs one activation. The future is `Send`; it does no I/O except the workflow's inline
/// steps.
pub async fn activate(
    workflows: &Workflows,
    req: ActivationRequest<'_>,
) -> Result<Activation, EngineError> {
    let ActivationRequest {
        run_id,
        history,
        mut incoming,
        now_ms,
    } = req;
    let mut state = State::new(run_id, now_ms);
    // No op can have a seq above the number of events: bounds the seq index.
    let limit = u64::try_from(history.len()).unwrap_or(u64::MAX);
    for event in history {
        state.index_recorded(event, limit)?;
    }
    if !history.is_empty() && state.workflow.is_none() {
        return Err(EngineError::InvalidInput(
            "history does not start with RunStarted".into(),
        ));
    }
    let mut ignored = Vec::new();
    if state.format > HISTORY_FORMAT {
        // Written by a newer engine: reading it by older rules could misread it.
        return Err(EngineError::InvalidInput(format!(
            "history format {} is newer than this engine's ({HISTORY_FORMAT})",
            state.format
        )));
    }
    if let Some(terminal) = &state.terminal {
        for item in &incoming {
            ignore(run_id, RUN_FINISHED, item.kind(), &mut ignored);
        }
        return Ok(Activation {
            appended: Vec::new(),
            commands: Vec::new(),
            status: terminal_status(terminal),
            ignored,
            released_timers: Vec::new(),
        });
    }
    if state.workflow.is_none() {
        let position = incoming
            .iter()
            .position(|i| matches!(i, Incoming::Start { .. }));
        let Some(Incoming::Start { workflow, input }) = position.map(|p| incoming.remove(p)) else {
            return Err(EngineError::NotStarted);
        };
        if !workflows.contains(&workflow) {
            return Err(EngineError::UnknownWorkflow(workflow));
        }
        state.append(EventKind::RunStarted {
            workflow,
            input,
            format: HISTORY_FORMAT,
        });
    }
    let name = state.workflow.clone().unwrap_or_default();
    let input = state.input.clone();
    let shared = Arc::new(Mutex::new(state));
    let future = workflows
        .start(&name, WorkflowContext::new(shared.clone()), input)
        .ok_or_else(|| EngineError::UnknownWorkflow(name.clone()))?;
    let mut driver = Driver::new(future, shared.clone());

    driver.settle().await?;
    let mut phase = Phase::Replaying;
    let mut incoming = incoming.into_iter();
    // Timers the recorded history had already released (in an earlier activation).
    let mut released_before: Option<BTreeSet<TimerId>> = None;
    loop {
        if driver.outcome.is_some() {
            phase = Phase::Finished;
        }
        match phase {
            Phase::Replaying | Phase::Live => {
                let revealed = lock(&shared).reveal_next();
                if revealed {
                    if driver.flag.woken.load(Ordering::Acquire) {
                        driver.settle().await?;
                    }
                    continue;
                }
                if phase == Phase::Replaying {
                    let state = lock(&shared);
                    let waiting = state.waiting_timers();
                    released_before = Some(
                        state
                            .unfired_timers()
                            .difference(&waiting)
                            .copied()
                            .collect(),
                    );
                }
                phase = Phase::Live;
                let Some(item) = incoming.next() else { break };
                let kind = item.kind();
                if let Err(dropped) = lock(&shared).apply_incoming(item) {
                    ignore(run_id, dropped.reason(), kind, &mut ignored);
                }
            }
            Phase::Finished => break,
        }
    }
    // The workflow returned before these were applied: they arrived for a finished run.
    for item in incoming {
        ignore(run_id, RUN_FINISHED, item.kind(), &mut ignored);
    }
    // Still awaited: the timers of the ops the workflow waits on (none once it returned).
    let waiting = match driver.outcome {
        Some(_) => BTreeSet::new(),
        None => lock(&shared).waiting_timers(),
    };
    let outcome = driver.finish();
    let mut state = std::mem::take(&mut *lock(&shared));
    let released_before = released_before.unwrap_or_default();
    let released: Vec<TimerId> = state
        .unfired_timers()
        .into_iter()
        .filter(|id| !waiting.contains(id) && !released_before.contains(id))
        .collect();
    let mut activation = finish(&mut state, outcome)?;
    activation.ignored = ignored;
    activation.released_timers = released;
    Ok(activation)
}

/// Turns the workflow's outcome into the last events and commands.
fn finish(
    state: &mut State,
    outcome: Option<Result<Value, WorkflowError>>,
) -> Result<Activation, EngineError> {
    if let Some(fatal) = state.fatal.take() {
        return Err(fatal);
    }
    // A recorded operation the replay never reached: the code no longer issues it.
    let next = usize::try_from(state.next_seq).unwrap_or(usize::MAX);
    if let Some((seq, recorded)) = state
        .ops
        .iter()
        .enumerate()
        .skip(next)
        .find_map(|(seq, s)| s.kind.clone().filter(|_| s.recorded).map(|k| (seq, k)))
    {
        let actual = match &outcome {
            Some(_) => CodeAction::Returned,
            None => CodeAction::Blocked,
        };
        return Err(EngineError::NonDeterminism {
            seq: seq as u64,
            recorded,
            actual,
        });
    }
    let status = match outcome {
        None => RunStatus::Running,
        Some(Ok(output)) => {
            state.append(EventKind::RunCompleted { output });
            RunStatus::Completed
        }
        Some(Err(WorkflowError::ContinueAsNew(input))) => {
            let workflow = state.workflow.clone().unwrap_or_default();
            state.append(EventKind::ContinuedAsNew {
                input: input.clone(),
            });
            state
                .commands
                .push(Command::ContinueAsNew { workflow, input });
            RunStatus::ContinuedAsNew
        }
        // The status is what the workflow returned, recorded as its own event: an error of the
        // workflow's with code `cancelled` is a failure like any other.
        Some(Err(error)) if error.is_cancelled() => {
            let error = error.to_step_error();
            state.append(EventKind::RunCancelled { error });
            RunStatus::Cancelled
        }
        Some(Err(error)) => {
            let error = error.to_step_error();
            state.append(EventKind::RunFailed { error });
            RunStatus::Failed
        }
    };
    Ok(Activation {
        appended: std::mem::take(&mut state.appended),
        commands: std::mem::take(&mut state.commands),
        status,
        ignored: Vec::new(),
        released_timers: Vec::new(),
    })
}

fn terminal_status(terminal: &Terminal) -> RunStatus {
    match terminal {
        Terminal::Completed => RunStatus::Completed,
        Terminal::Failed => RunStatus::Failed,
        Terminal::Cancelled => RunStatus::Cancelled,
        Terminal::ContinuedAsNew => RunStatus::ContinuedAsNew,
    }
}

/// Records wake-ups of the workflow future and forwards them to the executor's waker (so an
/// inline step's real I/O resumes the activation).
#[derive(Debug, Default)]
struct Flag {
    woken: AtomicBool,
    outer: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(waker) = lock(&self.outer).as_ref() {
            waker.wake_by_ref();
        }
    }
}

/// Polls the workflow future.
struct Driver {
    future: Option<WorkflowFuture>,
    flag: Arc<Flag>,
    waker: Waker,
    shared: Arc<Mutex<State>>,
    outcome: Option<Result<Value, WorkflowError>>,
}

impl Driver {
    fn new(future: WorkflowFuture, shared: Arc<Mutex<State>>) -> Self {
        let flag = Arc::new(Flag::default());
        Self {
            future: Some(future),
            waker: Waker::from(flag.clone()),
            flag,
            shared,
            outcome: None,
        }
    }

    /// Polls until the workflow returns or is blocked with no inline step in flight.
    async fn settle(&mut self) -> Result<(), EngineError> {
        std::future::poll_fn(|cx| self.poll_settle(cx)).await
    }

    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), EngineError>> {
        *lock(&self.flag.outer) = Some(cx.waker().clone());
        loop {
            let Some(future) = self.future.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            self.flag.woken.store(false, Ordering::Release);
            let mut inner = Context::from_waker(&self.waker);
            let polled =
                std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut inner)));
            let polled = match polled {
                Ok(polled) => polled,
                Err(panic) => {
                    self.future = None;
                    return Poll::Ready(Err(EngineError::Panicked(crate::panic::panic_message(
                        panic.as_ref(),
                    ))));
                }
            };
            let in_flight = {
                let mut state = lock(&self.shared);
                if let Some(fatal) = state.fatal.take() {
                    return Poll::Ready(Err(fatal));
                }
                state.inline_in_flight
            };
            match polled {
                Poll::Ready(outcome) => {
                    self.outcome = Some(outcome);
                    self.future = None;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending if self.flag.woken.load(Ordering::Acquire) => {}
                Poll::Pending if in_flight > 0 => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Drops the workflow future (releasing its context) and returns the outcome.
    fn finish(mut self) -> Option<Result<Value, WorkflowError>> {
        self.future = None;
        self.outcome.take()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use futures::future::{select, Either};
    use serde_json::json;

    use super::*;
    use crate::workflow::testing::{fire, ok, start, TestRun};
    use crate::workflow::RemoteStep;

    const STEP: RemoteStep<u32, u32> = RemoteStep::new("step");

    fn workflows() -> Workflows {
        let mut w = Workflows::new();
        w.register("race", |ctx: WorkflowContext, _: ()| async move {
            let step = ctx.remote(&STEP, 1);
            let timer = ctx.sleep(Duration::from_secs(5));
            match select(step, timer).await {
                Either::Left((output, _)) => Ok(json!({ "step": output? })),
                Either::Right((fired, _)) => {
                    fired?;
                    Ok(json!("timeout"))
                }
            }
        });
        w.register("panics", |_ctx: WorkflowContext, _: ()| async move {
            if true {
                panic!("boom");
            }
            Ok(())
        });
        w
    }

    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn activation_future_and_context_are_thread_safe() {
        assert_send_sync::<WorkflowContext>();
        assert_send_sync::<Workflows>();
        let w = workflows();
        let history = [];
        let req = ActivationRequest {
            run_id: "r",
            history: &history,
            incoming: vec![],
            now_ms: 0,
        };
        assert_send(&activate(&w, req));
    }

    #[test]
    fn lifecycle_errors_are_typed() {
        let w = workflows();
        let mut run = TestRun::new(&w, "r");
        assert_eq!(run.try_step(vec![ok(1, 1)]), Err(EngineError::NotStarted));
        assert_eq!(
            run.try_step(vec![start("nope", ())]),
            Err(EngineError::UnknownWorkflow("nope".into()))
        );
        let err = run.try_step(vec![start("panics", ())]).unwrap_err();
        assert_eq!(err, EngineError::Panicked("boom".into()));
        let bad = [HistoryEvent::new(
            1,
            EventKind::CancelRequested { reason: None },
        )];
        let req = ActivationRequest {
            run_id: "r",
            history: &bad,
            incoming: vec![],
            now_ms: 0,
        };
        let err = futures::executor::block_on(activate(&w, req)).unwrap_err();
        assert!(matches!(err, EngineError::InvalidInput(_)));
    }

    #[test]
    fn a_race_replays_the_way_it_was_decided() {
        let w = workflows();
        // Live: the timer fires first; the step's result arrives in a later batch.
        let mut run = TestRun::new(&w, "r");
        run.step(vec![start("race", ())]);
        let a = run.step(vec![fire("2")]);
        run.step(vec![ok(1, 7)]);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(run.output(), Some(json!("timeout")));
        // Replaying the history reveals the events in the same order: same decision, nothing new.
        let req = ActivationRequest {
            run_id: "r",
            history: &run.history,
            incoming: vec![],
            now_ms: 0,
        };
        let again = futures::executor::block_on(activate(&w, req)).unwrap();
        assert!(again.appended.is_empty() && again.commands.is_empty());
        // The other order decides the other way.
        let mut other = TestRun::new(&w, "r2");
        other.step(vec![start("race", ())]);
        other.step(vec![ok(1, 7), fire("2")]);
        assert_eq!(other.output(), Some(json!({ "step": 7 })));
    }

    fn waits() -> Workflows {
        let mut w = Workflows::new();
        w.register("approval", |ctx: WorkflowContext, _: ()| async move {
            let got: Option<u32> = ctx
                .wait_for_signal_timeout("approval", Duration::from_secs(30 * 86_400))
                .await?;
            ctx.remote(&STEP, got.unwrap_or(0)).await?;
            Ok(json!(got))
        });
        w.register("nap", |ctx: WorkflowContext, _: ()| async move {
            ctx.sleep(Duration::from_secs(30 * 86_400)).await?;
            Ok(json!("rested"))
        });
        w
    }

    #[test]
    fn a_signal_before_its_timeout_releases_the_timer_once() {
        let w = waits();
        let mut run = TestRun::new(&w, "r");
        let started = run.step(vec![start("approval", ())]);
        assert!(started.released_timers.is_empty(), "{started:?}");
        let signalled = run.step(vec![crate::workflow::testing::signal("approval", 7)]);
        assert_eq!(signalled.released_timers, vec![TimerId::SignalTimeout(1)]);
        let later = run.step(vec![ok(2, 1)]);
        assert_eq!(later.status, RunStatus::Completed);
        assert!(
            later.released_timers.is_empty(),
            "released in an earlier activation: {later:?}"
        );
    }

    #[test]
    fn a_cancelled_run_releases_its_pending_sleep_and_a_fired_one_is_not_released() {
        let w = waits();
        let mut run = TestRun::new(&w, "r");
        run.step(vec![start("nap", ())]);
        let cancelled = run.step(vec![Incoming::Cancel { reason: None }]);
        assert_eq!(cancelled.status, RunStatus::Cancelled);
        assert_eq!(cancelled.released_timers, vec![TimerId::Sleep(1)]);

        let mut run = TestRun::new(&w, "s");
        run.step(vec![start("nap", ())]);
        let fired = run.step(vec![fire("1")]);
        assert_eq!(fired.status, RunStatus::Completed);
        assert!(fired.released_timers.is_empty(), "{fired:?}");
    }

    #[test]
    fn a_timer_that_loses_a_race_is_released() {
        let w = workflows();
        let mut run = TestRun::new(&w, "r");
        run.step(vec![start("race", ())]);
        let a = run.step(vec![ok(1, 7)]);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(a.released_timers, vec![TimerId::Sleep(2)]);
    }

    #[test]
    fn ignored_items_are_reported_with_their_reason() {
        let w = workflows();
        let mut run = TestRun::new(&w, "r");
        let future_attempt = Incoming::StepResult {
            seq: 1,
            attempt: Some(7),
            outcome: Ok(json!(1)),
            started_at_ms: None,
            events: Vec::new(),
        };
        let a = run.step(vec![
            start("race", ()),
            start("race", ()),
            ok(9, 1),
            future_attempt,
        ]);
        assert_eq!(
            a.ignored,
            vec!["duplicate_start", "unknown_seq", "future_attempt"]
        );
        assert_eq!(a.status, RunStatus::Running);
    }

    #[test]
    fn in_one_batch_results_apply_before_timers() {
        // After an outage both are there: the step's result decides, whatever order they
        // queued in (the timer came first here).
        let w = workflows();
        let mut run = TestRun::new(&w, "r");
        run.step(vec![start("race", ())]);
        let mut batch = vec![fire("2"), ok(1, 7)];
        Incoming::results_first(&mut batch);
        let a = run.step(batch);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(run.output(), Some(json!({ "step": 7 })));
        assert!(matches!(
            a.appended[0].kind,
            EventKind::StepCompleted { seq: 1, .. }
        ));
    }

    #[test]
    fn finished_runs_take_nothing() {
        let w = workflows();
        let mut run = TestRun::new(&w, "r");
        run.step(vec![start("race", ()), ok(1, 1)]);
        let a = run.step(vec![
            start("race", ()),
            ok(1, 2),
            fire("2"),
            Incoming::Cancel { reason: None },
        ]);
        assert_eq!(
            a,
            Activation {
                appended: vec![],
                commands: vec![],
                status: RunStatus::Completed,
                ignored: vec![RUN_FINISHED; 4],
                released_timers: vec![],
            }
        );
    }
}
