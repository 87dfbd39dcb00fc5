//! Decoding message bodies into typed messages, with errors that say what is wrong.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{ControlMessage, RemoteTask, StepResult, WorkflowEvent};

/// A message body that is not a valid cairn message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body is not JSON at all.
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("body must be a JSON object, found {found}")]
    NotAnObject {
        /// The JSON type found instead.
        found: &'static str,
    },
    /// A field is missing or has the wrong type.
    #[error("{message} (at `{path}`, decoding {message_type})")]
    Field {
        /// Which message type was being decoded.
        message_type: &'static str,
        /// JSON path of the offending field (`.` for the root).
        path: String,
        /// serde's description: missing field, or expected vs found type.
        message: String,
    },
}

/// Any message the engine reads from the results queue.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultsMessage {
    /// A worker's step result.
    Step(StepResult),
    /// A cairn control message.
    Control(ControlMessage),
}

impl ResultsMessage {
    /// The run this message is addressed to.
    pub fn run_id(&self) -> &str {
        match self {
            Self::Step(r) => &r.run_id,
            Self::Control(c) => c.run_id(),
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_object(body: &str) -> Result<Value, DecodeError> {
    let value: Value = serde_json::from_str(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(DecodeError::NotAnObject { found: json_type(&value) })
    }
}

fn typed<T: DeserializeOwned>(message_type: &'static str, value: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        DecodeError::Field { message_type, path, message: e.into_inner().to_string() }
    })
}

/// Decodes a tasks-queue body.
pub fn decode_task(body: &str) -> Result<RemoteTask, DecodeError> {
    typed("RemoteTask", parse_object(body)?)
}

/// Decodes a results-queue body: a `StepResult`, a control message (has `control`), or a
/// seed-style `IWorkflowEvent` (has `topic` and `urn`), which becomes a signal.
pub fn decode_results_message(body: &str) -> Result<ResultsMessage, DecodeError> {
    let value = parse_object(body)?;
    if value.get("control").is_some() {
        return typed("ControlMessage", value).map(ResultsMessage::Control);
    }
    if value.get("topic").is_some() && value.get("urn").is_some() {
        let event: WorkflowEvent = typed("IWorkflowEvent", value)?;
        return Ok(ResultsMessage::Control(event.into_signal()));
    }
    typed("StepResult", value).map(ResultsMessage::Step)
}

/// Encodes any contract message to its JSON body.
pub fn encode<T: serde::Serialize>(message: &T) -> String {
    // Contract types are plain data with string keys: serialization cannot fail.
    serde_json::to_string(message).unwrap_or_else(|e| unreachable!("contract type failed to serialize: {e}"))
}
