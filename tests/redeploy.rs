//! A new engine deployed mid-run in which the run's workflow is gone or changed shape
//! (issue 11): the run is not failed, dropped or rewritten. It keeps its state, says why on
//! the run (`lastError`, shown by `cairn runs show`), its message is retried at the queue's
//! pace (and dead-lettered after `MaxReceiveCount`: then `cairn dlq redrive` once fixed; the
//! reconciler leaves a run with a problem alone), and deploying the code back lets the run
//! finish as if nothing happened.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::contract::encode;
use cairn::workflow::{RunStatus, WorkflowContext, WorkflowError, Workflows};
use cairn_devstack::local_runtime::LocalRuntime;
use cairn_tests::TestEnv;
use serde_json::{json, Value};

async fn engine_only(env: &TestEnv, workflows: Workflows) -> LocalRuntime {
    env.engine_alone(Arc::new(env.engine(workflows))).await
}

/// `fan-out` in a new shape: it charges a card where it used to send an email.
async fn fan_out_v2(ctx: WorkflowContext, _n: usize) -> Result<Value, WorkflowError> {
    let charge = cairn_demo::Charge {
        order_id: "o".into(),
        amount_cents: 1,
        card: "tok_ok".into(),
    };
    let receipt = ctx.remote(&cairn_demo::CHARGE_CARD, charge).await?;
    Ok(json!(receipt.charge_id))
}

async fn echo(_ctx: WorkflowContext, input: Value) -> Result<Value, WorkflowError> {
    Ok(input)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_without_the_runs_workflow_or_with_it_changed_holds_the_run_until_rolled_back() {
    let env = TestEnv::with_receive_count("redeploy", false, 50).await;
    let client = env.client();
    let tasks = &env.resources.task_queue_urls["notifications.send-email"];
    let gone = || {
        let mut workflows = Workflows::new();
        workflows.register("echo", echo);
        workflows
    };
    let changed = || {
        let mut workflows = Workflows::new();
        workflows.register("fan-out", fan_out_v2);
        workflows
    };
    let cases: [(&str, &dyn Fn() -> Workflows, &str); 2] = [
        ("gone", &gone, "unknown workflow \"fan-out\""),
        ("changed", &changed, "non-determinism at seq 1"),
    ];
    for (run_id, v2, problem) in cases {
        // v1 starts the run; its step is dispatched.
        let mut runtime = engine_only(&env, cairn_demo::workflows()).await;
        client
            .start("fan-out", json!(1), Some(run_id.into()))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let task = loop {
            if let Some(body) = env.receive_bodies(tasks).await.pop() {
                break cairn::contract::decode_task(&body).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{run_id}: the task was dispatched"
            );
        };
        runtime.stop();

        // v2 is deployed; the step's result arrives.
        let _v2 = engine_only(&env, v2()).await;
        let result = cairn_demo::worker().run_task(&task).await;
        env.clients
            .sqs
            .send_message()
            .queue_url(&env.resources.results_queue_url)
            .message_body(encode(&result))
            .send()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let run = loop {
            let run = client.get(run_id).await.unwrap().run;
            if run.last_error.is_some() {
                break run;
            }
            assert!(
                Instant::now() < deadline,
                "{run_id}: the problem is on the run"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(run.status, RunStatus::Running, "{run_id}: not failed");
        let last_error = run.last_error.unwrap();
        assert!(last_error.contains(problem), "{run_id}: {last_error}");
        // Still held a few receives later: nothing was dropped or rewritten.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let held = client.get(run_id).await.unwrap();
        assert_eq!(held.run.status, RunStatus::Running, "{run_id}");
        assert!(env
            .receive_bodies(&env.resources.results_dlq_url)
            .await
            .is_empty());
        drop(_v2);

        // Rolled back: the retried result finishes the run, and the problem is cleared.
        let _v1 = engine_only(&env, cairn_demo::workflows()).await;
        let run = client.wait(run_id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(run.status, RunStatus::Completed, "{run_id}");
        assert_eq!(run.output, Some(json!(1)), "{run_id}");
        assert_eq!(run.last_error, None, "{run_id}");
    }
}
