//! Run and step ids, checked once where they enter: decoding a message.
//!
//! A run id is a *base* chosen by a caller (printable, no whitespace, no `~`, at most 200
//! bytes) followed by the suffixes cairn derives: `~c<seq>` for a child started at `seq`,
//! `~<n>` for the next run of a continue-as-new chain. `~` is reserved for those suffixes, so
//! a derived id never collides with a caller's. A step id is `<runId>:<seq>`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Longest base (caller-chosen part) of a run id: it is part of every key and message.
pub const MAX_BASE_RUN_ID_LEN: usize = 200;
/// Longest run id with its derived suffixes (a deep chain of children and continuations).
pub const MAX_RUN_ID_LEN: usize = 1024;

/// Why a string is not a valid run or step id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {id:?}: {reason}")]
pub struct InvalidId {
    /// `run id` or `step id`.
    pub what: &'static str,
    /// The refused id.
    pub id: String,
    /// Why.
    pub reason: &'static str,
}

/// A run id: valid by construction (see the module docs for the rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// Checks an id that may carry derived suffixes (what the engine reads from messages).
    pub fn parse(id: impl Into<String>) -> Result<Self, InvalidId> {
        let id = id.into();
        match run_id_problem(&id) {
            None => Ok(Self(id)),
            Some(reason) => Err(InvalidId {
                what: "run id",
                id,
                reason,
            }),
        }
    }

    /// Checks an id a caller chooses: a base alone, without the reserved `~`.
    pub fn caller(id: impl Into<String>) -> Result<Self, InvalidId> {
        let id = id.into();
        let reason = if id.contains('~') {
            Some("`~` is reserved for ids cairn derives (child runs, continue-as-new)")
        } else {
            base_problem(&id)
        };
        match reason {
            None => Ok(Self(id)),
            Some(reason) => Err(InvalidId {
                what: "run id",
                id,
                reason,
            }),
        }
    }

    /// The id of the child started at `seq` of this run: `<run>~c<seq>`.
    pub fn child(&self, seq: u64) -> Self {
        Self(format!("{}~c{seq}", self.0))
    }

    /// The id of the next run of a continue-as-new chain: `<base>~<n+1>`, or `<run>~1`.
    pub fn next_in_chain(&self) -> Self {
        let numbered = self
            .0
            .rsplit_once('~')
            .and_then(|(base, n)| Some((base, n.parse::<u64>().ok()?)));
        match numbered {
            Some((base, n)) => Self(format!("{base}~{}", n.saturating_add(1))),
            None => Self(format!("{}~1", self.0)),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Why `id` is not a caller's base, if it is not.
fn base_problem(id: &str) -> Option<&'static str> {
    if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_BASE_RUN_ID_LEN {
        Some("it is longer than 200 bytes")
    } else if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("it contains whitespace or control characters")
    } else {
        None
    }
}

/// Why `id` is not a run id (a base, then derived `~c<seq>` / `~<n>` suffixes), if it is not.
fn run_id_problem(id: &str) -> Option<&'static str> {
    if id.len() > MAX_RUN_ID_LEN {
        return Some("it is longer than 1024 bytes");
    }
    let mut parts = id.split('~');
    let base = parts.next().unwrap_or_default();
    if let Some(problem) = base_problem(base) {
        return Some(problem);
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    for suffix in parts {
        if !(digits(suffix) || suffix.strip_prefix('c').is_some_and(digits)) {
            return Some("`~` is reserved for ids cairn derives: `~c<seq>` or `~<n>`");
        }
    }
    None
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for RunId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RunId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for RunId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RunId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RunId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> Self {
        id.0
    }
}

impl TryFrom<String> for RunId {
    type Error = InvalidId;

    fn try_from(id: String) -> Result<Self, InvalidId> {
        Self::parse(id)
    }
}

impl TryFrom<&str> for RunId {
    type Error = InvalidId;

    fn try_from(id: &str) -> Result<Self, InvalidId> {
        Self::parse(id)
    }
}

impl std::str::FromStr for RunId {
    type Err = InvalidId;

    fn from_str(id: &str) -> Result<Self, InvalidId> {
        Self::parse(id)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        Self::parse(id).map_err(serde::de::Error::custom)
    }
}

/// A step id, `<runId>:<seq>`: the idempotency key of a step.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct StepId(String);

impl StepId {
    /// The step id of `seq` in `run`.
    pub fn new(run: &RunId, seq: u64) -> Self {
        Self(format!("{run}:{seq}"))
    }

    /// Checks `<runId>:<seq>`: a valid run id, then a decimal `seq`.
    pub fn parse(id: impl Into<String>) -> Result<Self, InvalidId> {
        let id = id.into();
        let reason = match id.rsplit_once(':') {
            None => Some("it is not of the form `<runId>:<seq>`"),
            Some((run, seq)) => {
                if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
                    Some("it is not of the form `<runId>:<seq>`: the seq is not a number")
                } else if seq.parse::<u64>().is_err() {
                    Some("its seq is out of range")
                } else {
                    run_id_problem(run)
                }
            }
        };
        match reason {
            None => Ok(Self(id)),
            Some(reason) => Err(InvalidId {
                what: "step id",
                id,
                reason,
            }),
        }
    }

    /// Whether this is the step id of `seq` in `run`.
    pub fn is_of(&self, run: &str, seq: u64) -> bool {
        self.0 == format!("{run}:{seq}")
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for StepId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for StepId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for StepId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<StepId> for String {
    fn from(id: StepId) -> Self {
        id.0
    }
}

impl<'de> Deserialize<'de> for StepId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        Self::parse(id).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_flow_and_forged_suffixes_do_not() {
        for good in [
            "order-42",
            "a~c1",
            "a~c1~c3",
            "a~2",
            "a~c1~4~c2",
            "run:with:colons",
        ] {
            assert!(RunId::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "~c1",
            "a~",
            "a~x",
            "a~c",
            "a~c1x",
            "new\nline",
            "has space",
            "tab\t",
            "a\u{0}",
        ] {
            assert!(RunId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RunId::parse("x".repeat(201)).is_err());
        assert!(RunId::parse(format!("{}~c1", "x".repeat(200))).is_ok());
        assert!(RunId::caller("a~c1").is_err());
        assert!(RunId::caller("order-42").is_ok());
    }

    #[test]
    fn derivations_stay_valid() {
        let run = RunId::parse("order-1").unwrap();
        assert_eq!(run.child(3), "order-1~c3");
        assert_eq!(run.next_in_chain(), "order-1~1");
        assert_eq!(run.next_in_chain().next_in_chain(), "order-1~2");
        assert_eq!(run.child(3).next_in_chain(), "order-1~c3~1");
        assert!(RunId::parse(run.child(3).next_in_chain().child(9).as_str()).is_ok());
    }

    #[test]
    fn step_ids_are_a_run_id_and_a_seq() {
        let step = StepId::parse("r:with:colons:12").unwrap();
        assert!(step.is_of("r:with:colons", 12));
        assert!(!step.is_of("r:with:colons", 1));
        assert!(!StepId::parse("r:012").unwrap().is_of("r", 12));
        assert!(StepId::parse("r:0").unwrap().is_of("r", 0));
        for bad in [
            "r1",
            "r1:",
            ":3",
            "r1:x3",
            "a b:1",
            "r:99999999999999999999999",
        ] {
            assert!(StepId::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(StepId::new(&RunId::parse("r").unwrap(), 2), "r:2");
    }
}
