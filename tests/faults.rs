//! Infrastructure faults through the fault proxy (`cairn_devstack::fault_proxy`) in front of
//! the local stack: throttling, hangs and cuts must delay runs, never strand or dead-letter
//! them.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use cairn::contract::{encode, ControlMessage};
use cairn::workflow::{RunStatus, WorkflowContext, WorkflowError, Workflows};
use cairn_devstack::fault_proxy::{Fault, FaultProxy};
use cairn_lambda::worker::Worker;
use cairn_tests::{endpoint, TestEnv};
use serde_json::{json, Value};

async fn echo(_ctx: WorkflowContext, input: Value) -> Result<Value, WorkflowError> {
    Ok(input)
}

fn echo_workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows.register("echo", echo);
    workflows
}

/// Sends `startRun` for `ids` straight to the results queue (no store involved).
async fn start_runs(env: &TestEnv, ids: &[String]) {
    let entries: Vec<SendMessageBatchRequestEntry> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let body = encode(&ControlMessage::StartRun {
                run_id: id.parse().unwrap(),
                workflow: "echo".into(),
                input: json!(id),
                parent: None,
            });
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .build()
                .unwrap()
        })
        .collect();
    env.clients
        .sqs
        .send_message_batch()
        .queue_url(&env.resources.results_queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap();
}

async fn dlq_bodies(env: &TestEnv) -> Vec<String> {
    env.receive_bodies(&env.resources.results_dlq_url).await
}

/// Issue 11, point 1: with 5 receives and the tests' 2 s visibility, a 12 s throttle used to
/// dead-letter every record (receives at 0, 2, 4, 6, 8 s). Backed off from 1 s, doubling,
/// the fifth receive comes at about 15 s, after the throttle: every run completes and the DLQ
/// stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_throttle_longer_than_the_receives_allow_is_backed_off_not_dead_lettered() {
    let env = TestEnv::with_receive_count("throttle-backoff", false, 5).await;
    let proxy = FaultProxy::start(&endpoint()).await.unwrap();
    proxy.set_dynamodb(Fault::Throttle);
    let engine = env.engine_via(&proxy.endpoint(), echo_workflows()).await;
    let ids: Vec<String> = (0..3).map(|i| format!("throttled-{i}")).collect();
    start_runs(&env, &ids).await;
    let _runtime = env.run(engine, Worker::new()).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    proxy.set_dynamodb(Fault::Ok);
    let throttled = proxy
        .counts()
        .get("dynamodb throttle")
        .copied()
        .unwrap_or(0);
    assert!(
        throttled >= 3,
        "the engine met the throttle: {:?}",
        proxy.counts()
    );

    let client = env.client();
    for id in &ids {
        let run = client.wait(id, Duration::from_secs(40)).await.unwrap();
        assert_eq!(run.status, RunStatus::Completed, "{id}");
    }
    let dead = dlq_bodies(&env).await;
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
}

