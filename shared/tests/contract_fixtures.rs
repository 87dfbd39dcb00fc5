//! The wire contract against its JSON Schemas and fixtures (`contract/` at the repository root).
//!
//! Every valid fixture validates against its schema, decodes with cairn's decoder, re-encodes,
//! and the re-encoded body validates again and decodes to the same value. Every invalid fixture
//! is rejected by the schema and by the decoder, whose error names the field and the expected
//! type given in the fixture's `.expected.json` sidecar.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cairn::contract::{
    decode_results_message, decode_task, encode, ControlMessage, DecodeError, ResultsMessage,
    StepResult, WorkflowEvent,
};
use jsonschema::{Registry, Validator};
use serde_json::Value;

const SCHEMA_FILES: [&str; 5] = [
    "remote-task",
    "step-result",
    "control-message",
    "workflow-event",
    "results-message",
];

fn contract_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contract")
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema_json(name: &str) -> Value {
    read_json(&contract_dir().join(format!("{name}.schema.json")))
}

/// Compiled validators, one per schema file, with every schema in the registry under its
/// `$id` so `results-message` resolves its relative `$ref`s offline.
struct Schemas {
    task: Validator,
    result: Validator,
    control: Validator,
    event: Validator,
    results: Validator,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let docs: Vec<Value> = SCHEMA_FILES.iter().map(|n| schema_json(n)).collect();
        let mut builder = Registry::new();
        for doc in &docs {
            let id = doc["$id"].as_str().expect("every schema has an $id");
            builder = builder.add(id, doc.clone()).unwrap();
        }
        let registry = builder.prepare().unwrap();
        let build = |i: usize| {
            jsonschema::options()
                .offline()
                .with_registry(&registry)
                .build(&docs[i])
                .unwrap_or_else(|e| panic!("{}: {e}", SCHEMA_FILES[i]))
        };
        Schemas {
            task: build(0),
            result: build(1),
            control: build(2),
            event: build(3),
            results: build(4),
        }
    })
}

fn assert_valid(validator: &Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what} fails its schema: {errors:#?}");
}

