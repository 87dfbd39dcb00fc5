//! The run's history: the ordered list of events the engine replays the workflow against.
//!
//! Events are checkpointed in the order the engine appended them (the store packs them into
//! chunks). Events that answer an operation carry its `seq`; replay matches them to the
//! workflow's durable calls by `seq` and checks the call is the same kind and name as recorded.
//!
//! # Format versions
//! The JSON form is versioned by `RunStarted.format` ([`HISTORY_FORMAT`]; absent = 1), and
//! every later format still reads the earlier ones (`tests/histories/v1/` keeps format 1
//! histories replaying):
//! - **1**: the first format.
//! - **2**: `runCancelled` ends a cancelled run (format 1 ended it with `runFailed` and code
//!   `cancelled`, which a workflow's own error could also carry); `patchMarked` records a
//!   `ctx.patched` marker (format 1: `valueRecorded` with kind `patched:<id>`); a step's first
//!   attempt records its retry policy (`retry`), which later attempts follow whatever the code
//!   says now; results record the worker's `startedAtMs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{RetryPolicy, StepTimeouts, TimerId};
use crate::contract::{StepError, StepEvent};

/// The history format this engine writes (see the module docs for what each version means).
pub const HISTORY_FORMAT: u32 = 2;

fn format_1() -> u32 {
    1
}

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
        /// The history format the run was started with ([`HISTORY_FORMAT`]; absent = 1).
        #[serde(default = "format_1")]
        format: u32,
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
        /// The retry policy, on the first attempt (format 2): the step keeps it for its later
        /// attempts even if the code's policy changes meanwhile.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry: Option<RetryPolicy>,
        /// The attempt's timeouts, when the step sets any: the backstop timer
        /// (`<seq>:timeout:<attempt>`) is due at this event's time + the queue wait allowed +
        /// start-to-close (see [`StepTimeouts`]). Absent in older histories, whose timeout timer
        /// counted start-to-close from this event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeouts: Option<StepTimeouts>,
    },
    /// An inline step (`ctx.step`) attempt started inside the engine.
    InlineStepStarted {
        /// Operation number.
        seq: u64,
        /// Step name.
        name: String,
        /// Attempt number, from 1.
        attempt: u32,
        /// The retry policy, on the first attempt (format 2), as for `TaskScheduled`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry: Option<RetryPolicy>,
    },
    /// A step attempt (remote, inline or child run) completed with an output.
    StepCompleted {
        /// Operation number.
        seq: u64,
        /// Which attempt completed.
        attempt: u32,
        /// The output.
        output: Value,
        /// When the worker started the attempt, by its clock (absent for inline steps, and for
        /// workers that do not say).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at_ms: Option<u64>,
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
        /// When the worker started the attempt (absent when the engine failed it, e.g. on
        /// timeout).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at_ms: Option<u64>,
        /// What the worker logged before it failed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        events: Vec<StepEvent>,
    },
    /// A worker's result for an attempt the engine had already failed on its start-to-close
    /// timeout (format 2; format 1 dropped it). Kept in the history so the run shows it, and
    /// revealed to the workflow ([`WorkflowContext::late_result`](super::WorkflowContext::late_result)).
    LateResult {
        /// Operation number.
        seq: u64,
        /// Which attempt it answers.
        attempt: u32,
        /// The output, when the attempt completed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
        /// The error, when the attempt failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
        /// When the worker started the attempt (its clock): the time between `TaskScheduled`
        /// and this is the attempt's wait in the queue, the time from this to the result its
        /// run time plus the wait of the result.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        started_at_ms: Option<u64>,
        /// What the worker logged.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        events: Vec<StepEvent>,
        /// A success that arrived before any later attempt had finished: the step completed
        /// with it (and later attempts' results do not count).
        #[serde(default)]
        kept: bool,
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
    /// A non-deterministic value handed to the workflow (`now`, `random`, `uuid`).
    ValueRecorded {
        /// Operation number.
        seq: u64,
        /// Which value.
        kind: ValueKind,
        /// The value.
        value: Value,
    },
    /// The run took the new code path of `ctx.patched(change_id)` (format 2; format 1 recorded
    /// a `ValueRecorded` with [`ValueKind::Patched`]). Takes no `seq`.
    PatchMarked {
        /// The change id.
        change_id: String,
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
    /// The workflow failed (in format 1 also: was cancelled, with code `cancelled`).
    RunFailed {
        /// Why.
        error: StepError,
    },
    /// The workflow ended with the cancellation error after a cancel request (format 2).
    RunCancelled {
        /// The error its parent is told (code `cancelled`).
        error: StepError,
    },
    /// The workflow continued as a new run with this input (history is reset).
    ContinuedAsNew {
        /// Input of the next run.
        input: Value,
    },
}

/// Which non-deterministic value a `ValueRecorded` holds. Its JSON form is the text `now`,
/// `random`, `uuid` (or, read from format 1 histories only, `patched:<change-id>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// `ctx.now()`.
    Now,
    /// `ctx.random()`.
    Random,
    /// `ctx.uuid()`.
    Uuid,
    /// A format 1 `ctx.patched` marker; format 2 records [`EventKind::PatchMarked`] instead.
    Patched(String),
}

/// The `ValueRecorded.kind` text of a format 1 patch marker: `patched:<change-id>`.
const PATCH_PREFIX: &str = "patched:";

impl std::fmt::Display for ValueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Now => f.write_str("now"),
            Self::Random => f.write_str("random"),
            Self::Uuid => f.write_str("uuid"),
            Self::Patched(change) => write!(f, "{PATCH_PREFIX}{change}"),
        }
    }
}

impl Serialize for ValueKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ValueKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        match text.as_ref() {
            "now" => Ok(Self::Now),
            "random" => Ok(Self::Random),
            "uuid" => Ok(Self::Uuid),
            other => match other.strip_prefix(PATCH_PREFIX) {
                Some(change) => Ok(Self::Patched(change.to_owned())),
                None => Err(serde::de::Error::custom(format!(
                    "unknown value kind {other:?} (expected now, random, uuid or patched:<id>)"
                ))),
            },
        }
    }
}

impl EventKind {
    /// Whether this event ends its run (completed, failed, cancelled, continued as new).
    pub fn ends_run(&self) -> bool {
        matches!(
            self,
            Self::RunCompleted { .. }
                | Self::RunFailed { .. }
                | Self::RunCancelled { .. }
                | Self::ContinuedAsNew { .. }
        )
    }

    /// The operation this event belongs to, if any.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::TaskScheduled { seq, .. }
            | Self::InlineStepStarted { seq, .. }
            | Self::StepCompleted { seq, .. }
            | Self::StepFailed { seq, .. }
            | Self::LateResult { seq, .. }
            | Self::TimerStarted { seq, .. }
            | Self::TimerFired { seq, .. }
            | Self::SignalWaitStarted { seq, .. }
            | Self::ValueRecorded { seq, .. }
            | Self::ChildStarted { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}
