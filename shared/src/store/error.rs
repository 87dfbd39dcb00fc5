//! Store failures ([`StoreError`]) and what a retired run left ([`Leftovers`]).

use crate::infra::InfraError;
use crate::workflow::RunStatus;

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
                "): the run item was lost while the run was going; the engine restores it from the history at the run's next message"
            )
        }
    }
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
