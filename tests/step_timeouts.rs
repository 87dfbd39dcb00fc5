//! Step timeouts on the local stack (issue 10, defect 8): start-to-close counts from the
//! worker's start, so a tasks-queue backlog longer than it does not time out a step that then
//! runs quickly; a step's schedule-to-start timeout refuses an attempt that waited longer,
//! without running it.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn::contract::StepError;
use cairn::workflow::{EventKind, RemoteStep, RetryPolicy, RunStatus, WorkflowContext, Workflows};
use cairn_devstack::local_runtime::Queues;
use cairn_lambda::worker::{SqsWorker, Worker};
use cairn_tests::TestEnv;
use serde_json::{json, Value};

/// May run 1 s once started; its queue wait is not limited.
const QUICK: RemoteStep<Value, Value> = RemoteStep::new("notifications.send-email")
    .with_retry(RetryPolicy::none())
    .with_timeout(Duration::from_secs(1));
/// May run 5 s once started, and wait at most 1 s in the queue (backstop at 6 s).
const SOON: RemoteStep<Value, Value> = RemoteStep::new("notifications.send-email")
    .with_retry(RetryPolicy::none())
    .with_timeout(Duration::from_secs(5))
    .with_schedule_to_start(Duration::from_secs(1));

fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.register("quick", |ctx: WorkflowContext, input: Value| async move {
        ctx.remote(&QUICK, input).await
    });
    w.register("soon", |ctx: WorkflowContext, input: Value| async move {
        ctx.remote(&SOON, input).await
    });
    w
}

/// Starts `workflow`, lets its task wait `backlog` in the tasks queue with the engine running
/// (timers included), then starts the worker; returns the finished run's status, its history
/// and how often the handler ran.
async fn run_with_backlog(
    test: &str,
    workflow: &str,
    backlog: Duration,
) -> (RunStatus, Vec<EventKind>, usize) {
    let env = TestEnv::new(test, false).await;
    let queues = Queues::from(&env.resources);
    let mut runtime = env.engine_alone(Arc::new(env.engine(workflows()))).await;
    let client = env.client();
    let run_id = client
        .start(workflow, json!({"to": "a@example.com"}), None)
        .await
        .unwrap();
    tokio::time::sleep(backlog).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let worker = Arc::new(Worker::new().handle(&QUICK, move |_: Value, _task| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, StepError>(json!({"messageId": "m-1"})) }
    }));
    let (results, blobs) = (
        Arc::new(env.clients.transport(&env.config)),
        Arc::new(env.clients.blobs(&env.config)),
    );
    let worker_handler = Arc::new(move |event| {
        let (worker, results, blobs) = (worker.clone(), results.clone(), blobs.clone());
        async move { worker.run(results.as_ref(), blobs.as_ref(), event).await }
    });
    let tasks = &queues.tasks["notifications.send-email"];
    runtime
        .map(&env.clients.sqs, tasks, env.mapping(), worker_handler)
        .await
        .unwrap();
    let run = client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
    let loaded = client.get(&run_id).await.unwrap();
    // `cairn runs show` names the timeouts that applied.
    let text = cairn_inspect::render_text(&loaded);
    assert!(
        text.contains("timeouts  ") && text.contains("start-to-close "),
        "{text}"
    );
    let history = loaded.history;
    let kinds = history.into_iter().map(|e| e.kind).collect();
    (run.status, kinds, runs.load(Ordering::SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_queue_backlog_longer_than_start_to_close_does_not_time_out_a_quick_step() {
    // The task waits 4 s, four times its start-to-close, before a worker takes it.
    let (status, history, runs) =
        run_with_backlog("s2c-backlog", "quick", Duration::from_secs(4)).await;
    assert_eq!(status, RunStatus::Completed, "{history:#?}");
    assert_eq!(runs, 1);
    assert!(
        !history.iter().any(|e| matches!(
            e,
            EventKind::StepFailed { .. } | EventKind::TimerFired { .. }
        )),
        "{history:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_past_its_schedule_to_start_is_refused_without_running() {
    // 1.5 s in the queue: past schedule-to-start (1 s), before the engine's backstop (6 s).
    let (status, history, runs) =
        run_with_backlog("s2s-refused", "soon", Duration::from_millis(1_500)).await;
    assert_eq!(status, RunStatus::Failed, "{history:#?}");
    assert_eq!(runs, 0, "the handler never ran");
    let error = history
        .iter()
        .find_map(|e| match e {
            EventKind::StepFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(error.code.as_deref(), Some("timeout"));
    assert!(!error.is_retryable());
    assert_eq!(error.details.unwrap()["timeout"], "scheduleToStart");
}