/// The `.json` fixtures of a directory, sidecars excluded, sorted.
fn fixtures(dir: &str) -> Vec<PathBuf> {
    let dir = contract_dir().join("fixtures").join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".json") && !name.ends_with(".expected.json")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn body(path: &Path) -> String {
    fs::read_to_string(path).unwrap()
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn schemas_are_valid_draft_2020_12() {
    for name in SCHEMA_FILES {
        let schema = schema_json(name);
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        jsonschema::meta::validate(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Forces compilation of every schema, `$ref`s included.
    let _ = schemas();
}

#[test]
fn remote_task_fixtures_round_trip() {
    let s = schemas();
    for path in fixtures("remote-task") {
        let what = path.display().to_string();
        let text = body(&path);
        assert_valid(&s.task, &value(&text), &what);
        let task = decode_task(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
        let again = encode(&task);
        assert_valid(&s.task, &value(&again), &format!("re-encoded {what}"));
        assert_eq!(decode_task(&again).unwrap(), task, "{what}");
    }
}

/// Decodes a results-queue fixture, checks both its own schema and `results-message`, and
/// round-trips the decoded message.
fn results_round_trip(dir: &str, own: &Validator, check: impl Fn(&str, &ResultsMessage)) {
    let s = schemas();
    for path in fixtures(dir) {
        let what = path.display().to_string();
        let text = body(&path);
        assert_valid(own, &value(&text), &what);
        assert_valid(&s.results, &value(&text), &what);
        let message = decode_results_message(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
        check(&text, &message);
        let again = match &message {
            ResultsMessage::Step(result) => {
                assert_valid(&s.result, &value(&encode(result)), &what);
                encode(result)
            }
            ResultsMessage::Control(control) => {
                assert_valid(&s.control, &value(&encode(control)), &what);
                encode(control)
            }
        };
        assert_valid(&s.results, &value(&again), &format!("re-encoded {what}"));
        assert_eq!(decode_results_message(&again).unwrap(), message, "{what}");
    }
}

#[test]
fn step_result_fixtures_round_trip() {
    results_round_trip("step-result", &schemas().result, |text, message| {
        let ResultsMessage::Step(result) = message else {
            panic!("{text} did not decode as a StepResult");
        };
        assert_eq!(result, &serde_json::from_str::<StepResult>(text).unwrap());
    });
}

#[test]
fn control_fixtures_round_trip() {
    results_round_trip("control", &schemas().control, |text, message| {
        // The decoder's per-variant path and serde's derived impl agree.
        let derived: ControlMessage = serde_json::from_str(text).unwrap();
        assert_eq!(message, &ResultsMessage::Control(derived));
    });
}

#[test]
fn workflow_event_fixtures_round_trip_and_become_signals() {
    results_round_trip("workflow-event", &schemas().event, |text, message| {
        let event: WorkflowEvent = serde_json::from_str(text).unwrap();
        assert_eq!(
            message,
            &ResultsMessage::Control(event.clone().into_signal().unwrap())
        );
        let again = encode(&event);
        assert_valid(&schemas().event, &value(&again), text);
        assert_eq!(
            serde_json::from_str::<WorkflowEvent>(&again).unwrap(),
            event
        );
    });
}

#[test]
fn the_seed_remote_task_decodes() {
    let path = contract_dir().join("fixtures/remote-task/charge-card.json");
    let task = decode_task(&body(&path)).unwrap();
    assert_eq!(task.name, "payments.charge-card");
    assert_eq!(task.group, "payments.charge-card");
    assert_eq!(
        task.step_id.as_str(),
        format!("{}:{}", task.run_id, task.seq)
    );
    assert_eq!(task.input["orderId"], "ord_1042");
    assert_eq!(task.input["amountCents"], 4999);
    assert_eq!(
        cairn::queue_name::tasks_queue_name(
            cairn::queue_name::DEFAULT_PREFIX,
            &task.group,
            cairn::queue_name::QueueKind::Standard
        )
        .unwrap(),
        "durable-tasks-payments_2Echarge-card"
    );
}

#[test]
fn a_failed_result_can_be_terminal() {
    let path = contract_dir().join("fixtures/step-result/failed-unknown-step.json");
    let ResultsMessage::Step(result) = decode_results_message(&body(&path)).unwrap() else {
        panic!("not a step result");
    };
    let error = result.error.unwrap();
    assert!(!error.is_retryable());
    assert_eq!(error.code.as_deref(), Some("unknown_step"));
}

/// Checks a decoder error against an `.expected.json` sidecar.
fn assert_expected(what: &str, err: &DecodeError, expected: &Value) {
    let want = |key: &str| {
        expected[key]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no {key}"))
    };
    match (want("error"), err) {
        (
            "Field",
            DecodeError::Field {
                message_type,
                path,
                message,
            },
        ) => {
            assert_eq!(*message_type, want("messageType"), "{what}: {err}");
            assert_eq!(path, want("path"), "{what}: {err}");
            assert!(message.contains(want("contains")), "{what}: {err}");
        }
        ("NotAnObject", DecodeError::NotAnObject { found }) => {
            assert_eq!(*found, want("found"), "{what}");
        }
        (kind, _) => panic!("{what}: expected {kind}, got {err:?}"),
    }
}

fn invalid_fixtures(
    dir: &str,
    validator: &Validator,
    decode: impl Fn(&str) -> Option<DecodeError>,
) {
    for path in fixtures(&format!("invalid/{dir}")) {
        let what = path.display().to_string();
        let text = body(&path);
        assert!(
            !validator.is_valid(&value(&text)),
            "{what} passes the schema"
        );
        let err = decode(&text).unwrap_or_else(|| panic!("{what} decodes"));
        let sidecar = path.with_extension("expected.json");
        assert!(sidecar.exists(), "{what} has no sidecar");
        assert_expected(&what, &err, &read_json(&sidecar));
    }
}

#[test]
fn invalid_remote_tasks_are_rejected_with_the_field_named() {
    invalid_fixtures("remote-task", &schemas().task, |b| decode_task(b).err());
}

#[test]
fn invalid_results_messages_are_rejected_with_the_field_named() {
    invalid_fixtures("results", &schemas().results, |b| {
        decode_results_message(b).err()
    });
}

#[test]
fn every_sidecar_has_a_fixture() {
    for dir in ["invalid/remote-task", "invalid/results"] {
        for entry in fs::read_dir(contract_dir().join("fixtures").join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if let Some(stem) = name.strip_suffix(".expected.json") {
                assert!(
                    path.with_file_name(format!("{stem}.json")).exists(),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn bodies_that_are_not_objects_give_typed_errors() {
    for (text, found) in [
        ("null", "null"),
        ("42", "a number"),
        ("\"run-1:2\"", "a string"),
        ("true", "a boolean"),
        ("[]", "an array"),
    ] {
        let want = DecodeError::NotAnObject { found };
        assert_eq!(decode_task(text).unwrap_err(), want);
        assert_eq!(decode_results_message(text).unwrap_err(), want);
    }
    for text in [
        "",
        "   ",
        "not json",
        "{",
        "{\"runId\":",
        "{'runId':'r'}",
        "\u{0}",
    ] {
        assert!(matches!(decode_task(text), Err(DecodeError::NotJson(_))));
        assert!(matches!(
            decode_results_message(text),
            Err(DecodeError::NotJson(_))
        ));
    }
}

#[path = "contract_fixtures/props.rs"]
mod props;
