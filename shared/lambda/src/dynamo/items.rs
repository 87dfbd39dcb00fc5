//! The table's item layout: keys, attribute names and the run-record codec.
//!
//! | item | pk | sk | written |
//! |---|---|---|---|
//! | run (head) | `RUN#<runId>` | `RUN` | once, when the run is created (the creation lock), holding the first activation's history (`data`) |
//! | history | `RUN#<runId>` | `EVT#<10-digit first index>#<3-digit part>` | once per later activation: its events and the commands it issued; `born` = the run's creation time |
//! | outbox lease | `RUN#<runId>` | `LEASE#<10-digit first index>` | only for a wide outbox, until all of it is sent |
//! | legacy outbox | `RUN#<runId>` | `OUT#<10-digit batch key>#<3-digit part>` | no longer written; read and re-driven |
//! | claim-check blob chunk | `BLOB#<id>` | `CHUNK#<4-digit part>` | |
//! | reconciler mark | `RECONCILER` | `DUE#<shard>` | by the reconciler, once per pass |
//!
//! One activation is one conditional `PutItem`: the run's first writes its head
//! (`attribute_not_exists`: the creation lock), each later one its history item
//! (`attribute_not_exists` on the next history index is the optimistic lock: two activations
//! of one run cannot both append at the same index). Nothing is rewritten when the run ends:
//! its status, output and error are read from the history (the authority). Runs of older
//! releases have a full run item (status, version, outcome), rewritten when their status
//! changed, and their first activation in `EVT#0000000000#000`; both still read.
//!
//! Index entries (all sharded, `KEYS_ONLY`: one write unit each): `byWorkflow` on the head
//! (once per run); `byStatus` only on the history item that ended a run other than by
//! completing (failed, cancelled, continued), so the failures an operator looks for are
//! indexed while a completed run costs no entry; `byDue` (`gsi4pk = DUE#<shard>`, `gsi4sk =
//! <due ms>#<runId>#<index>`) on activations the reconciler must look at
//! ([`Commit::due_ms`](cairn::store::Commit::due_ms)); `byOutbox` (`gsi3pk = OUTBOX#<shard>`,
//! `gsi3sk = <lease until ms>#<runId>`) on wide outboxes not yet fully sent. Every item
//! carries its TTL (`expiresAt`) from the moment it is written.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use cairn::store::{RunRecord, StoreError};
use cairn::workflow::RunStatus;

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
pub(crate) fn lease_sk(key: u64) -> String {
    format!("LEASE#{key:010}")
}

/// Index partitions are sharded by run id so no partition takes every run's writes.
pub(crate) const SHARDS: u32 = 8;

/// The shard of a run (FNV-1a of its id: stable across processes and releases).
pub(crate) fn shard(run_id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in run_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % SHARDS
}

pub(crate) fn status_pk(status: &str, shard: u32) -> String {
    format!("STATUS#{status}#{shard}")
}
pub(crate) fn workflow_pk(workflow: &str, shard: u32) -> String {
    format!("WF#{workflow}#{shard}")
}
pub(crate) fn outbox_pk(shard: u32) -> String {
    format!("OUTBOX#{shard}")
}
pub(crate) fn due_pk(shard: u32) -> String {
    format!("DUE#{shard}")
}
pub(crate) fn due_sk(due_ms: u64, run_id: &str, index: u64) -> String {
    format!("{due_ms:013}#{run_id}#{index:010}")
}
/// `(due ms, run id, history index)` of a [`due_sk`].
pub(crate) fn parse_due_sk(sk: &str) -> Option<(u64, &str, u64)> {
    let (due, rest) = sk.split_once('#')?;
    let (run_id, index) = rest.rsplit_once('#')?;
    Some((due.parse().ok()?, run_id, index.parse().ok()?))
}
/// The reconciler's high-water marks live in their own partition.
pub(crate) const RECONCILER_PK: &str = "RECONCILER";
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

/// The head of a new run: what a listing shows before reading the history (workflow,
/// creation time, parent), its `byWorkflow` entry, its TTL (like a history item written at
/// creation) and, in `data`, the run's first activation (`None` when that takes several
/// items: it is then written at `EVT#0`). Status, input, output and error are read from the
/// history.
pub(crate) fn head_item(run: &RunRecord, ttl: Ttl, data: Option<Vec<u8>>) -> Item {
    let mut item = Item::from([
        ("pk".into(), s(run_pk(&run.run_id))),
        ("sk".into(), s(RUN_SK)),
        ("workflow".into(), s(&run.workflow)),
        ("createdAt".into(), n(run.created_at_ms)),
        (
            "gsi2pk".into(),
            s(workflow_pk(&run.workflow, shard(&run.run_id))),
        ),
        ("gsi2sk".into(), s(time_sk(run.created_at_ms, &run.run_id))),
        ("expiresAt".into(), n(ttl.written(run.created_at_ms))),
    ]);
    if let Some(parent) = &run.parent {
        item.insert("parent".into(), s(serde_json::json!(parent).to_string()));
    }
    if let Some(data) = data {
        item.insert("data".into(), AttributeValue::B(data.into()));
    }
    item
}

