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
        }
    }

    /// With the context cairn's engine gives every task: the dispatching `workflow`, and the
    /// step's `deadlineMs` (dispatch time plus its start-to-close timeout) when it has one.
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
