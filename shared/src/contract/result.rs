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
    /// Structured detail the handler attached (nestjs-durable's `FatalError(message, code,
    /// details)`, e.g. which field failed validation). Kept as-is through the history to the
    /// workflow's error and to `runs show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl StepError {
    /// A retryable error with a message.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: None,
            retryable: Some(true),
            stack: None,
            details: None,
        }
    }

    /// A terminal (non-retryable) error with a message.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: None,
            retryable: Some(false),
            stack: None,
            details: None,
        }
    }

    /// Whether the code is `code` (one cairn sets).
    pub fn has_code(&self, code: super::ErrorCode) -> bool {
        self.code.as_deref() == Some(code.as_str())
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Attaches structured detail (any JSON).
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
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

/// A log or progress line a worker recorded while running the step.
///
/// nestjs-durable's workers (Node `StepLogger`, Python `StepContext`) send
/// `{"at", "level", "message", "data"?}` plus optional sub-process fields (`subId`, `name`,
/// `status`, `phase`, `group`, `process`); earlier cairn workers sent a `type`. Every field is
/// optional and unknown ones are carried as-is, so any peer's events are kept, never rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    /// When it happened, epoch milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    /// `debug`, `info`, `warn` or `error` (nestjs-durable's levels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The line itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Event kind, e.g. `progress`, `log` (cairn's own workers; peers leave it out).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Structured payload of the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Any other fields of the event (`subId`, `name`, `status`, `phase`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl StepEvent {
    /// A log line at `level`, recorded at `at` (epoch ms).
    pub fn log(at: u64, level: &str, message: impl Into<String>) -> Self {
        Self {
            at: Some(at),
            level: Some(level.to_owned()),
            message: Some(message.into()),
            ..Self::default()
        }
    }

    /// One line for people: `level message data`, with the kind when there is no message.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(level) = &self.level {
            parts.push(level.clone());
        }
        match (&self.message, &self.kind) {
            (Some(message), _) => parts.push(message.clone()),
            (None, Some(kind)) => parts.push(kind.clone()),
            (None, None) => {}
        }
        if let Some(data) = &self.data {
            parts.push(data.to_string());
        }
        if !self.extra.is_empty() {
            parts.push(Value::Object(self.extra.clone()).to_string());
        }
        parts.join(" ")
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::contract::{decode_results_message, ResultsMessage};
    use serde_json::json;

    fn decode(body: Value) -> StepResult {
        match decode_results_message(&body.to_string()).unwrap() {
            ResultsMessage::Step(result) => result,
            other => panic!("not a step result: {other:?}"),
        }
    }

    /// The body nestjs-durable's Node `runStepHandler` and Python `Worker.process_task` send
    /// for a step that logged: events without `type`.
    #[test]
    fn peer_events_without_type_are_read_and_kept() {
        let result = decode(json!({
            "runId": "r", "seq": 1, "stepId": "r:1", "status": "completed", "output": 1,
            "startedAt": 1796189192860u64,
            "events": [
                {"at": 1796189192868u64, "level": "info", "message": "charging card",
                 "data": {"orderId": "o-1"}},
                {"at": 1796189192869u64, "level": "error", "message": "fraud", "subId": "s1",
                 "name": "fraud", "status": "failed"}
            ]
        }));
        let events = result.events.unwrap();
        assert_eq!(events[0].level.as_deref(), Some("info"));
        assert_eq!(events[0].message.as_deref(), Some("charging card"));
        assert_eq!(events[0].data, Some(json!({"orderId": "o-1"})));
        assert_eq!(events[0].kind, None);
        assert_eq!(events[1].extra["subId"], json!("s1"));
        assert_eq!(
            events[0].summary(),
            r#"info charging card {"orderId":"o-1"}"#
        );
        // Re-encoding gives the peer's shape back, unknown fields included.
        assert_eq!(
            serde_json::to_value(&events[1]).unwrap(),
            json!({"at": 1796189192869u64, "level": "error", "message": "fraud",
                   "subId": "s1", "name": "fraud", "status": "failed"})
        );
    }

    #[test]
    fn error_details_are_kept() {
        let result = decode(json!({
            "runId": "r", "seq": 1, "stepId": "r:1", "status": "failed",
            "error": {"message": "invalid card", "code": "invalid_card", "retryable": false,
                      "details": {"field": "card", "reason": "luhn"}}
        }));
        let error = result.error.unwrap();
        assert_eq!(
            error.details,
            Some(json!({"field": "card", "reason": "luhn"}))
        );
        assert!(!error.is_retryable());
        assert_eq!(
            serde_json::to_value(&error).unwrap()["details"],
            json!({"field": "card", "reason": "luhn"})
        );
    }
}
