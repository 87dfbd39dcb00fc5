//! Test helpers: build histories by hand and load recorded ones.

use serde_json::Value;

use super::{EventKind, HistoryEvent};
use crate::contract::StepError;

/// Builds a run history event by event (times advance by 1 ms per event unless set).
///
/// ```
/// use cairn::workflow::testing::HistoryBuilder;
/// let history = HistoryBuilder::start("checkout", serde_json::json!({"id": 1}))
///     .task_scheduled(1, "payments.charge-card", serde_json::json!({}), 1)
///     .step_completed(1, 1, serde_json::json!({"chargeId": "c"}))
///     .build();
/// assert_eq!(history.len(), 3);
/// ```
#[derive(Debug, Clone, Default)]
pub struct HistoryBuilder {
    events: Vec<HistoryEvent>,
    at_ms: u64,
}

impl HistoryBuilder {
    /// A history that starts workflow `workflow` with `input`, at time 1000.
    pub fn start(workflow: &str, input: Value) -> Self {
        Self::default().at(1_000).event(EventKind::RunStarted {
            workflow: workflow.into(),
            input,
        })
    }

    /// Sets the time of the next events.
    pub fn at(mut self, at_ms: u64) -> Self {
        self.at_ms = at_ms;
        self
    }

    /// Appends any event.
    pub fn event(mut self, kind: EventKind) -> Self {
        self.events.push(HistoryEvent::new(self.at_ms, kind));
        self.at_ms += 1;
        self
    }

    /// `TaskScheduled` (group = name).
    pub fn task_scheduled(self, seq: u64, name: &str, input: Value, attempt: u32) -> Self {
        self.event(EventKind::TaskScheduled {
            seq,
            name: name.into(),
            group: name.into(),
            input,
            attempt,
        })
    }

    /// `InlineStepStarted`.
    pub fn inline_started(self, seq: u64, name: &str, attempt: u32) -> Self {
        self.event(EventKind::InlineStepStarted {
            seq,
            name: name.into(),
            attempt,
        })
    }

    /// `StepCompleted`.
    pub fn step_completed(self, seq: u64, attempt: u32, output: Value) -> Self {
        self.event(EventKind::StepCompleted {
            seq,
            attempt,
            output,
        })
    }

    /// `StepFailed`.
    pub fn step_failed(self, seq: u64, attempt: u32, error: StepError) -> Self {
        self.event(EventKind::StepFailed {
            seq,
            attempt,
            error,
        })
    }

    /// `TimerStarted`.
    pub fn timer_started(self, seq: u64, timer_id: &str, fire_at_ms: u64) -> Self {
        self.event(EventKind::TimerStarted {
            seq,
            timer_id: timer_id.into(),
            fire_at_ms,
        })
    }

    /// `TimerFired`.
    pub fn timer_fired(self, seq: u64, timer_id: &str) -> Self {
        self.event(EventKind::TimerFired {
            seq,
            timer_id: timer_id.into(),
        })
    }

    /// `SignalWaitStarted`.
    pub fn signal_wait(self, seq: u64, name: &str) -> Self {
        self.event(EventKind::SignalWaitStarted {
            seq,
            name: name.into(),
        })
    }

    /// `SignalReceived`.
    pub fn signal(self, name: &str, payload: Value) -> Self {
        self.event(EventKind::SignalReceived {
            name: name.into(),
            payload,
        })
    }

    /// `ValueRecorded`.
    pub fn value(self, seq: u64, kind: &str, value: Value) -> Self {
        self.event(EventKind::ValueRecorded {
            seq,
            kind: kind.into(),
            value,
        })
    }

    /// `ChildStarted`.
    pub fn child_started(self, seq: u64, workflow: &str, run_id: &str, input: Value) -> Self {
        self.event(EventKind::ChildStarted {
            seq,
            workflow: workflow.into(),
            run_id: run_id.into(),
            input,
        })
    }

    /// `CancelRequested`.
    pub fn cancel(self, reason: Option<&str>) -> Self {
        self.event(EventKind::CancelRequested {
            reason: reason.map(str::to_owned),
        })
    }

    /// `RunCompleted`.
    pub fn completed(self, output: Value) -> Self {
        self.event(EventKind::RunCompleted { output })
    }

    /// `RunFailed`.
    pub fn failed(self, error: StepError) -> Self {
        self.event(EventKind::RunFailed { error })
    }

    /// The events.
    pub fn build(self) -> Vec<HistoryEvent> {
        self.events
    }

    /// The events as pretty JSON (the format of `tests/histories/*.json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.events).unwrap_or_default()
    }
}

/// Parses a history file: a JSON array of events.
pub fn load_history(json: &str) -> Result<Vec<HistoryEvent>, serde_json::Error> {
    serde_json::from_str(json)
}
