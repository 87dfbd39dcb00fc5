//! Handler tests: the engine and worker Lambda handlers called with real `SqsEvent`s and
//! `Context::default()`, over the in-memory store and transport. (The same handlers run
//! against SQS and DynamoDB over HTTP in the root `tests/` suite.)

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use cairn::contract::{encode, ControlMessage, RemoteTask, StepError, StepResult, StepStatus};
use cairn::store::{CheckpointStore, MemoryBlobStore, MemoryStore};
use cairn::transport::{MemoryTransport, ResultSender, TransportError};
use cairn::workflow::{
    EventKind, RemoteStep, RunStatus, WorkflowContext, WorkflowError, Workflows,
};
use cairn_lambda::engine::{Engine, EngineOptions};
use cairn_lambda::worker::{SqsWorker, Worker};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

const DOUBLE: RemoteStep<u64, u64> = RemoteStep::new("math.double");

async fn double_twice(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let once = ctx.remote(&DOUBLE, n).await?;
    ctx.remote(&DOUBLE, once).await
}

fn engine() -> Engine<MemoryStore, MemoryTransport, MemoryBlobStore> {
    let mut workflows = Workflows::new();
    workflows.register("double-twice", double_twice);
    Engine::new(
        Arc::new(workflows),
        MemoryStore::new(),
        MemoryTransport::default(),
        MemoryBlobStore::default(),
        EngineOptions::default(),
    )
}

fn event(bodies: &[String]) -> LambdaEvent<SqsEvent> {
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m{i}"));
            m.body = Some(body.clone());
            m
        })
        .collect();
    LambdaEvent::new(event, Context::default())
}

fn start(run_id: &str, n: u64) -> String {
    encode(&ControlMessage::StartRun {
        run_id: run_id.parse().unwrap(),
        workflow: "double-twice".into(),
        input: json!(n),
        parent: None,
    })
}

fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn engine_handler_drives_a_run_and_reports_only_the_bad_record() {
    let engine = engine();
    let response = engine
        .handle(event(&[
            start("r1", 3),
            "{\"runId\": 5}".into(),
            "[1,2]".into(),
            start("r2", 10),
        ]))
        .await
        .unwrap();
    assert_eq!(
        failed_ids(&response),
        vec!["m1", "m2"],
        "malformed records fail alone"
    );

    let r1 = engine.store().load("r1").await.unwrap().unwrap();
    assert_eq!(r1.run.status, RunStatus::Running);
    assert!(r1.outbox.is_empty(), "the outbox is cleared once sent");
    assert!(
        engine.store().load("r2").await.unwrap().is_some(),
        "the record after the bad ones ran"
    );
}

#[tokio::test]
async fn worker_and_engine_complete_a_run_and_duplicates_apply_once() {
    let store = MemoryStore::new();
    let transport = Arc::new(MemoryTransport::default());
    let mut workflows = Workflows::new();
    workflows.register("double-twice", double_twice);
    let engine = Engine::new(
        Arc::new(workflows),
        store,
        TransportRef(transport.clone()),
        MemoryBlobStore::default(),
        EngineOptions::default(),
    );
    let worker = Worker::new().handle(
        &DOUBLE,
        |n: u64, _| async move { Ok::<_, StepError>(n * 2) },
    );
    let blobs = MemoryBlobStore::default();

    engine.handle(event(&[start("r", 5)])).await.unwrap();
    for _ in 0..2 {
        let tasks: Vec<String> = transport
            .tasks
            .lock()
            .unwrap()
            .drain(..)
            .map(|t| encode(&t))
            .collect();
        assert_eq!(tasks.len(), 1);
        let response = worker
            .run(transport.as_ref(), &blobs, event(&tasks))
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
        let results: Vec<String> = transport
            .results
            .lock()
            .unwrap()
            .drain(..)
            .map(|r| encode(&r))
            .collect();
        // Deliver each result twice: the second copy is a no-op.
        let doubled: Vec<String> = results.iter().chain(results.iter()).cloned().collect();
        let response = engine.handle(event(&doubled)).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
    }
    let run = engine.store().load("r").await.unwrap().unwrap();
    assert_eq!(run.run.status, RunStatus::Completed);
    assert_eq!(run.run.output, Some(json!(20)));
    let completions = run
        .history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StepCompleted { .. }))
        .count();
    assert_eq!(completions, 2);
}

/// Shares one `MemoryTransport` between the engine and the test.
struct TransportRef(Arc<MemoryTransport>);

