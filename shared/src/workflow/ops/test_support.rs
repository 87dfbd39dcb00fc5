//! Helpers for the op modules' unit tests: a tiny driver that keeps a run's history.
#![allow(clippy::unwrap_used)]

use serde::Serialize;
use serde_json::Value;

use crate::contract::StepError;
use crate::workflow::{
    activate, Activation, ActivationRequest, EventKind, HistoryEvent, Incoming, Workflows,
};

/// Drives one run through activations, persisting `appended` like the engine Lambda would.
pub(crate) struct Sim<'w> {
    pub workflows: &'w Workflows,
    pub run_id: String,
    pub history: Vec<HistoryEvent>,
    pub now_ms: u64,
}

impl<'w> Sim<'w> {
    pub fn new(workflows: &'w Workflows, run_id: &str) -> Self {
        Self {
            workflows,
            run_id: run_id.to_owned(),
            history: Vec::new(),
            now_ms: 1_000,
        }
    }

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

    pub fn step(&mut self, incoming: Vec<Incoming>) -> Activation {
        self.try_step(incoming).unwrap()
    }

    pub fn output(&self) -> Option<Value> {
        self.history.iter().find_map(|e| match &e.kind {
            EventKind::RunCompleted { output } => Some(output.clone()),
            _ => None,
        })
    }

    pub fn failure(&self) -> Option<StepError> {
        self.history.iter().find_map(|e| match &e.kind {
            EventKind::RunFailed { error } => Some(error.clone()),
            _ => None,
        })
    }
}

pub(crate) fn start(workflow: &str, input: impl Serialize) -> Incoming {
    Incoming::Start {
        workflow: workflow.into(),
        input: serde_json::to_value(input).unwrap(),
    }
}

pub(crate) fn ok(seq: u64, output: impl Serialize) -> Incoming {
    Incoming::StepResult {
        seq,
        attempt: None,
        outcome: Ok(serde_json::to_value(output).unwrap()),
    }
}

pub(crate) fn signal(name: &str, payload: impl Serialize) -> Incoming {
    Incoming::Signal {
        name: name.into(),
        payload: serde_json::to_value(payload).unwrap(),
    }
}

pub(crate) fn fire(timer_id: &str) -> Incoming {
    Incoming::TimerFired {
        timer_id: timer_id.into(),
    }
}

/// Yields to the executor once, waking itself: stands in for real async I/O.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}
