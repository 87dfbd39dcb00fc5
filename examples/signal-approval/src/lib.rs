//! # A signal-based approval
//!
//! `ctx.wait_for_signal_timeout` waits for a signal (sent with `cairn signal RUN approval
//! --payload ...`, `Client::signal`, or a seed-style `IWorkflowEvent`) or a timeout, whichever
//! comes first; both are durable, so the wait can last days.

use std::time::Duration;

use cairn::worker::Worker;
use cairn::workflow::{RemoteStep, WorkflowContext, WorkflowError, Workflows};
use serde::{Deserialize, Serialize};

/// The `approval` signal's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    /// Approved or not.
    pub approved: bool,
    /// Who decided.
    pub by: String,
}

/// Pay an expense.
pub const PAY: RemoteStep<u64, String> = RemoteStep::new("expenses.pay");

/// An expense: paid once approved; rejected, or escalated after 3 days without an answer.
pub async fn expense(ctx: WorkflowContext, cents: u64) -> Result<String, WorkflowError> {
    let wait = Duration::from_secs(3 * 24 * 3600);
    match ctx
        .wait_for_signal_timeout::<Decision>("approval", wait)
        .await?
    {
        Some(Decision { approved: true, by }) => {
            let payment = ctx.remote(&PAY, cents).await?;
            Ok(format!("{payment} approved by {by}"))
        }
        Some(Decision { by, .. }) => Err(WorkflowError::failed(format!("rejected by {by}"))),
        None => Ok("escalated: no decision in 3 days".to_owned()),
    }
}

/// The workflows the engine hosts.
pub fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows.register("expense", expense);
    workflows
}

/// The handlers.
pub fn worker() -> Worker {
    Worker::new().handle(
        &PAY,
        |cents: u64, _| async move { Ok(format!("paid {cents}")) },
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use cairn::testing::{TestEnv, TestEnvError};
    use serde_json::json;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn approved_after_two_hours() {
        let mut env = TestEnv::new(workflows()).worker(worker());
        let run = env.start("expense", 1200).await.unwrap();
        env.advance(HOUR * 2).await.unwrap();
        assert!(env.calls().is_empty(), "nothing paid before the decision");
        env.signal(&run, "approval", json!({ "approved": true, "by": "ops" }))
            .await
            .unwrap();
        assert_eq!(
            env.run_to_end::<String>(&run).await.unwrap(),
            "paid 1200 approved by ops"
        );
    }

    #[tokio::test]
    async fn rejected_or_escalated() {
        let mut env = TestEnv::new(workflows()).worker(worker());
        let run = env.start("expense", 1200).await.unwrap();
        env.signal_after(
            &run,
            HOUR,
            "approval",
            json!({ "approved": false, "by": "cfo" }),
        )
        .unwrap();
        let err = env.run_to_end::<String>(&run).await.unwrap_err();
        assert!(
            matches!(&err, TestEnvError::RunFailed { error, .. } if error.message == "rejected by cfo"),
            "{err}"
        );

        let run = env.start("expense", 99).await.unwrap();
        let out: String = env.run_to_end(&run).await.unwrap();
        assert_eq!(out, "escalated: no decision in 3 days");
    }
}
