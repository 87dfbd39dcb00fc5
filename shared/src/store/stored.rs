//! Stored items' bodies: JSON written only if it reads back (depth-checked), and read with
//! the depth the oldest items need.

use serde::Serialize;

use super::StoreError;
use crate::contract::StepError;
use crate::workflow::HistoryEvent;

/// Deepest nesting of arrays/objects a stored item may have. serde_json reads 128 levels by
/// default; writing well under that keeps every write readable ("nothing may commit that
/// cannot be read back").
pub const MAX_STORED_DEPTH: usize = 100;

/// Levels a history item adds around each of its events (`{"events": [event, ...]}`).
const ITEM_LEVELS: usize = 2;

/// Why `event` cannot be stored in a history item (nested past [`MAX_STORED_DEPTH`] with the
/// item around it), or `None` if it can. Only a workflow's own values can be that deep (the
/// decoder refuses bodies past 64 levels): the engine and `TestEnv` then fail the run with
/// [`unstorable_error`].
pub fn unstorable_event(event: &HistoryEvent) -> Option<String> {
    let depth = serde_json::to_value(event).map_or(usize::MAX, |v| {
        crate::contract::json_depth(&v) + ITEM_LEVELS
    });
    (depth > MAX_STORED_DEPTH).then(|| {
        format!(
            "a value nests {depth} levels deep; stored items are limited to {MAX_STORED_DEPTH} so they can be read back"
        )
    })
}

/// The error a run fails with when what it recorded cannot be stored (code `unstorable`).
pub fn unstorable_error(reason: &str) -> StepError {
    StepError::terminal(format!(
        "the run's activation cannot be stored ({reason}); the run fails instead of retrying"
    ))
    .with_code(crate::contract::ErrorCode::Unstorable)
}

/// Deepest nesting [`decode_stored`] reads at all: items written before the write check (up to
/// about 130 levels) stay readable, and nothing makes the reader recurse without bound.
const MAX_READ_DEPTH: usize = 256;

/// Serializes `value` as one stored item body, refusing (as [`StoreError::TooLarge`]) what
/// could not be read back.
pub fn encode_stored<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    let data = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })?;
    let depth = crate::contract::json_text_depth(&data);
    if depth > MAX_STORED_DEPTH {
        return Err(StoreError::TooLarge {
            run_id: key.to_owned(),
            reason: format!(
                "a value nests {depth} levels deep; stored items are limited to {MAX_STORED_DEPTH} so they can be read back"
            ),
        });
    }
    Ok(data)
}

/// Decodes a stored item body written by [`encode_stored`] (or before its depth check existed).
pub fn decode_stored<T: serde::de::DeserializeOwned>(
    key: &str,
    data: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let depth = crate::contract::json_text_depth(data);
    if depth <= MAX_STORED_DEPTH {
        return serde_json::from_slice(data).map_err(|e| corrupt(e.to_string()));
    }
    if depth > MAX_READ_DEPTH {
        return Err(corrupt(format!(
            "nests {depth} levels deep (readable: {MAX_READ_DEPTH})"
        )));
    }
    // Bounded above, so lifting serde_json's own limit cannot exhaust the stack.
    let mut de = serde_json::Deserializer::from_slice(data);
    de.disable_recursion_limit();
    let value = T::deserialize(&mut de).map_err(|e| corrupt(e.to_string()))?;
    de.end().map_err(|e| corrupt(e.to_string()))?;
    Ok(value)
}
