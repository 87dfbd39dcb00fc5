//! # Patching a workflow while runs are in flight
//!
//! Replay must see the same operations in the same order, so a change to a running workflow
//! is guarded by `ctx.patched("change-id")`: runs that recorded their history under the old
//! code get `false` and keep the old path; new runs (and runs that reach the call past their
//! recorded history) get `true`. Test it by saving a history under the old code and
//! replaying it under the new ([`cairn::testing::replay`]), or by deploying the new code
//! mid-run in a [`TestEnv`](cairn::testing::TestEnv).

use std::time::Duration;

use cairn::worker::Worker;
use cairn::workflow::{RemoteStep, WorkflowContext, WorkflowError, Workflows};

/// Charge an order.
pub const CHARGE: RemoteStep<u64, String> = RemoteStep::new("orders.charge");
/// Screen an order for fraud (added in v2).
pub const SCREEN: RemoteStep<u64, bool> = RemoteStep::new("orders.screen");

/// v1: wait a day, then charge.
pub async fn order_v1(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
    ctx.sleep(Duration::from_secs(24 * 3600)).await?;
    ctx.remote(&CHARGE, cents).await
}

/// v2: a fraud screen before the charge, for runs that reach it under the new code.
pub async fn order_v2(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
    ctx.sleep(Duration::from_secs(24 * 3600)).await?;
    if ctx.patched("fraud-screen") && !ctx.remote(&SCREEN, cents).await? {
        return Err(WorkflowError::failed("refused by the fraud screen"));
    }
    ctx.remote(&CHARGE, cents).await
}

/// The workflows of a version.
pub fn workflows(v2: bool) -> Workflows {
    let mut workflows = Workflows::new();
    if v2 {
        workflows.register("order", order_v2);
    } else {
        workflows.register("order", order_v1);
    }
    workflows
}

/// The handlers (orders above 10 000 cents are refused by the screen).
pub fn worker() -> Worker {
    Worker::new()
        .handle(&CHARGE, |cents: u64, _| async move {
            Ok(format!("charged {cents}"))
        })
        .handle(&SCREEN, |cents: u64, _| async move { Ok(cents <= 10_000) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use cairn::testing::{replay, TestEnv};
    use cairn::workflow::RunStatus;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn old_histories_replay_under_the_new_code() {
        let mut env = TestEnv::new(workflows(false)).worker(worker());
        let _: String = env.execute("order", 50_000).await.unwrap();
        let v1_history = env.history("run-1").unwrap().to_vec();
        assert_eq!(
            replay(&workflows(true), "run-1", &v1_history).await,
            Ok(RunStatus::Completed)
        );
    }

    #[tokio::test]
    async fn a_run_in_flight_takes_the_new_path_only_past_its_history() {
        let mut env = TestEnv::new(workflows(false)).worker(worker());
        let before = env.start("order", 50_000).await.unwrap();
        env.advance(HOUR).await.unwrap();
        env.deploy(workflows(true));
        // Sleeping when v2 arrived: it reaches the screen past its recorded history.
        let err = env.run_to_end::<String>(&before).await.unwrap_err();
        assert!(err.to_string().contains("fraud screen"), "{err}");
        let after = env.start("order", 500).await.unwrap();
        assert_eq!(
            env.run_to_end::<String>(&after).await.unwrap(),
            "charged 500"
        );
        assert_eq!(env.calls_to("orders.screen").len(), 2);
    }
}
