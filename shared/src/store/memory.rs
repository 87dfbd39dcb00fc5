//! In-memory [`CheckpointStore`] for unit tests: same conditional semantics as DynamoDB.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{
    CheckpointStore, Commit, LoadedRun, OutboxBatch, RunFilter, RunPage, RunRecord, StoreError,
};
use crate::infra::{InfraError, InfraErrorKind};
use crate::workflow::{Command, HistoryEvent, RunStatus};

#[derive(Debug, Default)]
struct Entry {
    run: Option<RunRecord>,
    history: Vec<HistoryEvent>,
    outbox: BTreeMap<u64, Vec<Command>>,
}

/// A checkpoint store in a `Mutex<HashMap>`: for unit tests only.
#[derive(Debug, Default)]
pub struct MemoryStore {
    runs: Mutex<HashMap<String, Entry>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs matching `keep`, oldest change first, one page (the cursor is an offset).
    fn page(
        &self,
        keep: impl Fn(&RunRecord) -> bool,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        self.with(|runs| {
            let mut found: Vec<RunRecord> = runs
                .values()
                .filter_map(|e| e.run.clone())
                .filter(|r| keep(r))
                .collect();
            found.sort_by_key(|r| (r.updated_at_ms, r.run_id.clone()));
            offset_page(found, limit, cursor.as_deref())
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> Result<T, StoreError> {
        let mut runs = self
            .runs
            .lock()
            .map_err(|_| InfraError::new("lock", InfraErrorKind::Other, "memory store poisoned"))?;
        Ok(f(&mut runs))
    }
}

/// One page of already ordered runs; the cursor is the offset of the next page.
fn offset_page(found: Vec<RunRecord>, limit: u32, cursor: Option<&str>) -> RunPage {
    let skip: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit = limit.max(1) as usize;
    let next_cursor = (found.len() > skip + limit).then(|| (skip + limit).to_string());
    RunPage {
        runs: found.into_iter().skip(skip).take(limit).collect(),
        next_cursor,
    }
}

impl CheckpointStore for MemoryStore {
    async fn load(&self, run_id: &str) -> Result<Option<LoadedRun>, StoreError> {
        self.with(|runs| {
            runs.get(run_id).and_then(|e| {
                let run = e.run.clone()?;
                let outbox = e
                    .outbox
                    .iter()
                    .map(|(k, c)| OutboxBatch::new(*k, c.clone()))
                    .collect();
                Some(LoadedRun {
                    run,
                    history: e.history.clone(),
                    outbox,
                })
            })
        })
    }

    async fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        self.with(|runs| {
            let entry = runs.entry(commit.run.run_id.to_string()).or_default();
            let current = entry.run.as_ref().map(|r| r.version);
            if current != commit.expected_version {
                return Err(StoreError::Conflict {
                    run_id: commit.run.run_id.to_string(),
                    expected: commit.expected_version,
                });
            }
            if entry.history.len() as u64 != commit.first_index() {
                return Err(StoreError::Conflict {
                    run_id: commit.run.run_id.to_string(),
                    expected: commit.expected_version,
                });
            }
            entry.history.extend(commit.events.iter().cloned());
            if !commit.outbox.is_empty() {
                entry
                    .outbox
                    .insert(commit.first_index(), commit.outbox.clone());
            }
            entry.run = Some(commit.run.clone());
            Ok(())
        })?
    }

    async fn clear_outbox(&self, run_id: &str, batches: &[OutboxBatch]) -> Result<(), StoreError> {
        self.with(|runs| {
            if let Some(entry) = runs.get_mut(run_id) {
                for batch in batches {
                    entry.outbox.remove(&batch.key);
                }
            }
        })
    }

    async fn settle_outbox_marker(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.with(|runs| {
            let stored = runs
                .get_mut(run.run_id.as_str())
                .and_then(|e| e.run.as_mut());
            if let Some(stored) = stored.filter(|r| r.version == run.version) {
                stored.outbox_pending = false;
            }
        })
    }

    async fn pending_outbox_runs(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        self.page(
            |r| r.outbox_pending && r.updated_at_ms < before_ms,
            limit,
            cursor,
        )
    }

    async fn retire(&self, _run_id: &str) -> Result<(), StoreError> {
        // Nothing expires in memory.
        Ok(())
    }

    async fn note_problem(&self, run_id: &str, problem: &str) -> Result<(), StoreError> {
        self.with(|runs| {
            if let Some(run) = runs.get_mut(run_id).and_then(|e| e.run.as_mut()) {
                run.last_error = Some(problem.to_owned());
            }
        })
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage, StoreError> {
        self.with(|runs| {
            let mut found: Vec<RunRecord> = runs
                .values()
                .filter_map(|e| e.run.clone())
                .filter(|r| filter.status.is_none_or(|s| r.status == s))
                .filter(|r| filter.workflow.as_ref().is_none_or(|w| &r.workflow == w))
                .filter(|r| filter.since_ms.is_none_or(|t| r.created_at_ms >= t))
                .collect();
            found.sort_by(|a, b| {
                b.created_at_ms
                    .cmp(&a.created_at_ms)
                    .then_with(|| a.run_id.cmp(&b.run_id))
            });
            offset_page(found, filter.limit, filter.cursor.as_deref())
        })
    }

    async fn stalled_runs(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        self.page(
            |r| r.status == RunStatus::Running && r.updated_at_ms < before_ms,
            limit,
            cursor,
        )
    }
}
