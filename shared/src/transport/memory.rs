//! [`MemoryTransport`]: records what would have been sent, for unit tests.

use std::sync::Mutex;

use super::{ControlSender, ResultSender, TaskSender, TransportError};
use crate::contract::{ControlMessage, RemoteTask, StepResult};
use crate::infra::{InfraError, InfraErrorKind};

/// Everything sent through it, in order.
#[derive(Debug, Default)]
pub struct MemoryTransport {
    /// Tasks sent.
    pub tasks: Mutex<Vec<RemoteTask>>,
    /// Results sent.
    pub results: Mutex<Vec<StepResult>>,
    /// Control messages sent, with their delays.
    pub control: Mutex<Vec<(ControlMessage, u32)>>,
}

fn push<T: Clone>(into: &Mutex<Vec<T>>, items: &[T]) -> Result<(), TransportError> {
    into.lock()
        .map(|mut v| v.extend_from_slice(items))
        .map_err(|_| TransportError::Partial {
            failed: (0..items.len()).collect(),
            cause: InfraError::new("send", InfraErrorKind::Other, "memory transport poisoned"),
        })
}

impl TaskSender for MemoryTransport {
    async fn send_tasks(&self, tasks: &[RemoteTask]) -> Result<(), TransportError> {
        push(&self.tasks, tasks)
    }
}

impl ResultSender for MemoryTransport {
    async fn send_results(&self, results: &[StepResult]) -> Result<(), TransportError> {
        push(&self.results, results)
    }
}

impl ControlSender for MemoryTransport {
    async fn send_control(&self, messages: &[(ControlMessage, u32)]) -> Result<(), TransportError> {
        push(&self.control, messages)
    }
}
