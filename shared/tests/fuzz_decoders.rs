//! Fuzzing every decoder with proptest (stable Rust, so it runs in CI): arbitrary text and
//! bytes, arbitrary JSON, and valid messages mutated the ways a buggy peer or an attacker
//! would (duplicate keys, deep nesting, wrong types, forged ids, claim-check envelopes).
//!
//! Properties: no decoder panics; whatever a decoder accepts re-encodes to a body it accepts
//! again (same value), and can be stored and read back; `offload` then `resolve_body` gives
//! back every body.
//!
//! CI runs a few hundred cases per target. A long run (the figures in the issue's note):
//! `PROPTEST_CASES=200000 nice -n 19 cargo nextest run -p cairn --test fuzz_decoders`.
//! A crash found this way becomes an entry of `tests/corpus/`.

#![allow(clippy::unwrap_used)]

use cairn::contract::{decode_results_message, decode_task, encode, ResultsMessage};
use cairn::store::{decode_stored, encode_stored, MemoryBlobStore};
use cairn::transport::{offload, resolve_body};
use cairn::workflow::{Command, HistoryEvent};
use proptest::prelude::*;
use serde_json::{json, Value};

fn config() -> ProptestConfig {
    // PROPTEST_CASES overrides this (the long run); CI keeps the default small.
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::from),
        prop_oneof![
            Just("r"),
            Just("r:1"),
            Just("~c1"),
            Just("a~c1~2"),
            Just(""),
            Just("a\nb")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{0,8}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Valid bodies of every message kind, to mutate.
fn seeds() -> Vec<Value> {
    vec![
        json!({"runId":"r","seq":2,"stepId":"r:2","status":"completed","output":{"ok":true},"attempt":1}),
        json!({"runId":"r","seq":2,"stepId":"r:2","status":"failed","error":{"message":"m","code":"c","retryable":false}}),
        json!({"control":"startRun","runId":"p~c2","workflow":"w","input":[1],"parent":{"runId":"p","seq":2}}),
        json!({"control":"signal","runId":"r","name":"go","payload":{"a":1},"signalId":"s"}),
        json!({"control":"timerFired","runId":"r","timerId":"1","fireAtMs":5}),
        json!({"control":"cancelRun","runId":"r","reason":"x"}),
        json!({"control":"resumeOutbox","runId":"r","index":1}),
        json!({"topic":"go","urn":42,"payload":null,"attempt":0}),
        json!({"runId":"r","seq":1,"name":"n","stepId":"r:1","group":"n","input":{},"attempt":1,"context":{"workflow":"w"}}),
    ]
}

const FIELDS: &[&str] = &[
    "runId",
    "seq",
    "stepId",
    "status",
    "output",
    "error",
    "attempt",
    "control",
    "workflow",
    "input",
    "parent",
    "name",
    "payload",
    "timerId",
    "fireAtMs",
    "topic",
    "urn",
    "group",
    "context",
    "events",
    "claimCheck",
    "startedAt",
];

/// One way to damage a valid body, applied to its text.
#[derive(Debug, Clone)]
enum Damage {
    /// Set a field to any JSON.
    Set(&'static str, Value),
    /// Remove a field.
    Remove(&'static str),
    /// Repeat a field with another value (a duplicate key).
    Duplicate(&'static str, Value),
    /// Wrap a field's value in `n` arrays.
    Nest(&'static str, usize),
    /// Cut the text at a byte offset.
    Truncate(usize),
    /// Insert a byte at an offset.
    Insert(usize, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    let field = prop::sample::select(FIELDS);
    prop_oneof![
        (field.clone(), json_value()).prop_map(|(f, v)| Damage::Set(f, v)),
        field.clone().prop_map(Damage::Remove),
        (field.clone(), json_value()).prop_map(|(f, v)| Damage::Duplicate(f, v)),
        (field, 1usize..140).prop_map(|(f, n)| Damage::Nest(f, n)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Insert(at, b)),
    ]
}

fn apply(seed: &Value, damages: &[Damage]) -> String {
    let mut value = seed.clone();
    let mut text_edits = Vec::new();
    let mut duplicates = String::new();
    for d in damages {
        match d {
            Damage::Set(f, v) => value[*f] = v.clone(),
            Damage::Remove(f) => {
                value.as_object_mut().map(|o| o.remove(*f));
            }
            Damage::Duplicate(f, v) => duplicates.push_str(&format!(",\"{f}\":{v}")),
            Damage::Nest(f, n) => {
                let inner = value.get(*f).cloned().unwrap_or(Value::Null);
                let text = format!("{}{inner}{}", "[".repeat(*n), "]".repeat(*n));
                // Deeper than serde_json builds: splice the text in.
                value[*f] = Value::String(format!("@@{f}@@"));
                text_edits.push((format!("\"@@{f}@@\""), text));
            }
            Damage::Truncate(_) | Damage::Insert(..) => {}
        }
    }
    let mut text = value.to_string();
    for (marker, replacement) in text_edits {
        text = text.replace(&marker, &replacement);
    }
    if !duplicates.is_empty() && text.ends_with('}') {
        text.pop();
        text.push_str(&duplicates);
        text.push('}');
    }
    let mut bytes = text.into_bytes();
    for d in damages {
        match d {
            Damage::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Damage::Insert(at, b) => bytes.insert(at % (bytes.len() + 1), *b),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What an accepted results message must satisfy.
fn check_results(body: &str) -> Result<(), TestCaseError> {
    let Ok(message) = decode_results_message(body) else {
        return Ok(());
    };
    let again = match &message {
        ResultsMessage::Step(r) => encode(r),
        ResultsMessage::Control(c) => encode(c),
    };
    let decoded = decode_results_message(&again);
    prop_assert_eq!(decoded.as_ref(), Ok(&message), "{} -> {}", body, again);
    // Whatever is accepted can be stored (in its event) and read back.
    let stored = encode_stored("k", &[serde_json::from_str::<Value>(&again).unwrap()]);
    prop_assert!(stored.is_ok(), "{body}: {stored:?}");
    let back: Vec<Value> = decode_stored("k", &stored.unwrap()).unwrap();
    prop_assert_eq!(back.len(), 1);
    Ok(())
}

fn check_task(body: &str) -> Result<(), TestCaseError> {
    let Ok(task) = decode_task(body) else {
        return Ok(());
    };
    let again = encode(&task);
    prop_assert_eq!(decode_task(&again), Ok(task), "{} -> {}", body, again);
    Ok(())
}

fn round_trips(body: String) -> Result<(), TestCaseError> {
    let blobs = MemoryBlobStore::default();
    let back = futures::executor::block_on(async {
        let sent = offload(body.clone(), &blobs).await.unwrap();
        resolve_body(&sent, &blobs).await
    });
    prop_assert_eq!(back.ok(), Some(body));
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn results_decoder_on_any_text(text in "\\PC{0,200}") {
        check_results(&text)?;
    }

    #[test]
    fn results_decoder_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_results(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn results_decoder_on_any_json(v in json_value()) {
        check_results(&v.to_string())?;
    }

    #[test]
    fn results_decoder_on_damaged_messages(
        seed in prop::sample::select(seeds()),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        check_results(&apply(&seed, &damages))?;
    }

    #[test]
    fn task_decoder_on_any_text(text in "\\PC{0,200}") {
        check_task(&text)?;
    }

    #[test]
    fn task_decoder_on_damaged_tasks(damages in prop::collection::vec(damage(), 1..4)) {
        check_task(&apply(&seeds()[7], &damages))?;
    }

    #[test]
    fn stored_history_reader_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_stored::<Vec<HistoryEvent>>("k", &bytes);
        let _ = decode_stored::<Vec<Command>>("k", &bytes);
    }

    #[test]
    fn stored_history_reader_on_any_json(v in json_value(), kind in "[a-zA-Z]{0,16}") {
        // Shaped like a stored batch: an array of objects with a `type`.
        let mut event = v;
        if let Some(o) = event.as_object_mut() {
            o.insert("type".into(), Value::from(kind));
            o.insert("atMs".into(), Value::from(1));
        }
        let text = json!([event]).to_string();
        if let Ok(events) = decode_stored::<Vec<HistoryEvent>>("k", text.as_bytes()) {
            let again = encode_stored("k", &events).unwrap();
            prop_assert_eq!(decode_stored::<Vec<HistoryEvent>>("k", &again).unwrap(), events);
        }
        let _ = decode_stored::<Vec<Command>>("k", text.as_bytes());
    }

    #[test]
    fn claim_checks_round_trip_any_body(body in "\\PC{0,120}") {
        round_trips(body)?;
    }

    #[test]
    fn claim_checks_round_trip_envelope_lookalikes(
        inner in json_value(),
        extra in prop::option::of(("[a-zA-Z]{1,6}", json_value())),
    ) {
        let mut body = json!({ "claimCheck": inner });
        if let Some((k, v)) = extra {
            body[k] = v;
        }
        round_trips(body.to_string())?;
    }
}
