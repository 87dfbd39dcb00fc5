//! The reconciler: finds runs stuck in `running` and re-drives what they were waiting to send.
//!
//! A crash between "commit" and "send" leaves commands in the run's outbox. Usually the
//! record is redelivered and the engine repairs it; if the record is gone (e.g. dead-lettered)
//! the run would wait forever. The reconciler runs on a schedule, lists runs that have not
//! changed for `stall` and sends their outbox again. Receivers are idempotent, so a repeat
//! is harmless.

use crate::engine::{send_outbox, EngineTransport, RecordError};
use crate::store::{CheckpointStore, StoreError};

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    /// Stalled runs examined.
    pub examined: usize,
    /// Runs whose outbox was re-sent.
    pub redriven: Vec<String>,
    /// Runs that are idle with nothing to send (waiting on a signal, a long timer or a worker).
    pub idle: usize,
    /// Runs whose re-drive failed (left for the next pass).
    pub failed: Vec<String>,
}

/// One reconciler pass over up to `limit` runs idle since before `before_ms`.
pub async fn reconcile<S: CheckpointStore, T: EngineTransport>(
    store: &S,
    transport: &T,
    before_ms: u64,
    limit: u32,
) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport::default();
    for run in store.stalled_runs(before_ms, limit).await? {
        report.examined += 1;
        let Some(loaded) = store.load(&run.run_id).await? else {
            continue;
        };
        if loaded.outbox.is_empty() {
            report.idle += 1;
            continue;
        }
        match send_outbox(transport, store, &loaded.run, loaded.outbox).await {
            Ok(()) => {
                tracing::info!(run_id = %run.run_id, "re-drove pending commands");
                report.redriven.push(run.run_id);
            }
            Err(RecordError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(run_id = %run.run_id, error = %e, "re-drive failed; will retry next pass");
                report.failed.push(run.run_id);
            }
        }
    }
    Ok(report)
}

/// One pass over runs idle for `stall_seconds` (the reconciler Lambda's body).
pub async fn reconcile_stalled<S: CheckpointStore, T: EngineTransport>(
    store: &S,
    transport: &T,
    stall_seconds: u64,
) -> Result<ReconcileReport, StoreError> {
    let before = crate::engine::now_ms().saturating_sub(stall_seconds * 1000);
    reconcile(store, transport, before, 100).await
}
