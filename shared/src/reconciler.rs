//! The reconciler: finds runs stuck in `running` and re-drives what they were waiting to send.
//!
//! A crash between "commit" and "send" leaves commands in the run's outbox. Usually the
//! record is redelivered and the engine repairs it; if the record is gone (e.g. dead-lettered)
//! the run would wait forever. The reconciler runs on a schedule, lists runs that have not
//! changed for `stall` and sends their outbox again. Receivers are idempotent, so a repeat
//! is harmless.

use crate::engine::{send_outbox, EngineTransport};
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

/// How far one pass looks.
#[derive(Debug, Clone, Copy)]
pub struct ReconcileOptions {
    /// Runs unchanged since before this time (epoch ms) count as stalled.
    pub before_ms: u64,
    /// At most this many runs are examined per pass (pages of 100).
    pub max_runs: usize,
    /// Longest single SQS delay for re-sent timers.
    pub timer_chunk_seconds: u32,
}

/// One reconciler pass: stalled runs, oldest first, page after page up to `max_runs`.
///
/// A run that cannot be loaded or re-driven is reported in `failed` and the pass goes on:
/// one bad run never blocks the others.
pub async fn reconcile<S: CheckpointStore, T: EngineTransport>(
    store: &S,
    transport: &T,
    options: ReconcileOptions,
) -> Result<ReconcileReport, StoreError> {
    let mut report = ReconcileReport::default();
    let mut cursor = None;
    loop {
        let page = store.stalled_runs(options.before_ms, 100, cursor).await?;
        for run in page.runs {
            if report.examined >= options.max_runs {
                return Ok(report);
            }
            report.examined += 1;
            let loaded = match store.load(&run.run_id).await {
                Ok(Some(loaded)) => loaded,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(run_id = %run.run_id, error = %e, "cannot load stalled run");
                    report.failed.push(run.run_id);
                    continue;
                }
            };
            if loaded.outbox.is_empty() {
                report.idle += 1;
                continue;
            }
            match send_outbox(
                transport,
                store,
                &loaded.run,
                loaded.outbox,
                options.timer_chunk_seconds,
            )
            .await
            {
                Ok(()) => {
                    tracing::info!(run_id = %run.run_id, "re-drove pending commands");
                    report.redriven.push(run.run_id);
                }
                Err(e) => {
                    tracing::warn!(run_id = %run.run_id, error = %e, "re-drive failed; will retry next pass");
                    report.failed.push(run.run_id);
                }
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(report),
        }
    }
}

/// One pass over runs idle for `config.stall_seconds` (the reconciler Lambda's body).
pub async fn reconcile_stalled<S: CheckpointStore, T: EngineTransport>(
    store: &S,
    transport: &T,
    config: &crate::config::Config,
) -> Result<ReconcileReport, StoreError> {
    let options = ReconcileOptions {
        before_ms: crate::engine::now_ms().saturating_sub(config.stall_seconds * 1000),
        max_runs: 1000,
        timer_chunk_seconds: config.timer_chunk_seconds,
    };
    reconcile(store, transport, options).await
}
