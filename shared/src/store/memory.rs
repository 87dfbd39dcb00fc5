//! In-memory [`CheckpointStore`] for unit tests: same conditional semantics as DynamoDB.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::{
    CheckpointStore, Commit, DueItem, DuePage, HistoryBatch, LoadedRun, OutboxBatch, OutboxLease,
    RunFilter, RunPage, RunRecord, StoreError,
};
use crate::infra::{InfraError, InfraErrorKind};
use crate::workflow::HistoryEvent;

#[derive(Debug, Default)]
struct Entry {
    run: Option<RunRecord>,
    history: Vec<HistoryEvent>,
    batches: Vec<HistoryBatch>,
    leases: BTreeMap<u64, (usize, OutboxLease)>,
}

/// A checkpoint store in a `Mutex<HashMap>`: for unit tests only.
#[derive(Debug, Default)]
pub struct MemoryStore {
    runs: Mutex<HashMap<String, Entry>>,
    due: Mutex<Vec<DueItem>>,
    marks: Mutex<HashMap<String, u64>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs matching `keep`, oldest change first, one page (the cursor is an offset).
    fn page(
        &self,
        keep: impl Fn(&RunRecord, &Entry) -> bool,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        self.with(|runs| {
            let mut found: Vec<RunRecord> = runs
                .values()
                .filter_map(|e| e.run.clone().filter(|r| keep(r, e)))
                .collect();
            found.sort_by_key(|r| (r.updated_at_ms, r.run_id.clone()));
            offset_page(found, limit, cursor.as_deref())
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> Result<T, StoreError> {
        let mut runs = self.runs.lock().map_err(poisoned)?;
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

fn poisoned<T>(_: T) -> StoreError {
    InfraError::new("lock", InfraErrorKind::Other, "memory store poisoned").into()
}

impl CheckpointStore for MemoryStore {
    async fn load(&self, run_id: &str) -> Result<Option<LoadedRun>, StoreError> {
        self.with(|runs| {
            runs.get(run_id).and_then(|e| {
                let mut run = e.run.clone()?;
                let outbox: Vec<OutboxBatch> = e
                    .leases
                    .iter()
                    .map(|(key, (sent, lease))| OutboxBatch {
                        key: *key,
                        commands: e
                            .batches
                            .iter()
                            .find(|b| b.first == *key)
                            .map(|b| b.commands.clone())
                            .unwrap_or_default(),
                        parts: 0,
                        sent: *sent,
                        lease: Some(lease.clone()),
                    })
                    .collect();
                run.version = e.batches.len() as u64;
                run.history_len = e.history.len() as u64;
                run.outbox_pending = !outbox.is_empty();
                Some(LoadedRun {
                    run,
                    history: e.history.clone(),
                    batches: e.batches.clone(),
                    outbox,
                })
            })
        })
    }

    async fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let run_id = commit.run.run_id.to_string();
        let conflict = || StoreError::Conflict {
            run_id: run_id.clone(),
            expected: commit.expected_version,
        };
        self.with(|runs| {
            let entry = runs.entry(run_id.clone()).or_default();
            if commit.expected_version.is_none() && entry.run.is_some() {
                return Err(conflict());
            }
            if !commit.events.is_empty() && entry.history.len() as u64 != commit.first_index() {
                return Err(conflict());
            }
            if !commit.events.is_empty() {
                entry.batches.push(HistoryBatch {
                    first: commit.first_index(),
                    events: commit.events.len(),
                    commands: commit.outbox.clone(),
                    due_ms: commit.due_ms(),
                });
                entry.history.extend(commit.events.iter().cloned());
                if let Some(lease) = &commit.lease {
                    entry
                        .leases
                        .insert(commit.first_index(), (0, lease.clone()));
                }
            }
            if commit.writes_run() {
                entry.run = Some(commit.run.clone());
            }
            Ok(())
        })??;
        if let Some(due_ms) = commit.due_ms() {
            self.due.lock().map_err(poisoned)?.push(DueItem {
                run_id,
                index: commit.first_index(),
                due_ms,
            });
        }
        Ok(())
    }

    async fn clear_outbox(&self, run_id: &str, batches: &[OutboxBatch]) -> Result<(), StoreError> {
        self.with(|runs| {
            if let Some(entry) = runs.get_mut(run_id) {
                for batch in batches {
                    entry.leases.remove(&batch.key);
                }
            }
        })
    }

    async fn lease_outbox(
        &self,
        run_id: &str,
        key: u64,
        current: &OutboxLease,
        next: &OutboxLease,
        sent: usize,
    ) -> Result<(), StoreError> {
        self.with(|runs| {
            let lease = runs.get_mut(run_id).and_then(|e| e.leases.get_mut(&key));
            match lease {
                Some(stored) if &stored.1 == current => {
                    *stored = (sent, next.clone());
                    Ok(())
                }
                _ => Err(StoreError::Conflict {
                    run_id: run_id.to_owned(),
                    expected: None,
                }),
            }
        })?
    }

    async fn pending_outbox_runs(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        self.page(
            |r, e| e.leases.values().any(|(_, l)| l.until_ms < before_ms) && !r.run_id.is_empty(),
            limit,
            cursor,
        )
    }

    async fn due_items(
        &self,
        after_ms: u64,
        before_ms: u64,
        limit: u32,
    ) -> Result<DuePage, StoreError> {
        let mut items: Vec<DueItem> = self
            .due
            .lock()
            .map_err(poisoned)?
            .iter()
            .filter(|d| d.due_ms > after_ms && d.due_ms <= before_ms)
            .cloned()
            .collect();
        items.sort_by_key(|d| d.due_ms);
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        Ok(DuePage { items, more })
    }

    async fn mark(&self, name: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.marks.lock().map_err(poisoned)?.get(name).copied())
    }

    async fn set_mark(&self, name: &str, ms: u64) -> Result<(), StoreError> {
        self.marks
            .lock()
            .map_err(poisoned)?
            .insert(name.to_owned(), ms);
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
}
