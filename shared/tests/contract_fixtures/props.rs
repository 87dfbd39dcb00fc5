//! Property tests: random messages round-trip and satisfy the schemas; the schemas and the
//! decoder accept and reject the same mutated bodies; the decoder never panics.

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::{contract_dir, read_json, schemas};
use cairn::contract::{
    decode_results_message, decode_task, encode, RemoteTask, ResultsMessage, RunId, StepError,
    StepEvent, StepId, StepResult, StepStatus,
};

/// JavaScript's `Number.MAX_SAFE_INTEGER`, a boundary worth probing.
const MAX_SAFE: u64 = 9_007_199_254_740_991;

/// Any JSON, without floats that would not survive a text round trip exactly.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1000i32..1000).prop_map(|n| Value::from(f64::from(n) + 0.25)),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-zA-Z]{1,8}", json_value(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn name() -> impl Strategy<Value = String> {
    "[a-z]{1,8}(\\.[a-z-]{1,10})?"
}

prop_compose! {
    fn remote_task()(
        run_id in "[A-Za-z0-9:_-]{1,20}(~c?[0-9]{1,3}){0,2}".prop_map(|id| RunId::parse(id).unwrap()),
        seq in any::<u64>(),
        name in name(),
        partition in proptest::option::of("[a-z]{1,4}"),
        input in json_value(),
        attempt in any::<u32>(),
        traceparent in proptest::option::of("00-[0-9a-f]{32}-[0-9a-f]{16}-01"),
        context in proptest::option::of(object()),
        transport in proptest::option::of(Just("sqs".to_owned())),
        priority in proptest::option::of(any::<i64>()),
        scheduled_at in proptest::option::of(any::<u64>()),
        schedule_to_start_ms in proptest::option::of(any::<u64>()),
        start_to_close_ms in proptest::option::of(any::<u64>()),
    ) -> RemoteTask {
        let group = cairn::queue_name::group(&name, partition.as_deref());
        RemoteTask {
            step_id: StepId::new(&run_id, seq),
            run_id, seq, name, group, input, attempt, traceparent, context, transport, priority,
            scheduled_at, schedule_to_start_ms, start_to_close_ms,
        }
    }
}

prop_compose! {
    fn step_error()(
        message in "\\PC{0,20}",
        code in proptest::option::of("[a-z_]{1,12}"),
        retryable in proptest::option::of(any::<bool>()),
        stack in proptest::option::of("\\PC{0,40}"),
        // `"details": null` reads back as absent, so present details are never null.
        details in proptest::option::of(json_value().prop_filter("null reads as absent", |v| !v.is_null())),
    ) -> StepError {
        StepError { message, code, retryable, stack, details }
    }
}

prop_compose! {
    fn step_event()(
        kind in proptest::option::of("[a-z]{1,8}"),
        at in proptest::option::of(any::<u64>()),
        level in proptest::option::of(prop_oneof![Just("debug"), Just("info"), Just("warn"), Just("error")]),
        message in proptest::option::of("\\PC{0,20}"),
        data in proptest::option::of(json_value().prop_filter("null reads as absent", |v| !v.is_null())),
        // Keys other than the event's own fields.
        extra in prop::collection::btree_map("x[a-z]{0,6}", json_value(), 0..3),
    ) -> StepEvent {
        StepEvent {
            at,
            level: level.map(str::to_owned),
            message,
            kind,
            data,
            extra: extra.into_iter().collect(),
        }
    }
}

prop_compose! {
    fn step_result()(
        run_id in "[A-Za-z0-9:_-]{1,20}(~c?[0-9]{1,3}){0,2}".prop_map(|id| RunId::parse(id).unwrap()),
        seq in any::<u64>(),
        failed in any::<bool>(),
        // `"output": null` reads back as absent, so a present output is never null.
        output in proptest::option::of(json_value().prop_filter("null reads as absent", |v| !v.is_null())),
        error in proptest::option::of(step_error()),
        started_at in proptest::option::of(any::<u64>()),
        events in proptest::option::of(prop::collection::vec(step_event(), 0..3)),
        attempt in proptest::option::of(any::<u32>()),
    ) -> StepResult {
        let status = if failed { StepStatus::Failed } else { StepStatus::Completed };
        StepResult {
            step_id: StepId::new(&run_id, seq),
            run_id, seq, status, output, error, started_at, events, attempt,
        }
    }
}

