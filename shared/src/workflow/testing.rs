//! Test helpers: [`TestEnv`] runs workflows in process on a virtual clock (start here); the
//! rest builds histories by hand, loads recorded ones and drives single activations.

mod env;
mod replay;

pub use env::{StepCall, TestEnv, TestEnvError, DEFAULT_START_MS, MAX_TIMER_FIRINGS};
pub use replay::{replay, ReplayError};

use serde::Serialize;
use serde_json::Value;

use crate::contract::StepError;
use crate::workflow::{
    activate, Activation, ActivationRequest, EventKind, HistoryEvent, Incoming, TimerId, ValueKind,
    Workflows,
};

/// Drives one run through activations in memory, persisting `appended` like the engine
/// Lambda would. The clock starts at 1000 and advances 1000 ms per activation.
pub struct TestRun<'w> {
    /// The registry the run's workflow is looked up in (swap it to test a code change).
    pub workflows: &'w Workflows,
    /// The run id.
    pub run_id: String,
    /// The persisted history.
    pub history: Vec<HistoryEvent>,
    /// The clock of the next activation.
    pub now_ms: u64,
}

impl<'w> TestRun<'w> {
    /// A run with an empty history.
    pub fn new(workflows: &'w Workflows, run_id: &str) -> Self {
        Self {
            workflows,
            run_id: run_id.to_owned(),
            history: Vec::new(),
            now_ms: 1_000,
        }
    }

    /// Runs one activation and persists its events.
    pub fn try_step(
        &mut self,
        incoming: Vec<Incoming>,
    ) -> Result<Activation, crate::workflow::EngineError> {
        let req = ActivationRequest {
            run_id: &self.run_id,
            history: &self.history,
            incoming,
            now_ms: self.now_ms,
        };
        let activation = futures::executor::block_on(activate(self.workflows, req))?;
        self.history.extend(activation.appended.iter().cloned());
        self.now_ms += 1_000;
        Ok(activation)
    }

    /// Runs one activation and persists its events; panics on an engine error.
    pub fn step(&mut self, incoming: Vec<Incoming>) -> Activation {
        self.try_step(incoming).expect("test activation failed")
    }

    /// The run's output, once completed.
    pub fn output(&self) -> Option<Value> {
        self.history.iter().find_map(|e| match &e.kind {
            EventKind::RunCompleted { output } => Some(output.clone()),
            _ => None,
        })
    }

    /// The run's error, once failed or cancelled.
    pub fn failure(&self) -> Option<StepError> {
        self.history.iter().find_map(|e| match &e.kind {
            EventKind::RunFailed { error } | EventKind::RunCancelled { error } => {
                Some(error.clone())
            }
            _ => None,
        })
    }
}

/// `Incoming::Start`.
pub fn start(workflow: &str, input: impl Serialize) -> Incoming {
    Incoming::Start {
        workflow: workflow.into(),
        input: serde_json::to_value(input).unwrap_or_default(),
    }
}

/// A completed result for `seq`'s latest attempt.
pub fn ok(seq: u64, output: impl Serialize) -> Incoming {
    Incoming::StepResult {
        seq,
        attempt: None,
        outcome: Ok(serde_json::to_value(output).unwrap_or_default()),
        started_at_ms: None,
        events: Vec::new(),
    }
}

/// A signal.
pub fn signal(name: &str, payload: impl Serialize) -> Incoming {
    Incoming::Signal {
        name: name.into(),
        payload: serde_json::to_value(payload).unwrap_or_default(),
        signal_id: None,
    }
}

/// A fired timer, by the text form of its [`TimerId`] (`"1"`, `"1:retry:1"`...).
///
/// # Panics
/// If `timer_id` is not a timer id's text form (a test mistake).
pub fn fire(timer_id: &str) -> Incoming {
    match timer_id.parse::<TimerId>() {
        Ok(timer_id) => Incoming::TimerFired { timer_id },
        Err(e) => panic!("fire({timer_id:?}): {e}"),
    }
}

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
            format: crate::workflow::HISTORY_FORMAT,
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
            retry: None,
            timeouts: None,
        })
    }

    /// `InlineStepStarted`.
    pub fn inline_started(self, seq: u64, name: &str, attempt: u32) -> Self {
        self.event(EventKind::InlineStepStarted {
            seq,
            name: name.into(),
            attempt,
            retry: None,
        })
    }

    /// `StepCompleted`.
    pub fn step_completed(self, seq: u64, attempt: u32, output: Value) -> Self {
        self.event(EventKind::StepCompleted {
            seq,
            attempt,
            output,
            started_at_ms: None,
            events: Vec::new(),
        })
    }

    /// `StepFailed`.
    pub fn step_failed(self, seq: u64, attempt: u32, error: StepError) -> Self {
        self.event(EventKind::StepFailed {
            seq,
            attempt,
            error,
            started_at_ms: None,
            events: Vec::new(),
        })
    }

    /// `TimerStarted`.
    pub fn timer_started(self, timer_id: TimerId, fire_at_ms: u64) -> Self {
        self.event(EventKind::TimerStarted {
            seq: timer_id.seq(),
            timer_id,
            fire_at_ms,
        })
    }

    /// `TimerFired`.
    pub fn timer_fired(self, timer_id: TimerId) -> Self {
        self.event(EventKind::TimerFired {
            seq: timer_id.seq(),
            timer_id,
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
            signal_id: None,
        })
    }

    /// `ValueRecorded`.
    pub fn value(self, seq: u64, kind: ValueKind, value: Value) -> Self {
        self.event(EventKind::ValueRecorded { seq, kind, value })
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