impl cairn::transport::TaskSender for TransportRef {
    async fn send_tasks(&self, tasks: &[RemoteTask]) -> Result<(), TransportError> {
        self.0.send_tasks(tasks).await
    }
}
impl ResultSender for TransportRef {
    async fn send_results(&self, results: &[StepResult]) -> Result<(), TransportError> {
        self.0.send_results(results).await
    }
}
impl cairn::transport::ControlSender for TransportRef {
    async fn send_control(&self, messages: &[(ControlMessage, u32)]) -> Result<(), TransportError> {
        self.0.send_control(messages).await
    }
}

fn task(name: &str, input: Value) -> String {
    encode(&RemoteTask::new(
        &"run".parse().unwrap(),
        1,
        name,
        name,
        input,
        1,
    ))
}

#[tokio::test]
async fn worker_turns_errors_panics_and_unknown_steps_into_failed_results() {
    let worker = Worker::new().handle(&DOUBLE, |n: u64, _| async move {
        match n {
            0 => Err(StepError::terminal("zero is not allowed").with_code("zero")),
            1 => panic!("one is cursed"),
            n => Ok(n * 2),
        }
    });
    let transport = MemoryTransport::default();
    let bodies = [
        task("math.double", json!(0)),
        task("math.double", json!(1)),
        task("math.triple", json!(2)),
        "nope".into(),
        task("math.double", json!(4)),
    ];
    let response = worker
        .run(&transport, &MemoryBlobStore::default(), event(&bodies))
        .await
        .unwrap();
    assert_eq!(
        failed_ids(&response),
        vec!["m3"],
        "only the malformed body is redelivered"
    );

    let results = transport.results.lock().unwrap().clone();
    assert_eq!(results.len(), 4);
    let by_input = |i: usize| &results[i];
    assert_eq!(
        by_input(0).error.as_ref().unwrap().code.as_deref(),
        Some("zero")
    );
    assert_eq!(by_input(0).error.as_ref().unwrap().retryable, Some(false));
    assert_eq!(
        by_input(1).error.as_ref().unwrap().code.as_deref(),
        Some("panic")
    );
    assert!(by_input(1)
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("one is cursed"));
    assert_eq!(
        by_input(2).error.as_ref().unwrap().code.as_deref(),
        Some("unknown_step")
    );
    assert_eq!(by_input(2).error.as_ref().unwrap().retryable, Some(false));
    assert_eq!(by_input(3).status, StepStatus::Completed);
    assert_eq!(by_input(3).output, Some(json!(8)));
}

struct FailingResults;

impl ResultSender for FailingResults {
    async fn send_results(&self, results: &[StepResult]) -> Result<(), TransportError> {
        // The second result is refused, as SendMessageBatch can.
        Err(TransportError::Partial {
            failed: vec![1.min(results.len() - 1)],
            cause: cairn::infra::InfraError::new(
                "SendMessageBatch",
                cairn::infra::InfraErrorKind::Throttled,
                "throttled",
            ),
        })
    }
}

#[tokio::test]
async fn a_result_that_cannot_be_sent_is_a_batch_item_failure() {
    let worker = Worker::new().handle(&DOUBLE, |n: u64, _| async move { Ok::<_, StepError>(n) });
    let bodies = [task("math.double", json!(1)), task("math.double", json!(2))];
    let response = worker
        .run(&FailingResults, &MemoryBlobStore::default(), event(&bodies))
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), vec!["m1"]);
}

async fn wait_approval(ctx: WorkflowContext, _: Value) -> Result<Value, WorkflowError> {
    ctx.wait_for_signal::<Value>("approval").await
}

#[tokio::test]
async fn a_redelivered_signal_is_applied_once() {
    let mut workflows = Workflows::new();
    workflows.register("approval", wait_approval);
    let engine = Engine::new(
        Arc::new(workflows),
        MemoryStore::new(),
        MemoryTransport::default(),
        MemoryBlobStore::default(),
        EngineOptions::default(),
    );
    let start = encode(&ControlMessage::StartRun {
        run_id: "a".parse().unwrap(),
        workflow: "approval".into(),
        input: json!(null),
        parent: None,
    });
    let signal = |approved: bool| {
        encode(&ControlMessage::Signal {
            run_id: "a".parse().unwrap(),
            name: "other".into(),
            payload: json!(approved),
            signal_id: Some("sig-1".into()),
        })
    };
    engine.handle(event(&[start])).await.unwrap();
    // The same signal message twice (SQS redelivery), then the awaited one.
    engine
        .handle(event(&[signal(true), signal(true)]))
        .await
        .unwrap();
    let loaded = engine.store().load("a").await.unwrap().unwrap();
    let received = loaded
        .history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::SignalReceived { .. }))
        .count();
    assert_eq!(received, 1);
    assert_eq!(
        loaded.run.status,
        RunStatus::Running,
        "still waiting for `approval`"
    );
}

