//! The table's item layout: keys, attribute names and the run-record codec.
//!
//! | item | pk | sk |
//! |---|---|---|
//! | run | `RUN#<runId>` | `RUN` |
//! | history chunk | `RUN#<runId>` | `EVT#<10-digit first index>#<3-digit part>` |
//! | outbox chunk | `RUN#<runId>` | `OUT#<10-digit batch key>#<3-digit part>` |
//! | claim-check blob chunk | `BLOB#<id>` | `CHUNK#<4-digit part>` |
//!
//! History and outbox are stored one item per activation (not per event) to keep writes per
//! step low; a batch larger than [`CHUNK_BYTES`] is split over several items so no item nears
//! DynamoDB's 400 KB limit. GSI `byStatus` (`gsi1pk = STATUS#<status>`, `gsi1sk =
//! <updatedAt>#<runId>`) lists runs by status and finds stalled ones; GSI `byWorkflow`
//! (`gsi2pk = WF#<workflow>`, `gsi2sk = <createdAt>#<runId>`) lists runs of a workflow.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use cairn::store::{RunRecord, StoreError};

pub(crate) use cairn::store::CHUNK_BYTES;
/// Run inputs/outputs larger than this stay only in the history, not on the run item.
pub(crate) const INLINE_PAYLOAD_BYTES: usize = 32 * 1024;

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn run_pk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}
pub(crate) const RUN_SK: &str = "RUN";
pub(crate) fn events_sk(first_index: u64, part: usize) -> String {
    format!("EVT#{first_index:010}#{part:03}")
}
pub(crate) fn outbox_sk(key: u64, part: usize) -> String {
    format!("OUT#{key:010}#{part:03}")
}
/// The one partition of the sparse `byOutbox` index.
pub(crate) const OUTBOX_PK: &str = "OUTBOX";

pub(crate) fn status_pk(status: &str) -> String {
    format!("STATUS#{status}")
}
pub(crate) fn time_sk(ms: u64, run_id: &str) -> String {
    format!("{ms:013}#{run_id}")
}

/// Splits `data` into item-sized chunks (at least one, possibly empty).
pub(crate) fn chunks(data: &[u8]) -> Vec<&[u8]> {
    if data.is_empty() {
        return vec![data];
    }
    data.chunks(CHUNK_BYTES).collect()
}

