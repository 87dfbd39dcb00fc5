//! SQS queue names: one deterministic, collision-free mapping from `(prefix, group)` to a name.
//!
//! SQS allows only `[A-Za-z0-9_-]` in a queue name, at most 80 characters, and FIFO queues must
//! end in `.fifo`. Step groups look like `payments.charge-card@eu`, so cairn escapes them.
//!
//! # The rules
//!
//! - **Tasks queue**: `<prefix>-tasks-<token>`, plus `.fifo` for FIFO queues.
//! - **Results queue**: `<prefix>-results`, plus `.fifo` for FIFO queues.
//! - **Dead-letter queue** of any queue `<name>`: `<name>-dlq`; for a FIFO queue
//!   `<base>.fifo` it is `<base>-dlq.fifo`.
//! - **Prefix**: 1 to [`MAX_PREFIX_LEN`] characters of `[A-Za-z0-9_-]`; default
//!   [`DEFAULT_PREFIX`] (`durable`).
//! - **Token** ([`group_token`]) of a non-empty group:
//!   1. every ASCII letter, digit and `-` is kept as is;
//!   2. every other character is replaced, byte by byte of its UTF-8 encoding, by `_` and two
//!      upper-case hex digits: `.` → `_2E`, `@` → `_40`, `_` → `_5F`, `é` → `_C3_A9`;
//!   3. if the result ends in `-dlq`, that `-` is escaped as `_2D`, so no tasks queue can be
//!      mistaken for (or collide with) another queue's dead-letter queue.
//!
//!   A raw `_` never survives step 2, so `_` always starts a three-character escape and the
//!   token decodes back to exactly one group: distinct groups get distinct tokens.
//! - **Length**: every tasks and results name is kept to at most [`MAX_NAME_LEN`] (80) minus 4
//!   characters, `.fifo` included, so its dead-letter queue `<name>-dlq` always fits in 80.
//!   When `<prefix>-tasks-<token>` would be longer, the token is replaced by its longest
//!   prefix that fits (cut between escapes, never inside one), then `__`, then the first
//!   [`HASH_HEX_LEN`] hex digits of SHA-256 of the full group. A plain token never contains
//!   `__`, so a shortened name can never equal a plain one; two shortened names collide only if
//!   64 bits of SHA-256 do.
//! - [`dlq_name`] of a foreign name (one cairn did not produce) that would exceed 80 characters
//!   is shortened the same way: a readable prefix of the base, `__`, and 16 hex digits of
//!   SHA-256 of the full queue name.
//!
//! Injectivity holds for a fixed prefix. Two prefixes where one is `<other>-tasks-…` can alias
//! each other's queues, so give each deployment a plain, distinct prefix (`prod`, `staging`).
//!
//! | group | standard tasks queue |
//! |---|---|
//! | `payments.charge-card` | `durable-tasks-payments_2Echarge-card` |
//! | `payments.charge-card@eu` | `durable-tasks-payments_2Echarge-card_40eu` |
//! | `send_email` | `durable-tasks-send_5Femail` |
//!
//! Queues are the same for Node and Python workers only if they use the same names; a peer
//! that names queues differently (nestjs-durable sanitizes, it does not escape) joins by being
//! given the queue URLs explicitly.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The default queue-name prefix.
pub const DEFAULT_PREFIX: &str = "durable";

/// SQS's maximum queue-name length, `.fifo` included.
pub const MAX_NAME_LEN: usize = 80;

/// The longest accepted prefix: leaves room for `-tasks-`, a readable token head and the hash
/// even for FIFO queues.
pub const MAX_PREFIX_LEN: usize = 40;

/// Hex digits of SHA-256 appended to a shortened name (64 bits).
pub const HASH_HEX_LEN: usize = 16;

const FIFO_SUFFIX: &str = ".fifo";
const DLQ_SUFFIX: &str = "-dlq";
/// Marks a shortened name; never occurs in a plain token.
const HASH_MARKER: &str = "__";

/// Standard or FIFO queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueKind {
    /// A standard queue.
    Standard,
    /// A FIFO queue: its name ends in `.fifo`.
    Fifo,
}

impl QueueKind {
    fn suffix(self) -> &'static str {
        match self {
            Self::Standard => "",
            Self::Fifo => FIFO_SUFFIX,
        }
    }

    /// Longest base (the part before `.fifo`) of a cairn queue, leaving room for `-dlq`.
    fn max_base_len(self) -> usize {
        MAX_NAME_LEN - DLQ_SUFFIX.len() - self.suffix().len()
    }
}

