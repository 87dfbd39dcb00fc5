//! Commands: what an activation asks the outside world to do, after its events are persisted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::TimerId;
use crate::contract::StepError;

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
        /// Start-to-close timeout of this attempt, if any (workers get it as a deadline).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
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
