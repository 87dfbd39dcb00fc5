//! # A durable timer
//!
//! `ctx.sleep` is a durable timer: the run is checkpointed and no Lambda waits. In AWS the
//! wake-up is a delayed SQS message (chained every 15 minutes) or a scheduled one; in a
//! [`TestEnv`](cairn::testing::TestEnv) the clock jumps, so a 30-day trial tests in
//! milliseconds.

use std::time::Duration;

use cairn::worker::Worker;
use cairn::workflow::{RemoteStep, WorkflowContext, WorkflowError, Workflows};

/// Send a reminder email.
pub const REMIND: RemoteStep<String, ()> = RemoteStep::new("mail.remind");
/// Convert a trial account into a paid one.
pub const CONVERT: RemoteStep<String, String> = RemoteStep::new("billing.convert");

/// A 30-day trial: a reminder after 27 days, the conversion after 30.
pub async fn trial(ctx: WorkflowContext, account: String) -> Result<String, WorkflowError> {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    ctx.sleep(DAY * 27).await?;
    ctx.remote(&REMIND, account.clone()).await?;
    ctx.sleep(DAY * 3).await?;
    ctx.remote(&CONVERT, account).await
}

/// The workflows the engine hosts.
pub fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows.register("trial", trial);
    workflows
}

/// The handlers.
pub fn worker() -> Worker {
    Worker::new()
        .handle(&REMIND, |_: String, _| async move { Ok(()) })
        .handle(&CONVERT, |account: String, _| async move {
            Ok(format!("sub-{account}"))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use cairn::testing::TestEnv;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[tokio::test]
    async fn thirty_days_pass_in_no_time() {
        let mut env = TestEnv::new(workflows()).worker(worker());
        let out: String = env.execute("trial", "acme").await.unwrap();
        assert_eq!(out, "sub-acme");
        assert_eq!(env.elapsed(), DAY * 30);
        let remind = &env.calls_to("mail.remind")[0];
        assert_eq!(
            remind.at_ms - cairn::testing::DEFAULT_START_MS,
            (DAY * 27).as_millis() as u64
        );
    }

    #[tokio::test]
    async fn nothing_happens_before_its_time() {
        let mut env = TestEnv::new(workflows()).worker(worker());
        let run = env.start("trial", "acme").await.unwrap();
        env.advance(DAY * 26).await.unwrap();
        assert!(env.calls().is_empty());
        env.advance(DAY).await.unwrap();
        assert_eq!(env.calls_to("mail.remind").len(), 1);
        assert!(env.calls_to("billing.convert").is_empty());
        assert_eq!(env.run_to_end::<String>(&run).await.unwrap(), "sub-acme");
    }
}
