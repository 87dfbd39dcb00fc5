//! The client API: start, signal and cancel runs, and read them back.
//!
//! Starting and signalling go through the results queue like everything else, so the engine
//! is the only writer of runs; reading goes straight to the store.

use std::time::Duration;

use serde_json::Value;

use crate::contract::{ControlMessage, InvalidId, RunId, WorkflowEvent};
use crate::store::{CheckpointStore, LoadedRun, RunFilter, RunPage, RunRecord, StoreError};
use crate::transport::{ControlSender, TransportError};
use crate::workflow::RunStatus;

/// A client failure.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The run does not exist.
    #[error("run {0} not found")]
    NotFound(String),
    /// A run id a caller may not choose.
    #[error("invalid run id {run_id:?}: {reason}")]
    InvalidRunId {
        /// The id.
        run_id: String,
        /// Why.
        reason: &'static str,
    },
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sending the message failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The run did not finish in time.
    #[error("run {run_id} still {} after {waited:?}", status.map_or("not created".to_owned(), |s| s.to_string()))]
    Timeout {
        /// The run.
        run_id: String,
        /// Its status when the wait gave up; `None`: the run was never created (no engine
        /// consumed its start message).
        status: Option<RunStatus>,
        /// How long the wait was.
        waited: Duration,
    },
}

/// Starts, signals, cancels and reads runs.
#[derive(Debug, Clone)]
pub struct Client<S, T> {
    store: S,
    transport: T,
}

impl<S: CheckpointStore, T: ControlSender> Client<S, T> {
    /// A client over a store (reads) and a transport (commands).
    pub fn new(store: S, transport: T) -> Self {
        Self { store, transport }
    }

    /// Starts a run of `workflow`. Idempotent by run id: starting an existing id again does
    /// nothing. Returns the run id (a new UUID when `run_id` is `None`).
    pub async fn start(
        &self,
        workflow: &str,
        input: Value,
        run_id: Option<String>,
    ) -> Result<String, ClientError> {
        let run_id = match run_id {
            Some(id) => RunId::caller(id).map_err(ClientError::from)?,
            None => RunId::caller(uuid::Uuid::new_v4().to_string())?,
        };
        let message = ControlMessage::StartRun {
            run_id: run_id.clone(),
            workflow: workflow.to_owned(),
            input,
            parent: None,
        };
        self.transport.send_control(&[(message, 0)]).await?;
        Ok(run_id.into_string())
    }

    /// Sends signal `name` to a run.
    pub async fn signal(
        &self,
        run_id: &str,
        name: &str,
        payload: Value,
    ) -> Result<(), ClientError> {
        let message = ControlMessage::Signal {
            run_id: RunId::parse(run_id)?,
            name: name.to_owned(),
            payload,
            signal_id: Some(uuid::Uuid::new_v4().to_string()),
        };
        self.transport.send_control(&[(message, 0)]).await?;
        Ok(())
    }

    /// Sends a seed-style `IWorkflowEvent` as a signal (`topic` → name, `urn` → run id).
    pub async fn signal_event(&self, event: WorkflowEvent) -> Result<(), ClientError> {
        let run_id = event.run_id()?;
        self.signal(&run_id, &event.topic, event.payload.unwrap_or(Value::Null))
            .await
    }

    /// Asks a run to cancel.
    pub async fn cancel(&self, run_id: &str, reason: Option<String>) -> Result<(), ClientError> {
        let message = ControlMessage::CancelRun {
            run_id: RunId::parse(run_id)?,
            reason,
        };
        self.transport.send_control(&[(message, 0)]).await?;
        Ok(())
    }

    /// A run with its checkpoints.
    pub async fn get(&self, run_id: &str) -> Result<LoadedRun, ClientError> {
        self.store
            .load(run_id)
            .await?
            .ok_or_else(|| ClientError::NotFound(run_id.to_owned()))
    }

    /// Lists runs.
    pub async fn list(&self, filter: &RunFilter) -> Result<RunPage, ClientError> {
        Ok(self.store.list_runs(filter).await?)
    }

    /// Polls until the run is finished (completed, failed, cancelled, continued).
    pub async fn wait(&self, run_id: &str, timeout: Duration) -> Result<RunRecord, ClientError> {
        let started = std::time::Instant::now();
        let mut last_status = None;
        let mut leftovers = None;
        while started.elapsed() < timeout {
            match self.store.load(run_id).await {
                Ok(Some(loaded)) => {
                    if loaded.run.status.is_terminal() {
                        return Ok(loaded.run);
                    }
                    last_status = Some(loaded.run.status);
                }
                Ok(None) => {}
                // An earlier run's leftovers, until the engine takes the start and clears them.
                Err(StoreError::Leftovers(found)) => leftovers = Some(found),
                Err(e) => return Err(e.into()),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let (None, Some(found)) = (last_status, leftovers) {
            // The real reason the run never appeared.
            return Err(StoreError::Leftovers(found).into());
        }
        Err(ClientError::Timeout {
            run_id: run_id.to_owned(),
            status: last_status,
            waited: timeout,
        })
    }
}

impl From<InvalidId> for ClientError {
    fn from(e: InvalidId) -> Self {
        Self::InvalidRunId {
            run_id: e.id,
            reason: e.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_run_ids_cannot_take_the_shape_of_derived_ones() {
        assert!(RunId::caller("order-42").is_ok());
        for bad in ["", "a~1", "p~c2", "has space", "tab\t"] {
            assert!(
                matches!(
                    RunId::caller(bad).map_err(ClientError::from),
                    Err(ClientError::InvalidRunId { .. })
                ),
                "{bad:?} should be refused"
            );
        }
        assert!(RunId::caller("x".repeat(201)).is_err());
    }
}