/// Values that replace one field of a valid body. Integral floats (`1.0`) are left out: the
/// schemas' `integer` accepts them and serde's `u64` does not, a known, documented gap.
fn mutation() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        (-3i64..=4_294_967_300).prop_map(Value::from),
        "[a-z0-9:\n\r\u{2028}\u{2029}]{0,6}".prop_map(Value::from),
        prop_oneof![
            Just("completed"),
            Just("failed"),
            Just("startRun"),
            Just("signal"),
            Just("timerFired"),
            Just("cancelRun"),
            Just("resumeOutbox")
        ]
        .prop_map(Value::from),
        (json_value(), json_value(), json_value()).prop_map(|(message, retryable, at)| {
            json!({"message": message, "retryable": retryable, "type": "t", "at": at, "runId": "p", "seq": at})
        }),
        // Shapes serde's derives read but the schemas reject: one-key objects as enums, arrays
        // as structs, and the integer bounds.
        prop_oneof![Just("completed"), Just("failed"), Just("startRun")].prop_map(|k| json!({k: null})),
        prop::collection::vec(json_value(), 0..3).prop_map(Value::from),
        prop_oneof![
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(i64::MAX)),
            Just(json!(u32::MAX)),
            Just(json!(u64::from(u32::MAX) + 1)),
            Just(json!(MAX_SAFE + 1)),
        ],
        prop::collection::vec(
            (json_value(), json_value()).prop_map(|(kind, at)| json!({"type": kind, "at": at})),
            0..2
        )
        .prop_map(Value::from),
    ]
}

/// The rule a schema cannot state: a task's or result's `stepId` is its own `runId:seq`.
fn step_id_matches(body: &Value) -> bool {
    let is_step = body.get("control").is_none()
        && !(body.get("topic").is_some() && body.get("urn").is_some());
    match (&body["stepId"], &body["runId"], &body["seq"]) {
        (Value::String(step), Value::String(run), Value::Number(seq)) if is_step => {
            *step == format!("{run}:{seq}")
        }
        _ => true,
    }
}

fn fixture(rel: &str) -> Value {
    read_json(&contract_dir().join("fixtures").join(rel))
}

const TASK_FIELDS: &[&str] = &[
    "runId",
    "seq",
    "name",
    "stepId",
    "group",
    "input",
    "attempt",
    "traceparent",
    "context",
    "transport",
    "priority",
    "scheduledAt",
    "scheduleToStartMs",
    "startToCloseMs",
    "extra",
];

const RESULTS_FIELDS: &[&str] = &[
    "runId",
    "seq",
    "stepId",
    "status",
    "output",
    "error",
    "startedAt",
    "events",
    "attempt",
    "control",
    "workflow",
    "input",
    "parent",
    "name",
    "payload",
    "signalId",
    "timerId",
    "fireAtMs",
    "reason",
    "index",
    "topic",
    "urn",
    "extra",
];

const RESULTS_FIXTURES: &[&str] = &[
    "step-result/completed-nestjs.json",
    "step-result/failed-retryable.json",
    "step-result/completed-peer-events.json",
    "step-result/failed-fatal-details.json",
    "control/start-child-run.json",
    "control/signal.json",
    "control/timer-fired.json",
    "control/cancel-run.json",
    "control/resume-outbox.json",
    "workflow-event/order-paid.json",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_tasks_round_trip_and_validate(task in remote_task()) {
        let body = encode(&task);
        let json: Value = serde_json::from_str(&body).unwrap();
        prop_assert!(schemas().task.is_valid(&json), "{body}");
        prop_assert_eq!(decode_task(&body).unwrap(), task);
    }

    #[test]
    fn random_results_round_trip_and_validate(result in step_result()) {
        let body = encode(&result);
        let json: Value = serde_json::from_str(&body).unwrap();
        prop_assert!(schemas().result.is_valid(&json), "{body}");
        prop_assert!(schemas().results.is_valid(&json), "{body}");
        prop_assert_eq!(decode_results_message(&body).unwrap(), ResultsMessage::Step(result));
    }

    #[test]
    fn decoders_never_panic_on_text(text in "\\PC{0,64}") {
        let _ = decode_task(&text);
        let _ = decode_results_message(&text);
    }

    #[test]
    fn decoders_never_panic_on_json(v in json_value()) {
        let text = v.to_string();
        let _ = decode_task(&text);
        let _ = decode_results_message(&text);
    }

    /// The schema and the decoder accept exactly the same tasks.
    #[test]
    fn task_schema_and_decoder_agree(field in prop::sample::select(TASK_FIELDS), v in mutation()) {
        let mut body = fixture("remote-task/charge-card.json");
        body[field] = v;
        let text = body.to_string();
        let by_schema = schemas().task.is_valid(&body) && step_id_matches(&body);
        let by_decoder = decode_task(&text);
        prop_assert_eq!(by_schema, by_decoder.is_ok(), "{} -> {:?}", text, by_decoder);
    }

    /// The schema and the decoder accept exactly the same results-queue messages.
    #[test]
    fn results_schema_and_decoder_agree(
        rel in prop::sample::select(RESULTS_FIXTURES),
        field in prop::sample::select(RESULTS_FIELDS),
        v in mutation(),
    ) {
        let mut body = fixture(rel);
        body[field] = v;
        let text = body.to_string();
        let by_schema = schemas().results.is_valid(&body) && step_id_matches(&body);
        let by_decoder = decode_results_message(&text);
        prop_assert_eq!(by_schema, by_decoder.is_ok(), "{} -> {:?}", text, by_decoder);
    }
}
