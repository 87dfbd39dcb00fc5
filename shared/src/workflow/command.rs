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
        /// the attempt if it starts later than this after the task was sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule_to_start_ms: Option<u64>,
        /// When the attempt was scheduled (the activation's time, where its timeout timer
        /// counts from), epoch ms, for the task's `deadlineMs`; absent in commands stored by
        /// older engines (the send time stands in).
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
    /// and `TestEnv` build it, sent at `now_ms`: the step's timeouts with `scheduledAt` =
    /// `now_ms` (the queue wait starts when the task is sent, so a task sent again after a
    /// crash gets its whole schedule-to-start), and the context `workflow` and `deadlineMs`
    /// (the engine's timer: when the attempt was scheduled + [`StepTimeouts::backstop_ms`]).
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
        let timeouts = StepTimeouts {
            schedule_to_start_ms: *schedule_to_start_ms,
            start_to_close_ms: *timeout_ms,
        };
        let deadline = timeouts.backstop_ms(scheduled_at_ms.unwrap_or(now_ms));
        let task = RemoteTask::new(run_id, *seq, name, group, input.clone(), *attempt)
            .with_timeouts(now_ms, *schedule_to_start_ms, *timeout_ms)
            .with_engine_context(workflow, deadline);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_waits_from_its_send_and_its_deadline_is_the_engines_timer() {
        let command = Command::DispatchTask {
            seq: 2,
            name: "s".into(),
            group: "s".into(),
            input: Value::Null,
            attempt: 1,
            timeout_ms: Some(30_000),
            schedule_to_start_ms: Some(60_000),
            scheduled_at_ms: Some(1_000),
        };
        let run = RunId::parse("r").unwrap_or_else(|e| panic!("{e}"));
        // Sent (again, after a crash) at 200 s: a whole schedule-to-start from then.
        let task = command.remote_task(&run, Some("w"), 200_000);
        let task = task.unwrap_or_else(|| panic!("a task"));
        assert_eq!(task.scheduled_at, Some(200_000));
        assert_eq!(
            (task.schedule_to_start_ms, task.start_to_close_ms),
            (Some(60_000), Some(30_000))
        );
        let deadline = task.context.as_ref().and_then(|c| c.get("deadlineMs"));
        assert_eq!(deadline, Some(&Value::from(1_000 + 60_000 + 30_000)));
    }
}
