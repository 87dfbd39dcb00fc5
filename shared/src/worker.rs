//! Step handlers: the [`Worker`] maps step names to the async functions that serve them.
//!
//! ```
//! # use cairn::worker::Worker;
//! # use cairn::workflow::RemoteStep;
//! # use cairn::contract::StepError;
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Charge { amount_cents: u64 }
//! # #[derive(serde::Serialize, serde::Deserialize)] struct Receipt { charge_id: String }
//! const CHARGE_CARD: RemoteStep<Charge, Receipt> = RemoteStep::new("payments.charge-card");
//! let worker = Worker::new().handle(&CHARGE_CARD, |charge: Charge, task| async move {
//!     // `task.step_id` is the idempotency key to give the payment provider.
//!     Ok::<_, StepError>(Receipt { charge_id: format!("ch_{}", task.step_id) })
//! });
//! ```
//!
//! The same `Worker` serves a tasks queue in a Lambda (`cairn_lambda::worker`) and the
//! remote steps of a [`TestEnv`](crate::testing::TestEnv), so a step group's handlers are
//! tested without AWS.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::contract::{ErrorCode, RemoteTask, StepError, StepEvent, StepResult};
use crate::transport::refuse_oversize_result;
use crate::workflow::RemoteStep;

/// What a step handler knows about the task it runs.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// `"<runId>:<seq>"`: use it as the idempotency key for side effects.
    pub step_id: String,
    /// The run.
    pub run_id: String,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The workflow that dispatched the step, if the engine said.
    pub workflow: Option<String>,
    /// When the attempt times out, epoch ms: the worker's start + the step's start-to-close
    /// timeout (when the task carries one; else the engine's `context.deadlineMs`, if any).
    pub deadline_ms: Option<u64>,
    /// A span carrying the step's identity, for the handler's logs.
    pub span: tracing::Span,
    /// Lines logged with [`TaskContext::log`], sent back with the result.
    events: Arc<Mutex<Vec<StepEvent>>>,
}

impl TaskContext {
    /// Records a line on the step (`level`: `debug`, `info`, `warn` or `error`), sent back as
    /// the result's `events` in nestjs-durable's shape `{at, level, message, data}`; the engine
    /// keeps them in the run's history (`cairn runs show`, the timeline).
    pub fn log(&self, level: &str, message: impl Into<String>, data: Option<Value>) {
        let mut event = StepEvent::log(now_ms(), level, message);
        event.data = data;
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }

    /// An `info` line with structured data.
    pub fn info(&self, message: impl Into<String>, data: Value) {
        self.log("info", message, Some(data));
    }
}

type Handler =
    Arc<dyn Fn(Value, TaskContext) -> BoxFuture<'static, Result<Value, StepError>> + Send + Sync>;

/// Step handlers by step name, plus how a batch of tasks is run.
#[derive(Clone)]
pub struct Worker {
    handlers: HashMap<String, Handler>,
    fifo: bool,
    concurrency: usize,
    peer_engine: bool,
}

