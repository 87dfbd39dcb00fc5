//! cairn's own messages on the results queue: start, signal, timer, cancel, and the engine's
//! continuation of a wide outbox.
//!
//! They are told apart from a [`StepResult`](super::StepResult) by a `control` field, which a
//! `StepResult` never has, so the `StepResult` shape stays exactly nestjs-durable's.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{InvalidId, RunId};

/// Where a child run reports its outcome: the parent run and the `seq` of its
/// `start_child` call. The child's outcome reaches the parent as an ordinary `StepResult`
/// with `stepId = "<parentRunId>:<seq>"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// The parent run.
    pub run_id: RunId,
    /// The parent's sequence number of the child call.
    pub seq: u64,
}

/// A control message for the engine, on `<prefix>-results`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "control",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ControlMessage {
    /// Start a run. Idempotent by `runId`: a second start of the same id is ignored.
    StartRun {
        /// The new run's id.
        run_id: RunId,
        /// The registered workflow name.
        workflow: String,
        /// The workflow input.
        #[serde(default)]
        input: Value,
        /// Set when this run is a child of another run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentRef>,
    },
    /// Deliver a signal to a run; buffered until the workflow waits for it.
    Signal {
        /// The target run.
        run_id: RunId,
        /// The signal name the workflow waits on.
        name: String,
        /// The signal payload.
        #[serde(default)]
        payload: Value,
        /// Dedupe key for the signal; defaults to the SQS message id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal_id: Option<String>,
    },
    /// A durable timer is due (or, when `fireAtMs` is still in the future, one hop of a
    /// chained delay longer than SQS's 15-minute maximum).
    TimerFired {
        /// The run that started the timer.
        run_id: RunId,
        /// The timer's id, as the engine issued it.
        timer_id: String,
        /// When the timer is due, epoch milliseconds.
        fire_at_ms: u64,
    },
    /// Ask a run to cancel; the workflow sees a cancellation error at its next await.
    CancelRun {
        /// The target run.
        run_id: RunId,
        /// Why, for people reading the run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Go on sending a wide outbox (a fan-out's commands) from its recorded progress. The
    /// engine sends it to itself when an invocation's time for sending ran out, so the record
    /// that committed the outbox is acknowledged instead of coming back once per slice.
    /// Idempotent: an outbox already sent, or being sent by a live sender, ignores it.
    ResumeOutbox {
        /// The run.
        run_id: RunId,
        /// The outbox: the history index of the first event of the activation that issued it.
        index: u64,
    },
}

impl ControlMessage {
    /// The run this message is addressed to.
    pub fn run_id(&self) -> &RunId {
        match self {
            Self::StartRun { run_id, .. }
            | Self::Signal { run_id, .. }
            | Self::TimerFired { run_id, .. }
            | Self::CancelRun { run_id, .. }
            | Self::ResumeOutbox { run_id, .. } => run_id,
        }
    }
}

/// The `control` tag alone, read first so a bad tag is reported at `control`.
#[derive(Deserialize)]
pub(super) struct ControlTag {
    pub(super) control: ControlKind,
}

/// The control kinds, spelled as on the wire.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum ControlKind {
    StartRun,
    Signal,
    TimerFired,
    CancelRun,
    ResumeOutbox,
}

// Field-for-field twins of the `ControlMessage` variants. serde buffers the content of an
// internally tagged enum, which loses the path of a bad field; decoding the variant's fields
// as a plain struct keeps it (`runId`, `parent.seq`). The round-trip tests check that the
// twins and the derived `Deserialize` of `ControlMessage` agree.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StartRunFields {
    run_id: RunId,
    workflow: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    parent: Option<ParentRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SignalFields {
    run_id: RunId,
    name: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    signal_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TimerFiredFields {
    run_id: RunId,
    timer_id: String,
    fire_at_ms: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CancelRunFields {
    run_id: RunId,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResumeOutboxFields {
    run_id: RunId,
    index: u64,
}

impl From<StartRunFields> for ControlMessage {
    fn from(f: StartRunFields) -> Self {
        Self::StartRun {
            run_id: f.run_id,
            workflow: f.workflow,
            input: f.input,
            parent: f.parent,
        }
    }
}

impl From<SignalFields> for ControlMessage {
    fn from(f: SignalFields) -> Self {
        Self::Signal {
            run_id: f.run_id,
            name: f.name,
            payload: f.payload,
            signal_id: f.signal_id,
        }
    }
}

impl From<TimerFiredFields> for ControlMessage {
    fn from(f: TimerFiredFields) -> Self {
        Self::TimerFired {
            run_id: f.run_id,
            timer_id: f.timer_id,
            fire_at_ms: f.fire_at_ms,
        }
    }
}

impl From<CancelRunFields> for ControlMessage {
    fn from(f: CancelRunFields) -> Self {
        Self::CancelRun {
            run_id: f.run_id,
            reason: f.reason,
        }
    }
}

impl From<ResumeOutboxFields> for ControlMessage {
    fn from(f: ResumeOutboxFields) -> Self {
        Self::ResumeOutbox {
            run_id: f.run_id,
            index: f.index,
        }
    }
}

/// The seed's `IWorkflowEvent` (nestjs-serverless-workflow), accepted as a signal:
/// `topic` is the signal name, `urn` the run id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowEvent {
    /// The signal name.
    pub topic: String,
    /// The run id (string or number).
    pub urn: Value,
    /// The signal payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Retry attempt number (informational).
    #[serde(default)]
    pub attempt: u32,
}

impl WorkflowEvent {
    /// The run id (numbers are rendered in decimal), if it is a valid one.
    pub fn run_id(&self) -> Result<RunId, InvalidId> {
        match &self.urn {
            Value::String(s) => RunId::parse(s.clone()),
            other => RunId::parse(other.to_string()),
        }
    }

    /// The equivalent cairn signal, if the `urn` is a valid run id.
    pub fn into_signal(self) -> Result<ControlMessage, InvalidId> {
        Ok(ControlMessage::Signal {
            run_id: self.run_id()?,
            name: self.topic,
            payload: self.payload.unwrap_or(Value::Null),
            signal_id: None,
        })
    }
}
