//! Errors: [`EngineError`] (the activation cannot proceed) and [`WorkflowError`] (what a
//! workflow's awaits return and what a workflow returns).

use serde_json::Value;

use super::{CodeAction, Operation};
use crate::contract::{ErrorCode, StepError};

/// The code of the error a cancelled run fails with ([`ErrorCode::Cancelled`]).
pub const CANCELLED_CODE: &str = ErrorCode::Cancelled.as_str();
/// The code of the error a timed-out attempt fails with ([`ErrorCode::Timeout`]).
pub const TIMEOUT_CODE: &str = ErrorCode::Timeout.as_str();

/// Why an activation failed as a whole. Nothing of it may be persisted: the caller leaves the
/// message for redelivery (or the DLQ) and the run as it was.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The workflow code issued an operation that differs from the one recorded at `seq`
    /// (another kind or name), or no longer issues a recorded one. Deploy the old code or
    /// guard the change with `ctx.patched(..)`.
    #[error(
        "non-determinism at seq {seq}:\n  - history: {recorded}\n  + code:    {actual}\n\
         deploy the code the run started with, or guard the change with ctx.patched(..)"
    )]
    NonDeterminism {
        /// The operation number.
        seq: u64,
        /// What the history recorded at `seq`.
        recorded: Operation,
        /// What the code did at `seq`.
        actual: CodeAction,
    },
    /// The history made more attempts of a step than the retry policy in the code allows (a
    /// format 1 history, which did not record the policy, replayed after the policy changed).
    #[error(
        "retry policy changed under a running step at seq {seq} ({}): the history made \
         {recorded_attempts} attempts, the code's policy gives up after attempt {gave_up_after}",
        step.as_ref().map(ToString::to_string).unwrap_or_default()
    )]
    RetryDiverged {
        /// The step's operation number.
        seq: u64,
        /// The step.
        step: Option<Operation>,
        /// The attempt after which the code's policy gives up.
        gave_up_after: u32,
        /// The attempts the history made.
        recorded_attempts: u32,
    },
    /// No workflow of that name is registered in this engine.
    #[error("unknown workflow {0:?}: not registered in this engine")]
    UnknownWorkflow(String),
    /// The run has no history and the activation carries no start.
    #[error("the run has not been started (no RunStarted in history and no Start incoming)")]
    NotStarted,
    /// The request or the history is malformed.
    #[error("invalid activation input: {0}")]
    InvalidInput(String),
    /// The workflow code panicked.
    #[error("the workflow panicked: {0}")]
    Panicked(String),
}

/// What a workflow's durable calls return, and what a workflow returns as its error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkflowError {
    /// A step (remote, inline or child run) failed for good: a terminal error, or its retries
    /// are exhausted. Catch it to compensate.
    #[error("step failed after {attempts} attempt(s): {error}")]
    StepFailed {
        /// The last attempt's error.
        error: StepError,
        /// How many attempts were made.
        attempts: u32,
    },
    /// The run was cancelled: delivered once, at the workflow's next await. Returning it ends
    /// the run as `cancelled`; later awaits (compensation) work normally.
    #[error("the run was cancelled{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Cancelled {
        /// Why, if the canceller said.
        reason: Option<String>,
    },
    /// A value could not be (de)serialized to or from JSON.
    #[error("serialization: {0}")]
    Serde(String),
    /// The workflow input does not match the workflow's input type.
    #[error("invalid workflow input: {0}")]
    InvalidInput(String),
    /// The workflow asks to continue as a new run with this input (see
    /// [`WorkflowContext::continue_as_new`](super::WorkflowContext::continue_as_new)).
    #[error("continue as new")]
    ContinueAsNew(Value),
    /// The workflow's own failure.
    #[error("{0}")]
    Failed(StepError),
}

impl WorkflowError {
    /// A workflow failure with a message (terminal).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(StepError::terminal(message))
    }

    /// Whether this is the cancellation error.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled { .. })
    }

    /// The error recorded in `RunFailed` (`RunCancelled`) and reported to a parent.
    pub fn to_step_error(&self) -> StepError {
        match self {
            Self::StepFailed { error, .. } | Self::Failed(error) => error.clone(),
            Self::Cancelled { .. } => {
                StepError::terminal(self.to_string()).with_code(ErrorCode::Cancelled)
            }
            Self::Serde(_) => {
                StepError::terminal(self.to_string()).with_code(ErrorCode::Serialization)
            }
            Self::InvalidInput(_) => {
                StepError::terminal(self.to_string()).with_code(ErrorCode::InvalidInput)
            }
            Self::ContinueAsNew(_) => StepError::terminal(self.to_string()),
        }
    }
}

impl From<StepError> for WorkflowError {
    fn from(error: StepError) -> Self {
        Self::Failed(error)
    }
}

impl From<serde_json::Error> for WorkflowError {
    fn from(error: serde_json::Error) -> Self {
        Self::Serde(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancelled_maps_to_code() {
        let e = WorkflowError::Cancelled {
            reason: Some("user".into()),
        };
        assert_eq!(e.to_string(), "the run was cancelled: user");
        assert_eq!(e.to_step_error().code.as_deref(), Some(CANCELLED_CODE));
        let nd = EngineError::NonDeterminism {
            seq: 3,
            recorded: Operation::Remote("a".into()),
            actual: CodeAction::Issued(Operation::Inline("a".into())),
        };
        assert_eq!(
            nd.to_string(),
            "non-determinism at seq 3:\n  - history: remote step \"a\"\n  + code:    inline step \"a\"\n\
             deploy the code the run started with, or guard the change with ctx.patched(..)"
        );
    }
}
