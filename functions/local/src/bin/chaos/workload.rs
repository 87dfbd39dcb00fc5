//! The chaos workload: a checkout-like workflow of five remote steps with retries, and a
//! worker whose handlers count their executions per step id.

use cairn::contract::StepError;
use cairn::worker::{TaskContext, Worker};
use cairn::workflow::{RemoteStep, RetryPolicy, WorkflowContext, WorkflowError, Workflows};
use serde_json::{json, Value};
use std::io::Write as _;
use std::time::Duration;

const RETRY: RetryPolicy =
    RetryPolicy::exponential(8, Duration::from_millis(200), 2.0, Duration::from_secs(2));
/// Five remote steps over the template's three tasks queues.
const STEPS: [(&str, RemoteStep<Value, Value>); 5] = [
    (
        "reserve",
        RemoteStep::new("reports.generate").with_retry(RETRY),
    ),
    (
        "charge",
        RemoteStep::new("payments.charge-card").with_retry(RETRY),
    ),
    (
        "ship",
        RemoteStep::new("notifications.send-email").with_retry(RETRY),
    ),
    (
        "invoice",
        RemoteStep::new("reports.generate").with_retry(RETRY),
    ),
    (
        "notify",
        RemoteStep::new("notifications.send-email").with_retry(RETRY),
    ),
];
pub(crate) const WORKFLOW: &str = "chaos-checkout";

async fn checkout(ctx: WorkflowContext, order: Value) -> Result<Value, WorkflowError> {
    let mut done = Vec::new();
    for (op, step) in &STEPS {
        let out = ctx
            .remote(step, json!({ "op": op, "order": order }))
            .await?;
        done.push(out);
    }
    Ok(json!({ "order": order, "steps": done.len() }))
}

pub(crate) fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows.register(WORKFLOW, checkout);
    workflows
}

/// A cheap random number (no extra crate): xorshift on a per-call seed.
pub(crate) fn random(bound: u64) -> u64 {
    let mut x = (uuid::Uuid::new_v4().as_u128() as u64) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % bound.max(1)
}

/// Every successful execution is appended to the executions file (one step id a line) before
/// the handler returns: what a user would pay for.
async fn handler(input: Value, task: TaskContext) -> Result<Value, StepError> {
    tokio::time::sleep(Duration::from_millis(5 + random(25))).await;
    if random(100) < 3 {
        return Err(StepError::retryable("chaos: a transient step failure"));
    }
    if let Ok(path) = std::env::var("CHAOS_EXECUTIONS") {
        let line = format!("{}\n", task.step_id);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| StepError::retryable(format!("executions file: {e}")))?;
        file.write_all(line.as_bytes())
            .map_err(|e| StepError::retryable(format!("executions file: {e}")))?;
    }
    Ok(json!({ "op": input["op"], "stepId": task.step_id }))
}

pub(crate) fn worker() -> Worker {
    let mut worker = Worker::new();
    let mut seen = std::collections::BTreeSet::new();
    for (_, step) in &STEPS {
        if seen.insert(step.name()) {
            worker = worker.handle(step, handler);
        }
    }
    worker
}
