//! When the reconciler looks at an activation: its `byDue` entry ([`Commit::due_ms`]), and
//! the entries of the run's earlier activations that may cover it ([`LoadedRun::next_due_ms`]).

use super::{Commit, LoadedRun};
use crate::workflow::Command;

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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::RunRecord;
    use serde_json::Value;

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
            events: Vec::new(),
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
