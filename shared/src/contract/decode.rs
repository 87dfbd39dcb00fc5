//! Decoding message bodies into typed messages, with errors that say what is wrong.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::control::{
    CancelRunFields, ControlKind, ControlTag, SignalFields, StartRunFields, TimerFiredFields,
};
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
    let value: Value =
        serde_json::from_str(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(DecodeError::NotAnObject {
            found: json_type(&value),
        })
    }
}

fn typed<T: DeserializeOwned>(message_type: &'static str, value: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        DecodeError::Field {
            message_type,
            path,
            message: e.into_inner().to_string(),
        }
    })
}

/// Whether `step_id` has the `"<runId>:<seq>"` shape: the schemas' `^.+:[0-9]+$`, where `.`
/// is ECMA-262's (any character but a line terminator), as JSON Schema specifies.
fn is_step_id(step_id: &str) -> bool {
    let is_line_terminator = |c: char| matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}');
    match step_id.rsplit_once(':') {
        Some((run, seq)) => {
            !run.is_empty()
                && !run.contains(is_line_terminator)
                && !seq.is_empty()
                && seq.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn check_step_id(message_type: &'static str, step_id: &str) -> Result<(), DecodeError> {
    if is_step_id(step_id) {
        Ok(())
    } else {
        Err(DecodeError::Field {
            message_type,
            path: "stepId".to_owned(),
            message: format!(
                "invalid value: string {step_id:?}, expected a string of the form `<runId>:<seq>`"
            ),
        })
    }
}

/// Rejects a present `field` whose JSON type serde's derives would accept but the schemas do
/// not: derived structs also read a JSON array positionally (`"error": ["boom"]`) and derived
/// enums also read a one-key object (`"status": {"failed": null}`).
fn check_type(
    message_type: &'static str,
    value: &Value,
    field: &str,
    ok: fn(&Value) -> bool,
    expected: &str,
) -> Result<(), DecodeError> {
    match value.get(field) {
        Some(found) if !ok(found) => Err(DecodeError::Field {
            message_type,
            path: field.to_owned(),
            message: format!("invalid type: {}, expected {expected}", json_type(found)),
        }),
        _ => Ok(()),
    }
}

fn is_object_or_null(v: &Value) -> bool {
    v.is_object() || v.is_null()
}

/// Decodes a tasks-queue body.
pub fn decode_task(body: &str) -> Result<RemoteTask, DecodeError> {
    let task: RemoteTask = typed("RemoteTask", parse_object(body)?)?;
    check_step_id("RemoteTask", &task.step_id)?;
    Ok(task)
}

/// Decodes a control message: the tag first, then the variant's fields as a plain struct so a
/// bad field is reported with its path.
fn decode_control(value: Value) -> Result<ControlMessage, DecodeError> {
    const TYPE: &str = "ControlMessage";
    if let Some(tag) = value.get("control").filter(|tag| !tag.is_string()) {
        return Err(DecodeError::Field {
            message_type: TYPE,
            path: "control".to_owned(),
            message: format!("invalid type: {}, expected a string", json_type(tag)),
        });
    }
    let ControlTag { control } = typed(TYPE, value.clone())?;
    match control {
        ControlKind::StartRun => {
            check_type(
                TYPE,
                &value,
                "parent",
                is_object_or_null,
                "struct ParentRef",
            )?;
            typed::<StartRunFields>(TYPE, value).map(Into::into)
        }
        ControlKind::Signal => typed::<SignalFields>(TYPE, value).map(Into::into),
        ControlKind::TimerFired => typed::<TimerFiredFields>(TYPE, value).map(Into::into),
        ControlKind::CancelRun => typed::<CancelRunFields>(TYPE, value).map(Into::into),
    }
}

fn decode_workflow_event(value: Value) -> Result<WorkflowEvent, DecodeError> {
    const TYPE: &str = "IWorkflowEvent";
    let event: WorkflowEvent = typed(TYPE, value)?;
    if event.urn.is_string() || event.urn.is_number() {
        Ok(event)
    } else {
        Err(DecodeError::Field {
            message_type: TYPE,
            path: "urn".to_owned(),
            message: format!(
                "invalid type: {}, expected a string or a number",
                json_type(&event.urn)
            ),
        })
    }
}

/// Decodes a results-queue body: a control message (has a `control` field), else a seed-style
/// `IWorkflowEvent` (has `topic` and `urn`), which becomes a signal, else a `StepResult`.
///
/// The order is the contract (`contract/results-message.schema.json` encodes the same rule):
/// a `StepResult` never carries `control`, `topic` or `urn`.
pub fn decode_results_message(body: &str) -> Result<ResultsMessage, DecodeError> {
    let value = parse_object(body)?;
    if value.get("control").is_some() {
        return decode_control(value).map(ResultsMessage::Control);
    }
    if value.get("topic").is_some() && value.get("urn").is_some() {
        return decode_workflow_event(value)
            .map(|event| ResultsMessage::Control(event.into_signal()));
    }
    check_type("StepResult", &value, "status", Value::is_string, "a string")?;
    check_type(
        "StepResult",
        &value,
        "error",
        is_object_or_null,
        "struct StepError",
    )?;
    let result: StepResult = typed("StepResult", value)?;
    check_step_id("StepResult", &result.step_id)?;
    Ok(ResultsMessage::Step(result))
}

/// Encodes any contract message to its JSON body.
pub fn encode<T: serde::Serialize>(message: &T) -> String {
    // Contract types are plain data with string keys: serialization cannot fail.
    serde_json::to_string(message)
        .unwrap_or_else(|e| unreachable!("contract type failed to serialize: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::contract::StepStatus;

    fn field(err: DecodeError) -> (&'static str, String, String) {
        match err {
            DecodeError::Field {
                message_type,
                path,
                message,
            } => (message_type, path, message),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_step_result_is_a_step() {
        let body = r#"{"runId":"r1","seq":3,"stepId":"r1:3","status":"completed","output":{"ok":true},"workerId":"w-7"}"#;
        let ResultsMessage::Step(result) = decode_results_message(body).unwrap() else {
            panic!("not a step result");
        };
        assert_eq!(result.status, StepStatus::Completed);
        assert_eq!(result.output, Some(json!({"ok": true})));
    }

    #[test]
    fn a_control_field_makes_a_control_message() {
        let body = r#"{"control":"cancelRun","runId":"r1","reason":"user"}"#;
        let message = decode_results_message(body).unwrap();
        assert_eq!(
            message,
            ResultsMessage::Control(ControlMessage::CancelRun {
                run_id: "r1".into(),
                reason: Some("user".into())
            })
        );
        assert_eq!(message.run_id(), "r1");
    }

    #[test]
    fn topic_and_urn_make_a_signal() {
        let body = r#"{"topic":"order.paid","urn":42,"payload":{"amount":5},"attempt":0}"#;
        assert_eq!(
            decode_results_message(body).unwrap(),
            ResultsMessage::Control(ControlMessage::Signal {
                run_id: "42".into(),
                name: "order.paid".into(),
                payload: json!({"amount": 5}),
                signal_id: None,
            })
        );
    }

    #[test]
    fn topic_without_urn_is_read_as_a_step_result() {
        let (ty, path, message) = field(decode_results_message(r#"{"topic":"t"}"#).unwrap_err());
        assert_eq!((ty, path.as_str()), ("StepResult", "."));
        assert!(message.contains("missing field `runId`"), "{message}");
    }

    #[test]
    fn control_errors_name_the_field() {
        let body = r#"{"control":"timerFired","runId":"r","timerId":"t","fireAtMs":"soon"}"#;
        let (ty, path, message) = field(decode_results_message(body).unwrap_err());
        assert_eq!((ty, path.as_str()), ("ControlMessage", "fireAtMs"));
        assert!(message.contains("expected u64"), "{message}");

        let body =
            r#"{"control":"startRun","runId":"r","workflow":"w","parent":{"runId":"p","seq":-1}}"#;
        let (_, path, _) = field(decode_results_message(body).unwrap_err());
        assert_eq!(path, "parent.seq");

        let (_, path, message) =
            field(decode_results_message(r#"{"control":"pause","runId":"r"}"#).unwrap_err());
        assert_eq!(path, "control");
        assert!(message.contains("unknown variant `pause`"), "{message}");

        let (_, path, message) =
            field(decode_results_message(r#"{"control":7,"runId":"r"}"#).unwrap_err());
        assert_eq!(path, "control");
        assert!(message.contains("expected a string"), "{message}");
    }

    #[test]
    fn step_ids_must_have_the_run_seq_shape() {
        for bad in ["r1", "r1:", ":3", "r1:x3"] {
            let body = json!({"runId":"r1","seq":3,"stepId":bad,"status":"failed"}).to_string();
            let (_, path, _) = field(decode_results_message(&body).unwrap_err());
            assert_eq!(path, "stepId", "{bad}");
        }
        assert!(is_step_id("run:with:colons:12"));
    }

    #[test]
    fn the_derived_deserialize_agrees_with_the_decoder() {
        for body in [
            r#"{"control":"startRun","runId":"r","workflow":"w","input":[1],"parent":{"runId":"p","seq":2}}"#,
            r#"{"control":"signal","runId":"r","name":"go","signalId":"s1"}"#,
            r#"{"control":"timerFired","runId":"r","timerId":"t1","fireAtMs":1700000000000}"#,
            r#"{"control":"cancelRun","runId":"r"}"#,
        ] {
            let derived: ControlMessage = serde_json::from_str(body).unwrap();
            assert_eq!(
                decode_results_message(body).unwrap(),
                ResultsMessage::Control(derived)
            );
        }
    }
}
