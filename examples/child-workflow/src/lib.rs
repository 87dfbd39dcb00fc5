//! # A child workflow
//!
//! `ctx.child(workflow, input)` starts a run of its own (id `<parent>~c<seq>`, visible with
//! `cairn runs show`), and resolves with its output; a failed child is a
//! [`WorkflowError::StepFailed`] in the parent, and cancelling the parent cancels it.

use cairn::worker::Worker;
use cairn::workflow::{RemoteStep, WorkflowContext, WorkflowError, Workflows};

/// Ship one parcel.
pub const SHIP: RemoteStep<String, String> = RemoteStep::new("shipping.ship");

/// The child: ships one parcel.
pub async fn ship_parcel(ctx: WorkflowContext, parcel: String) -> Result<String, WorkflowError> {
    ctx.remote(&SHIP, parcel).await
}

/// The parent: one child run per parcel, awaited together.
pub async fn ship_order(
    ctx: WorkflowContext,
    parcels: Vec<String>,
) -> Result<Vec<String>, WorkflowError> {
    let children: Vec<_> = parcels
        .iter()
        .map(|parcel| ctx.child::<_, String>("ship-parcel", parcel))
        .collect();
    futures::future::join_all(children)
        .await
        .into_iter()
        .collect()
}

/// The workflows the engine hosts (a child must be hosted by the same engine).
pub fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows
        .register("ship-order", ship_order)
        .register("ship-parcel", ship_parcel);
    workflows
}

/// The handlers.
pub fn worker() -> Worker {
    Worker::new().handle(&SHIP, |parcel: String, task| async move {
        Ok(format!("{parcel} shipped by {}", task.run_id))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use cairn::testing::TestEnv;
    use cairn::workflow::RunStatus;

    use super::*;

    #[tokio::test]
    async fn each_parcel_ships_in_a_child_run() {
        let mut env = TestEnv::new(workflows()).worker(worker());
        let out: Vec<String> = env.execute("ship-order", ["a", "b"]).await.unwrap();
        assert_eq!(out, ["a shipped by run-1~c1", "b shipped by run-1~c2"]);
        assert_eq!(env.status("run-1~c1"), Some(RunStatus::Completed));
        assert_eq!(env.run_ids().count(), 3);
    }
}
