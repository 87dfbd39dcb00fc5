//! The wire contract: JSON message bodies on the tasks and results queues.
//!
//! - [`RemoteTask`]: engine → `<prefix>-tasks-<group>` → worker.
//! - [`StepResult`]: worker → `<prefix>-results` → engine.
//! - [`ControlMessage`]: client/engine → `<prefix>-results` → engine (start, signal, timer, cancel).
//!
//! The JSON Schemas in `contract/*.schema.json` at the repository root describe every message;
//! the fixtures in `contract/fixtures/` are round-tripped against them in tests.

mod control;
mod decode;
mod error_code;
mod ids;
mod result;
mod strict;
mod task;

pub use control::{ControlMessage, ParentRef, WorkflowEvent};
pub use decode::{decode_results_message, decode_task, encode, DecodeError, ResultsMessage};
pub use error_code::ErrorCode;
pub use ids::{InvalidId, RunId, StepId, MAX_BASE_RUN_ID_LEN, MAX_RUN_ID_LEN};
pub use result::{StepError, StepEvent, StepResult, StepStatus};
pub use strict::{json_depth, json_text_depth, MAX_JSON_DEPTH};
pub use task::RemoteTask;

/// The step id of `seq` in `run_id`: `"<runId>:<seq>"`.
pub fn step_id(run_id: &str, seq: u64) -> String {
    format!("{run_id}:{seq}")
}
