//! The worker runtime: runs step handlers for the tasks of one queue, inside a Lambda.
//!
//! ```no_run
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
//! Per record: decode the `RemoteTask` (a malformed body is a batch item failure and ends in
//! the DLQ), run its handler (an error or a panic becomes a `failed` result; an unknown step
//! name a non-retryable one), then send all results of the batch together. A record whose
//! result could not be sent is a batch item failure: SQS redelivers the task.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::BoxFuture;
use futures::FutureExt;
use lambda_runtime::LambdaEvent;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::batch::{batch_response, message_id, process_records, BatchOptions};
use cairn::contract::{decode_task, RemoteTask, StepError, StepResult};
use cairn::store::BlobStore;
use cairn::transport::{resolve_body, ResultSender};
use cairn::workflow::RemoteStep;

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
}

/// Time kept, before the Lambda deadline, for sending the batch's results.
const RESULT_SEND_RESERVE: std::time::Duration = std::time::Duration::from_secs(5);

type Handler =
    Arc<dyn Fn(Value, TaskContext) -> BoxFuture<'static, Result<Value, StepError>> + Send + Sync>;

/// Step handlers by step name, plus how to run a batch.
#[derive(Clone, Default)]
pub struct Worker {
    handlers: HashMap<String, Handler>,
    options: BatchOptions,
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
                        .with_code("bad_input")
                })?;
                let output = handler(input, task).await?;
                serde_json::to_value(output).map_err(|e| {
                    StepError::terminal(format!("output cannot be serialized: {e}"))
                        .with_code("bad_output")
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
        self.options.fifo = fifo;
        self
    }

    /// How many records run at once (standard queues) or groups (FIFO).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.options.concurrency = concurrency.max(1);
        self
    }

    /// The step names this worker serves.
    pub fn steps(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    /// Runs one task to a result. Never fails: errors and panics become failed results.
    pub async fn run_task(&self, task: &RemoteTask) -> StepResult {
        let started_at = crate::engine::now_ms();
        let Some(handler) = self.handlers.get(&task.name) else {
            let error = StepError::terminal(format!(
                "no handler for step {:?} on this worker",
                task.name
            ))
            .with_code("unknown_step");
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
        };
        let result = match AssertUnwindSafe(handler(task.input.clone(), ctx))
            .catch_unwind()
            .await
        {
            Ok(Ok(output)) => StepResult::completed(task, output),
            Ok(Err(error)) => StepResult::failed(task, error),
            Err(panic) => {
                let message = format!(
                    "step handler panicked: {}",
                    cairn::panic::panic_message(panic.as_ref())
                );
                StepResult::failed(task, StepError::retryable(message).with_code("panic"))
            }
        };
        with_start(result, started_at)
    }

    /// The Lambda handler: one tasks-queue batch in, its batch item failures out.
    pub async fn run<R: ResultSender, B: BlobStore>(
        &self,
        results: &R,
        blobs: &B,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let options = BatchOptions {
            time_left: crate::batch::time_left(&event.context),
            // Handlers stop early enough to leave time for sending the batch's results
            // (claim checks included); a result not sent means the task runs again.
            deadline_margin: RESULT_SEND_RESERVE,
            ..self.options
        };
        let records = event.payload.records;
        let produced: Mutex<Vec<(String, StepResult)>> = Mutex::new(Vec::new());
        let mut confirmed = process_records(&records, options, |record: SqsMessage| {
            let produced = &produced;
            async move {
                let body = record.body.as_deref().ok_or("record has no body")?;
                let body = resolve_body(body, blobs).await.map_err(|e| e.to_string())?;
                let task = decode_task(&body).map_err(|e| format!("malformed task: {e}"))?;
                let result = self.run_task(&task).await;
                if let Ok(mut produced) = produced.lock() {
                    produced.push((message_id(&record).to_owned(), result));
                }
                Ok(())
            }
        })
        .await;
        // Results go out together, in record order (FIFO: per-group order is kept).
        let mut produced = produced.into_inner().unwrap_or_default();
        let order: HashMap<&str, usize> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (message_id(r), i))
            .collect();
        produced.sort_by_key(|(id, _)| order.get(id.as_str()).copied().unwrap_or(usize::MAX));
        let to_send: Vec<StepResult> = produced.iter().map(|(_, r)| r.clone()).collect();
        if !to_send.is_empty() {
            if let Err(err) = results.send_results(&to_send).await {
                let unsent: HashSet<usize> =
                    err.failed_indexes(to_send.len()).into_iter().collect();
                for (index, (id, _)) in produced.iter().enumerate() {
                    if unsent.contains(&index) {
                        tracing::warn!(message_id = %id, error = %err, "result not sent; task will be redelivered");
                        confirmed.remove(id);
                    }
                }
            }
        }
        Ok(batch_response(&records, &confirmed, options.fifo))
    }
}

fn with_start(mut result: StepResult, started_at: u64) -> StepResult {
    result.started_at = Some(started_at);
    result
}