impl Default for Worker {
    fn default() -> Self {
        Self {
            handlers: HashMap::new(),
            fifo: false,
            concurrency: 10,
            peer_engine: false,
        }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("steps", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Worker {
    /// A worker with no handlers (every task answers `unknown_step`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the handler of `step`, typed by the step's input and output.
    pub fn handle<I, O, F, Fut>(self, step: &RemoteStep<I, O>, handler: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, StepError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.handle_json(step.name(), move |input, task| {
            let handler = handler.clone();
            async move {
                let input: I = serde_json::from_value(input).map_err(|e| {
                    StepError::terminal(format!("input does not match the step's type: {e}"))
                        .with_code(ErrorCode::BadInput)
                })?;
                let output = handler(input, task).await?;
                serde_json::to_value(output).map_err(|e| {
                    StepError::terminal(format!("output cannot be serialized: {e}"))
                        .with_code(ErrorCode::BadOutput)
                })
            }
        })
    }

    /// Registers an untyped handler for step `name`.
    pub fn handle_json<F, Fut>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(Value, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
    {
        self.handlers.insert(
            name.to_owned(),
            Arc::new(move |input, task| handler(input, task).boxed()),
        );
        self
    }

    /// FIFO tasks queue: records run in order per message group.
    pub fn fifo(mut self, fifo: bool) -> Self {
        self.fifo = fifo;
        self
    }

    /// Results go to an engine that cannot read claim checks (nestjs-durable's own
    /// `WorkflowEngine`): a result over the claim-check threshold is replaced by a failed
    /// `payload_too_large` result naming its size and the limit, instead of a reference the
    /// engine could not resolve.
    pub fn for_peer_engine(mut self, peer_engine: bool) -> Self {
        self.peer_engine = peer_engine;
        self
    }

    /// How many records run at once (standard queues) or groups (FIFO).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Whether the tasks queue is FIFO.
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    /// How many records (standard) or message groups (FIFO) run at once.
    pub fn batch_concurrency(&self) -> usize {
        self.concurrency
    }

    /// The step names this worker serves.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// Runs one task to a result. Never fails: errors and panics become failed results.
    ///
    /// The task's timeouts are enforced from this call's start (needs a tokio runtime with
    /// time for start-to-close): an attempt that waited in the queue past its
    /// schedule-to-start timeout is refused without running the handler (failed, not
    /// retryable, code `timeout`), and a handler still running at start-to-close is stopped
    /// (failed, retryable, code `timeout`). Either failure's `details.timeout` says which.
    pub async fn run_task(&self, task: &RemoteTask) -> StepResult {
        self.run_delivery(task, 1).await
    }

    /// [`Worker::run_task`] for the `receive_count`-th delivery of its message (SQS
    /// `ApproximateReceiveCount`). A task delivered again was started before and did not
    /// finish (its worker died, or its result was not sent): past its schedule-to-start it is
    /// not run again but failed *retryable* (`details.timeout = "startToClose"`, as Temporal
    /// retries an attempt whose worker died), so a crash does not end the step for good.
    pub async fn run_delivery(&self, task: &RemoteTask, receive_count: u32) -> StepResult {
        self.run_task_at(task, now_ms(), true, receive_count).await
    }

    /// [`Worker::run_task`] started at `started_at` (epoch ms, the caller's clock), stopping
    /// the handler at start-to-close only if `stop_at_start_to_close` (a virtual clock cannot
    /// time a handler: [`TestEnv`](crate::testing::TestEnv) runs handlers to their end).
    pub(crate) async fn run_task_at(
        &self,
        task: &RemoteTask,
        started_at: u64,
        stop_at_start_to_close: bool,
        receive_count: u32,
    ) -> StepResult {
        if let Some(refused) = refuse_late_start(task, started_at, receive_count) {
            return with_start(refused, started_at);
        }
        let Some(handler) = self.handlers.get(&task.name) else {
            let error = StepError::terminal(format!(
                "no handler for step {:?} on this worker",
                task.name
            ))
            .with_code(ErrorCode::UnknownStep);
            return with_start(StepResult::failed(task, error), started_at);
        };
        let context = task.context.as_ref();
        let ctx = TaskContext {
            step_id: task.step_id.to_string(),
            run_id: task.run_id.to_string(),
            attempt: task.attempt,
            workflow: context
                .and_then(|c| c.get("workflow"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            // Start-to-close counts from this start; else the engine's deadline, if it said.
            deadline_ms: task
                .start_to_close_ms
                .map(|run| started_at.saturating_add(run))
                .or_else(|| {
                    context
                        .and_then(|c| c.get("deadlineMs"))
                        .and_then(Value::as_u64)
                }),
            span: tracing::info_span!("step", step_id = %task.step_id, name = %task.name, attempt = task.attempt),
            events: Arc::default(),
        };
        let events = ctx.events.clone();
        let run = AssertUnwindSafe(handler(task.input.clone(), ctx)).catch_unwind();
        let outcome = match task.start_to_close_ms.filter(|_| stop_at_start_to_close) {
            Some(limit) => tokio::time::timeout(std::time::Duration::from_millis(limit), run)
                .await
                .map_err(|_| limit),
            None => Ok(run.await),
        };
        let result = match outcome {
            Err(limit) => StepResult::failed(
                task,
                StepError::retryable(format!(
                    "attempt {} timed out: still running {limit} ms after it started \
                     (start-to-close); the handler was stopped",
                    task.attempt
                ))
                .with_code(ErrorCode::Timeout)
                .with_details(serde_json::json!({
                    "timeout": "startToClose",
                    "startToCloseMs": limit,
                })),
            ),
            Ok(Ok(Ok(output))) => StepResult::completed(task, output),
            Ok(Ok(Err(error))) => StepResult::failed(task, error),
            Ok(Err(panic)) => {
                let message = format!(
                    "step handler panicked: {}",
                    crate::panic::panic_message(panic.as_ref())
                );
                StepResult::failed(
                    task,
                    StepError::retryable(message).with_code(ErrorCode::Panic),
                )
            }
        };
        let mut result = with_start(result, started_at);
        let events = events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default();
        if !events.is_empty() {
            result.events = Some(events);
        }
        if self.peer_engine {
            result = refuse_oversize_result(task, result);
        }
        result
    }
}

/// The refusal of an attempt that starts after its schedule-to-start timeout: not run, and
/// not retried (a new attempt would wait in the same queue).
fn refuse_late_start(task: &RemoteTask, started_at: u64, receive_count: u32) -> Option<StepResult> {
    let limit = task.schedule_to_start_ms?;
    let waited = started_at.saturating_sub(task.scheduled_at?);
    if waited <= limit {
        return None;
    }
    if receive_count > 1 {
        tracing::warn!(step_id = %task.step_id, attempt = task.attempt, waited_ms = waited, receive_count, "redelivered attempt past its schedule-to-start not run again: failed, retryable");
        let error = StepError::retryable(format!(
            "attempt {} came back from its queue (delivery {receive_count}) {waited} ms after \
             it was scheduled, past its schedule-to-start timeout of {limit} ms: its first run \
             did not finish (its worker died?); not run again",
            task.attempt
        ))
        .with_code(ErrorCode::Timeout)
        .with_details(serde_json::json!({
            "timeout": "startToClose",
            "redelivered": true,
            "receiveCount": receive_count,
            "waitedMs": waited,
        }));
        return Some(StepResult::failed(task, error));
    }
    tracing::warn!(step_id = %task.step_id, attempt = task.attempt, waited_ms = waited, schedule_to_start_ms = limit, "attempt refused: it waited in the queue past its schedule-to-start timeout");
    let error = StepError::terminal(format!(
        "attempt {} waited {waited} ms in the queue, past its schedule-to-start timeout of \
         {limit} ms; not run",
        task.attempt
    ))
    .with_code(ErrorCode::Timeout)
    .with_details(serde_json::json!({
        "timeout": "scheduleToStart",
        "waitedMs": waited,
        "scheduleToStartMs": limit,
    }));
    Some(StepResult::failed(task, error))
}

fn with_start(mut result: StepResult, started_at: u64) -> StepResult {
    result.started_at = Some(started_at);
    result
}

use crate::clock::now_ms;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::contract::{RunId, StepStatus};

    fn task(scheduled_ago_ms: u64, s2s: Option<u64>, s2c: Option<u64>) -> RemoteTask {
        let run = RunId::parse("r").unwrap();
        RemoteTask::new(&run, 1, "slow", "slow", Value::Null, 1).with_timeouts(
            now_ms() - scheduled_ago_ms,
            s2s,
            s2c,
        )
    }

    fn sleeper(runs: &Arc<AtomicUsize>, sleep: Duration) -> Worker {
        let runs = runs.clone();
        Worker::new().handle_json("slow", move |_, ctx| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(sleep).await;
                Ok(serde_json::json!(ctx.deadline_ms))
            }
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_still_running_at_start_to_close_is_stopped_and_the_attempt_fails_retryable()
    {
        let runs = Arc::new(AtomicUsize::new(0));
        let worker = sleeper(&runs, Duration::from_secs(10));
        let result = worker.run_task(&task(0, None, Some(1_000))).await;
        assert_eq!(result.status, StepStatus::Failed, "{result:?}");
        let error = result.error.unwrap();
        assert_eq!(error.code.as_deref(), Some("timeout"));
        assert!(error.is_retryable());
        assert_eq!(error.details.unwrap()["timeout"], "startToClose");
    }

    #[tokio::test]
    async fn queue_wait_does_not_count_toward_start_to_close() {
        let runs = Arc::new(AtomicUsize::new(0));
        let worker = sleeper(&runs, Duration::ZERO);
        // Waited a minute in the queue; may run 1 s from its start.
        let result = worker.run_task(&task(60_000, None, Some(1_000))).await;
        assert_eq!(result.status, StepStatus::Completed, "{result:?}");
        let started = result.started_at.unwrap();
        assert_eq!(result.output, Some(serde_json::json!(started + 1_000)));
    }

    #[tokio::test]
    async fn an_attempt_that_waited_past_schedule_to_start_is_refused_without_running() {
        let runs = Arc::new(AtomicUsize::new(0));
        let worker = sleeper(&runs, Duration::ZERO);
        let result = worker
            .run_task(&task(10_000, Some(1_000), Some(1_000)))
            .await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        let error = result.error.unwrap();
        assert_eq!(error.code.as_deref(), Some("timeout"));
        assert!(!error.is_retryable(), "{error:?}");
        assert_eq!(error.details.unwrap()["timeout"], "scheduleToStart");
        // A redelivery (its first run did not finish) is not run again either, but may be
        // retried: a crashed worker must not end the step for good.
        let again = worker
            .run_delivery(&task(10_000, Some(1_000), Some(1_000)), 2)
            .await;
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        let error = again.error.unwrap();
        assert!(error.is_retryable(), "{error:?}");
        assert_eq!(error.details.unwrap()["redelivered"], true);
        // Within it, the handler runs.
        let result = worker.run_task(&task(500, Some(1_000), None)).await;
        assert_eq!(result.status, StepStatus::Completed);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
