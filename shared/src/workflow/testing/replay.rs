//! Replaying a recorded history against today's code ([`replay`]).

use crate::workflow::{
    activate, ActivationRequest, Command, EngineError, EventKind, HistoryEvent, RunStatus,
    Workflows,
};

/// Why a history does not replay (see [`replay`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// The activation failed: typically [`EngineError::NonDeterminism`].
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The code replays without error but decides differently at the end (another output,
    /// another error) or asks for more.
    #[error("replay diverged: the history ends with {recorded}, the code now produces {replayed}")]
    Diverged {
        /// The recorded ending, as JSON.
        recorded: String,
        /// What the replay appended and commanded, as JSON.
        replayed: String,
    },
}

/// Replays a recorded history (a finished run's, saved with [`TestEnv::save_history`](super::TestEnv::save_history))
/// against `workflows` and checks the code makes the same decisions: the same operations in
/// the same order, and the same ending. Run it on histories saved from the previous version
/// of a workflow before deploying a new one; guard intended changes with
/// [`patched`](crate::workflow::WorkflowContext::patched).
pub async fn replay(
    workflows: &Workflows,
    run_id: &str,
    history: &[HistoryEvent],
) -> Result<RunStatus, ReplayError> {
    // A finished run is never re-run by the engine; replay it from just before its ending
    // and check the ending comes out the same.
    let ends = history.last().is_some_and(|e| e.kind.ends_run());
    let (body, ending) = match history.split_last() {
        Some((last, body)) if ends => (body, Some(&last.kind)),
        _ => (history, None),
    };
    let req = ActivationRequest {
        run_id,
        history: body,
        incoming: Vec::new(),
        now_ms: history.last().map_or(0, |e| e.at_ms),
    };
    let activation = activate(workflows, req).await?;
    let replayed: Vec<&EventKind> = activation.appended.iter().map(|e| &e.kind).collect();
    let commands_ok = activation
        .commands
        .iter()
        .all(|c| matches!(c, Command::ContinueAsNew { .. }));
    if replayed != ending.into_iter().collect::<Vec<_>>() || !commands_ok {
        return Err(ReplayError::Diverged {
            recorded: serde_json::to_string(&ending).unwrap_or_default(),
            replayed: serde_json::to_string(&(&replayed, &activation.commands)).unwrap_or_default(),
        });
    }
    Ok(activation.status)
}
