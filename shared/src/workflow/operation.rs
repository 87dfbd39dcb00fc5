//! [`Operation`]: the kind of a durable call, with the name replay checks it by; and what the
//! code did instead ([`CodeAction`]) when it differs from the history.

use std::fmt;

use super::ValueKind;

/// A durable call as the history records it and the code issues it: its kind and the name it
/// is checked by on replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `ctx.remote(&STEP, ..)`, by step name.
    Remote(String),
    /// `ctx.step(name, ..)`, by step name.
    Inline(String),
    /// `ctx.sleep(..)` / `ctx.sleep_until(..)`.
    Timer,
    /// `ctx.wait_for_signal(name)`, by signal name.
    Signal(String),
    /// `ctx.now()`, `ctx.random()`, `ctx.uuid()`.
    Value(ValueKind),
    /// `ctx.child(workflow, ..)`, by workflow name.
    Child(String),
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Remote(name) => write!(f, "remote step {name:?}"),
            Self::Inline(name) => write!(f, "inline step {name:?}"),
            Self::Timer => f.write_str("timer (sleep)"),
            Self::Signal(name) => write!(f, "wait for signal {name:?}"),
            Self::Value(kind) => write!(f, "recorded value \"{kind}\""),
            Self::Child(name) => write!(f, "child workflow {name:?}"),
        }
    }
}

/// What the workflow code did at a `seq` where the history recorded an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeAction {
    /// It issued another operation.
    Issued(Operation),
    /// It returned before issuing any.
    Returned,
    /// It is blocked (on earlier operations) before issuing any.
    Blocked,
}

impl fmt::Display for CodeAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Issued(op) => op.fmt(f),
            Self::Returned => f.write_str("nothing: the workflow returned before issuing it"),
            Self::Blocked => f.write_str("nothing: the workflow is blocked before issuing it"),
        }
    }
}
