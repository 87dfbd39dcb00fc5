//! The run status an activation leaves the run in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a run stands after an activation. Stored on the run record (`byStatus` index).
///
/// The serde, `Display` and `FromStr` forms are the same strings: `running`, `completed`,
/// `failed`, `cancelled`, `continuedAsNew`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunStatus {
    /// Waiting for results, timers or signals.
    Running,
    /// The workflow returned an output.
    Completed,
    /// The workflow returned an error.
    Failed,
    /// The workflow ended with the cancellation error after a cancel request.
    Cancelled,
    /// The workflow continued as a new run.
    ContinuedAsNew,
}

impl RunStatus {
    /// All statuses, in declaration order.
    pub const ALL: [RunStatus; 5] = [
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::ContinuedAsNew,
    ];

    /// The wire/storage form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::ContinuedAsNew => "continuedAsNew",
        }
    }

    /// Whether the run is over (no activation will change it again).
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Running)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the [`RunStatus`] forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown run status {0:?} (expected running, completed, failed, cancelled or continuedAsNew)"
)]
pub struct ParseRunStatusError(pub String);

impl FromStr for RunStatus {
    type Err = ParseRunStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseRunStatusError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn forms_agree() {
        for status in RunStatus::ALL {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(status.to_string().parse::<RunStatus>().unwrap(), status);
        }
        assert!("done".parse::<RunStatus>().is_err());
        assert!(!RunStatus::Running.is_terminal());
        assert!(RunStatus::Cancelled.is_terminal());
    }
}