/// Parses `<PREFIX>#<index>#<part>` sort keys.
pub(crate) fn parse_chunk_sk(sk: &str) -> Option<(&str, u64, usize)> {
    let mut parts = sk.split('#');
    let kind = parts.next()?;
    let index = parts.next()?.parse().ok()?;
    let part = parts.next()?.parse().ok()?;
    Some((kind, index, part))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn json_attr(value: &Value) -> Option<AttributeValue> {
    let text = value.to_string();
    (text.len() <= INLINE_PAYLOAD_BYTES).then(|| s(text))
}

/// The run item, with GSI keys and (for finished runs) the TTL attribute.
pub(crate) fn run_to_item(run: &RunRecord, retention_days: u32) -> Item {
    let status = run.status.to_string();
    let mut item = Item::from([
        ("pk".into(), s(run_pk(&run.run_id))),
        ("sk".into(), s(RUN_SK)),
        ("runId".into(), s(run.run_id.as_str())),
        ("workflow".into(), s(&run.workflow)),
        ("status".into(), s(&status)),
        ("version".into(), n(run.version)),
        ("historyLen".into(), n(run.history_len)),
        ("createdAt".into(), n(run.created_at_ms)),
        ("updatedAt".into(), n(run.updated_at_ms)),
        ("gsi1pk".into(), s(status_pk(&status))),
        ("gsi1sk".into(), s(time_sk(run.updated_at_ms, &run.run_id))),
        ("gsi2pk".into(), s(format!("WF#{}", run.workflow))),
        ("gsi2sk".into(), s(time_sk(run.created_at_ms, &run.run_id))),
    ]);
    if let Some(input) = json_attr(&run.input) {
        item.insert("input".into(), input);
    }
    if let Some(output) = run.output.as_ref().and_then(json_attr) {
        item.insert("output".into(), output);
    }
    if let Some(error) = &run.error {
        // Bounded: a huge error stays whole in the history (`RunFailed`, `RunCancelled`), restored on load.
        let mut error = error.clone();
        error.message = truncate(&error.message, INLINE_PAYLOAD_BYTES / 2);
        error.stack = error
            .stack
            .as_deref()
            .map(|s| truncate(s, INLINE_PAYLOAD_BYTES / 4));
        item.insert("error".into(), s(serde_json::json!(error).to_string()));
    }
    if let Some(parent) = &run.parent {
        item.insert("parent".into(), s(serde_json::json!(parent).to_string()));
    }
    if let Some(problem) = &run.last_error {
        item.insert(
            "lastError".into(),
            s(truncate(problem, INLINE_PAYLOAD_BYTES / 2)),
        );
    }
    if run.status.is_terminal() {
        item.insert(
            "expiresAt".into(),
            n(expires_at(run.updated_at_ms, retention_days)),
        );
    }
    if run.outbox_pending {
        item.insert("gsi3pk".into(), s(OUTBOX_PK));
        item.insert("gsi3sk".into(), s(time_sk(run.updated_at_ms, &run.run_id)));
    }
    item
}

/// The TTL (epoch seconds) of a run that finished at `finished_ms`.
pub(crate) fn expires_at(finished_ms: u64, retention_days: u32) -> u64 {
    finished_ms / 1000 + u64::from(retention_days) * 86_400
}

/// `text` cut to at most `max` bytes (on a char boundary), marked when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes, truncated)", &text[..end], text.len())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Decodes a run item. Payloads too large to inline come back as `Null` and are restored
/// from the history by the loader.
pub(crate) fn run_from_item(item: &Item) -> Result<RunRecord, StoreError> {
    let key = get_s(item, "pk").unwrap_or("?").to_owned();
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.clone(),
        reason,
    };
    let req_s = |name: &str| get_s(item, name).ok_or_else(|| corrupt(format!("missing {name}")));
    let req_n = |name: &str| -> Result<u64, StoreError> {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt(format!("missing or invalid number {name}")))
    };
    let json = |name: &str| -> Result<Option<Value>, StoreError> {
        get_s(item, name)
            .map(|t| serde_json::from_str(t).map_err(|e| corrupt(format!("{name}: {e}"))))
            .transpose()
    };
    Ok(RunRecord {
        run_id: cairn::contract::RunId::parse(req_s("runId")?)
            .map_err(|e| corrupt(e.to_string()))?,
        workflow: req_s("workflow")?.to_owned(),
        status: req_s("status")?
            .parse()
            .map_err(|e| corrupt(format!("status: {e}")))?,
        input: json("input")?.unwrap_or(Value::Null),
        output: json("output")?,
        error: json("error")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| corrupt(format!("error: {e}")))?,
        version: req_n("version")?,
        history_len: req_n("historyLen")?,
        created_at_ms: req_n("createdAt")?,
        updated_at_ms: req_n("updatedAt")?,
        parent: json("parent")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| corrupt(format!("parent: {e}")))?,
        last_error: get_s(item, "lastError").map(str::to_owned),
        outbox_pending: item.contains_key("gsi3pk"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cairn::workflow::RunStatus;

    fn run() -> RunRecord {
        RunRecord {
            run_id: "r-1".parse().unwrap(),
            workflow: "checkout".into(),
            status: RunStatus::Running,
            input: serde_json::json!({"orderId": "o-1"}),
            output: None,
            error: None,
            version: 3,
            history_len: 7,
            created_at_ms: 1_000,
            updated_at_ms: 2_000,
            parent: None,
            last_error: None,
            outbox_pending: false,
        }
    }

    #[test]
    fn run_items_round_trip() {
        let record = run();
        let item = run_to_item(&record, 30);
        assert_eq!(run_from_item(&item).unwrap(), record);
        assert_eq!(item["gsi1pk"].as_s().unwrap(), "STATUS#running");
        assert_eq!(item["gsi1sk"].as_s().unwrap(), "0000000002000#r-1");
        assert!(!item.contains_key("expiresAt"), "running runs never expire");
    }

    #[test]
    fn finished_runs_get_a_ttl_and_large_payloads_stay_out_of_the_run_item() {
        let mut record = run();
        record.status = RunStatus::Completed;
        record.output = Some(Value::String("x".repeat(INLINE_PAYLOAD_BYTES + 1)));
        let item = run_to_item(&record, 1);
        assert_eq!(item["expiresAt"].as_n().unwrap(), &(2 + 86_400).to_string());
        assert!(!item.contains_key("output"));
        assert_eq!(run_from_item(&item).unwrap().output, None);
    }

    #[test]
    fn only_runs_with_a_pending_outbox_enter_the_sparse_index() {
        let mut record = run();
        assert!(!run_to_item(&record, 30).contains_key("gsi3pk"));
        record.outbox_pending = true;
        let item = run_to_item(&record, 30);
        assert_eq!(item["gsi3pk"].as_s().unwrap(), OUTBOX_PK);
        assert_eq!(item["gsi3sk"].as_s().unwrap(), "0000000002000#r-1");
        assert!(run_from_item(&item).unwrap().outbox_pending);
    }

    #[test]
    fn chunk_keys_sort_in_history_order_and_parse_back() {
        assert!(events_sk(9, 0) < events_sk(10, 0));
        assert!(events_sk(10, 1) < events_sk(11, 0));
        assert_eq!(parse_chunk_sk(&outbox_sk(42, 2)), Some(("OUT", 42, 2)));
        let data = vec![1u8; CHUNK_BYTES * 2 + 1];
        assert_eq!(chunks(&data).len(), 3);
        assert_eq!(chunks(&[]).len(), 1);
    }
}
