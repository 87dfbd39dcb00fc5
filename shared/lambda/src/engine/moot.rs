//! Timers known to be moot before anything is loaded: a step's start-to-close timeout
//! (`<seq>:timeout:<attempt>`, see ARCHITECTURE's timer ids) whose attempt already has its
//! result, and any timer of a run that ended. Replay would drop them too (or record a
//! `TimerFired` nobody waits for), after loading the run; a warm engine drops them for free.
//!
//! Only what this engine instance saw is known, so a cold instance loads as before.
//!
//! Backstops are no longer sent as messages (the reconciler fires them, `engine/outbox.rs`);
//! what arrives is a backstop the reconciler fired after the attempt was answered, or the
//! message of an older release.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use cairn::store::{Commit, RunRecord};
use cairn::workflow::{EventKind, HistoryEvent};

/// At most this many runs are remembered (oldest dropped first).
const MAX_RUNS: usize = 10_000;

#[derive(Debug, Default)]
struct Known {
    used: u64,
    /// History events already looked at.
    seen: usize,
    ended: bool,
    /// `(seq, attempt)` pairs with a result.
    resolved: HashSet<(u64, u32)>,
}

impl Known {
    fn absorb(&mut self, events: &[HistoryEvent]) {
        for event in events {
            match &event.kind {
                EventKind::StepCompleted { seq, attempt, .. }
                | EventKind::StepFailed { seq, attempt, .. } => {
                    self.resolved.insert((*seq, *attempt));
                }
                EventKind::RunCompleted { .. }
                | EventKind::RunFailed { .. }
                | EventKind::RunCancelled { .. }
                | EventKind::ContinuedAsNew { .. } => self.ended = true,
                _ => {}
            }
        }
        self.seen += events.len();
    }
}

#[derive(Debug, Default)]
pub(super) struct MootTimers {
    runs: Mutex<(u64, HashMap<String, Known>)>,
}

fn timeout_of(timer_id: &str) -> Option<(u64, u32)> {
    let mut parts = timer_id.split(':');
    let seq = parts.next()?.parse().ok()?;
    (parts.next()? == "timeout").then_some(())?;
    let attempt = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((seq, attempt))
}

impl MootTimers {
    fn with(&self, run_id: &str, f: impl FnOnce(&mut Known)) {
        let Ok(mut guard) = self.runs.lock() else {
            return;
        };
        let (tick, runs) = &mut *guard;
        *tick += 1;
        let used = *tick;
        if runs.len() >= MAX_RUNS && !runs.contains_key(run_id) {
            if let Some(oldest) = runs
                .iter()
                .min_by_key(|(_, k)| k.used)
                .map(|(id, _)| id.clone())
            {
                runs.remove(&oldest);
            }
        }
        let known = runs.entry(run_id.to_owned()).or_default();
        known.used = used;
        f(known);
    }

    /// Learns from a loaded run (only the events not seen yet).
    pub(super) fn learn(&self, run: &RunRecord, history: &[HistoryEvent]) {
        self.with(&run.run_id, |known| {
            if known.seen > history.len() {
                *known = Known::default();
            }
            known.absorb(&history[known.seen..]);
            known.ended |= run.status.is_terminal();
        });
    }

    /// Learns from a commit (its events follow what was loaded).
    pub(super) fn committed(&self, commit: &Commit) {
        self.with(&commit.run.run_id, |known| {
            if known.seen as u64 == commit.first_index() {
                known.absorb(&commit.events);
            }
            known.ended |= commit.run.status.is_terminal();
        });
    }

    /// Whether `timer_id` of `run_id` is known to change nothing.
    pub(super) fn is_moot(&self, run_id: &str, timer_id: &str) -> bool {
        let Ok(guard) = self.runs.lock() else {
            return false;
        };
        let Some(known) = guard.1.get(run_id) else {
            return false;
        };
        known.ended || timeout_of(timer_id).is_some_and(|op| known.resolved.contains(&op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_timeouts_of_answered_attempts_and_timers_of_ended_runs_are_moot() {
        let moot = MootTimers::default();
        let run = RunRecord {
            run_id: "r".parse().unwrap_or_else(|e| panic!("{e:?}")),
            workflow: "w".into(),
            status: cairn::workflow::RunStatus::Running,
            input: json!(null),
            output: None,
            error: None,
            version: 1,
            history_len: 1,
            created_at_ms: 0,
            updated_at_ms: 0,
            parent: None,
            last_error: None,
            outbox_pending: false,
        };
        let done: HistoryEvent = serde_json::from_value(
            json!({"type": "stepCompleted", "seq": 3, "attempt": 1, "output": 1, "atMs": 0}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        moot.learn(&run, &[done]);
        assert!(moot.is_moot("r", "3:timeout:1"));
        assert!(
            !moot.is_moot("r", "3:timeout:2"),
            "a later attempt is still open"
        );
        assert!(
            !moot.is_moot("r", "3:retry:1"),
            "retry timers start the next attempt"
        );
        assert!(
            !moot.is_moot("other", "3:timeout:1"),
            "unknown runs are loaded"
        );
        let mut ended = run.clone();
        ended.status = cairn::workflow::RunStatus::Completed;
        moot.learn(&ended, &[]);
        assert!(moot.is_moot("r", "7"));
    }
}
