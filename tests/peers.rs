//! nestjs-durable's published workers and engine as cairn's peers, on the local stack.
//!
//! - The Python (`durable-worker[sqs]` 0.26.1) and Node (`nestjs-durable-transport-sqs` 0.2.0)
//!   example workers serve cairn's `payments.charge-card` group: step events and error
//!   details are kept, an oversize task fails its step at once without reaching (and
//!   poisoning) the peer's queue, and in a FIFO deployment they answer on the standard
//!   peer-results queue.
//! - A cairn `Worker` serves nestjs-durable's own `WorkflowEngine` over its `SqsTransport`.
//!
//! Every peer finds its queues through [`queue_map`] (what `cairn queues` prints).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn::contract::StepError;
use cairn::transport::{CLAIM_CHECK_THRESHOLD, PAYLOAD_TOO_LARGE_CODE};
use cairn::workflow::{
    EventKind, RemoteStep, RunStatus, WorkflowContext, WorkflowError, Workflows,
};
use cairn_devstack::local_runtime::{LocalRuntime, Queues};
use cairn_lambda::queues::{queue_map, QueueMap};
use cairn_lambda::worker::{SqsWorker, TaskContext, Worker};
use cairn_tests::peers::{run_nestjs_engine, Peer};
use cairn_tests::{AwsEngine, TestEnv};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
const GROUP: &str = "payments.charge-card";
const CHARGE: RemoteStep<Value, Value> = RemoteStep::new(GROUP);

async fn pay(ctx: WorkflowContext, order: Value) -> Result<Value, WorkflowError> {
    ctx.remote(&CHARGE, order).await
}

fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows.register("pay", pay);
    workflows
}

/// A test's stack with `payments.charge-card` served by a peer: claim checks off for it.
async fn peer_env(test: &str, fifo: bool) -> (TestEnv, QueueMap) {
    let mut env = TestEnv::new(test, fifo).await;
    env.config
        .groups_without_claim_checks
        .insert(GROUP.to_owned());
    let map = queue_map(&env.clients.sqs, &env.config).await.unwrap();
    // Point 4: the peer joins through the URL; the name is the escaped group.
    let url = &map.task_queue_urls[GROUP];
    assert_eq!(url, &env.resources.task_queue_urls[GROUP]);
    assert!(url.contains("-tasks-payments_2Echarge-card"), "{url}");
    (env, map)
}

/// The engine behind the results (timers, peer results) queues; no cairn worker on the
/// peer's group.
async fn serve_engine(env: &TestEnv, engine: AwsEngine) -> LocalRuntime {
    let mut queues = Queues::from(&env.resources);
    queues.tasks.clear();
    LocalRuntime::serve(
        &env.clients.sqs,
        &queues,
        env.mapping(),
        Arc::new(engine),
        Arc::new(Worker::new()),
        Arc::new(env.clients.transport(&env.config)),
        Arc::new(env.clients.blobs(&env.config)),
    )
    .await
    .unwrap()
}

fn order(id: &str, card: &str) -> Value {
    json!({ "orderId": id, "card": card })
}

fn step_events(history: &[cairn::workflow::HistoryEvent]) -> Vec<cairn::contract::StepEvent> {
    history
        .iter()
        .flat_map(|e| match &e.kind {
            EventKind::StepCompleted { events, .. } | EventKind::StepFailed { events, .. } => {
                events.clone()
            }
            _ => Vec::new(),
        })
        .collect()
}