/// Issue 11, point 1: a run waiting on a step without a timeout, whose result was
/// dead-lettered, used to wait forever (a manual `cairn dlq redrive` freed it). The
/// reconciler's look at the results DLQ sends back what a running run awaits and leaves the
/// rest (junk, results for runs that do not exist) with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_sends_back_a_dead_lettered_result_that_a_running_run_awaits() {
    use std::sync::Arc;

    use cairn_lambda::dead_letters::redrive_awaited;

    let env = TestEnv::new("dlq-awaited", false).await;
    let engine = Arc::new(env.engine(cairn_demo::workflows()));
    // The engine alone: the test plays the worker.
    let _runtime = env.engine_alone(engine.clone()).await;
    let client = env.client();
    client
        .start("fan-out", json!(1), Some("awaits-1".into()))
        .await
        .unwrap();
    let tasks = &env.resources.task_queue_urls["notifications.send-email"];
    let deadline = Instant::now() + Duration::from_secs(30);
    let task = loop {
        if let Some(body) = env.receive_bodies(tasks).await.pop() {
            break cairn::contract::decode_task(&body).unwrap();
        }
        assert!(Instant::now() < deadline, "the task was dispatched");
    };
    let result = cairn_demo::worker().run_task(&task).await;
    // The result, dead-lettered; beside it junk and a result for a run that does not exist.
    let mut stray = result.clone();
    stray.run_id = "no-such-run".parse().unwrap();
    stray.step_id = cairn::contract::StepId::new(&stray.run_id, 1);
    for body in [encode(&result), "{ junk".to_owned(), encode(&stray)] {
        env.clients
            .sqs
            .send_message()
            .queue_url(&env.resources.results_dlq_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let store = env.clients.store(&env.config);
    let report = redrive_awaited(
        &store,
        &env.clients.sqs,
        &env.resources.results_dlq_url,
        &env.resources.results_queue_url,
        None,
    )
    .await
    .unwrap();
    assert_eq!(report.examined, 3, "{report:?}");
    assert_eq!(report.redriven, vec!["awaits-1".to_owned()], "{report:?}");
    let mut left: Vec<&str> = report.left.iter().map(|(_, run, _)| run.as_str()).collect();
    left.sort();
    assert_eq!(left, ["", "no-such-run"], "{report:?}");

    let run = client
        .wait("awaits-1", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed);
}

/// The engine alone on the results queue (the test plays the worker when it needs one).
async fn engine_only(
    env: &TestEnv,
    workflows: Workflows,
) -> cairn_devstack::local_runtime::LocalRuntime {
    env.engine_alone(std::sync::Arc::new(env.engine(workflows)))
        .await
}

/// Deletes a run's run item, as TTL does when a finished run retires (its history items
/// outlive it by design) or an operator might by hand.
async fn delete_run_item(env: &TestEnv, run_id: &str) {
    use aws_sdk_dynamodb::types::AttributeValue;
    env.clients
        .dynamodb
        .delete_item()
        .table_name(&env.resources.table_name)
        .key("pk", AttributeValue::S(format!("RUN#{run_id}")))
        .key("sk", AttributeValue::S("RUN".into()))
        .send()
        .await
        .unwrap();
}

/// Issue 11, point 3: a run id whose run item (its head, holding its first activation) is gone
/// while later history remains. A retired run (ended, head expired) is shown for what it is;
/// its id starts afresh (the new run's activations overwrite what is in their way and the
/// old items are ignored, told apart by their `born`); `purge` deletes leftovers and refuses
/// a live run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_run_id_are_shown_reused_and_purged() {
    use cairn::client::ClientError;
    use cairn::store::{CheckpointStore, StoreError};

    let env = TestEnv::new("leftovers", false).await;
    let mut runtime = engine_only(&env, cairn_demo::workflows()).await;
    let client = env.client();
    let wait = Duration::from_secs(60);

    // A retired run: two activations (start, then its timer fired), head gone.
    client
        .start("timer", json!(1), Some("reused".into()))
        .await
        .unwrap();
    let old = client.wait("reused", wait).await.unwrap();
    assert_eq!(old.status, RunStatus::Completed);
    delete_run_item(&env, "reused").await;
    // A cold engine (a warm one's cache would still hold the run: retirement comes weeks
    // after the end).
    runtime.stop();
    runtime = engine_only(&env, cairn_demo::workflows()).await;
    match client.get("reused").await {
        Err(ClientError::Store(StoreError::Leftovers(leftovers))) => {
            assert!(leftovers.retired(), "{leftovers}");
            let text = leftovers.to_string();
            assert!(text.contains("retired run's leftovers"), "{text}");
            assert!(text.contains("cairn runs purge reused"), "{text}");
        }
        other => panic!("expected leftovers, got {other:?}"),
    }
    // The id is used again: a new run of the same shape, so its second activation lands on
    // the history index an old item holds.
    client
        .start("timer", json!(2), Some("reused".into()))
        .await
        .unwrap();
    let run = client.wait("reused", wait).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    let loaded = client.get("reused").await.unwrap();
    let inputs: Vec<serde_json::Value> = loaded
        .history
        .iter()
        .filter_map(|e| match &e.kind {
            cairn::workflow::EventKind::RunStarted { input, .. } => Some(input.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(inputs, vec![json!(2)], "the new run, not the old one again");
    assert!(
        loaded.history.iter().all(|e| e.at_ms >= run.created_at_ms),
        "no event of the old run: {:?}",
        loaded.history
    );
    assert_eq!(run.output, loaded.run.output);

    // Purge: refused for a run, deletes a retired run's leftovers.
    let store = env.clients.store(&env.config);
    assert!(matches!(
        store.purge_leftovers("reused").await,
        Err(StoreError::Conflict { .. })
    ));
    client
        .start("timer", json!(1), Some("gone".into()))
        .await
        .unwrap();
    client.wait("gone", wait).await.unwrap();
    delete_run_item(&env, "gone").await;
    runtime.stop();
    let _runtime = engine_only(&env, cairn_demo::workflows()).await;
    assert!(store.purge_leftovers("gone").await.unwrap() > 0);
    assert!(matches!(
        client.get("gone").await,
        Err(ClientError::NotFound(_))
    ));
}

/// Log lines of this test binary, captured (one global subscriber per process).
fn captured_logs() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    use std::sync::{Arc, Mutex, OnceLock};
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("info,aws_smithy_runtime=warn,aws_config=warn")
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        logs
    })
    .clone()
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            logs.extend_from_slice(buf);
        }
        std::io::stderr().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Issue 11, point 4: with no SDK timeouts, a DynamoDB hang left the engine silent for
/// 28.5 s, then one WARN naming nothing. Now the request times out after the attempt
/// timeout (5 s) and the log says what hung: the operation, the run and the message; once
/// the hang ends the run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_hang_times_out_and_the_log_names_operation_run_and_message() {
    let logs = captured_logs();
    let env = TestEnv::new("dynamodb-hang", false).await;
    let proxy = FaultProxy::start(&endpoint()).await.unwrap();
    proxy.set_dynamodb(Fault::Hang);
    let engine = env.engine_via(&proxy.endpoint(), echo_workflows()).await;
    start_runs(&env, &["hung-1".to_owned()]).await;
    let _runtime = env.run(engine, Worker::new()).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let line = loop {
        let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("AWS request timed out") && l.contains("hung-1"))
        {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line says what hung within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("operation="), "{line}");
    assert!(line.contains("message_ids=[\""), "{line}");
    proxy.set_dynamodb(Fault::Ok);
    let run = env
        .client()
        .wait("hung-1", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed);
}

