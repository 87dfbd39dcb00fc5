//! `RemoteTask`: what the engine sends to a step's tasks queue.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{RunId, StepId};

/// A remote step invocation, as sent to `<prefix>-tasks-<group>`.
///
/// Field names are those of the nestjs-durable SQS transport, so Node and Python workers can
/// serve cairn steps. Unknown fields are ignored on read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteTask {
    /// The run this step belongs to.
    pub run_id: RunId,
    /// The step's sequence number within the run.
    pub seq: u64,
    /// The step name the worker dispatches on, e.g. `payments.charge-card`.
    pub name: String,
    /// `"<runId>:<seq>"`: the dedupe and idempotency key of this step.
    pub step_id: StepId,
    /// The queue token: the step name, or `name@partition`.
    pub group: String,
    /// The step's input, any JSON.
    #[serde(default)]
    pub input: Value,
    /// Attempt number, starting at 1.
    pub attempt: u32,
    /// W3C trace context of the dispatching activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Free-form context propagated to the worker (cairn puts `deadlineMs` and
    /// `workflow` here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
    /// Which transport carried the task (`"sqs"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Optional priority hint; higher runs first where the transport supports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// When the engine sent this task, epoch ms (engine clock): the start of its queue wait
    /// (a task sent again after a crash starts a new one; cairn extension, peers ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<u64>,
    /// Schedule-to-start timeout, ms: a worker that starts the attempt later than
    /// `scheduledAt` + this refuses it without running the handler (a failed, non-retryable
    /// result with code `timeout`). Sent only when the step sets one (cairn extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_to_start_ms: Option<u64>,
    /// Start-to-close timeout, ms: how long the attempt may run from the worker's own start;
    /// a cairn worker stops the handler then and answers a failed, retryable result with code
    /// `timeout` (cairn extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_to_close_ms: Option<u64>,
}

impl RemoteTask {
    /// A task with the required fields set and `stepId` derived from `run_id` and `seq`.
    pub fn new(
        run_id: &RunId,
        seq: u64,
        name: impl Into<String>,
        group: impl Into<String>,
        input: Value,
        attempt: u32,
    ) -> Self {
        Self {
            step_id: StepId::new(run_id, seq),
            run_id: run_id.clone(),
            seq,
            name: name.into(),
            group: group.into(),
            input,
            attempt,
            traceparent: None,
            context: None,
            transport: Some("sqs".to_owned()),
            priority: None,
            scheduled_at: None,
            schedule_to_start_ms: None,
            start_to_close_ms: None,
        }
    }

    /// With the step's timeouts: when the engine scheduled the attempt and, when the step
    /// sets them, its schedule-to-start and start-to-close timeouts (see
    /// [`StepTimeouts`](crate::workflow::StepTimeouts)).
    pub fn with_timeouts(
        mut self,
        scheduled_at: u64,
        schedule_to_start_ms: Option<u64>,
        start_to_close_ms: Option<u64>,
    ) -> Self {
        self.scheduled_at = Some(scheduled_at);
        self.schedule_to_start_ms = schedule_to_start_ms;
        self.start_to_close_ms = start_to_close_ms;
        self
    }

    /// With the context cairn's engine gives every task: the dispatching `workflow`, and the
    /// step's `deadlineMs` when it has a start-to-close timeout: when the engine stops waiting
    /// for the attempt (its durable timeout timer, see
    /// [`StepTimeouts::backstop_ms`](crate::workflow::StepTimeouts::backstop_ms)). A cairn
    /// worker gives its handler the tighter deadline of its own start plus start-to-close.
    pub fn with_engine_context(mut self, workflow: Option<&str>, deadline_ms: Option<u64>) -> Self {
        let mut context = Map::new();
        if let Some(workflow) = workflow {
            context.insert("workflow".into(), workflow.into());
        }
        if let Some(deadline) = deadline_ms {
            context.insert("deadlineMs".into(), deadline.into());
        }
        self.context = Some(context);
        self
    }
}
