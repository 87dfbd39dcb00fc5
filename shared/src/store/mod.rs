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
use crate::infra::InfraError;
use crate::workflow::{Command, HistoryEvent, RunStatus};

pub use blob::{BlobStore, MemoryBlobStore, NoBlobStore};
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
    /// The earliest `byDue` entry of the run's activations due at or after `now_ms` (what
    /// [`Commit::earlier_due_ms`] carries).
    pub fn next_due_ms(&self, now_ms: u64) -> Option<u64> {
        self.batches
            .iter()
            .filter_map(|b| b.due_ms)
            .filter(|due| *due >= now_ms)
            .min()
    }

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
    /// When the reconciler should look at this activation (its `byDue` entry), if it needs
    /// one: its earliest timer; else, if it issued commands, [`COMMANDS_DUE_AFTER_MS`] after
    /// its commit, unless an earlier activation's entry comes due within [`DUE_COVER_MS`]
    /// (the reconciler then looks at every unanswered command of the activations after that
    /// one, this one's too). A two-step checkout thus writes one entry (its charge's timeout
    /// timer, or its first activation's), and a long run of quick steps one per 5 minutes,
    /// instead of one per activation.
    pub fn due_ms(&self) -> Option<u64> {
        let now = self.run.updated_at_ms;
        if let Some(timer) = timer_due_ms(&self.outbox) {
            return Some(timer);
        }
        if self.outbox.is_empty() {
            return None;
        }
        match self.earlier_due_ms {
            Some(due) if due >= now && due <= now.saturating_add(DUE_COVER_MS) => None,
            _ => Some(now.saturating_add(COMMANDS_DUE_AFTER_MS)),
        }
    }

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

/// How long after an activation an earlier activation's `byDue` entry may come due and
/// still cover it (see [`Commit::due_ms`]): the longest a lost command waits for the
/// reconciler, beyond its stall time.
pub const DUE_COVER_MS: u64 = 15 * 60 * 1000;

/// How long after its commit the reconciler looks at an activation that issued commands and
/// no timer (on top of its stall time): the entry covers the activations of the next minutes.
pub const COMMANDS_DUE_AFTER_MS: u64 = 5 * 60 * 1000;

/// The earliest timer `commands` start: the due time of their activation's `byDue` entry.
pub fn timer_due_ms(commands: &[Command]) -> Option<u64> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::StartTimer { fire_at_ms, .. } => Some(*fire_at_ms),
            _ => None,
        })
        .min()
}

/// An activation the reconciler should look at: it issued commands or started timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueItem {
    /// The run.
    pub run_id: String,
    /// The history index of the activation's first event.
    pub index: u64,
    /// When it is due (its earliest timer, else its commit time), epoch ms.
    pub due_ms: u64,
}

/// A page of due activations, oldest due first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DuePage {
    /// The entries.
    pub items: Vec<DueItem>,
    /// Whether more entries may be due in the window.
    pub more: bool,
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
    /// The backend failed (throttled, unreachable, not found, ...; see the kind); retry later.
    #[error("store request {0}")]
    Backend(#[from] InfraError),
    /// A stored item cannot be decoded.
    #[error("stored data for {key} is corrupt: {reason}")]
    Corrupt {
        /// The item key.
        key: String,
        /// Why it does not decode.
        reason: String,
    },
    /// The run item is gone (TTL retired the run, or it was deleted) but items of its history
    /// remain: see [`Leftovers`].
    #[error("{0}")]
    Leftovers(Box<Leftovers>),
    /// An activation writes more than one transaction can hold.
    #[error("activation of run {run_id} is too large to commit: {reason}")]
    TooLarge {
        /// The run.
        run_id: String,
        /// Which limit.
        reason: String,
    },
}

/// What remains of a run whose run item is gone while items of its history remain.
///
/// Each item expires `max_run_days` + retention after it was written, so a run's head (its
/// run item, written first) expires before its last history items, and every finished run
/// becomes this once its head expired: a **retired** run, whose id may be used again (the new
/// run's items replace or hide what is left). A run item of an older release lost while the
/// history shows the run still going (deleted by hand) is restored from the history instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Leftovers {
    /// The run id.
    pub run_id: String,
    /// Items left under the run id.
    pub items: usize,
    /// The workflow, if the history's first item remains.
    pub workflow: Option<String>,
    /// How the run ended, if its history says.
    pub ended: Option<RunStatus>,
    /// The history is whole from its first item.
    pub complete: bool,
    /// When the newest remaining event was recorded (epoch ms).
    pub last_event_ms: Option<u64>,
    /// The remaining events, in order.
    pub history: Vec<crate::workflow::HistoryEvent>,
}

impl Leftovers {
    /// The run ended (or its first items expired already, which only happens long after it
    /// ended): its id may be used again.
    pub fn retired(&self) -> bool {
        self.ended.is_some() || !self.complete
    }
}

impl std::fmt::Display for Leftovers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {}: its run item is gone but {} item(s) of its history remain",
            self.run_id, self.items
        )?;
        if let Some(workflow) = &self.workflow {
            write!(f, " (workflow {workflow}")?;
        } else {
            write!(f, " (workflow unknown")?;
        }
        match self.ended {
            Some(status) => write!(f, ", ended {status}")?,
            None if !self.complete => write!(f, ", first items already expired")?,
            None => write!(f, ", not ended")?,
        }
        if let Some(ms) = self.last_event_ms {
            write!(f, ", last event at {ms} ms")?;
        }
        if self.retired() {
            write!(
                f,
                "): a retired run's leftovers. A new start with this id deletes them and                  starts afresh; `cairn runs purge {}` deletes them now",
                self.run_id
            )
        } else {
            write!(
                f,
                "): the run item was lost while the run was going; the engine restores it                  from the history at the run's next message"
            )
        }
    }
}

