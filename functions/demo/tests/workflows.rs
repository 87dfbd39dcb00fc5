//! The demo workflows with their real step handlers, in process on a virtual clock
//! (`cairn::testing::TestEnv`): no queues, no table, no waiting.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cairn::contract::StepError;
use cairn::testing::{replay, TestEnv, TestEnvError};
use cairn::workflow::RunStatus;
use cairn_demo::{CheckoutReceipt, GENERATE_REPORT};
use serde_json::{json, Value};

fn env() -> TestEnv {
    TestEnv::new(cairn_demo::workflows()).worker(cairn_demo::worker())
}

fn order(id: &str, card: &str) -> Value {
    json!({ "orderId": id, "amountCents": 4200, "card": card, "email": "ada@example.com" })
}

#[tokio::test]
async fn a_flaky_charge_is_retried_after_its_backoff_and_the_order_cools_off_for_thirty_days() {
    let mut env = env();
    let mut input = order("o-1", "tok_flaky");
    input["coolingOffSecs"] = json!(30 * 24 * 3600);
    let receipt: CheckoutReceipt = env.execute("checkout", input).await.unwrap();
    assert_eq!(receipt.charge_id, "ch_run-1_2");
    assert_eq!(receipt.email_id, "msg_run-1_4");
    let charges = env.calls_to("payments.charge-card");
    let attempts: Vec<_> = charges.iter().map(|c| c.task.attempt).collect();
    assert_eq!(attempts, [1, 2]);
    assert_eq!(
        charges[0].outcome.as_ref().unwrap_err().code.as_deref(),
        Some("provider_timeout")
    );
    // 500 ms backoff, then the 30-day cooling-off sleep, in virtual time.
    assert_eq!(
        env.elapsed(),
        Duration::from_millis(500) + Duration::from_secs(30 * 24 * 3600)
    );
    let history = env.history("run-1").unwrap().to_vec();
    assert_eq!(
        replay(&cairn_demo::workflows(), "run-1", &history).await,
        Ok(RunStatus::Completed)
    );
}

#[tokio::test]
async fn a_declined_card_releases_the_reservation_and_tells_the_customer() {
    let mut env = env();
    let err = env
        .execute::<Value>("checkout", order("o-2", "tok_declined"))
        .await
        .unwrap_err();
    let TestEnvError::RunFailed { status, error, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(status, RunStatus::Failed);
    assert!(error.message.contains("reservation released"), "{error:?}");
    assert_eq!(
        env.calls_to("payments.charge-card").len(),
        1,
        "terminal: no retry"
    );
    let emails = env.calls_to("notifications.send-email");
    assert_eq!(emails.len(), 1);
    assert_eq!(emails[0].task.input["subject"], "Payment for o-2 failed");
}

#[tokio::test]
async fn an_order_waits_for_approval_and_a_rejection_compensates() {
    let mut env = env();
    let mut input = order("o-3", "tok_visa");
    input["needsApproval"] = json!(true);
    let approved = env.start("checkout", &input).await.unwrap();
    let rejected = env.start("checkout", &input).await.unwrap();
    assert!(env.calls().is_empty(), "nothing charged before approval");
    env.signal(
        &approved,
        "approval",
        json!({ "approved": true, "by": "ops" }),
    )
    .await
    .unwrap();
    env.signal_after(
        &rejected,
        Duration::from_secs(3600),
        "approval",
        json!({ "approved": false, "by": "fraud-team" }),
    )
    .unwrap();
    let receipt: CheckoutReceipt = env.run_to_end(&approved).await.unwrap();
    assert_eq!(receipt.order_id, "o-3");
    let err = env.run_to_end::<Value>(&rejected).await.unwrap_err();
    assert!(
        matches!(&err, TestEnvError::RunFailed { error, .. } if error.message == "order rejected by fraud-team"),
        "{err}"
    );
    assert_eq!(env.calls_to("payments.charge-card").len(), 1);
}

#[tokio::test]
async fn the_timer_and_fan_out_workflows() {
    let mut env = env();
    let slept: Value = env.execute("timer", 30 * 24 * 3600).await.unwrap();
    assert_eq!(slept, json!({ "sleptMs": 30u64 * 24 * 3600 * 1000 }));
    let sent: usize = env.execute("fan-out", 25).await.unwrap();
    assert_eq!(sent, 25);
    assert_eq!(env.calls_to("notifications.send-email").len(), 25);
}

#[tokio::test]
async fn the_report_with_its_slow_generator_mocked() {
    let mut env = env().mock(&GENERATE_REPORT, |req: cairn_demo::ReportRequest| {
        Ok::<_, StepError>(cairn_demo::Report {
            report_url: format!("s3://test/{}.pdf", req.user_id),
        })
    });
    let report: Value = env
        .execute(
            "report",
            json!({ "userId": 7, "startDate": "2026-01-01", "endDate": "2026-02-01", "simulatedMs": 20000 }),
        )
        .await
        .unwrap();
    assert_eq!(report, json!({ "reportUrl": "s3://test/7.pdf" }));
}
