//! A remote step's timeouts, as Temporal has them: **schedule-to-start** (the wait in the tasks
//! queue) apart from **start-to-close** (the attempt's run time, from the worker's start).
//!
//! Only the worker knows when it starts an attempt, and telling the engine would cost an SQS
//! message per step. So each side enforces what it can see:
//! - the task carries `scheduledAt` (when it was sent) and the timeouts; the **worker** refuses an attempt that
//!   waited past its schedule-to-start (without running the handler: a failed, non-retryable
//!   result, code `timeout`, as Temporal does not retry a schedule-to-start timeout: a new
//!   attempt would wait in the same queue; a task delivered again, whose first run did not
//!   finish, is failed retryable instead), and stops a handler at start-to-close from its own
//!   start (failed, retryable, code `timeout`);
//! - the **engine** keeps one durable timer per attempt as the backstop, due at the
//!   attempt's scheduling (`TaskScheduled`) + schedule-to-start + start-to-close: it fails an attempt that never
//!   answered (a lost task, a crashed worker, a peer that ignores the timeouts). It is not
//!   sent as a message: the reconciler fires it from its `byDue` entry, minutes after. Without a
//!   schedule-to-start timeout the worker does not refuse anything (Temporal's default), and
//!   the backstop allows [`QUEUE_WAIT_ALLOWANCE_MS`] of queue wait, so nothing waits forever
//!   and a queue backlog does not time out a step that then runs quickly.
//!
//! With a schedule-to-start timeout, an attempt never runs after its backstop (but for the
//! milliseconds between commit and send): a worker that gets it later refuses it, and one that
//! started it in time stopped it at start-to-close. A task sent again after a crash (its
//! record redelivered, or the reconciler) starts a new queue wait, so an internal delay never
//! uses up its schedule-to-start; its result may then come late. So
//! the backstop's failure is retryable (the task was lost, the worker died, or the result is
//! late) without risking two runs of one attempt at once. A backlog longer than the backstop
//! ends there too: the engine cannot tell a task still queued from a lost one.
//!
//! The history records the timeouts with each attempt (`TaskScheduled.timeouts`) and the
//! backstop's due time (`TimerStarted`); replay reads them, never the code.

use serde::{Deserialize, Serialize};

/// Queue wait the engine's backstop allows an attempt whose step sets no schedule-to-start
/// timeout: 5 minutes. It keeps the backstop of a step with a start-to-close timeout up to
/// 10 minutes within one SQS delay (900 s), so it costs no extra timer hop.
pub const QUEUE_WAIT_ALLOWANCE_MS: u64 = 5 * 60 * 1000;

/// The timeouts of one attempt of a remote step, in milliseconds (as recorded in the history
/// and sent with the task).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepTimeouts {
    /// Longest wait in the tasks queue, from the engine's scheduling to the worker's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_to_start_ms: Option<u64>,
    /// Longest run of the attempt, from the worker's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_to_close_ms: Option<u64>,
}

impl StepTimeouts {
    /// No timeout at all.
    pub const NONE: Self = Self {
        schedule_to_start_ms: None,
        start_to_close_ms: None,
    };

    /// Whether neither timeout is set.
    pub const fn is_none(&self) -> bool {
        self.schedule_to_start_ms.is_none() && self.start_to_close_ms.is_none()
    }

    /// The queue wait the engine's backstop allows: the schedule-to-start timeout, else
    /// [`QUEUE_WAIT_ALLOWANCE_MS`].
    pub fn queue_wait_ms(&self) -> u64 {
        self.schedule_to_start_ms.unwrap_or(QUEUE_WAIT_ALLOWANCE_MS)
    }

    /// When the engine stops waiting for an attempt scheduled at `scheduled_at_ms`: the queue
    /// wait it allows plus start-to-close. `None` without a start-to-close timeout (no timer:
    /// a step without one waits for its result, as before).
    pub fn backstop_ms(&self, scheduled_at_ms: u64) -> Option<u64> {
        let run = self.start_to_close_ms?;
        Some(
            scheduled_at_ms
                .saturating_add(self.queue_wait_ms())
                .saturating_add(run),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backstop_adds_the_queue_wait_to_the_run_time() {
        let run_only = StepTimeouts {
            start_to_close_ms: Some(30_000),
            ..StepTimeouts::NONE
        };
        assert_eq!(
            run_only.backstop_ms(1_000),
            Some(1_000 + QUEUE_WAIT_ALLOWANCE_MS + 30_000)
        );
        let both = StepTimeouts {
            schedule_to_start_ms: Some(10_000),
            start_to_close_ms: Some(30_000),
        };
        assert_eq!(both.backstop_ms(1_000), Some(41_000));
        let wait_only = StepTimeouts {
            schedule_to_start_ms: Some(10_000),
            start_to_close_ms: None,
        };
        assert_eq!(wait_only.backstop_ms(1_000), None);
        assert!(StepTimeouts::NONE.is_none() && !wait_only.is_none());
    }
}
