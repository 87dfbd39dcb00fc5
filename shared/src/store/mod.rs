//! The checkpoint store: runs, their history and their outbox, behind a narrow trait.
//!
//! `cairn_lambda::dynamo::DynamoStore` is the production implementation (one table, see
//! `ARCHITECTURE.md`); [`MemoryStore`] is its in-memory twin for unit tests. Every write is conditional: a run's
//! `version` gives optimistic concurrency, and a lost race is [`StoreError::Conflict`].
//!
//! Beside the records and the trait: `due` (when the reconciler looks at an activation),
//! `error` (store failures, a retired run's leftovers), `stored` (bodies written only if they
//! read back), `memory` and `blob` (the in-memory twins and claim-check payloads).

mod blob;
mod due;
mod error;
mod memory;
mod stored;

use std::future::Future;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::{ParentRef, StepError};
use crate::workflow::{Command, HistoryEvent, RunStatus};

pub use blob::{BlobStore, MemoryBlobStore, NoBlobStore};
pub use due::{timer_due_ms, DueItem, DuePage, COMMANDS_DUE_AFTER_MS, DUE_COVER_MS};
pub use error::{Leftovers, StoreError};
pub use memory::MemoryStore;
pub use stored::{
    decode_stored, encode_stored, unstorable_error, unstorable_event, MAX_STORED_DEPTH,
};

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
    /// A wide outbox of the run is still being sent (set on load; not stored on the run).
    #[serde(default)]
    pub outbox_pending: bool,
}

/// Commands committed and not known to be sent: a wide outbox still being sent (leased, with
/// its progress), or a legacy outbox item of an older release.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxBatch {
    /// The batch key (the history index of the activation's first event).
    pub key: u64,
    /// All the batch's commands, in issue order.
    pub commands: Vec<Command>,
    /// How many stored legacy items (chunks) hold the batch (0 for a leased outbox).
    pub parts: usize,
    /// Commands `..sent` are confirmed sent.
    pub sent: usize,
    /// The lease on sending a wide outbox: until when (epoch ms) which sender holds it.
    pub lease: Option<OutboxLease>,
}

impl OutboxBatch {
    /// A legacy batch (`parts` from its serialized size).
    pub fn new(key: u64, commands: Vec<Command>) -> Self {
        let size = serde_json::to_vec(&commands).map(|d| d.len()).unwrap_or(0);
        let parts = size.div_ceil(CHUNK_BYTES).max(1);
        Self {
            key,
            commands,
            parts,
            sent: 0,
            lease: None,
        }
    }
}

/// Who may send a wide outbox, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxLease {
    /// The holder (a random token per sender).
    pub owner: String,
    /// Epoch ms; after it, anyone may take the lease over.
    pub until_ms: u64,
}

/// One activation's history item: where its events start and the commands it issued.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryBatch {
    /// History index of its first event.
    pub first: u64,
    /// How many events it holds.
    pub events: usize,
    /// The commands committed with them.
    pub commands: Vec<Command>,
    /// When the reconciler looks at it (its `byDue` entry, [`Commit::due_ms`]), if it has one.
    pub due_ms: Option<u64>,
}

/// A run with everything the engine needs to activate it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedRun {
    /// The run record.
    pub run: RunRecord,
    /// The whole history, in order.
    pub history: Vec<HistoryEvent>,
    /// The history's items (one per activation), in order.
    pub batches: Vec<HistoryBatch>,
    /// Outboxes not yet confirmed sent (leased wide outboxes, legacy items), oldest first.
    pub outbox: Vec<OutboxBatch>,
}

impl LoadedRun {
    /// The batch holding history index `index`.
    pub fn batch_of(&self, index: u64) -> Option<&HistoryBatch> {
        self.batches
            .iter()
            .rev()
            .find(|b| b.first <= index && index < b.first + b.events as u64)
    }

    /// `(timer id, fire at)` of every timer the history started, in order: the due times the
    /// history recorded, which no message overrules.
    pub fn started_timers(&self) -> impl Iterator<Item = (String, u64)> + '_ {
        self.history.iter().filter_map(|event| match &event.kind {
            crate::workflow::EventKind::TimerStarted {
                timer_id,
                fire_at_ms,
                ..
            } => Some((timer_id.to_string(), *fire_at_ms)),
            _ => None,
        })
    }
}

/// An activation's writes: its history item (the lock: no other activation can append at the
/// same index), and the run record when the run is created (a store may read the status from
/// the history instead of writing it: the DynamoDB store writes a run's head once).
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The run record as it is after the activation (its `version` is the new version).
    pub run: RunRecord,
    /// The version the activation read; `None` creates the run.
    pub expected_version: Option<u64>,
    /// Events appended by the activation; the first has index `run.history_len - events.len()`.
    /// None: only the run item is written (a repair after a crash between the two writes).
    pub events: Vec<HistoryEvent>,
    /// Commands to send after the commit, stored with the events.
    pub outbox: Vec<Command>,
    /// For a wide outbox: the lease its sender takes in the same write.
    pub lease: Option<OutboxLease>,
    /// The earliest due entry of the run's earlier activations still ahead (see
    /// [`LoadedRun::next_due_ms`]): an activation it covers needs no entry of its own.
    pub earlier_due_ms: Option<u64>,
}

