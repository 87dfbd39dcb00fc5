//! Failure handling on the local stack: duplicates, races, crashes, poison records, FIFO.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use cairn::contract::{encode, ControlMessage, ResultsMessage, StepResult};
use cairn::store::CheckpointStore;
use cairn::workflow::{EventKind, RunStatus, WorkflowContext, WorkflowError, Workflows};
use cairn_devstack::event_source::EventSourceMapping;
use cairn_lambda::worker::SqsWorker;
use cairn_tests::TestEnv;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

async fn echo(_ctx: WorkflowContext, input: Value) -> Result<Value, WorkflowError> {
    Ok(input)
}

fn start(run_id: &str, workflow: &str, input: Value) -> ResultsMessage {
    ResultsMessage::Control(ControlMessage::StartRun {
        run_id: run_id.parse().unwrap(),
        workflow: workflow.into(),
        input,
        parent: None,
    })
}

/// Receives every task waiting on `url` and runs it with the demo worker.
async fn run_tasks(env: &TestEnv, url: &str, expected: usize) -> Vec<StepResult> {
    let worker = cairn_demo::worker();
    let mut results = Vec::new();
    while results.len() < expected {
        for body in env.receive_bodies(url).await {
            let task = cairn::contract::decode_task(&body).unwrap();
            results.push(worker.run_task(&task).await);
        }
    }
    results
}

fn record(id: &str, body: String) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.body = Some(body);
    m.event_source = Some("aws:sqs".into());
    m
}

