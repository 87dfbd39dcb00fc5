//! Sends batched across the runs of one SQS batch.
//!
//! The activations of a batch commit concurrently; instead of each sending its own commands
//! (one `SendMessageBatch` per run and kind, mostly with one or two entries), they leave them
//! here, and the batch sends them all at once when every activation is done: up to 10
//! entries and 256 KiB per request, per queue. A run whose messages were not all sent has
//! its records reported as failures, so they come back and send them again (a redelivered
//! record re-sends its activation's commands; receivers are idempotent).

use std::collections::HashMap;
use std::sync::Mutex;

use cairn::contract::RunId;
use cairn::store::RunRecord;
use cairn::transport::TransportError;
use cairn::workflow::Command;

use super::outbox::{messages_for, Messages};
use super::{EngineTransport, RecordError};
use crate::batch::RecordFailure;

/// Messages committed by the activations of one batch and not sent yet, by run.
#[derive(Default)]
pub(crate) struct Deferred {
    pending: Mutex<Vec<(RunId, Messages)>>,
}

impl Deferred {
    /// Keeps `commands` of `run` (just committed) for the batch's send.
    pub(crate) fn push(&self, run: &RunRecord, commands: &[Command], timer_chunk_seconds: u32) {
        let messages = messages_for(run, commands, super::now_ms(), timer_chunk_seconds);
        if let Ok(mut pending) = self.pending.lock() {
            pending.push((run.run_id.clone(), messages));
        }
    }

    /// The runs with messages kept.
    pub(crate) fn runs(&self) -> Vec<RunId> {
        self.pending
            .lock()
            .map(|p| p.iter().map(|(run_id, _)| run_id.clone()).collect())
            .unwrap_or_default()
    }

    /// Sends everything kept, batched across runs; returns the runs whose messages were not
    /// all sent, with why.
    pub(crate) async fn flush<T: EngineTransport>(
        &self,
        transport: &T,
    ) -> HashMap<RunId, RecordFailure> {
        let pending = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        let mut tasks = (Vec::new(), Vec::new());
        let mut results = (Vec::new(), Vec::new());
        let mut control = (Vec::new(), Vec::new());
        for (run_id, messages) in pending {
            for task in messages.tasks {
                tasks.0.push(run_id.clone());
                tasks.1.push(task);
            }
            for result in messages.results {
                results.0.push(run_id.clone());
                results.1.push(result);
            }
            for message in messages.control {
                control.0.push(run_id.clone());
                control.1.push(message);
            }
        }
        let mut failed = HashMap::new();
        let mut note = |sent: Result<(), TransportError>, owners: &[RunId]| {
            if let Err(error) = sent {
                tracing::warn!(%error, "batched send failed; the runs' records come back to send again");
                let indexes = error.failed_indexes(owners.len());
                let failure = RecordFailure::from(RecordError::Transport(error));
                for index in indexes {
                    if let Some(run_id) = owners.get(index) {
                        failed.insert(run_id.clone(), failure.clone());
                    }
                }
            }
        };
        let (sent_tasks, sent_results, sent_control) = futures::join!(
            async {
                if tasks.1.is_empty() {
                    Ok(())
                } else {
                    transport.send_tasks(&tasks.1).await
                }
            },
            async {
                if results.1.is_empty() {
                    Ok(())
                } else {
                    transport.send_results(&results.1).await
                }
            },
            async {
                if control.1.is_empty() {
                    Ok(())
                } else {
                    transport.send_control(&control.1).await
                }
            },
        );
        note(sent_tasks, &tasks.0);
        note(sent_results, &results.0);
        note(sent_control, &control.0);
        failed
    }
}
