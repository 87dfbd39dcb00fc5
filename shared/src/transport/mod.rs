//! Transports: how tasks reach workers and results (and control messages) reach the engine.
//!
//! `cairn_lambda::sqs::SqsTransport` is the production implementation; [`MemoryTransport`]
//! records what was sent, for unit tests. Callers take the narrowest trait: workers need only [`ResultSender`].

mod claim_check;
mod long_wait;
mod memory;

use std::future::Future;

use crate::contract::{ControlMessage, RemoteTask, StepResult};
use crate::infra::InfraError;

pub use claim_check::{
    offload, refuse_oversize_result, refuse_oversize_task, resolve_body, ClaimCheck,
    CLAIM_CHECK_THRESHOLD, PAYLOAD_TOO_LARGE_CODE,
};
pub use long_wait::{
    schedule_name, LongWaitPolicy, LongWaitTransport, MemoryScheduler, ReleasedTimer,
    ScheduledTimer, TimerScheduler,
};
pub use memory::MemoryTransport;

/// A send that failed, in whole or for some messages.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Some messages of a batch were not accepted; their indexes in the input slice.
    #[error("{} of the messages were not sent: {cause}", failed.len())]
    Partial {
        /// Indexes (into the slice passed to the send call) of the messages not sent.
        failed: Vec<usize>,
        /// Why the first of them was not sent.
        #[source]
        cause: InfraError,
    },
    /// The queue for a group cannot be found or created.
    #[error("no queue for {what}: {cause}")]
    NoQueue {
        /// The group or queue name.
        what: String,
        /// Why.
        #[source]
        cause: InfraError,
    },
    /// A claim-check payload could not be stored or fetched.
    #[error("claim check failed: {0}")]
    ClaimCheck(String),
    /// The transport cannot do this (e.g. per-message delay on a FIFO queue).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl TransportError {
    /// Whether this is an infrastructure failure that heals by itself (see
    /// [`InfraErrorKind::is_transient`](crate::infra::InfraErrorKind::is_transient)).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Partial { cause, .. } | Self::NoQueue { cause, .. } => cause.is_transient(),
            Self::ClaimCheck(_) | Self::Unsupported(_) => false,
        }
    }

    /// Indexes of the messages that were not sent (all of `len` unless partial).
    pub fn failed_indexes(&self, len: usize) -> Vec<usize> {
        match self {
            Self::Partial { failed, .. } => failed.clone(),
            _ => (0..len).collect(),
        }
    }
}

/// Sends tasks to the tasks queues of their groups.
pub trait TaskSender: Send + Sync {
    /// Sends every task to `<prefix>-tasks-<task.group>` (or its configured URL).
    fn send_tasks(
        &self,
        tasks: &[RemoteTask],
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// Sends step results to the results queue.
pub trait ResultSender: Send + Sync {
    /// Sends results to `<prefix>-results`.
    fn send_results(
        &self,
        results: &[StepResult],
    ) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// Sends control messages to the results queue, optionally delayed (durable timers).
pub trait ControlSender: Send + Sync {
    /// Sends control messages, each visible after its delay in seconds (≤ 900).
    fn send_control(
        &self,
        messages: &[(ControlMessage, u32)],
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Withdraws timers no run waits for any more, where the transport can (a scheduled long
    /// wait). Where it cannot (an SQS delay), the timer still arrives and the engine drops it.
    fn release_timers(
        &self,
        timers: &[ReleasedTimer],
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        let _ = timers;
        async { Ok(()) }
    }
}
