//! [`TimerId`]: which durable timer of a run, typed. Its text form (`"3"`, `"3:retry:1"`,
//! `"3:timeout:1"`, `"3:signal-timeout"`) is what the history, the `StartTimer` command and the
//! `timerFired` message carry, unchanged since format 1, so recorded histories keep replaying.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A durable timer of an operation. Each names the operation (`seq`) it belongs to and why it
/// runs; the text form is unique within a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerId {
    /// `ctx.sleep` / `ctx.sleep_until` at `seq`: `"<seq>"`.
    Sleep(u64),
    /// The backoff after `attempt` of the step at `seq` failed: `"<seq>:retry:<attempt>"`.
    Retry {
        /// The step's operation number.
        seq: u64,
        /// The attempt that failed.
        attempt: u32,
    },
    /// The start-to-close timeout of `attempt` of the remote step at `seq`:
    /// `"<seq>:timeout:<attempt>"`.
    Timeout {
        /// The step's operation number.
        seq: u64,
        /// The attempt it bounds.
        attempt: u32,
    },
    /// The timeout of the signal wait at `seq`: `"<seq>:signal-timeout"`.
    SignalTimeout(u64),
}

impl TimerId {
    /// The operation the timer belongs to.
    pub fn seq(self) -> u64 {
        match self {
            Self::Sleep(seq)
            | Self::Retry { seq, .. }
            | Self::Timeout { seq, .. }
            | Self::SignalTimeout(seq) => seq,
        }
    }
}

impl fmt::Display for TimerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sleep(seq) => write!(f, "{seq}"),
            Self::Retry { seq, attempt } => write!(f, "{seq}:retry:{attempt}"),
            Self::Timeout { seq, attempt } => write!(f, "{seq}:timeout:{attempt}"),
            Self::SignalTimeout(seq) => write!(f, "{seq}:signal-timeout"),
        }
    }
}

/// The text is not one of the [`TimerId`] forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown timer id {0:?} (expected <seq>, <seq>:retry:<n>, <seq>:timeout:<n> or <seq>:signal-timeout)")]
pub struct ParseTimerIdError(pub String);

impl FromStr for TimerId {
    type Err = ParseTimerIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || ParseTimerIdError(text.to_owned());
        // Only canonical numbers ("3", not "03" or "+3"), so text -> id -> text round-trips and
        // one timer has one id.
        let number = |s: &str| -> Result<u64, ParseTimerIdError> {
            let canonical = !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'));
            if !canonical {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let attempt = |s: &str| -> Result<u32, ParseTimerIdError> {
            u32::try_from(number(s)?).map_err(|_| bad())
        };
        let mut parts = text.splitn(3, ':');
        let seq = number(parts.next().unwrap_or_default())?;
        match (parts.next(), parts.next()) {
            (None, _) => Ok(Self::Sleep(seq)),
            (Some("retry"), Some(n)) => Ok(Self::Retry {
                seq,
                attempt: attempt(n)?,
            }),
            (Some("timeout"), Some(n)) => Ok(Self::Timeout {
                seq,
                attempt: attempt(n)?,
            }),
            (Some("signal-timeout"), None) => Ok(Self::SignalTimeout(seq)),
            _ => Err(bad()),
        }
    }
}

impl Serialize for TimerId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimerId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        let ids = [
            (TimerId::Sleep(3), "3"),
            (TimerId::Retry { seq: 3, attempt: 1 }, "3:retry:1"),
            (
                TimerId::Timeout {
                    seq: 12,
                    attempt: 4,
                },
                "12:timeout:4",
            ),
            (TimerId::SignalTimeout(7), "7:signal-timeout"),
        ];
        for (id, text) in ids {
            assert_eq!(id.to_string(), text);
            assert_eq!(text.parse::<TimerId>().unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<TimerId>(&json).unwrap(), id);
        }
        assert_eq!(TimerId::Retry { seq: 9, attempt: 2 }.seq(), 9);
    }

    #[test]
    fn other_text_is_refused() {
        for bad in [
            "",
            "x",
            "03",
            "+3",
            "-1",
            "3:",
            "3:retry",
            "3:retry:",
            "3:retry:x",
            "3:sleep:1",
            "3:timeout:1:2",
            "3:signal-timeout:1",
            "3:retry:99999999999",
            " 3",
        ] {
            assert!(bad.parse::<TimerId>().is_err(), "{bad:?} parsed");
        }
    }
}