#[tokio::test]
async fn the_same_step_result_delivered_twice_is_applied_once() {
    let env = TestEnv::new("dup", false).await;
    let engine = env.engine(cairn_demo::workflows());
    engine
        .apply(start("r-dup", "fan-out", json!(1)), "m0")
        .await
        .unwrap();
    let results = run_tasks(
        &env,
        &env.resources.task_queue_urls["notifications.send-email"],
        1,
    )
    .await;
    let body = encode(&results[0]);

    let mut event = SqsEvent::default();
    event.records = vec![record("m1", body.clone()), record("m2", body)];
    let response = engine
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "a duplicate is a success, not a failure"
    );

    let loaded = engine.store().load("r-dup").await.unwrap().unwrap();
    let applied = loaded
        .history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StepCompleted { .. }))
        .count();
    assert_eq!(applied, 1);
    assert_eq!(loaded.run.status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_results_of_one_run_processed_concurrently_both_land() {
    let env = TestEnv::new("race", false).await;
    let engine = env.engine(cairn_demo::workflows());
    engine
        .apply(start("r-race", "fan-out", json!(2)), "m0")
        .await
        .unwrap();
    let results = run_tasks(
        &env,
        &env.resources.task_queue_urls["notifications.send-email"],
        2,
    )
    .await;
    let (a, b) = tokio::join!(
        engine.apply(ResultsMessage::Step(results[0].clone()), "m1"),
        engine.apply(ResultsMessage::Step(results[1].clone()), "m2"),
    );
    a.unwrap();
    b.unwrap();
    let loaded = engine.store().load("r-race").await.unwrap().unwrap();
    assert_eq!(
        loaded.run.status,
        RunStatus::Completed,
        "both results landed"
    );
    assert_eq!(loaded.run.output, Some(json!(2)));
}

/// Two remote steps, one after the other.
async fn two_emails(ctx: WorkflowContext, _: Value) -> Result<u64, WorkflowError> {
    for i in 0..2 {
        let email = cairn_demo::Email {
            to: format!("u{i}@example.com"),
            subject: "turns".into(),
        };
        ctx.remote(&cairn_demo::SEND_EMAIL, email).await?;
    }
    Ok(2)
}

/// Warm engines activate on their cached copy of a run without reading it; another Lambda
/// instance may have advanced the run meanwhile. Nothing is lost or doubled: a stale copy's
/// commit loses the history index and is redone on the run as stored, and a message that
/// looks moot on a stale copy (a result for a step the copy has not seen) is judged again
/// on the run as stored instead of being dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_with_their_own_cached_copies_take_turns_on_one_run() {
    let env = TestEnv::new("turns", false).await;
    let workflows = || {
        let mut w = cairn_demo::workflows();
        w.register("two-emails", two_emails);
        w
    };
    let (a, b) = (env.engine(workflows()), env.engine(workflows()));
    let url = &env.resources.task_queue_urls["notifications.send-email"];

    // Sequential steps: B applies the first result, so A's copy has not seen the second
    // step scheduled when its result reaches A.
    a.apply(start("r-seq", "two-emails", json!(null)), "s0")
        .await
        .unwrap();
    let first = run_tasks(&env, url, 1).await;
    b.apply(ResultsMessage::Step(first[0].clone()), "s1")
        .await
        .unwrap();
    let second = run_tasks(&env, url, 1).await;
    a.apply(ResultsMessage::Step(second[0].clone()), "s2")
        .await
        .unwrap();
    // A duplicate of the first result, now on A's refreshed copy: applied once.
    a.apply(ResultsMessage::Step(first[0].clone()), "s3")
        .await
        .unwrap();

    // Parallel steps: both copies know both steps; A's commit of the second result takes an
    // index B already used, so it is redone on the run as stored.
    a.apply(start("r-par", "fan-out", json!(2)), "p0")
        .await
        .unwrap();
    let results = run_tasks(&env, url, 2).await;
    b.apply(ResultsMessage::Step(results[0].clone()), "p1")
        .await
        .unwrap();
    a.apply(ResultsMessage::Step(results[1].clone()), "p2")
        .await
        .unwrap();

    let fresh = env.client();
    for (run_id, output) in [("r-seq", json!(2)), ("r-par", json!(2))] {
        let loaded = fresh.get(run_id).await.unwrap();
        let completed = loaded
            .history
            .iter()
            .filter(|e| matches!(e.kind, EventKind::StepCompleted { .. }))
            .count();
        assert_eq!(completed, 2, "{run_id}: each result applied once");
        assert_eq!(loaded.run.status, RunStatus::Completed, "{run_id}");
        assert_eq!(loaded.run.output, Some(output), "{run_id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_crashes_before_deleting_gets_the_task_again() {
    let env = TestEnv::new("crash", false).await;
    // The email worker's first invocation dies before answering (nothing deleted).
    let mut runtime = env
        .engine_alone(Arc::new(env.engine(cairn_demo::workflows())))
        .await;
    let crashed = Arc::new(AtomicBool::new(false));
    let worker = Arc::new(cairn_demo::worker());
    let transport = Arc::new(env.clients.transport(&env.config));
    let blobs = Arc::new(env.clients.blobs(&env.config));
    let crashed_once = crashed.clone();
    runtime
        .map(
            &env.clients.sqs,
            &env.resources.task_queue_urls["notifications.send-email"],
            env.mapping(),
            Arc::new(move |event| {
                let (worker, transport, blobs, crashed) = (
                    worker.clone(),
                    transport.clone(),
                    blobs.clone(),
                    crashed_once.clone(),
                );
                async move {
                    if !crashed.swap(true, Ordering::SeqCst) {
                        return Err("simulated crash before delete".into());
                    }
                    worker.run(transport.as_ref(), blobs.as_ref(), event).await
                }
            }),
        )
        .await
        .unwrap();
    let client = env.client();
    let run_id = client.start("fan-out", json!(3), None).await.unwrap();
    let run = client.wait(&run_id, WAIT).await.unwrap();
    assert!(crashed.load(Ordering::SeqCst), "the crash happened");
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(json!(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_does_not_sink_its_batch_and_ends_in_the_dlq() {
    let env = TestEnv::with_receive_count("poison", false, 2).await;
    let mut workflows = Workflows::new();
    workflows.register("echo", echo);
    let entries: Vec<SendMessageBatchRequestEntry> = (0..10)
        .map(|i| {
            let body = if i == 4 {
                "{ this is not json".to_owned()
            } else {
                encode(&ControlMessage::StartRun {
                    run_id: format!("p-{i}").parse().unwrap(),
                    workflow: "echo".into(),
                    input: json!(i),
                    parent: None,
                })
            };
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

    let _runtime = env
        .run(env.engine(workflows), cairn_lambda::worker::Worker::new())
        .await;
    let client = env.client();
    for i in (0..10).filter(|i| *i != 4) {
        let run = client.wait(&format!("p-{i}"), WAIT).await.unwrap();
        assert_eq!(run.output, Some(json!(i)));
    }
    let deadline = std::time::Instant::now() + WAIT;
    let mut dead = Vec::new();
    while dead.is_empty() && std::time::Instant::now() < deadline {
        dead = env.receive_bodies(&env.resources.results_dlq_url).await;
    }
    assert_eq!(
        dead,
        vec!["{ this is not json".to_owned()],
        "the poison record reached the DLQ intact"
    );
}

#[tokio::test]
async fn fifo_a_failed_record_fails_the_later_records_of_its_group() {
    let env = TestEnv::new("fifo", true).await;
    let mut workflows = Workflows::new();
    workflows.register("echo", echo);
    let engine = env.engine(workflows);
    let url = &env.resources.results_queue_url;
    let send = |group: &str, dedup: &str, body: String| {
        env.clients
            .sqs
            .send_message()
            .queue_url(url)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .message_body(body)
            .send()
    };
    let start = |id: &str| {
        encode(&ControlMessage::StartRun {
            run_id: id.parse().unwrap(),
            workflow: "echo".into(),
            input: json!(id),
            parent: None,
        })
    };
    send("a", "1", start("a")).await.unwrap();
    send("b", "2", "not json at all".into()).await.unwrap();
    send("b", "3", start("b")).await.unwrap();
    send("c", "4", start("c")).await.unwrap();

    let mapping = EventSourceMapping::new(env.clients.sqs.clone(), url, env.mapping())
        .await
        .unwrap();
    let mut failures = Vec::new();
    let mut bodies = Vec::new();
    let mut received = 0;
    while received < 4 {
        let outcome = mapping
            .poll_once(|event: LambdaEvent<SqsEvent>| {
                bodies.extend(
                    event
                        .payload
                        .records
                        .iter()
                        .map(|r| (r.message_id.clone().unwrap(), r.body.clone().unwrap())),
                );
                let engine = &engine;
                async move {
                    let response = engine.handle(event).await?;
                    Ok(response)
                }
            })
            .await
            .unwrap();
        received += outcome.received;
        failures.push(outcome.failed);
    }
    let store = engine.store();
    assert!(
        store.load("a").await.unwrap().is_some(),
        "group a processed"
    );
    assert!(
        store.load("c").await.unwrap().is_some(),
        "group c processed"
    );
    assert!(
        store.load("b").await.unwrap().is_none(),
        "the record after the poison one in group b was not processed"
    );
    assert_eq!(
        failures.iter().sum::<usize>(),
        2,
        "the poison record and the later record of its group were reported"
    );
}
