//! Dev mode of the Lambda entry points (what `scripts/dev` runs): started outside Lambda
//! against the local stack, `serve_engine_configured` and `serve_worker_configured` poll their own queues
//! through the local event source mapping, and runs started by a client complete.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cairn::workflow::RunStatus;
use cairn_tests::TestEnv;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_points_poll_the_local_stack_outside_lambda() {
    assert!(std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none());
    let env = TestEnv::new("dev-mode", false).await;
    // Only what a deployed function gets from the environment: endpoint, prefix, table.
    let config = cairn_lambda::config::Config {
        task_queue_urls: Default::default(),
        results_queue_url: None,
        ..env.config.clone()
    };
    // Polled together with the client on this task (the entry points never return).
    let serve = futures::future::join(
        cairn_lambda::serve_engine_configured(
            config.clone(),
            cairn_demo::workflows(),
            |_, _, sqs| sqs,
        ),
        cairn_lambda::serve_worker_configured(config, cairn_demo::worker()),
    );
    let client = env.client();
    let flow = async {
        let input = json!({ "orderId": "d-1", "amountCents": 100, "card": "tok_flaky", "email": "a@example.com" });
        let id = client
            .start("checkout", input, Some("d-1".into()))
            .await
            .unwrap();
        client.wait(&id, Duration::from_secs(60)).await.unwrap()
    };
    tokio::select! {
        ended = serve => panic!("the entry points stopped serving: {ended:?}"),
        run = flow => assert_eq!(run.status, RunStatus::Completed, "{run:?}"),
    }
}
