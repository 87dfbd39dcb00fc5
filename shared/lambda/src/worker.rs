//! The worker Lambda: runs a [`Worker`]'s step handlers for the tasks of one queue.
//!
//! The handlers themselves ([`Worker`], [`TaskContext`]) live in the core crate, so they are
//! written and tested (`cairn::testing::TestEnv`) without AWS; this module runs them behind
//! an SQS event source mapping.
//!
//! Per record: decode the `RemoteTask` (a malformed body is a batch item failure and ends in
//! the DLQ), run its handler (an error or a panic becomes a `failed` result; an unknown step
//! name a non-retryable one), then send all results of the batch together. A record whose
//! result could not be sent is a batch item failure: SQS redelivers the task.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Mutex;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;

use crate::batch::{batch_response, message_id, process_records, BatchOptions};
use cairn::contract::{decode_task, StepResult};
use cairn::store::BlobStore;
use cairn::transport::{refuse_oversize_result, resolve_body, ResultSender};
pub use cairn::worker::{TaskContext, Worker};

/// Time kept, before the Lambda deadline, for sending the batch's results.
const RESULT_SEND_RESERVE: std::time::Duration = std::time::Duration::from_secs(5);

/// A [`Worker`] as an SQS-triggered Lambda handler.
pub trait SqsWorker {
    /// The Lambda handler: one tasks-queue batch in, its batch item failures out.
    fn run<R: ResultSender, B: BlobStore>(
        &self,
        results: &R,
        blobs: &B,
        event: LambdaEvent<SqsEvent>,
    ) -> impl Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>> + Send;
}

impl SqsWorker for Worker {
    async fn run<R: ResultSender, B: BlobStore>(
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
            fifo: self.is_fifo(),
            concurrency: self.batch_concurrency(),
        };
        let records = event.payload.records;
        let produced: Mutex<Vec<(String, StepResult)>> = Mutex::new(Vec::new());
        let processed = process_records(&records, options, |record: SqsMessage| {
            let produced = &produced;
            async move {
                let body = record.body.as_deref().ok_or("record has no body")?;
                let body = resolve_body(body, blobs).await.map_err(|e| e.to_string())?;
                let task = decode_task(&body).map_err(|e| format!("malformed task: {e}"))?;
                let mut result = self
                    .run_delivery(&task, crate::backoff::receive_count(&record))
                    .await;
                if !blobs.claim_checks() {
                    // Without a blob store an oversize result cannot travel: the step fails
                    // with the sizes instead of the task being retried into the DLQ.
                    result = refuse_oversize_result(&task, result);
                }
                log_result(&task, &result);
                if let Ok(mut produced) = produced.lock() {
                    produced.push((message_id(&record).to_owned(), result));
                }
                Ok::<(), String>(())
            }
        })
        .await;
        let mut confirmed = processed.confirmed;
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

/// One line per step attempt, for CloudWatch and the dev loop.
fn log_result(task: &cairn::contract::RemoteTask, result: &StepResult) {
    let ms = result
        .started_at
        .map(|started| cairn::clock::now_ms().saturating_sub(started));
    match &result.error {
        None => {
            tracing::info!(step = %task.name, step_id = %task.step_id, attempt = task.attempt, ms, "step completed")
        }
        Some(error) => {
            tracing::info!(step = %task.name, step_id = %task.step_id, attempt = task.attempt, ms, error = %error, "step failed")
        }
    }
}
