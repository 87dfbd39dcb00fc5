//! Decoding message bodies into typed messages, with errors that say what is wrong.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::control::{
    CancelRunFields, ControlKind, ControlTag, ResumeOutboxFields, SignalFields, StartRunFields,
    TimerFiredFields,
};
use super::strict::{self, Strictness, MAX_JSON_DEPTH};
use super::{ControlMessage, RemoteTask, RunId, StepId, StepResult, WorkflowEvent};

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
    /// The same key twice in one object: peers' parsers may keep either one, so the message
    /// has no single meaning.
    #[error("duplicate key `{key}` (in `{path}`)")]
    DuplicateKey {
        /// JSON path of the object holding the key (`.` for the root).
        path: String,
        /// The repeated key.
        key: String,
    },
    /// Nested deeper than a stored history item can be read back.
    #[error("body nests arrays/objects deeper than {limit} levels")]
    TooDeep {
        /// The limit, [`MAX_JSON_DEPTH`](super::MAX_JSON_DEPTH).
        limit: usize,
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
    pub fn run_id(&self) -> &RunId {
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
    let value = strict::parse(body, MAX_JSON_DEPTH).map_err(|refused| match refused {
        Ok(Strictness::DuplicateKey { path, key }) => DecodeError::DuplicateKey { path, key },
        Ok(Strictness::TooDeep) => DecodeError::TooDeep {
            limit: MAX_JSON_DEPTH,
        },
        Err(not_json) => DecodeError::NotJson(not_json),
    })?;
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

/// Refuses a step id that is not `<runId>:<seq>` of the message's own `runId` and `seq`: a
/// result for one step must not be applied to another (or another run).
fn check_step_id(
    message_type: &'static str,
    step_id: &StepId,
    run_id: &RunId,
    seq: u64,
) -> Result<(), DecodeError> {
    if step_id.is_of(run_id, seq) {
        Ok(())
    } else {
        Err(DecodeError::Field {
            message_type,
            path: "stepId".to_owned(),
            message: format!(
                "stepId {step_id:?} does not match runId and seq (expected \"{run_id}:{seq}\")",
                step_id = step_id.as_str()
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
    check_step_id("RemoteTask", &task.step_id, &task.run_id, task.seq)?;
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
        ControlKind::ResumeOutbox => typed::<ResumeOutboxFields>(TYPE, value).map(Into::into),
    }
}

fn decode_workflow_event(value: Value) -> Result<WorkflowEvent, DecodeError> {
    const TYPE: &str = "IWorkflowEvent";
    let event: WorkflowEvent = typed(TYPE, value)?;
    if event.urn.is_string() || event.urn.is_number() {
        event.run_id().map_err(|e| DecodeError::Field {
            message_type: TYPE,
            path: "urn".to_owned(),
            message: e.to_string(),
        })?;
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
        let event = decode_workflow_event(value)?;
        return event
            .into_signal()
            .map(ResultsMessage::Control)
            .map_err(|e| DecodeError::Field {
                message_type: "IWorkflowEvent",
                path: "urn".to_owned(),
                message: e.to_string(),
            });
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
    check_step_id("StepResult", &result.step_id, &result.run_id, result.seq)?;
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
                run_id: "r1".parse().unwrap(),
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
                run_id: "42".parse().unwrap(),
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
    fn step_ids_must_be_the_run_and_seq_of_the_message() {
        for bad in [
            "r1",
            "r1:",
            ":3",
            "r1:x3",
            "someone-else:3",
            "r1:7",
            "r1:03",
        ] {
            let body = json!({"runId":"r1","seq":3,"stepId":bad,"status":"failed"}).to_string();
            let (_, path, _) = field(decode_results_message(&body).unwrap_err());
            assert_eq!(path, "stepId", "{bad:?}");
        }
        let body = json!({"runId":"run:x","seq":12,"stepId":"run:x:12","status":"failed"});
        assert!(decode_results_message(&body.to_string()).is_ok());
        let task =
            json!({"runId":"r","seq":2,"name":"n","stepId":"victim:2","group":"n","attempt":1});
        let (ty, path, _) = field(decode_task(&task.to_string()).unwrap_err());
        assert_eq!((ty, path.as_str()), ("RemoteTask", "stepId"));
    }

    #[test]
    fn run_ids_follow_the_client_rules_at_decode() {
        for bad in ["", "a\nb", "~c1", "x~y", "has space"] {
            let start = json!({"control":"startRun","runId":bad,"workflow":"w"}).to_string();
            let (_, path, message) = field(decode_results_message(&start).unwrap_err());
            assert_eq!(path, "runId", "{bad:?}: {message}");
            let result = json!({"runId":bad,"seq":1,"stepId":format!("{bad}:1"),"status":"failed"});
            let (_, path, _) = field(decode_results_message(&result.to_string()).unwrap_err());
            assert_eq!(path, "runId", "{bad:?}");
        }
        let child = json!({"control":"startRun","runId":"p~c2","workflow":"w","parent":{"runId":"p","seq":2}});
        assert!(decode_results_message(&child.to_string()).is_ok());
        let event = json!({"topic":"t","urn":""});
        let (_, path, _) = field(decode_results_message(&event.to_string()).unwrap_err());
        assert_eq!(path, "urn");
    }

    #[test]
    fn duplicate_keys_and_deep_bodies_are_refused() {
        let body = r#"{"runId":"victim","seq":1,"stepId":"r:1","status":"completed","runId":"r"}"#;
        assert_eq!(
            decode_results_message(body).unwrap_err(),
            DecodeError::DuplicateKey {
                path: ".".into(),
                key: "runId".into()
            }
        );
        let deep = format!(
            r#"{{"runId":"r","seq":1,"stepId":"r:1","status":"completed","output":{}1{}}}"#,
            "[".repeat(126),
            "]".repeat(126)
        );
        assert_eq!(
            decode_results_message(&deep).unwrap_err(),
            DecodeError::TooDeep {
                limit: MAX_JSON_DEPTH
            }
        );
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
