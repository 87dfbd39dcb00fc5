//! [`ErrorCode`]: the `StepError.code`s cairn itself sets, in one place. Workers and workflows
//! may use any other code (`card_declined`...); these are the ones cairn's own code decides on.

use std::fmt;

/// An error code set by cairn. Its text form is what `StepError.code` carries on the wire and
/// in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The run was cancelled (the error of a cancelled run, and of a cancelled child).
    Cancelled,
    /// An attempt had no result within its start-to-close timeout.
    Timeout,
    /// A value could not be (de)serialized.
    Serialization,
    /// The workflow input does not fit the workflow's input type.
    InvalidInput,
    /// A child run ended without a result or error of its own.
    ChildFailed,
    /// No workflow of the name is registered in the engine.
    UnknownWorkflow,
    /// The task's input does not fit the step handler's input type.
    BadInput,
    /// The step handler's output could not be serialized.
    BadOutput,
    /// No handler for the step in the worker.
    UnknownStep,
    /// The step handler panicked.
    Panic,
    /// A payload is over the size a peer's queue takes (no claim checks there).
    PayloadTooLarge,
    /// What a workflow recorded (its output, a step's input, a value...) cannot be stored:
    /// nested past the store's depth limit, or over what one commit holds. The run fails.
    Unstorable,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 12] = [
        Self::Cancelled,
        Self::Timeout,
        Self::Serialization,
        Self::InvalidInput,
        Self::ChildFailed,
        Self::UnknownWorkflow,
        Self::BadInput,
        Self::BadOutput,
        Self::UnknownStep,
        Self::Panic,
        Self::PayloadTooLarge,
        Self::Unstorable,
    ];

    /// The text form (`cancelled`, `timeout`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::Timeout => "timeout",
            Self::Serialization => "serialization",
            Self::InvalidInput => "invalid_input",
            Self::ChildFailed => "child_failed",
            Self::UnknownWorkflow => "unknown_workflow",
            Self::BadInput => "bad_input",
            Self::BadOutput => "bad_output",
            Self::UnknownStep => "unknown_step",
            Self::Panic => "panic",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unstorable => "unstorable",
        }
    }

    /// The code of a text form, if cairn sets it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == text)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> Self {
        code.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_are_distinct_and_parse_back() {
        let texts: std::collections::BTreeSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("card_declined"), None);
    }
}
