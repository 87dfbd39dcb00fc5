//! The body of a history item (`data`): its events and the commands issued with them, JSON,
//! deflated when that saves space; split in chunks when larger than one item holds.

use std::collections::BTreeMap;

use cairn::store::StoreError;
use cairn::workflow::{Command, HistoryEvent};

/// What a history item holds (`data`, JSON). Older releases stored a bare array of events.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct HistoryData {
    pub(super) events: Vec<HistoryEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) commands: Vec<Command>,
}

/// The first byte of a deflated history item's data; plain JSON (older items, small ones)
/// starts with `{` or `[`.
const DEFLATED: u8 = 0x01;
/// Data shorter than this is stored as it is (it fits one write unit anyway).
const DEFLATE_FROM_BYTES: usize = 512;
/// A deflated item never inflates past this (a damaged or hostile item is refused).
const MAX_INFLATED_BYTES: usize = 64 << 20;

/// History data as stored: deflated when that saves space, since DynamoDB bills a write per
/// started KiB of the item (a checkout's first activation, 1.3 KB of JSON, takes 2 units plain
/// and 1 deflated).
pub(super) fn pack(json: Vec<u8>) -> Vec<u8> {
    if json.len() < DEFLATE_FROM_BYTES {
        return json;
    }
    let mut packed = vec![DEFLATED];
    packed.extend(miniz_oxide::deflate::compress_to_vec(&json, 6));
    if packed.len() < json.len() {
        packed
    } else {
        json
    }
}

/// The JSON of stored history data (see [`pack`]).
fn unpack<'a>(key: &str, data: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, StoreError> {
    match data.split_first() {
        Some((&DEFLATED, deflated)) => {
            miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, MAX_INFLATED_BYTES)
                .map(std::borrow::Cow::Owned)
                .map_err(|e| StoreError::Corrupt {
                    key: key.to_owned(),
                    reason: format!("deflated history data: {e}"),
                })
        }
        _ => Ok(std::borrow::Cow::Borrowed(data)),
    }
}

pub(super) fn decode_history_data(key: &str, data: &[u8]) -> Result<HistoryData, StoreError> {
    let data = unpack(key, data)?;
    let data = data.as_ref();
    // Bounded-depth reading: items an older engine wrote deeper than today's write limit
    // still read (see `cairn::store::decode_stored`).
    if data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let events = cairn::store::decode_stored(key, data)?;
        return Ok(HistoryData {
            events,
            commands: Vec::new(),
        });
    }
    cairn::store::decode_stored(key, data)
}

/// Joins the chunks of each batch (checking parts `0..n` are all there).
/// Returns `(key, bytes, parts)` per batch.
pub(super) fn join_chunks(
    key: &str,
    parts: BTreeMap<u64, Vec<(usize, Vec<u8>)>>,
) -> Result<Vec<(u64, Vec<u8>, usize)>, StoreError> {
    parts
        .into_iter()
        .map(|(index, mut chunks)| {
            chunks.sort_by_key(|(part, _)| *part);
            if chunks.iter().enumerate().any(|(i, (part, _))| i != *part) {
                return Err(StoreError::Corrupt {
                    key: format!("{key}/{index}"),
                    reason: format!(
                        "chunks are not contiguous: {:?}",
                        chunks.iter().map(|c| c.0).collect::<Vec<_>>()
                    ),
                });
            }
            let count = chunks.len();
            let data: Vec<u8> = chunks.into_iter().flat_map(|(_, bytes)| bytes).collect();
            Ok((index, data, count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cairn::workflow::EventKind;

    #[test]
    fn history_data_is_deflated_when_that_saves_space_and_plain_json_still_reads() {
        let events = vec![
            HistoryEvent::new(
                1,
                EventKind::RunCompleted {
                    output: serde_json::json!({"order": "o-1".repeat(200)}),
                },
            );
            3
        ];
        let json = cairn::store::encode_stored(
            "k",
            &HistoryData {
                events: events.clone(),
                commands: Vec::new(),
            },
        )
        .unwrap();
        let packed = pack(json.clone());
        assert_eq!(packed[0], DEFLATED);
        assert!(
            packed.len() * 4 < json.len(),
            "{} vs {}",
            packed.len(),
            json.len()
        );
        assert_eq!(decode_history_data("k", &packed).unwrap().events, events);
        // Older and small items are plain JSON.
        assert_eq!(decode_history_data("k", &json).unwrap().events, events);
        let small = br#"{"events":[]}"#.to_vec();
        assert_eq!(pack(small.clone()), small);
        // Damaged deflated data is refused, not guessed at.
        assert!(matches!(
            decode_history_data("k", &[DEFLATED, 0xff, 0x00]),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
