//! The serverless spine end to end on the local stack: engine and workers behind local event
//! source mappings, real SQS and DynamoDB over HTTP (moto).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cairn::contract::StepError;
use cairn::workflow::{
    EventKind, RemoteStep, RunStatus, WorkflowContext, WorkflowError, Workflows,
};
use cairn_tests::TestEnv;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

fn order(id: &str, card: &str) -> Value {
    json!({ "orderId": id, "amountCents": 4200, "card": card, "email": "ada@example.com" })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_completes_compensates_and_waits_for_approval() {
    let env = TestEnv::new("checkout", false).await;
    let _runtime = env
        .run(env.engine(cairn_demo::workflows()), cairn_demo::worker())
        .await;
    let client = env.client();

    let ok = client
        .start("checkout", order("o-ok", "tok_flaky"), Some("o-ok".into()))
        .await
        .unwrap();
    let declined = client
        .start(
            "checkout",
            order("o-declined", "tok_declined"),
            Some("o-declined".into()),
        )
        .await
        .unwrap();
    let mut approval_order = order("o-approve", "tok_visa");
    approval_order["needsApproval"] = json!(true);
    let approval = client
        .start("checkout", approval_order, Some("o-approve".into()))
        .await
        .unwrap();

    let run = client.wait(&ok, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    let output = run.output.unwrap();
    assert_eq!(output["orderId"], "o-ok");
    assert!(output["chargeId"].as_str().unwrap().starts_with("ch_o-ok"));
    // tok_flaky fails its first attempt: the retry is in the history.
    let history = client.get(&ok).await.unwrap().history;
    let failures = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StepFailed { .. }))
        .count();
    assert_eq!(failures, 1, "one failed attempt, then success");

    // A finished run expires as a whole: every item of it gets the TTL (stamped right
    // after the final commit, so allow it a moment).
    let query = || {
        env.clients
            .dynamodb
            .query()
            .table_name(&env.config.table_name)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(
                ":pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("RUN#{ok}")),
            )
            .send()
    };
    let mut missing = usize::MAX;
    for _ in 0..50 {
        let items = query().await.unwrap().items.unwrap();
        assert!(items.len() > 1);
        missing = items
            .iter()
            .filter(|i| !i.contains_key("expiresAt"))
            .count();
        if missing == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(missing, 0, "every item of a finished run carries the TTL");

    let run = client.wait(&declined, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.error.unwrap().message.contains("card declined"));
    let history = client.get(&declined).await.unwrap().history;
    let names: Vec<String> = history
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskScheduled { name, .. } | EventKind::InlineStepStarted { name, .. } => {
                Some(name.clone())
            }
            _ => None,
        })
        .collect();
    assert!(
        names.contains(&"inventory.release".to_owned()),
        "compensation ran: {names:?}"
    );
    assert!(
        names.contains(&"notifications.send-email".to_owned()),
        "customer told: {names:?}"
    );

    // The approval run waits until signalled (sent as a seed-style IWorkflowEvent).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        client.get(&approval).await.unwrap().run.status,
        RunStatus::Running
    );
    let event = serde_json::from_value(json!({"topic": "approval", "urn": approval, "payload": {"approved": true, "by": "ops"}, "attempt": 0})).unwrap();
    client.signal_event(event).await.unwrap();
    assert_eq!(
        client.wait(&approval, WAIT).await.unwrap().status,
        RunStatus::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_of_fifty_remote_steps_completes() {
    let env = TestEnv::new("fanout", false).await;
    let _runtime = env
        .run(env.engine(cairn_demo::workflows()), cairn_demo::worker())
        .await;
    let client = env.client();
    let run_id = client.start("fan-out", json!(50), None).await.unwrap();
    let run = client.wait(&run_id, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(run.output, Some(json!(50)));
    let history = client.get(&run_id).await.unwrap().history;
    let completed = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StepCompleted { .. }))
        .count();
    assert_eq!(completed, 50, "each result applied exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_longer_than_one_sqs_delay_is_chained() {
    let env = TestEnv::new("timer", false).await; // timer chunk: 2 s
    let _runtime = env
        .run(env.engine(cairn_demo::workflows()), cairn_demo::worker())
        .await;
    let client = env.client();
    let run_id = client.start("timer", json!(5), None).await.unwrap();
    let run = client.wait(&run_id, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    let slept = run.output.unwrap()["sleptMs"].as_u64().unwrap();
    assert!(
        slept >= 5_000,
        "the workflow resumed only once the timer was due: {slept} ms"
    );
    // Nothing else sends in this test: the start, then the timer in hops of at most 2 s
    // (2 + 2 + 1), each hop one send.
    let sends: u64 = env
        .counter
        .snapshot()
        .iter()
        .filter(|((service, op), _)| {
            service.eq_ignore_ascii_case("sqs") && op == "SendMessageBatch"
        })
        .map(|(_, n)| n)
        .sum();
    assert!(sends >= 4, "start + 3 timer hops, got {sends} sends");
}

const BIG_OUTPUT: RemoteStep<usize, String> = RemoteStep::new("reports.generate");

async fn big(ctx: WorkflowContext, bytes: usize) -> Result<usize, WorkflowError> {
    let output = ctx.remote(&BIG_OUTPUT, bytes).await?;
    Ok(output.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_megabyte_output_travels_by_claim_check() {
    let env = TestEnv::new("claimcheck", false).await;
    let mut workflows = Workflows::new();
    workflows.register("big", big);
    let worker = cairn_lambda::worker::Worker::new()
        .handle(&BIG_OUTPUT, |bytes: usize, _| async move {
            Ok::<_, StepError>("x".repeat(bytes))
        });
    let _runtime = env.run(env.engine(workflows), worker).await;
    let client = env.client();
    let run_id = client
        .start("big", json!(2 * 1024 * 1024), None)
        .await
        .unwrap();
    let run = client.wait(&run_id, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(run.output, Some(json!(2 * 1024 * 1024)));
    let history = client.get(&run_id).await.unwrap().history;
    let stored = history.iter().find_map(|e| match &e.kind {
        EventKind::StepCompleted { output, .. } => output.as_str().map(str::len),
        _ => None,
    });
    assert_eq!(
        stored,
        Some(2 * 1024 * 1024),
        "the checkpoint holds the whole output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_queues_run_a_checkout_with_a_durable_timer() {
    let env = TestEnv::new("fifo-e2e", true).await;
    assert!(
        env.resources.timer_queue_url.is_some(),
        "a FIFO stack has a standard timers queue"
    );
    let _runtime = env
        .run(env.engine(cairn_demo::workflows()), cairn_demo::worker())
        .await;
    let client = env.client();
    let mut input = order("o-fifo", "tok_flaky");
    input["coolingOffSecs"] = json!(3);
    let run_id = client.start("checkout", input, None).await.unwrap();
    let run = client.wait(&run_id, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    let history = client.get(&run_id).await.unwrap().history;
    let fired = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::TimerFired { .. }))
        .count();
    assert!(
        fired >= 2,
        "the retry backoff and the cooling-off sleep fired: {fired}"
    );
}

async fn echo(_ctx: WorkflowContext, input: Value) -> Result<Value, WorkflowError> {
    Ok(input)
}

/// Counts down through `continue_as_new`, then returns the last input.
async fn countdown(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    if n > 0 {
        return Err(ctx.continue_as_new(&(n - 1)));
    }
    Ok(n)
}

async fn parent(ctx: WorkflowContext, _: Value) -> Result<Value, WorkflowError> {
    let echoed: Value = ctx.start_child("echo", &json!({"hello": "child"})).await?;
    let counted: u64 = ctx.start_child("countdown", &2u64).await?;
    let missing = ctx
        .start_child::<_, Value>("no-such-workflow", &json!(null))
        .await;
    let missing = missing
        .err()
        .map(|e| e.to_step_error().code)
        .unwrap_or_default();
    Ok(json!({ "echoed": echoed, "counted": counted, "missing": missing }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_runs_report_to_their_parent_through_the_results_queue() {
    let env = TestEnv::new("children", false).await;
    let mut workflows = Workflows::new();
    workflows
        .register("parent", parent)
        .register("echo", echo)
        .register("countdown", countdown);
    let _runtime = env
        .run(env.engine(workflows), cairn_lambda::worker::Worker::new())
        .await;
    let client = env.client();
    let run_id = client
        .start("parent", json!(null), Some("family".into()))
        .await
        .unwrap();
    let run = client.wait(&run_id, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    let output = run.output.unwrap();
    assert_eq!(output["echoed"], json!({"hello": "child"}));
    assert_eq!(
        output["counted"],
        json!(0),
        "the last run of a continue-as-new chain reports"
    );
    assert_eq!(output["missing"], json!("unknown_workflow"), "{output}");
    // The chain's runs are there to inspect: the first continued, the last completed.
    let first = client.get("family~c2").await.unwrap().run;
    assert_eq!(first.status, RunStatus::ContinuedAsNew);
    let last = client.get("family~c2~2").await.unwrap().run;
    assert_eq!(last.status, RunStatus::Completed);
}