/// The run item of older releases (and of repairs), with its index keys and TTL (a running run expires `max_run_days` after it
/// was created, plus the retention, like its history items; a finished one `retention_days`
/// after it finished).
pub(crate) fn run_to_item(run: &RunRecord, ttl: Ttl) -> Item {
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
        ("gsi1pk".into(), s(status_pk(&status, shard(&run.run_id)))),
        ("gsi1sk".into(), s(time_sk(run.updated_at_ms, &run.run_id))),
        (
            "gsi2pk".into(),
            s(workflow_pk(&run.workflow, shard(&run.run_id))),
        ),
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
    let expires = if run.status.is_terminal() {
        ttl.finished(run.updated_at_ms)
    } else {
        ttl.written(run.created_at_ms)
    };
    item.insert("expiresAt".into(), n(expires));
    item
}

/// How long items live (DynamoDB TTL, epoch seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ttl {
    /// Kept this long after the run finished.
    pub retention_days: u32,
    /// A run lives at most this long; history items written at `t` expire at `t` plus this
    /// plus the retention, so they outlive every run that may still read them.
    pub max_run_days: u32,
}

impl Ttl {
    /// The TTL of a run that finished at `finished_ms`.
    pub fn finished(&self, finished_ms: u64) -> u64 {
        finished_ms / 1000 + u64::from(self.retention_days) * 86_400
    }

    /// The TTL of an item written at `written_ms` (a history item, a running run).
    pub fn written(&self, written_ms: u64) -> u64 {
        written_ms / 1000 + u64::from(self.retention_days + self.max_run_days) * 86_400
    }
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
    // A head (see `head_item`) has no status, version or times but its creation: they
    // come from the history.
    let run_id = get_s(item, "runId")
        .or_else(|| key.strip_prefix("RUN#"))
        .ok_or_else(|| corrupt("missing runId".into()))?;
    let created_at_ms = req_n("createdAt")?;
    let opt_n = |name: &str| -> Result<u64, StoreError> {
        match item.get(name) {
            None => Ok(0),
            Some(_) => req_n(name),
        }
    };
    Ok(RunRecord {
        run_id: cairn::contract::RunId::parse(run_id).map_err(|e| corrupt(e.to_string()))?,
        workflow: req_s("workflow")?.to_owned(),
        status: match get_s(item, "status") {
            None => RunStatus::Running,
            Some(status) => status
                .parse()
                .map_err(|e| corrupt(format!("status: {e}")))?,
        },
        input: json("input")?.unwrap_or(Value::Null),
        output: json("output")?,
        error: json("error")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| corrupt(format!("error: {e}")))?,
        version: opt_n("version")?,
        history_len: opt_n("historyLen")?,
        created_at_ms,
        updated_at_ms: opt_n("updatedAt")?.max(created_at_ms),
        parent: json("parent")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| corrupt(format!("parent: {e}")))?,
        last_error: get_s(item, "lastError").map(str::to_owned),
        outbox_pending: false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use cairn::workflow::RunStatus;

    const TTL: Ttl = Ttl {
        retention_days: 30,
        max_run_days: 1,
    };

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
        let item = run_to_item(&record, TTL);
        assert_eq!(run_from_item(&item).unwrap(), record);
        let shard = shard("r-1");
        assert_eq!(
            item["gsi1pk"].as_s().unwrap(),
            &format!("STATUS#running#{shard}")
        );
        assert_eq!(item["gsi1sk"].as_s().unwrap(), "0000000002000#r-1");
        assert_eq!(
            item["expiresAt"].as_n().unwrap(),
            &(1 + 31 * 86_400).to_string(),
            "a running run expires its maximum lifetime after it was created, plus the retention"
        );
    }

    #[test]
    fn finished_runs_get_a_ttl_and_large_payloads_stay_out_of_the_run_item() {
        let mut record = run();
        record.status = RunStatus::Completed;
        record.output = Some(Value::String("x".repeat(INLINE_PAYLOAD_BYTES + 1)));
        let item = run_to_item(&record, TTL);
        assert_eq!(
            item["expiresAt"].as_n().unwrap(),
            &(2 + 30 * 86_400).to_string()
        );
        assert!(!item.contains_key("output"));
        assert_eq!(run_from_item(&item).unwrap().output, None);
    }

    #[test]
    fn shards_spread_runs_and_are_stable() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..100 {
            seen.insert(shard(&format!("run-{i}")));
        }
        assert_eq!(seen.len(), SHARDS as usize, "100 runs reach every shard");
        assert_eq!(shard("r-1"), shard("r-1"));
        assert!(
            due_sk(9, "r", 1) < due_sk(10, "a", 0),
            "due entries sort by time"
        );
        // Run ids may hold `#`: the index is the last field.
        assert_eq!(parse_due_sk(&due_sk(9, "a#b", 12)), Some((9, "a#b", 12)));
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
