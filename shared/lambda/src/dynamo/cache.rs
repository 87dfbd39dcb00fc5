//! The warm-Lambda history cache: a run's loaded history by run id, brought up to date by
//! reading only the history items after it, so an activation's reads do not grow with the
//! history.
//!
//! The cache is only a read optimisation, never an authority: a commit still takes the
//! history-index lock, so a stale entry costs a conflict and a full reload, never a wrong
//! append. Runs with an unsent wide outbox are not cached (their lease state changes beside
//! the history).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cairn::store::{Commit, HistoryBatch, LoadedRun};

/// At most this many events are kept over all cached runs (a few tens of MB at most).
const MAX_EVENTS: usize = 200_000;
/// ... and at most this many runs.
const MAX_RUNS: usize = 2_000;

#[derive(Debug, Default)]
struct Entries {
    runs: HashMap<String, (u64, LoadedRun)>,
    tick: u64,
    events: usize,
}

impl Entries {
    fn remove(&mut self, run_id: &str) {
        if let Some((_, old)) = self.runs.remove(run_id) {
            self.events -= old.history.len();
        }
    }

    fn insert(&mut self, loaded: LoadedRun) {
        let run_id = loaded.run.run_id.to_string();
        self.remove(&run_id);
        if loaded.history.len() > MAX_EVENTS / 2 || !loaded.outbox.is_empty() {
            return;
        }
        self.tick += 1;
        self.events += loaded.history.len();
        self.runs.insert(run_id, (self.tick, loaded));
        while self.events > MAX_EVENTS || self.runs.len() > MAX_RUNS {
            let Some(oldest) = self
                .runs
                .iter()
                .min_by_key(|(_, (tick, _))| *tick)
                .map(|(id, _)| id.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
    }
}

/// Loaded histories by run id, least recently used evicted first.
#[derive(Debug, Clone, Default)]
pub(super) struct HistoryCache {
    inner: Arc<Mutex<Entries>>,
}

impl HistoryCache {
    /// A copy of the cached run, if any.
    pub(super) fn get(&self, run_id: &str) -> Option<LoadedRun> {
        let mut entries = self.inner.lock().ok()?;
        entries.tick += 1;
        let tick = entries.tick;
        let (used, loaded) = entries.runs.get_mut(run_id)?;
        *used = tick;
        Some(loaded.clone())
    }

    /// Remembers a freshly loaded run.
    pub(super) fn put(&self, loaded: &LoadedRun) {
        if let Ok(mut entries) = self.inner.lock() {
            entries.insert(loaded.clone());
        }
    }

    /// Drops a run (after a conflict or an error: the next load reads it whole).
    pub(super) fn forget(&self, run_id: &str) {
        if let Ok(mut entries) = self.inner.lock() {
            entries.remove(run_id);
        }
    }

    /// Applies a successful commit to the cached run, so the next activation reads nothing
    /// it wrote itself.
    pub(super) fn committed(&self, commit: &Commit) {
        let Ok(mut entries) = self.inner.lock() else {
            return;
        };
        let run_id = commit.run.run_id.as_str();
        let cached = entries.runs.get(run_id).map(|(_, l)| l.clone());
        let base = match (cached, commit.expected_version) {
            (Some(loaded), Some(_)) if loaded.run.history_len == commit.first_index() => loaded,
            (None, None) => LoadedRun {
                run: commit.run.clone(),
                history: Vec::new(),
                batches: Vec::new(),
                outbox: Vec::new(),
            },
            _ => {
                entries.remove(run_id);
                return;
            }
        };
        if commit.lease.is_some() {
            entries.remove(run_id);
            return;
        }
        let mut next = base;
        if !commit.events.is_empty() {
            next.batches.push(HistoryBatch {
                first: commit.first_index(),
                events: commit.events.len(),
                commands: commit.outbox.clone(),
                due_ms: commit.due_ms(),
            });
            next.history.extend(commit.events.iter().cloned());
        }
        let mut run = commit.run.clone();
        run.version = next.batches.len() as u64;
        run.history_len = next.history.len() as u64;
        run.outbox_pending = false;
        next.run = run;
        entries.insert(next);
    }
}