/// Deepest nesting of arrays/objects a stored item may have. serde_json reads 128 levels by
/// default; writing well under that keeps every write readable ("nothing may commit that
/// cannot be read back").
pub const MAX_STORED_DEPTH: usize = 100;

/// Levels a history item adds around each of its events (`{"events": [event, ...]}`).
const ITEM_LEVELS: usize = 2;

/// Why `event` cannot be stored in a history item (nested past [`MAX_STORED_DEPTH`] with the
/// item around it), or `None` if it can. Only a workflow's own values can be that deep (the
/// decoder refuses bodies past 64 levels): the engine and `TestEnv` then fail the run with
/// [`unstorable_error`].
pub fn unstorable_event(event: &HistoryEvent) -> Option<String> {
    let depth = serde_json::to_value(event).map_or(usize::MAX, |v| {
        crate::contract::json_depth(&v) + ITEM_LEVELS
    });
    (depth > MAX_STORED_DEPTH).then(|| {
        format!(
            "a value nests {depth} levels deep; stored items are limited to {MAX_STORED_DEPTH} so they can be read back"
        )
    })
}

/// The error a run fails with when what it recorded cannot be stored (code `unstorable`).
pub fn unstorable_error(reason: &str) -> StepError {
    StepError::terminal(format!(
        "the run's activation cannot be stored ({reason}); the run fails instead of retrying"
    ))
    .with_code(crate::contract::ErrorCode::Unstorable)
}

/// Deepest nesting [`decode_stored`] reads at all: items written before the write check (up to
/// about 130 levels) stay readable, and nothing makes the reader recurse without bound.
const MAX_READ_DEPTH: usize = 256;

/// Serializes `value` as one stored item body, refusing (as [`StoreError::TooLarge`]) what
/// could not be read back.
pub fn encode_stored<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    let data = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })?;
    let depth = crate::contract::json_text_depth(&data);
    if depth > MAX_STORED_DEPTH {
        return Err(StoreError::TooLarge {
            run_id: key.to_owned(),
            reason: format!(
                "a value nests {depth} levels deep; stored items are limited to {MAX_STORED_DEPTH} so they can be read back"
            ),
        });
    }
    Ok(data)
}

/// Decodes a stored item body written by [`encode_stored`] (or before its depth check existed).
pub fn decode_stored<T: serde::de::DeserializeOwned>(
    key: &str,
    data: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let depth = crate::contract::json_text_depth(data);
    if depth <= MAX_STORED_DEPTH {
        return serde_json::from_slice(data).map_err(|e| corrupt(e.to_string()));
    }
    if depth > MAX_READ_DEPTH {
        return Err(corrupt(format!(
            "nests {depth} levels deep (readable: {MAX_READ_DEPTH})"
        )));
    }
    // Bounded above, so lifting serde_json's own limit cannot exhaust the stack.
    let mut de = serde_json::Deserializer::from_slice(data);
    de.disable_recursion_limit();
    let value = T::deserialize(&mut de).map_err(|e| corrupt(e.to_string()))?;
    de.end().map_err(|e| corrupt(e.to_string()))?;
    Ok(value)
}

impl StoreError {
    /// Whether trying again (after reloading, for conflicts) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::Backend(_))
    }

    /// Whether this is an infrastructure failure that heals by itself (throttling, an
    /// unreachable or overloaded service): worth backing off for, not counting as poison.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Backend(e) if e.is_transient())
    }
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

    #[test]
    fn an_activation_needs_a_due_entry_unless_an_earlier_timer_entry_covers_it() {
        let now = 1_000_000;
        let task = Command::CancelChild {
            run_id: "child".into(),
        };
        let timer = |at| Command::StartTimer {
            seq: 2,
            timer_id: crate::workflow::TimerId::Sleep(2),
            fire_at_ms: at,
        };
        let commit = |outbox: Vec<Command>, earlier| Commit {
            run: RunRecord {
                run_id: "r".parse().unwrap(),
                workflow: "w".into(),
                status: crate::workflow::RunStatus::Running,
                input: Value::Null,
                output: None,
                error: None,
                version: 2,
                history_len: 2,
                created_at_ms: 1,
                updated_at_ms: now,
                parent: None,
                last_error: None,
                outbox_pending: false,
            },
            expected_version: Some(1),
            events: completed(Value::Null),
            outbox,
            lease: None,
            earlier_due_ms: earlier,
        };
        // Nothing issued: no entry.
        assert_eq!(commit(vec![], None).due_ms(), None);
        // Timers: due at the earliest, whatever came before.
        let timers = vec![timer(now + 9_000), task.clone(), timer(now + 5_000)];
        assert_eq!(commit(timers, Some(now + 1)).due_ms(), Some(now + 5_000));
        // Commands only: a while after the commit, unless an earlier entry comes due within
        // the cover.
        let later = Some(now + COMMANDS_DUE_AFTER_MS);
        assert_eq!(commit(vec![task.clone()], None).due_ms(), later);
        for covered in [now, now + DUE_COVER_MS] {
            assert_eq!(commit(vec![task.clone()], Some(covered)).due_ms(), None);
        }
        for not_covered in [now - 1, now + DUE_COVER_MS + 1] {
            assert_eq!(
                commit(vec![task.clone()], Some(not_covered)).due_ms(),
                later
            );
        }
    }
}