async fn nap(ctx: WorkflowContext, _: Value) -> Result<Value, WorkflowError> {
    ctx.sleep(std::time::Duration::from_secs(3600)).await?;
    Ok(json!("rested"))
}

#[tokio::test]
async fn a_timer_fires_when_the_history_says_not_when_the_message_says() {
    let mut workflows = Workflows::new();
    workflows.register("nap", nap);
    let transport = Arc::new(MemoryTransport::default());
    let engine = Engine::new(
        Arc::new(workflows),
        MemoryStore::new(),
        TransportRef(transport.clone()),
        MemoryBlobStore::default(),
        EngineOptions::default(),
    );
    let start = encode(&ControlMessage::StartRun {
        run_id: "n".parse().unwrap(),
        workflow: "nap".into(),
        input: Value::Null,
        parent: None,
    });
    engine.handle(event(&[start])).await.unwrap();
    let recorded = match &transport.control.lock().unwrap()[..] {
        [(ControlMessage::TimerFired { fire_at_ms, .. }, _)] => *fire_at_ms,
        other => panic!("one timer expected: {other:?}"),
    };
    transport.control.lock().unwrap().clear();
    // A forged "due now" for the 3,600 s sleep, and a far-future one for a timer that
    // does not exist.
    let forged = r#"{"control":"timerFired","runId":"n","timerId":"1","fireAtMs":0}"#;
    let unknown = r#"{"control":"timerFired","runId":"n","timerId":"9","fireAtMs":99999999999999}"#;
    let response = engine
        .handle(event(&[forged.to_owned(), unknown.to_owned()]))
        .await
        .unwrap();
    assert!(failed_ids(&response).is_empty());
    let loaded = engine.store().load("n").await.unwrap().unwrap();
    assert_eq!(loaded.run.status, RunStatus::Running, "the sleep goes on");
    let hops = transport.control.lock().unwrap().clone();
    assert_eq!(
        hops.len(),
        1,
        "one hop for the real timer, none for the unknown: {hops:?}"
    );
    match &hops[0] {
        (
            ControlMessage::TimerFired {
                timer_id,
                fire_at_ms,
                ..
            },
            delay,
        ) => {
            assert_eq!(timer_id, "1");
            assert_eq!(
                *fire_at_ms, recorded,
                "the hop carries the recorded fire time"
            );
            assert_eq!(*delay, 900);
        }
        other => panic!("{other:?}"),
    }
}

/// A worker without a blob store (built without cairn-lambda's `dynamodb` feature) cannot send
/// a result over the SQS limit: the step fails with the sizes, the record is not redelivered
/// (it would fail the same way until the DLQ), and a small result beside it is unaffected.
#[tokio::test]
async fn a_worker_without_claim_checks_fails_an_oversize_result_with_its_size() {
    const BLOW_UP: RemoteStep<u64, String> = RemoteStep::new("text.blow-up");
    let worker = Worker::new().handle(
        &BLOW_UP,
        |n: u64, _| async move { Ok("x".repeat(n as usize)) },
    );
    let transport = MemoryTransport::default();
    let bodies = [
        task("text.blow-up", json!(300 * 1024)),
        task("text.blow-up", json!(3)),
    ];
    let response = worker
        .run(&transport, &cairn::store::NoBlobStore, event(&bodies))
        .await
        .unwrap();
    assert!(
        failed_ids(&response).is_empty(),
        "{:?}",
        failed_ids(&response)
    );
    let results = transport.results.lock().unwrap().clone();
    assert_eq!(results.len(), 2);
    let error = results[0]
        .error
        .as_ref()
        .expect("the oversize result fails");
    assert_eq!(
        error.code.as_deref(),
        Some(cairn::transport::PAYLOAD_TOO_LARGE_CODE)
    );
    assert_eq!(error.retryable, Some(false));
    assert_eq!(results[1].output, Some(json!("xxx")));
}

/// Issue 10, defect 10: what the engine ignores or cannot decode is counted by reason (the
/// EMF lines of `cairn_lambda::metrics`), not only logged.
#[tokio::test]
async fn ignored_and_undecodable_messages_are_counted_by_reason() {
    use cairn_lambda::metrics::{counted, IGNORED, REJECTED};
    let engine = engine();
    engine.handle(event(&[start("counted", 1)])).await.unwrap();
    let (duplicates, malformed) = (
        counted(IGNORED, "duplicate_start"),
        counted(REJECTED, "malformed"),
    );
    let response = engine
        .handle(event(&[start("counted", 1), "{not json".to_owned()]))
        .await
        .unwrap();
    assert_eq!(
        failed_ids(&response).len(),
        1,
        "the undecodable record goes back"
    );
    assert!(counted(IGNORED, "duplicate_start") > duplicates);
    assert!(counted(REJECTED, "malformed") > malformed);
}
