//! Late results on the local stack (issue 10 defect 8, issue 11 point 2): a step's result that
//! comes after its start-to-close timeout is kept in the history and shown by `runs show`; a
//! success of attempt 1 arriving before attempt 2 finished wins, and the run records it; a
//! result and the timeout in one batch: the result decides.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use cairn::contract::{encode, ControlMessage, ResultsMessage, StepResult};
use cairn::store::CheckpointStore;
use cairn::workflow::{
    EventKind, RemoteStep, RetryPolicy, RunStatus, TimerId, WorkflowContext, Workflows,
};
use cairn_tests::{AwsEngine, TestEnv};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

/// A step whose timeout timer is due at once (no queue wait allowed, 1 ms of run time), and
/// one retry after a minute: its timeout message is due as soon as it is sent, the retry is
/// not. (The results here are the test's own, not a worker's, so nothing refuses them.)
const SEND: RemoteStep<Value, Value> = RemoteStep::new("notifications.send-email")
    .with_retry(RetryPolicy::fixed(2, Duration::from_secs(60)))
    .with_schedule_to_start(Duration::ZERO)
    .with_timeout(Duration::from_millis(1));

fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.register("late", |ctx: WorkflowContext, input: Value| async move {
        ctx.remote(&SEND, input).await
    });
    w
}

fn start(run_id: &str) -> ResultsMessage {
    ResultsMessage::Control(ControlMessage::StartRun {
        run_id: run_id.parse().unwrap(),
        workflow: "late".into(),
        input: json!({"to": "a@example.com"}),
        parent: None,
    })
}

fn record(id: &str, body: String) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.body = Some(body);
    m.event_source = Some("aws:sqs".into());
    m
}

/// The worker's answer to the task the run dispatched, as a nestjs-durable worker sends it
/// (no `attempt`; `startedAt` by the worker's clock).
async fn answer(env: &TestEnv, started_at: u64) -> String {
    let url = &env.resources.task_queue_urls["notifications.send-email"];
    let bodies = loop {
        let bodies = env.receive_bodies(url).await;
        if !bodies.is_empty() {
            break bodies;
        }
    };
    let task = cairn::contract::decode_task(&bodies[0]).unwrap();
    let mut result = StepResult::completed(&task, json!({"messageId": "m-1"}));
    result.attempt = None;
    result.started_at = Some(started_at);
    encode(&result)
}

/// The timeout's `timerFired`, at the time the history recorded for it.
async fn timeout_fired<S: CheckpointStore>(store: &S, run_id: &str) -> String {
    let loaded = store.load(run_id).await.unwrap().unwrap();
    let fire_at_ms = loaded
        .history
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TimerStarted {
                timer_id: TimerId::Timeout { .. },
                fire_at_ms,
                ..
            } => Some(*fire_at_ms),
            _ => None,
        })
        .unwrap();
    encode(&ControlMessage::TimerFired {
        run_id: run_id.parse().unwrap(),
        timer_id: TimerId::Timeout { seq: 1, attempt: 1 }.to_string(),
        fire_at_ms,
    })
}

async fn deliver(engine: &AwsEngine, records: Vec<SqsMessage>) {
    let mut event = SqsEvent::default();
    event.records = records;
    let response = engine
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn a_result_and_its_timeout_in_one_batch_the_result_decides() {
    let env = TestEnv::new("late-batch", false).await;
    let engine = env.engine(workflows());
    engine.apply(start("r-batch"), "m0").await.unwrap();
    let result = answer(&env, cairn::clock::now_ms()).await;
    let timeout = timeout_fired(engine.store(), "r-batch").await;
    // After an outage both wait in the results queue, the timeout first.
    deliver(&engine, vec![record("m1", timeout), record("m2", result)]).await;
    let loaded = engine.store().load("r-batch").await.unwrap().unwrap();
    assert_eq!(loaded.run.status, RunStatus::Completed);
    assert!(
        !loaded
            .history
            .iter()
            .any(|e| matches!(e.kind, EventKind::StepFailed { .. })),
        "the step did not time out: {:?}",
        loaded.history
    );
    assert_eq!(loaded.run.output, Some(json!({"messageId": "m-1"})));
}

#[tokio::test]
async fn a_late_success_wins_is_recorded_and_shown() {
    let env = TestEnv::new("late-kept", false).await;
    let engine = env.engine(workflows());
    engine.apply(start("r-late"), "m0").await.unwrap();
    let started_at = cairn::clock::now_ms();
    let result = answer(&env, started_at).await;
    // The timeout comes first: attempt 1 fails, attempt 2 waits for its backoff.
    let timeout = timeout_fired(engine.store(), "r-late").await;
    deliver(&engine, vec![record("m1", timeout)]).await;
    let loaded = engine.store().load("r-late").await.unwrap().unwrap();
    assert_eq!(loaded.run.status, RunStatus::Running);
    // Then attempt 1's success: the step is undecided, so it wins, and the run says so.
    deliver(&engine, vec![record("m2", result.clone())]).await;
    let loaded = engine.store().load("r-late").await.unwrap().unwrap();
    assert_eq!(loaded.run.status, RunStatus::Completed);
    assert_eq!(loaded.run.output, Some(json!({"messageId": "m-1"})));
    let late: Vec<_> = loaded
        .history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LateResult {
                attempt,
                kept,
                started_at_ms,
                ..
            } => Some((*attempt, *kept, *started_at_ms)),
            _ => None,
        })
        .collect();
    assert_eq!(late, vec![(1, true, Some(started_at))]);
    // What `cairn runs show` prints.
    let text = cairn_inspect::render_text(&loaded);
    assert!(
        text.contains("attempt 1 completed late") && text.contains("kept"),
        "{text}"
    );
    // Redelivered, it is recorded once.
    deliver(&engine, vec![record("m3", result)]).await;
    let again = engine.store().load("r-late").await.unwrap().unwrap();
    assert_eq!(again.history.len(), loaded.history.len());
}
