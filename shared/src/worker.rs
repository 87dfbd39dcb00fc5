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
    /// When the attempt times out (start-to-close), epoch ms, if it has a timeout.
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
    pub async fn run_task(&self, task: &RemoteTask) -> StepResult {
        let started_at = now_ms();
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
            deadline_ms: context
                .and_then(|c| c.get("deadlineMs"))
                .and_then(Value::as_u64),
            span: tracing::info_span!("step", step_id = %task.step_id, name = %task.name, attempt = task.attempt),
            events: Arc::default(),
        };
        let events = ctx.events.clone();
        let result = match AssertUnwindSafe(handler(task.input.clone(), ctx))
            .catch_unwind()
            .await
        {
            Ok(Ok(output)) => StepResult::completed(task, output),
            Ok(Err(error)) => StepResult::failed(task, error),
            Err(panic) => {
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

fn with_start(mut result: StepResult, started_at: u64) -> StepResult {
    result.started_at = Some(started_at);
    result
}

use crate::clock::now_ms;