impl Commit {
    /// History index of the first appended event (also the outbox batch key).
    pub fn first_index(&self) -> u64 {
        self.run
            .history_len
            .saturating_sub(self.events.len() as u64)
    }

    /// Whether the run item is written: on creation, when the run ends (a commit of an
    /// ended run is the one that ended it: activations of ended runs append nothing), or as a
    /// repair (no events).
    pub fn writes_run(&self) -> bool {
        self.expected_version.is_none() || self.events.is_empty() || self.run.status.is_terminal()
    }
}

/// Commands at or above this count are a wide outbox: sent under a lease, with progress, so
/// a sender that dies mid-way is resumed where it stopped and concurrent senders do not
/// send it twice.
pub const WIDE_OUTBOX: usize = 100;

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

/// Where runs and their checkpoints live.
pub trait CheckpointStore: Send + Sync {
    /// The run with its history and pending outbox, or `None` if it does not exist.
    fn load(
        &self,
        run_id: &str,
    ) -> impl Future<Output = Result<Option<LoadedRun>, StoreError>> + Send;

    /// The run as this process last saw it, without a request, when the store keeps a cache
    /// of loaded runs (a warm engine); `None` otherwise. It may lag behind the store: a
    /// commit built on a stale copy fails with [`StoreError::Conflict`] (the history index it
    /// appends at is taken), so it is safe to act on only through a commit.
    fn cached(&self, _run_id: &str) -> Option<LoadedRun> {
        None
    }

    /// Applies an activation atomically; [`StoreError::Conflict`] if the version moved.
    fn commit(&self, commit: &Commit) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Marks outbox batches as sent: deletes legacy outbox items and the lease item of a
    /// wide outbox. Missing batches are fine.
    fn clear_outbox(
        &self,
        run_id: &str,
        batches: &[OutboxBatch],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes (or renews) the lease on sending the wide outbox `key` of `run_id` and records
    /// that commands `..sent` are sent. `current` is the lease as the caller read it: if it
    /// changed meanwhile, someone else holds the outbox ([`StoreError::Conflict`]).
    fn lease_outbox(
        &self,
        run_id: &str,
        key: u64,
        current: &OutboxLease,
        next: &OutboxLease,
        sent: usize,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Runs with a wide outbox whose lease expired before `before_ms` (its sender died), a
    /// page at a time.
    fn pending_outbox_runs(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> impl Future<Output = Result<RunPage, StoreError>> + Send;

    /// Activations due in `(after_ms, before_ms]` (sparse, sharded `byDue` index), oldest
    /// first, at most `limit`.
    fn due_items(
        &self,
        after_ms: u64,
        before_ms: u64,
        limit: u32,
    ) -> impl Future<Output = Result<DuePage, StoreError>> + Send;

    /// The reconciler's high-water mark `name` (epoch ms), if set.
    fn mark(&self, name: &str) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Sets the reconciler's high-water mark `name`.
    fn set_mark(&self, name: &str, ms: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records an engine-side problem on the run for operators (no version change).
    fn note_problem(
        &self,
        run_id: &str,
        problem: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes what remains of a retired run (every item under its id; see [`Leftovers`]),
    /// refusing ([`StoreError::Conflict`]) while its run item exists. Returns the items deleted.
    fn purge_leftovers(
        &self,
        run_id: &str,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        let _ = run_id;
        async { Ok(0) }
    }

    /// Lists runs, newest first.
    fn list_runs(
        &self,
        filter: &RunFilter,
    ) -> impl Future<Output = Result<RunPage, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::workflow::EventKind;

    fn deep(levels: usize) -> Value {
        let text = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let mut de = serde_json::Deserializer::from_str(&text);
        de.disable_recursion_limit();
        Value::deserialize(&mut de).unwrap()
    }

    fn completed(output: Value) -> Vec<HistoryEvent> {
        vec![HistoryEvent::new(
            1,
            EventKind::StepCompleted {
                started_at_ms: None,
                seq: 2,
                attempt: 1,
                output,
                events: Vec::new(),
            },
        )]
    }

    #[test]
    fn what_cannot_be_read_back_is_not_written() {
        let ok = encode_stored("RUN#r", &completed(deep(64))).unwrap();
        assert_eq!(
            decode_stored::<Vec<HistoryEvent>>("k", &ok).unwrap(),
            completed(deep(64))
        );
        let err = encode_stored("RUN#r", &completed(deep(126))).unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn items_written_before_the_check_still_read() {
        // A 126-deep output stored by an older engine: 128 levels with its event and batch,
        // past serde_json's default limit.
        let old = serde_json::to_vec(&completed(deep(126))).unwrap();
        assert!(serde_json::from_slice::<Vec<HistoryEvent>>(&old).is_err());
        let read: Vec<HistoryEvent> = decode_stored("RUN#r/5", &old).unwrap();
        assert_eq!(read, completed(deep(126)));
        // Hostile depth is refused, not recursed into.
        let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = decode_stored::<Vec<HistoryEvent>>("k", bomb.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nests 100000 levels"), "{err}");
    }
}
