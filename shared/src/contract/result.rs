//! `StepResult`: what a worker sends back on the shared results queue.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{RunId, StepId};

/// Outcome of one step attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// The handler returned an output.
    Completed,
    /// The handler failed; see [`StepResult::error`].
    Failed,
}

/// Why a step attempt failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepError {
    /// Human-readable message.
    pub message: String,
    /// Machine-readable code, e.g. `card_declined`, `unknown_step`, `panic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Whether another attempt may succeed. Absent means "retryable" (nestjs-durable default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// Stack trace or backtrace text, if the worker has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

impl StepError {
    /// A retryable error with a message.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: None,
            retryable: Some(true),
            stack: None,
        }
    }

    /// A terminal (non-retryable) error with a message.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: None,
            retryable: Some(false),
            stack: None,
        }
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Whether another attempt may succeed (absent counts as yes).
    pub fn is_retryable(&self) -> bool {
        self.retryable.unwrap_or(true)
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A progress or log event a worker reports along with its result.
///
/// Kept open: `type` and `at` are typed, everything else is carried as-is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    /// Event kind, e.g. `progress`, `log`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// Any other fields of the event.
    #[serde(flatten)]
    pub data: Map<String, Value>,
}

/// The result of one step attempt, as sent to `<prefix>-results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    /// The run the step belongs to.
    pub run_id: RunId,
    /// The step's sequence number.
    pub seq: u64,
    /// `"<runId>:<seq>"`, the dedupe key: applied to its run at most once.
    pub step_id: StepId,
    /// `completed` or `failed`.
    pub status: StepStatus,
    /// The output, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The error, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// When the attempt started, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    /// Events the worker reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<StepEvent>>,
    /// cairn extension: which attempt this result answers (absent from nestjs-durable workers,
    /// in which case the engine assumes the latest dispatched attempt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

impl StepResult {
    /// A completed result for a task.
    pub fn completed(task: &super::RemoteTask, output: Value) -> Self {
        Self {
            run_id: task.run_id.clone(),
            seq: task.seq,
            step_id: task.step_id.clone(),
            status: StepStatus::Completed,
            output: Some(output),
            error: None,
            started_at: None,
            events: None,
            attempt: Some(task.attempt),
        }
    }

    /// A failed result for a task.
    pub fn failed(task: &super::RemoteTask, error: StepError) -> Self {
        Self {
            run_id: task.run_id.clone(),
            seq: task.seq,
            step_id: task.step_id.clone(),
            status: StepStatus::Failed,
            output: None,
            error: Some(error),
            started_at: None,
            events: None,
            attempt: Some(task.attempt),
        }
    }
}
