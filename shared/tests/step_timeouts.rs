//! Schedule-to-start versus start-to-close (issue 10, defect 8), on `TestEnv`'s virtual clock
//! with a tasks-queue backlog (`TestEnv::task_queue_wait`).
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn::contract::StepError;
use cairn::testing::{TestEnv, TestEnvError};
use cairn::workflow::{
    EventKind, RemoteStep, RetryPolicy, StepTimeouts, TimerId, WorkflowContext, Workflows,
    QUEUE_WAIT_ALLOWANCE_MS,
};
use serde_json::{json, Value};

/// Runs for at most 30 s once started; queue wait is not limited.
const SEND: RemoteStep<Value, Value> = RemoteStep::new("notifications.send-email")
    .with_retry(RetryPolicy::none())
    .with_timeout(Duration::from_secs(30));
/// The same, but its task may wait at most a minute in the queue.
const SEND_SOON: RemoteStep<Value, Value> = RemoteStep::new("notifications.send-soon")
    .with_retry(RetryPolicy::DEFAULT)
    .with_timeout(Duration::from_secs(30))
    .with_schedule_to_start(Duration::from_secs(60));

fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.register("send", |ctx: WorkflowContext, input: Value| async move {
        ctx.remote(&SEND, input).await
    });
    w.register(
        "send-soon",
        |ctx: WorkflowContext, input: Value| async move { ctx.remote(&SEND_SOON, input).await },
    );
    w
}

fn env(queue_wait: Duration, runs: &Arc<AtomicUsize>) -> TestEnv {
    let (a, b) = (runs.clone(), runs.clone());
    TestEnv::new(workflows())
        .task_queue_wait(queue_wait)
        .mock(&SEND, move |_: Value| {
            a.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StepError>(json!("sent"))
        })
        .mock(&SEND_SOON, move |_: Value| {
            b.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StepError>(json!("sent"))
        })
}

#[tokio::test]
async fn a_tasks_queue_backlog_longer_than_start_to_close_does_not_time_out_a_quick_step() {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut env = env(Duration::from_secs(120), &runs);
    let run_id = env.start("send", json!({})).await.unwrap();
    let out: Value = env.run_to_end(&run_id).await.unwrap();
    assert_eq!(out, json!("sent"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let history = env.history(&run_id).unwrap();
    assert!(
        !history
            .iter()
            .any(|e| matches!(e.kind, EventKind::StepFailed { .. })),
        "{history:?}"
    );
    // The history records the timeouts that applied, and the backstop allows the queue wait.
    let scheduled = history
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::TaskScheduled { timeouts, .. } => Some((e.at_ms, *timeouts)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        scheduled.1,
        Some(StepTimeouts {
            schedule_to_start_ms: None,
            start_to_close_ms: Some(30_000),
        })
    );
    let backstop = history.iter().find_map(|e| match &e.kind {
        EventKind::TimerStarted {
            timer_id: TimerId::Timeout { .. },
            fire_at_ms,
            ..
        } => Some(*fire_at_ms),
        _ => None,
    });
    assert_eq!(
        backstop,
        Some(scheduled.0 + QUEUE_WAIT_ALLOWANCE_MS + 30_000)
    );
    // The worker got the timeouts and the time the attempt was scheduled.
    let task = &env.calls()[0].task;
    assert_eq!(
        (
            task.scheduled_at,
            task.start_to_close_ms,
            task.schedule_to_start_ms
        ),
        (Some(scheduled.0), Some(30_000), None)
    );
}

#[tokio::test]
async fn an_attempt_past_its_schedule_to_start_is_refused_unrun_and_not_retried() {
    let runs = Arc::new(AtomicUsize::new(0));
    // 75 s in the queue: past schedule-to-start (60 s), before the engine's backstop (90 s).
    let mut env = env(Duration::from_secs(75), &runs);
    let run_id = env.start("send-soon", json!({})).await.unwrap();
    let err = env.run_to_end::<Value>(&run_id).await.unwrap_err();
    let TestEnvError::RunFailed { error, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the handler never ran");
    assert_eq!(error.code.as_deref(), Some("timeout"), "{error:?}");
    assert!(error.message.contains("schedule-to-start"), "{error:?}");
    let details = error.details.unwrap();
    assert_eq!(details["timeout"], "scheduleToStart");
    assert_eq!(details["waitedMs"], 75_000);
    // One attempt: a new one would wait in the same queue (as Temporal decides).
    assert_eq!(env.calls().len(), 1);
    // Within its schedule-to-start, the same step runs.
    let mut env = self::env(Duration::from_secs(59), &runs);
    let out: Value = env.execute("send-soon", json!({})).await.unwrap();
    assert_eq!((out, runs.load(Ordering::SeqCst)), (json!("sent"), 1));
}

#[tokio::test]
async fn an_attempt_that_never_answers_fails_at_the_backstop() {
    let runs = Arc::new(AtomicUsize::new(0));
    // The task waits 10 minutes: past the backstop (5 minutes of queue wait + 30 s).
    let mut env = env(Duration::from_secs(600), &runs);
    let run_id = env.start("send", json!({})).await.unwrap();
    let err = env.run_to_end::<Value>(&run_id).await.unwrap_err();
    let TestEnvError::RunFailed { error, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(error.code.as_deref(), Some("timeout"));
    assert!(
        error.message.contains("no result") && error.message.contains("start-to-close 30000 ms"),
        "{error:?}"
    );
    assert_eq!(error.details.unwrap()["timeout"], "noResult");
    assert_eq!(
        env.elapsed(),
        Duration::from_millis(QUEUE_WAIT_ALLOWANCE_MS + 30_000)
    );
    // The worker (no schedule-to-start set) still runs it when it gets it; the run has ended.
    env.advance(Duration::from_secs(600)).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        env.status(&run_id),
        Some(cairn::workflow::RunStatus::Failed)
    );
}
