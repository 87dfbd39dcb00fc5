//! The run's history: the ordered list of events the engine replays the workflow against.
//!
//! Every event is checkpointed (one DynamoDB item each) in the order the engine appended it.
//! Events that answer an operation carry its `seq`; replay matches them to the workflow's
//! durable calls by `seq` and checks the call is the same kind and name as recorded.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::TimerId;
use crate::contract::{StepError, StepEvent};

/// One entry of a run's history, with the time the engine recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    /// When the engine recorded the event, epoch milliseconds.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl HistoryEvent {
    /// An event recorded at `at_ms`.
    pub fn new(at_ms: u64, kind: EventKind) -> Self {
        Self { at_ms, kind }
    }
}

/// What happened. `seq` always names the durable call (operation) the event belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum EventKind {
    /// The run was started with this input. Always the first event.
    RunStarted {
        /// Registered workflow name.
        workflow: String,
        /// Workflow input.
        input: Value,
    },
    /// A remote step attempt was dispatched (the command was persisted, then sent).
    TaskScheduled {
        /// Operation number.
        seq: u64,
        /// Step name.
        name: String,
        /// Queue token (`name` or `name@partition`).
        group: String,
        /// Step input.
        input: Value,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// An inline step (`ctx.step`) attempt started inside the engine.
    InlineStepStarted {
        /// Operation number.
        seq: u64,
        /// Step name.
        name: String,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// A step attempt (remote, inline or child run) completed with an output.
    StepCompleted {
        /// Operation number.
        seq: u64,
        /// Which attempt completed.
        attempt: u32,
        /// The output.
        output: Value,
        /// What the worker logged during the attempt (absent in histories recorded before
        /// workers could send events, and when it logged nothing).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        events: Vec<StepEvent>,
    },
    /// A step attempt failed. Whether it is retried is decided by the step's retry policy.
    StepFailed {
        /// Operation number.
        seq: u64,
        /// Which attempt failed.
        attempt: u32,
        /// Why.
        error: StepError,
        /// What the worker logged before it failed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        events: Vec<StepEvent>,
    },
    /// A durable timer was started (sleep, retry backoff, timeout).
    TimerStarted {
        /// Operation number the timer belongs to.
        seq: u64,
        /// Unique within the run; echoed back by [`EventKind::TimerFired`].
        timer_id: TimerId,
        /// When it is due, epoch milliseconds.
        fire_at_ms: u64,
    },
    /// A durable timer fired.
    TimerFired {
        /// Operation number the timer belongs to.
        seq: u64,
        /// The timer that fired.
        timer_id: TimerId,
    },
    /// The workflow started waiting for a signal (`ctx.wait_for_signal`). The issuing record of
    /// the wait, so replay can check the code still waits for the same signal at this `seq`.
    SignalWaitStarted {
        /// Operation number.
        seq: u64,
        /// Signal name.
        name: String,
    },
    /// A signal arrived. Buffered: consumed by the first `wait_for_signal(name)` in replay order.
    SignalReceived {
        /// Signal name.
        name: String,
        /// Payload.
        payload: Value,
        /// Dedupe key: a redelivered signal with the same id is applied once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal_id: Option<String>,
    },
    /// A non-deterministic value handed to the workflow (`now`, `random`, `uuid`, `patched`).
    ValueRecorded {
        /// Operation number.
        seq: u64,
        /// `now`, `random`, `uuid` or `patched:<change-id>`.
        kind: String,
        /// The value.
        value: Value,
    },
    /// A child run was started.
    ChildStarted {
        /// Operation number.
        seq: u64,
        /// Child workflow name.
        workflow: String,
        /// Child run id.
        run_id: String,
        /// Child input.
        input: Value,
    },
    /// Cancellation was requested.
    CancelRequested {
        /// Why, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The workflow returned an output.
    RunCompleted {
        /// The output.
        output: Value,
    },
    /// The workflow failed (or was cancelled, with code `cancelled`).
    RunFailed {
        /// Why.
        error: StepError,
    },
    /// The workflow continued as a new run with this input (history is reset).
    ContinuedAsNew {
        /// Input of the next run.
        input: Value,
    },
}

impl EventKind {
    /// The operation this event belongs to, if any.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::TaskScheduled { seq, .. }
            | Self::InlineStepStarted { seq, .. }
            | Self::StepCompleted { seq, .. }
            | Self::StepFailed { seq, .. }
            | Self::TimerStarted { seq, .. }
            | Self::TimerFired { seq, .. }
            | Self::SignalWaitStarted { seq, .. }
            | Self::ValueRecorded { seq, .. }
            | Self::ChildStarted { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}
