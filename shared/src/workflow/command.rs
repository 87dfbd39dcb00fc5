//! Commands: what an activation asks the outside world to do, after its events are persisted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{StepTimeouts, TimerId};
use crate::contract::{RemoteTask, RunId, StepError};

/// Something the engine must send after checkpointing an activation (outbox entries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Command {
    /// Send a `RemoteTask` to the step's tasks queue.
    DispatchTask {
        /// Operation number.
        seq: u64,
        /// Step name.
        name: String,
        /// Queue token.
        group: String,
        /// Step input.
        input: Value,
        /// Attempt number, from 1.
        attempt: u32,
        /// Start-to-close timeout of this attempt, if any: the worker stops the handler this
        /// long after its own start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        /// Schedule-to-start timeout of this attempt, if the step sets one: the worker refuses
        /// the attempt if it starts later than `scheduled_at_ms` + this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule_to_start_ms: Option<u64>,
        /// When the attempt was scheduled (the activation's time), epoch ms; absent in
        /// commands stored by older engines (the send time stands in).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scheduled_at_ms: Option<u64>,
    },
    /// Arrange for a `TimerFired` control message at `fire_at_ms`.
    StartTimer {
        /// Operation number the timer belongs to.
        seq: u64,
        /// Unique within the run.
        timer_id: TimerId,
        /// When it is due, epoch milliseconds.
        fire_at_ms: u64,
    },
    /// Start a child run; its outcome comes back as a `StepResult` for `seq`.
    StartChild {
        /// Operation number in the parent.
        seq: u64,
        /// Child workflow name.
        workflow: String,
        /// Child run id.
        run_id: String,
        /// Child input.
        input: Value,
    },
    /// Ask a child run to cancel.
    CancelChild {
        /// Child run id.
        run_id: String,
    },
    /// The run finished: report to the parent, if any. (The run record itself is updated in
    /// the same write as the events.)
    ReportToParent {
        /// The outcome: output or error.
        outcome: RunOutcome,
    },
    /// Start the next run of a `continue_as_new` chain.
    ContinueAsNew {
        /// Workflow name.
        workflow: String,
        /// Input of the next run.
        input: Value,
    },
}

impl Command {
    /// The task a `DispatchTask` sends (`None` for any other command), as the engine's outbox
    /// and `TestEnv` build it: the step's timeouts with the time the attempt was scheduled
    /// (`now_ms` for commands stored without it), and the context `workflow` and `deadlineMs`
    /// (the engine's backstop, [`StepTimeouts::backstop_ms`]).
    pub fn remote_task(
        &self,
        run_id: &RunId,
        workflow: Option<&str>,
        now_ms: u64,
    ) -> Option<RemoteTask> {
        let Self::DispatchTask {
            seq,
            name,
            group,
            input,
            attempt,
            timeout_ms,
            schedule_to_start_ms,
            scheduled_at_ms,
        } = self
        else {
            return None;
        };
        let scheduled_at = scheduled_at_ms.unwrap_or(now_ms);
        let timeouts = StepTimeouts {
            schedule_to_start_ms: *schedule_to_start_ms,
            start_to_close_ms: *timeout_ms,
        };
        let task = RemoteTask::new(run_id, *seq, name, group, input.clone(), *attempt)
            .with_timeouts(scheduled_at, *schedule_to_start_ms, *timeout_ms)
            .with_engine_context(workflow, timeouts.backstop_ms(scheduled_at));
        Some(task)
    }
}

/// How a finished run ended, for its parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum RunOutcome {
    /// The workflow returned this output.
    Completed {
        /// The output.
        output: Value,
    },
    /// The workflow failed or was cancelled.
    Failed {
        /// Why.
        error: StepError,
    },
}