/// Points 1, 2, 4 and 5 with `peer` serving cairn's engine.
async fn peer_serves_cairn(peer: Peer) {
    let (env, map) = peer_env(&format!("{peer}-serves"), false).await;
    let mut process = peer.spawn_worker(GROUP, &map.task_queue_urls, &map.peer_results_queue_url);
    let _runtime = serve_engine(&env, env.engine(workflows())).await;
    let client = env.client();

    let big =
        json!({ "orderId": "o-big", "card": "4242", "note": "x".repeat(CLAIM_CHECK_THRESHOLD) });
    let ok = client
        .start("pay", order("o-ok", "4242"), None)
        .await
        .unwrap();
    let bad = client
        .start("pay", order("o-bad", "0000"), None)
        .await
        .unwrap();
    let oversize = client.start("pay", big, None).await.unwrap();

    // 2: the oversize task fails its step at once, with its size and the limit.
    let run = client.wait(&oversize, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    let error = run.error.unwrap();
    assert_eq!(
        error.code.as_deref(),
        Some(PAYLOAD_TOO_LARGE_CODE),
        "{error:?}"
    );
    assert!(
        error.message.contains("bytes")
            && error.message.contains(&CLAIM_CHECK_THRESHOLD.to_string()),
        "{}",
        error.message
    );
    // ... and never reached the peer, which keeps serving.
    let after = client
        .start("pay", order("o-after", "4242"), None)
        .await
        .unwrap();

    // 1: the step's log lines are kept in the history.
    for (id, order_id) in [(&ok, "o-ok"), (&after, "o-after")] {
        let run = client.wait(id, WAIT).await.unwrap();
        assert_eq!(run.status, RunStatus::Completed, "{run:?}");
        assert_eq!(run.output.as_ref().unwrap()["worker"], peer.to_string());
        let events = step_events(&client.get(id).await.unwrap().history);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].level.as_deref(), Some("info"));
        assert_eq!(events[0].message.as_deref(), Some("charging card"));
        assert_eq!(events[0].data.as_ref().unwrap()["orderId"], order_id);
        assert!(events[0].at.is_some());
    }

    // 5: a terminal failure: not retried, its code and (Python) details kept to the run's error.
    let run = client.wait(&bad, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    let error = run.error.unwrap();
    assert_eq!(error.code.as_deref(), Some("invalid_card"));
    assert_eq!(error.retryable, Some(false));
    let history = client.get(&bad).await.unwrap().history;
    let attempts = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StepFailed { .. }))
        .count();
    assert_eq!(attempts, 1, "a terminal failure is not retried");
    assert_eq!(
        step_events(&history)[0].message.as_deref(),
        Some("charging card")
    );
    match peer {
        // durable-worker's FatalError(message, code, details) sends details.
        Peer::Python => assert_eq!(
            error.details,
            Some(json!({"field": "card", "reason": "luhn"}))
        ),
        // nestjs-durable's runStepHandler (core 0.62.0) sends message, code, retryable only.
        Peer::Node => assert_eq!(error.details, None),
    }
    process.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_peer_serves_cairn_steps() {
    peer_serves_cairn(Peer::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_peer_serves_cairn_steps() {
    peer_serves_cairn(Peer::Node).await;
}

/// Point 3: in a FIFO deployment the peer answers on the standard peer-results queue.
async fn peer_answers_a_fifo_deployment(peer: Peer) {
    let (env, map) = peer_env(&format!("{peer}-fifo"), true).await;
    assert_ne!(map.peer_results_queue_url, map.results_queue_url);
    assert!(
        map.peer_results_queue_url.ends_with("-peer-results"),
        "{map:?}"
    );
    let mut process = peer.spawn_worker(GROUP, &map.task_queue_urls, &map.peer_results_queue_url);
    let _runtime = serve_engine(&env, env.engine(workflows())).await;
    let client = env.client();
    let id = client
        .start("pay", order("o-fifo", "4242"), None)
        .await
        .unwrap();
    let run = client.wait(&id, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(run.output.unwrap()["worker"], peer.to_string());
    process.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_peer_answers_a_fifo_deployment() {
    peer_answers_a_fifo_deployment(Peer::Python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_peer_answers_a_fifo_deployment() {
    peer_answers_a_fifo_deployment(Peer::Node).await;
}

/// A cairn worker for nestjs-durable's engine: logs, a terminal failure with details, and an
/// output too large for one message.
fn cairn_worker() -> Worker {
    Worker::new()
        .handle_json(GROUP, |input: Value, task: TaskContext| async move {
            task.info("charging card", json!({ "orderId": input["orderId"] }));
            match input["card"].as_str() {
                Some("0000") => Err(StepError::terminal("invalid card")
                    .with_code("invalid_card")
                    .with_details(json!({"field": "card", "reason": "luhn"}))),
                Some("big") => Ok(json!({ "blob": "x".repeat(CLAIM_CHECK_THRESHOLD) })),
                _ => Ok(json!({ "chargeId": format!("ch_{}", input["orderId"]), "worker": "cairn", "stepId": task.step_id })),
            }
        })
        .for_peer_engine(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_worker_serves_the_nestjs_engine() {
    let env = TestEnv::new("nest-engine", false).await;
    let map = queue_map(&env.clients.sqs, &env.config).await.unwrap();
    // The cairn worker behind the group's queue, answering on the results queue the nestjs
    // engine polls.
    let worker = Arc::new(cairn_worker());
    let results = Arc::new(env.clients.transport(&env.config));
    let blobs = Arc::new(env.clients.blobs(&env.config));
    let mut runtime = LocalRuntime::new();
    runtime
        .map(
            &env.clients.sqs,
            &map.task_queue_urls[GROUP],
            env.mapping(),
            Arc::new(move |event| {
                let (worker, results, blobs) = (worker.clone(), results.clone(), blobs.clone());
                async move { worker.run(results.as_ref(), blobs.as_ref(), event).await }
            }),
        )
        .await
        .unwrap();

    let runs = json!({
        "nest-ok": order("o-ok", "4242"),
        "nest-bad": order("o-bad", "0000"),
        "nest-big": order("o-big", "big"),
    });
    let report: BTreeMap<String, Value> =
        run_nestjs_engine(&runs, &map.task_queue_urls, &map.results_queue_url).await;

    // nestjs-durable numbers seq from 0 and stamps transport "default": cairn serves it as is.
    let ok = &report["nest-ok"];
    assert_eq!(ok["status"], "completed", "{ok}");
    assert_eq!(ok["output"]["receipt"]["worker"], "cairn");
    assert_eq!(ok["output"]["receipt"]["stepId"], "nest-ok:0");
    // 1: cairn's step events land in nestjs-durable's checkpoint.
    let step = &ok["steps"][0];
    assert_eq!(step["events"][0]["level"], "info", "{step}");
    assert_eq!(step["events"][0]["message"], "charging card");
    assert_eq!(step["events"][0]["data"]["orderId"], "o-ok");

    // 5: the terminal failure is not retried and keeps its code and details in the checkpoint.
    let bad = &report["nest-bad"];
    assert_eq!(bad["status"], "failed", "{bad}");
    let step = &bad["steps"][0];
    assert_eq!(step["attempts"], 1, "{step}");
    assert_eq!(step["error"]["code"], "invalid_card");
    assert_eq!(step["error"]["retryable"], false);
    assert_eq!(
        step["error"]["details"],
        json!({"field": "card", "reason": "luhn"})
    );

    // 2: an output too large for one message fails the step instead of a claim check the
    // nestjs engine could not read.
    let big = &report["nest-big"];
    assert_eq!(big["status"], "failed", "{big}");
    assert_eq!(
        big["steps"][0]["error"]["code"], PAYLOAD_TOO_LARGE_CODE,
        "{big}"
    );
    drop(runtime);
}
