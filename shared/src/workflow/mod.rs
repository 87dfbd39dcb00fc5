//! The workflow API and the deterministic replay engine.
//!
//! (Being built: see issue "Durable workflow core".) The fixed surface other modules use:
//! [`HistoryEvent`], [`EventKind`], [`Command`], [`RunOutcome`], and — from the engine —
//! `Workflows` (registry), `Incoming`, `activate`, `Activation`, `RunStatus`, `EngineError`.

mod command;
mod history;

pub use command::{Command, RunOutcome};
pub use history::{EventKind, HistoryEvent};