async fn three_emails(ctx: WorkflowContext, _input: Value) -> Result<Value, WorkflowError> {
    for i in 0..3 {
        let email = cairn_demo::Email {
            to: format!("u{i}@example.com"),
            subject: "hi".into(),
        };
        ctx.remote(&cairn_demo::SEND_EMAIL, email).await?;
    }
    Ok(json!(3))
}

/// One task taken from `url` (waiting up to 30 s).
async fn take_task(env: &TestEnv, url: &str) -> cairn::contract::RemoteTask {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(body) = env.receive_bodies(url).await.pop() {
            return cairn::contract::decode_task(&body).unwrap();
        }
        assert!(Instant::now() < deadline, "a task was dispatched");
    }
}

/// Found by `scripts/chaos` (a DynamoDB throttle and duplicated results re-ran 7 of 150 steps):
/// a duplicate of a result whose first delivery was applied comes back redelivered (it failed
/// transiently once), finds its effect in the history and used to send that activation's
/// commands again, dispatching a task that had already run and answered. Commands whose effect
/// the history shows are no longer sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_duplicate_does_not_dispatch_an_answered_task_again() {
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    use lambda_runtime::{Context, LambdaEvent};

    let env = TestEnv::new("dup-resend", false).await;
    let mut workflows = Workflows::new();
    workflows.register("three-emails", three_emails);
    let engine = env.engine(workflows);
    let tasks = env.resources.task_queue_urls["notifications.send-email"].clone();
    let deliver = |id: &str, body: String, receives: u32| {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.into());
        record.body = Some(body);
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), receives.to_string());
        let mut event = SqsEvent::default();
        event.records = vec![record];
        LambdaEvent::new(event, Context::default())
    };
    let start = encode(&ControlMessage::StartRun {
        run_id: "resend-1".parse().unwrap(),
        workflow: "three-emails".into(),
        input: json!(null),
        parent: None,
    });
    let worker = cairn_demo::worker();
    engine.handle(deliver("m0", start, 1)).await.unwrap();
    let first = encode(&worker.run_task(&take_task(&env, &tasks).await).await);
    engine
        .handle(deliver("m1", first.clone(), 1))
        .await
        .unwrap();
    let second = encode(&worker.run_task(&take_task(&env, &tasks).await).await);
    engine.handle(deliver("m2", second, 1)).await.unwrap();
    let third = take_task(&env, &tasks).await;
    assert_eq!(third.seq, 3);

    // The first result's duplicate, on its second receive.
    let response = engine.handle(deliver("m1-dup", first, 2)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let again = env.receive_bodies(&tasks).await;
    assert!(
        again.is_empty(),
        "no task dispatched again: {} sent ({again:?})",
        again.len()
    );
}

/// A commit whose answer was lost: the write took effect, the SDK's retry of it was refused
/// (the history index is taken: a conflict), and the re-run found the result already applied.
/// Its commands used to be dropped, so the run waited for the reconciler (5 minutes); the
/// re-run now treats its messages as redelivered and sends what the lost commit issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_still_sends_its_commands() {
    use std::sync::Arc;

    let env = TestEnv::new("lost-answer", false).await;
    let proxy = FaultProxy::start(&endpoint()).await.unwrap();
    // The SDK's own retries on (its retry of the lost write is what conflicts).
    let sdk = cairn_lambda::aws::sdk_config(Some(&proxy.endpoint())).await;
    let clients = cairn_lambda::aws::AwsClients::new(&sdk);
    let mut workflows = Workflows::new();
    workflows.register("three-emails", three_emails);
    let engine = Arc::new(
        cairn_lambda::engine::Engine::new(
            Arc::new(workflows),
            clients.store(&env.config).with_history_cache(),
            clients.transport(&env.config),
            clients.blobs(&env.config),
            cairn_lambda::engine::EngineOptions::default(),
        )
        .with_backoff(env.backoff()),
    );
    let _runtime = env.engine_alone(engine).await;
    let tasks = env.resources.task_queue_urls["notifications.send-email"].clone();
    let client = env.client();
    client
        .start("three-emails", json!(null), Some("lost-answer".into()))
        .await
        .unwrap();
    let first = take_task(&env, &tasks).await;
    let result = cairn_demo::worker().run_task(&first).await;
    proxy.set_dynamodb(Fault::LoseWrite);
    env.clients
        .sqs
        .send_message()
        .queue_url(&env.resources.results_queue_url)
        .message_body(encode(&result))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let second = loop {
        if let Some(body) = env.receive_bodies(&tasks).await.pop() {
            break cairn::contract::decode_task(&body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the second task was not dispatched within 15 s (proxy: {:?})",
            proxy.counts()
        );
    };
    assert_eq!(second.seq, 2);
    assert_eq!(
        proxy.faults().dynamodb,
        Fault::Ok,
        "the write was lost once"
    );
}