/// A prefix or group that cannot be turned into a queue name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueNameError {
    /// The prefix is empty.
    #[error("queue-name prefix must not be empty")]
    EmptyPrefix,
    /// The prefix has a character SQS does not allow.
    #[error("queue-name prefix `{prefix}` has {found:?}; only [A-Za-z0-9_-] are allowed")]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// The first offending character.
        found: char,
    },
    /// The prefix leaves no room for the rest of the name.
    #[error("queue-name prefix is {len} characters; at most {max} are allowed")]
    PrefixTooLong {
        /// The prefix length.
        len: usize,
        /// [`MAX_PREFIX_LEN`].
        max: usize,
    },
    /// The group is empty.
    #[error("step group must not be empty")]
    EmptyGroup,
}

fn check_prefix(prefix: &str) -> Result<(), QueueNameError> {
    if prefix.is_empty() {
        return Err(QueueNameError::EmptyPrefix);
    }
    if let Some(found) = prefix.chars().find(|c| !is_name_char(*c)) {
        return Err(QueueNameError::InvalidPrefix {
            prefix: prefix.to_owned(),
            found,
        });
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(QueueNameError::PrefixTooLong {
            len: prefix.len(),
            max: MAX_PREFIX_LEN,
        });
    }
    Ok(())
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

fn is_kept(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

fn hash_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(HASH_HEX_LEN);
    for byte in digest.iter().take(HASH_HEX_LEN / 2) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The escaped token of a group (see the module docs): reversible, `[A-Za-z0-9_-]` only.
///
/// ```
/// assert_eq!(cairn::queue_name::group_token("payments.charge-card@eu"), "payments_2Echarge-card_40eu");
/// ```
pub fn group_token(group: &str) -> String {
    let mut token = String::with_capacity(group.len());
    let mut buf = [0u8; 4];
    for c in group.chars() {
        if is_kept(c) {
            token.push(c);
        } else {
            for byte in c.encode_utf8(&mut buf).bytes() {
                // Writing to a String cannot fail.
                let _ = write!(token, "_{byte:02X}");
            }
        }
    }
    if token.ends_with(DLQ_SUFFIX) {
        token.truncate(token.len() - DLQ_SUFFIX.len());
        token.push_str("_2Ddlq");
    }
    token
}

/// The longest head of an escaped token of at most `max` bytes that does not cut an escape.
fn token_head(token: &str, max: usize) -> &str {
    let bytes = token.as_bytes();
    let mut end = 0;
    while end < bytes.len() {
        // Tokens are ASCII; an escape is `_XX`.
        let step = if bytes[end] == b'_' { 3 } else { 1 };
        if end + step > max {
            break;
        }
        end += step;
    }
    token.get(..end.min(token.len())).unwrap_or_default()
}

/// The tasks queue of a group: `<prefix>-tasks-<token>` (`.fifo` for FIFO), shortened with a
/// hash when too long (see the module docs).
///
/// ```
/// use cairn::queue_name::{tasks_queue_name, QueueKind, DEFAULT_PREFIX};
/// let name = tasks_queue_name(DEFAULT_PREFIX, "payments.charge-card", QueueKind::Standard)?;
/// assert_eq!(name, "durable-tasks-payments_2Echarge-card");
/// # Ok::<(), cairn::queue_name::QueueNameError>(())
/// ```
///
/// # Errors
/// An invalid prefix, or an empty group.
pub fn tasks_queue_name(
    prefix: &str,
    group: &str,
    kind: QueueKind,
) -> Result<String, QueueNameError> {
    check_prefix(prefix)?;
    if group.is_empty() {
        return Err(QueueNameError::EmptyGroup);
    }
    let head = format!("{prefix}-tasks-");
    let budget = kind.max_base_len() - head.len();
    let token = group_token(group);
    let token = if token.len() <= budget {
        token
    } else {
        let keep = budget - HASH_MARKER.len() - HASH_HEX_LEN;
        format!(
            "{}{HASH_MARKER}{}",
            token_head(&token, keep),
            hash_hex(group)
        )
    };
    Ok(format!("{head}{token}{}", kind.suffix()))
}

/// The shared results queue: `<prefix>-results` (`.fifo` for FIFO).
///
/// # Errors
/// An invalid prefix.
pub fn results_queue_name(prefix: &str, kind: QueueKind) -> Result<String, QueueNameError> {
    check_prefix(prefix)?;
    Ok(format!("{prefix}-results{}", kind.suffix()))
}

/// The standard queue nestjs-durable peer workers answer on in a FIFO deployment:
/// `<prefix>-peer-results` (their results carry no `MessageGroupId`, which FIFO refuses).
pub fn peer_results_queue_name(prefix: &str) -> Result<String, QueueNameError> {
    check_prefix(prefix)?;
    Ok(format!("{prefix}-peer-results"))
}

/// The dead-letter queue of a queue: `<name>-dlq`, or `<base>-dlq.fifo` for `<base>.fifo`.
///
/// Names from [`tasks_queue_name`] and [`results_queue_name`] always leave room for the
/// suffix. A longer (foreign) name keeps a readable head of its base, then `__` and 16 hex
/// digits of SHA-256 of the whole name, so the result fits in 80 characters.
pub fn dlq_name(queue_name: &str) -> String {
    let (base, suffix) = match queue_name.strip_suffix(FIFO_SUFFIX) {
        Some(base) => (base, FIFO_SUFFIX),
        None => (queue_name, ""),
    };
    let max_base = MAX_NAME_LEN - DLQ_SUFFIX.len() - suffix.len();
    if base.len() <= max_base {
        return format!("{base}{DLQ_SUFFIX}{suffix}");
    }
    let keep = max_base - HASH_MARKER.len() - HASH_HEX_LEN;
    let mut cut = keep;
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = base.get(..cut).unwrap_or_default();
    format!(
        "{head}{HASH_MARKER}{}{DLQ_SUFFIX}{suffix}",
        hash_hex(queue_name)
    )
}

/// The group (queue token source) of a step: `name`, or `name@partition`.
pub fn group(name: &str, partition: Option<&str>) -> String {
    match partition {
        Some(partition) => format!("{name}@{partition}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Inverse of [`group_token`] for plain (unhashed) tokens: proves the escaping reversible.
    fn parse_token(token: &str) -> Option<String> {
        let mut bytes = Vec::new();
        let mut rest = token.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'_' {
                let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            } else {
                bytes.push(b);
                rest = tail;
            }
        }
        String::from_utf8(bytes).ok()
    }

    fn assert_valid(name: &str, kind: QueueKind) {
        assert!(name.len() <= MAX_NAME_LEN, "{name} is {} chars", name.len());
        let base = match kind {
            QueueKind::Fifo => name
                .strip_suffix(".fifo")
                .unwrap_or_else(|| panic!("{name} lacks .fifo")),
            QueueKind::Standard => name,
        };
        assert!(!base.is_empty());
        assert!(base.chars().all(is_name_char), "{name} has a bad char");
    }

    #[test]
    fn examples() {
        let t = |g: &str| tasks_queue_name(DEFAULT_PREFIX, g, QueueKind::Standard).unwrap();
        assert_eq!(
            t("payments.charge-card"),
            "durable-tasks-payments_2Echarge-card"
        );
        assert_eq!(
            t("payments.charge-card@eu"),
            "durable-tasks-payments_2Echarge-card_40eu"
        );
        assert_eq!(t("send_email"), "durable-tasks-send_5Femail");
        assert_eq!(t("Café"), "durable-tasks-Caf_C3_A9");
        assert_eq!(t("orders-dlq"), "durable-tasks-orders_2Ddlq");
        assert_eq!(
            tasks_queue_name("prod", "a.b", QueueKind::Fifo).unwrap(),
            "prod-tasks-a_2Eb.fifo"
        );
        assert_eq!(
            results_queue_name(DEFAULT_PREFIX, QueueKind::Standard).unwrap(),
            "durable-results"
        );
        assert_eq!(
            results_queue_name("prod", QueueKind::Fifo).unwrap(),
            "prod-results.fifo"
        );
        assert_eq!(dlq_name("durable-results"), "durable-results-dlq");
        assert_eq!(
            dlq_name("prod-tasks-a_2Eb.fifo"),
            "prod-tasks-a_2Eb-dlq.fifo"
        );
        assert_eq!(group("payments.charge-card", None), "payments.charge-card");
        assert_eq!(
            group("payments.charge-card", Some("eu")),
            "payments.charge-card@eu"
        );
    }

    #[test]
    fn long_groups_are_shortened_with_a_hash() {
        let g = format!("inventory.{}", "reserve-stock.".repeat(8));
        let name = tasks_queue_name(DEFAULT_PREFIX, &g, QueueKind::Fifo).unwrap();
        assert_valid(&name, QueueKind::Fifo);
        assert_eq!(name.len(), MAX_NAME_LEN - DLQ_SUFFIX.len());
        let expected_tail = format!("__{}.fifo", hash_hex(&g));
        assert!(
            name.starts_with("durable-tasks-inventory_2Ereserve-stock_2E"),
            "{name}"
        );
        assert!(name.ends_with(&expected_tail), "{name}");
        // The DLQ of a cairn name is always the plain suffix form.
        assert_eq!(
            dlq_name(&name),
            format!("{}-dlq.fifo", name.trim_end_matches(".fifo"))
        );
    }

    #[test]
    fn shortening_never_cuts_an_escape() {
        // Shift a run of escapes across the cut point.
        for pad in 0..6 {
            let g = format!("{}{}", "a".repeat(40 + pad), ".".repeat(40));
            let name = tasks_queue_name(DEFAULT_PREFIX, &g, QueueKind::Standard).unwrap();
            let token = name.trim_start_matches("durable-tasks-");
            let (head, _) = token.split_once("__").unwrap();
            assert!(
                parse_token(head).is_some(),
                "{name}: head {head} cuts an escape"
            );
        }
    }

    #[test]
    fn foreign_long_names_get_a_short_dlq() {
        let long = "x".repeat(80);
        let dlq = dlq_name(&long);
        assert_valid(&dlq, QueueKind::Standard);
        assert!(dlq.ends_with("-dlq"));
        let long_fifo = format!("{}.fifo", "y".repeat(75));
        let dlq = dlq_name(&long_fifo);
        assert_valid(&dlq, QueueKind::Fifo);
        assert!(dlq.ends_with("-dlq.fifo"));
        assert_ne!(
            dlq_name(&format!("{}a", "z".repeat(79))),
            dlq_name(&format!("{}b", "z".repeat(79)))
        );
    }

    #[test]
    fn bad_prefixes_and_groups_are_errors() {
        let k = QueueKind::Standard;
        assert_eq!(
            tasks_queue_name("", "g", k),
            Err(QueueNameError::EmptyPrefix)
        );
        assert_eq!(results_queue_name("", k), Err(QueueNameError::EmptyPrefix));
        assert_eq!(
            tasks_queue_name("my.app", "g", k),
            Err(QueueNameError::InvalidPrefix {
                prefix: "my.app".into(),
                found: '.'
            })
        );
        let long = "p".repeat(MAX_PREFIX_LEN + 1);
        assert_eq!(
            results_queue_name(&long, k),
            Err(QueueNameError::PrefixTooLong {
                len: MAX_PREFIX_LEN + 1,
                max: MAX_PREFIX_LEN
            })
        );
        assert_eq!(
            tasks_queue_name("durable", "", k),
            Err(QueueNameError::EmptyGroup)
        );
        // The longest prefix still leaves room for a readable head and the hash.
        let max = "p".repeat(MAX_PREFIX_LEN);
        let name = tasks_queue_name(&max, &"g".repeat(100), QueueKind::Fifo).unwrap();
        assert_valid(&name, QueueKind::Fifo);
        assert!(name.contains("-tasks-gggg"), "{name}");
    }

    fn kinds() -> impl Strategy<Value = QueueKind> {
        prop_oneof![Just(QueueKind::Standard), Just(QueueKind::Fifo)]
    }

    fn groups() -> impl Strategy<Value = String> {
        prop_oneof![".+", "[a-z0-9._@-]{1,120}", "[a-z._]{1,70}(-dlq)?",]
    }

    fn prefixes() -> impl Strategy<Value = String> {
        prop_oneof![Just(DEFAULT_PREFIX.to_owned()), "[A-Za-z0-9_-]{1,40}"]
    }

    proptest! {
        #[test]
        fn every_name_is_valid(prefix in prefixes(), g in groups(), kind in kinds()) {
            let name = tasks_queue_name(&prefix, &g, kind).unwrap();
            assert_valid(&name, kind);
            assert_valid(&dlq_name(&name), kind);
            prop_assert!(name.len() <= MAX_NAME_LEN - DLQ_SUFFIX.len());
            prop_assert!(!name.trim_end_matches(".fifo").ends_with("-dlq"));
            let results = results_queue_name(&prefix, kind).unwrap();
            assert_valid(&results, kind);
            assert_valid(&dlq_name(&results), kind);
        }

        #[test]
        fn tokens_are_reversible(g in groups()) {
            prop_assert_eq!(parse_token(&group_token(&g)), Some(g));
        }

        #[test]
        fn names_are_deterministic(prefix in prefixes(), g in groups(), kind in kinds()) {
            prop_assert_eq!(tasks_queue_name(&prefix, &g, kind), tasks_queue_name(&prefix, &g, kind));
        }

        #[test]
        fn distinct_groups_get_distinct_queues(a in groups(), b in groups(), kind in kinds()) {
            prop_assume!(a != b);
            let (na, nb) = (tasks_queue_name("durable", &a, kind).unwrap(), tasks_queue_name("durable", &b, kind).unwrap());
            prop_assert_ne!(&na, &nb);
            // No queue is another's dead-letter queue.
            prop_assert_ne!(dlq_name(&na), nb);
        }

        #[test]
        fn long_groups_sharing_a_prefix_stay_distinct(
            common in "[a-z.@]{60,120}",
            a in "[a-z0-9._-]{0,20}",
            b in "[a-z0-9._-]{0,20}",
            kind in kinds(),
        ) {
            prop_assume!(a != b);
            let ga = format!("{common}{a}");
            let gb = format!("{common}{b}");
            let na = tasks_queue_name(DEFAULT_PREFIX, &ga, kind).unwrap();
            let nb = tasks_queue_name(DEFAULT_PREFIX, &gb, kind).unwrap();
            prop_assert_ne!(na, nb);
        }
    }
}
