//! The checkpoint store: runs, their history and their outbox, behind a narrow trait.
//!
//! `cairn_lambda::dynamo::DynamoStore` is the production implementation (one table, see
//! `ARCHITECTURE.md`); [`MemoryStore`] is its in-memory twin for unit tests. Every write is conditional: a run's
//! `version` gives optimistic concurrency, and a lost race is [`StoreError::Conflict`].

mod blob;
mod memory;

use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{ParentRef, StepError};
use crate::workflow::{Command, HistoryEvent, RunStatus};

pub use blob::{BlobStore, MemoryBlobStore};
pub use memory::MemoryStore;

/// Largest chunk of history, outbox or blob data in one stored item (DynamoDB's item limit is
/// 400 KB; the rest is keys and attributes).
pub const CHUNK_BYTES: usize = 350 * 1024;

/// A run as stored: its identity, status and outcome. History and outbox live beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// The run id.
    pub run_id: crate::contract::RunId,
    /// The registered workflow name.
    pub workflow: String,
    /// Current status.
    pub status: RunStatus,
    /// The workflow input.
    pub input: Value,
    /// The output, once completed.
    pub output: Option<Value>,
    /// The error, once failed or cancelled.
    pub error: Option<StepError>,
    /// Optimistic-concurrency version: +1 on every committed activation.
    pub version: u64,
    /// Number of history events (the index of the next one).
    pub history_len: u64,
    /// When the run was created, epoch ms.
    pub created_at_ms: u64,
    /// When the run last changed, epoch ms.
    pub updated_at_ms: u64,
    /// The parent run, for child runs.
    pub parent: Option<ParentRef>,
    /// The last engine-side problem with this run (e.g. non-determinism), for operators.
    pub last_error: Option<String>,
    /// Commands were committed and are not yet confirmed sent (the run is then in the sparse
    /// `byOutbox` index, where the reconciler looks, whatever the run's status).
    #[serde(default)]
    pub outbox_pending: bool,
}

/// One activation's outbox: commands persisted with its events, deleted once sent.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxBatch {
    /// The batch key (the history index of the activation's first event).
    pub key: u64,
    /// The commands, in issue order.
    pub commands: Vec<Command>,
    /// How many stored items (chunks) hold the batch, so clearing deletes exactly those.
    pub parts: usize,
}

impl OutboxBatch {
    /// The batch as [`CheckpointStore::commit`] stores it (`parts` from its serialized size).
    pub fn new(key: u64, commands: Vec<Command>) -> Self {
        let size = serde_json::to_vec(&commands).map(|d| d.len()).unwrap_or(0);
        let parts = size.div_ceil(CHUNK_BYTES).max(1);
        Self {
            key,
            commands,
            parts,
        }
    }
}

/// A run with everything the engine needs to activate it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedRun {
    /// The run record.
    pub run: RunRecord,
    /// The whole history, in order.
    pub history: Vec<HistoryEvent>,
    /// Outbox batches not yet confirmed sent, oldest first.
    pub outbox: Vec<OutboxBatch>,
}

/// An activation's writes, applied atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The run record as it is after the activation (its `version` is the new version).
    pub run: RunRecord,
    /// The version the activation read; `None` creates the run.
    pub expected_version: Option<u64>,
    /// Events appended by the activation; the first has index `run.history_len - events.len()`.
    pub events: Vec<HistoryEvent>,
    /// Commands to send after the commit (the outbox batch).
    pub outbox: Vec<Command>,
}

impl Commit {
    /// History index of the first appended event (also the outbox batch key).
    pub fn first_index(&self) -> u64 {
        self.run
            .history_len
            .saturating_sub(self.events.len() as u64)
    }
}

/// Which runs to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs created (or, filtered by status, updated) at or after this time, epoch ms.
    pub since_ms: Option<u64>,
    /// Page size.
    pub limit: u32,
    /// Where the previous page ended.
    pub cursor: Option<String>,
}

/// A page of runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunPage {
    /// The runs, newest first.
    pub runs: Vec<RunRecord>,
    /// Pass back as [`RunFilter::cursor`] for the next page.
    pub next_cursor: Option<String>,
}

/// Store failures. Retryable ones are worth another activation attempt.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else committed first (or the run already exists): reload and re-run.
    #[error("conflict: run {run_id} was changed concurrently (expected version {expected:?})")]
    Conflict {
        /// The run.
        run_id: String,
        /// The version the writer expected (`None`: it expected no run).
        expected: Option<u64>,
    },
    /// The backend failed or throttled; retry later.
    #[error("store request {operation} failed: {message}")]
    Backend {
        /// The API call.
        operation: &'static str,
        /// What the SDK said.
        message: String,
    },
    /// A stored item cannot be decoded.
    #[error("stored data for {key} is corrupt: {reason}")]
    Corrupt {
        /// The item key.
        key: String,
        /// Why it does not decode.
        reason: String,
    },
    /// An activation writes more than one transaction can hold.
    #[error("activation of run {run_id} is too large to commit: {reason}")]
    TooLarge {
        /// The run.
        run_id: String,
        /// Which limit.
        reason: String,
    },
}

impl StoreError {
    /// Whether trying again (after reloading, for conflicts) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::Backend { .. })
    }
}

/// Where runs and their checkpoints live.
pub trait CheckpointStore: Send + Sync {
    /// The run with its history and pending outbox, or `None` if it does not exist.
    fn load(
        &self,
        run_id: &str,
    ) -> impl Future<Output = Result<Option<LoadedRun>, StoreError>> + Send;

    /// Applies an activation atomically; [`StoreError::Conflict`] if the version moved.
    fn commit(&self, commit: &Commit) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks outbox batches as sent (deletes them). Missing batches are fine.
    ///
    /// The run's `outbox_pending` marker is left alone on this hot path: the next commit
    /// rewrites it, and the reconciler settles it for runs that stay idle
    /// ([`settle_outbox_marker`](Self::settle_outbox_marker)).
    fn clear_outbox(
        &self,
        run_id: &str,
        batches: &[OutboxBatch],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes `run` out of the pending-outbox index if it is still at `run.version` (a newer
    /// commit decided for itself).
    fn settle_outbox_marker(
        &self,
        run: &RunRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Runs with a pending outbox that have not changed since `before_ms`, oldest first, a
    /// page at a time.
    fn pending_outbox_runs(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> impl Future<Output = Result<RunPage, StoreError>> + Send;

    /// Stamps the retention TTL on every item of a finished run (its history and outbox
    /// chunks; the run item carries it already), so the whole run expires together.
    fn retire(&self, run_id: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records an engine-side problem on the run for operators (no version change).
    fn note_problem(
        &self,
        run_id: &str,
        problem: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Lists runs, newest first.
    fn list_runs(
        &self,
        filter: &RunFilter,
    ) -> impl Future<Output = Result<RunPage, StoreError>> + Send;

    /// Runs still `running` that have not changed since `before_ms`, oldest first, a page at
    /// a time (pass the previous page's `next_cursor`).
    fn stalled_runs(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> impl Future<Output = Result<RunPage, StoreError>> + Send;
}
