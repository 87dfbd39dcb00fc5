//! [`CheckpointStore`] on DynamoDB (the item layout is in `dynamo/items.rs`).
//!
//! A commit is one conditional `PutItem`: the run's head when it is created (holding its first
//! activation), else the activation's history item; nothing is rewritten when the run ends.
//! Only a history item too large for one item, or a wide outbox with its lease, takes a
//! transaction. A warm store keeps each run's loaded
//! history (`dynamo/cache.rs`) and then queries only the items after it.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use cairn::infra::{InfraError, InfraErrorKind};

use crate::sdk_error::infra_error;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

mod blob;
mod cache;
pub(crate) mod items;
mod listing;

pub use blob::DynamoBlobStore;

use cairn::store::{
    CheckpointStore, Commit, DuePage, HistoryBatch, Leftovers, LoadedRun, OutboxBatch, OutboxLease,
    RunFilter, RunPage, RunRecord, StoreError, WIDE_OUTBOX,
};
use cairn::workflow::{Command, EventKind, HistoryEvent, RunStatus, CANCELLED_CODE};
use items::{Item, Ttl};

/// A history index is free if no item holds it, or only one an earlier run under the same id
/// left (another `born`): the run's activations overwrite those.
const FREE_INDEX: &str = "attribute_not_exists(pk) OR (attribute_exists(born) AND born <> :born)";

/// The index entries an activation's first item carries: `byDue` when the reconciler must
/// look at it ([`Commit::due_ms`]); `byStatus` when it ended the run other than by completing
/// (failures are what operators list; a completed run costs no entry).
fn index_keys(commit: &Commit, item: &mut Item) {
    let run = &commit.run;
    let shard = items::shard(&run.run_id);
    if let Some(due) = commit.due_ms() {
        item.insert("gsi4pk".into(), s(items::due_pk(shard)));
        item.insert(
            "gsi4sk".into(),
            s(items::due_sk(due, &run.run_id, commit.first_index())),
        );
    }
    let ended = commit.events.iter().any(|e| {
        matches!(
            e.kind,
            EventKind::RunCompleted { .. }
                | EventKind::RunFailed { .. }
                | EventKind::RunCancelled { .. }
                | EventKind::ContinuedAsNew { .. }
        )
    });
    if ended && run.status.is_terminal() && run.status != RunStatus::Completed {
        item.insert(
            "gsi1pk".into(),
            s(items::status_pk(&run.status.to_string(), shard)),
        );
        item.insert(
            "gsi1sk".into(),
            s(items::time_sk(run.updated_at_ms, &run.run_id)),
        );
    }
}

/// DynamoDB allows at most 100 items in one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// ... and at most 4 MB; keep a margin for keys and the run item.
const MAX_TRANSACTION_BYTES: usize = 3_800_000;

/// A run lives at most this long by default (`CAIRN_MAX_RUN_DAYS`): items are written with
/// their TTL, so history written today must outlive every run that may still read it.
pub const DEFAULT_MAX_RUN_DAYS: u32 = 365;

/// The production checkpoint store: one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    ttl: Ttl,
    cache: Option<cache::HistoryCache>,
}

impl DynamoStore {
    /// A store on `table`; finished runs expire after `retention_days`.
    pub fn new(client: Client, table: impl Into<String>, retention_days: u32) -> Self {
        Self {
            client,
            table: table.into(),
            ttl: Ttl {
                retention_days,
                max_run_days: DEFAULT_MAX_RUN_DAYS,
            },
            cache: None,
        }
    }

    /// Keeps loaded histories in memory (the engine's warm Lambda) and reads only newer
    /// history items on the next load. Only for the engine: other readers (clients, tools)
    /// must see the run item's own changes (`lastError`) and load whole.
    pub fn with_history_cache(mut self) -> Self {
        self.cache = Some(cache::HistoryCache::default());
        self
    }

    /// Runs live at most `days` (items expire that long after they are written, plus the
    /// retention).
    pub fn with_max_run_days(mut self, days: u32) -> Self {
        self.ttl.max_run_days = days;
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

pub(crate) fn backend<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    StoreError::Backend(infra_error(operation, err))
}

/// A request that could not even be built (a missing required field): a bug, never transient.
fn build_error(operation: &'static str, err: BuildError) -> StoreError {
    StoreError::Backend(InfraError::with_source(
        operation,
        InfraErrorKind::Rejected,
        err.to_string(),
        err,
    ))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// What a history item holds (`data`, JSON). Older releases stored a bare array of events.
#[derive(serde::Serialize, serde::Deserialize)]
struct HistoryData {
    events: Vec<HistoryEvent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    commands: Vec<Command>,
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
fn pack(json: Vec<u8>) -> Vec<u8> {
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

fn decode_history_data(key: &str, data: &[u8]) -> Result<HistoryData, StoreError> {
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

fn build_err(operation: &'static str) -> impl Fn(BuildError) -> StoreError {
    move |e| build_error(operation, e)
}

/// Joins the chunks of each batch (checking parts `0..n` are all there).
/// Returns `(key, bytes, parts)` per batch.
fn join_chunks(
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

/// The status a history ends in, if it ended the run.
fn ended_status(history: &[HistoryEvent]) -> Option<RunStatus> {
    history.iter().rev().find_map(|e| match &e.kind {
        EventKind::RunCompleted { .. } => Some(RunStatus::Completed),
        EventKind::RunFailed { error } if error.code.as_deref() == Some(CANCELLED_CODE) => {
            Some(RunStatus::Cancelled)
        }
        EventKind::RunFailed { .. } => Some(RunStatus::Failed),
        EventKind::RunCancelled { .. } => Some(RunStatus::Cancelled),
        EventKind::ContinuedAsNew { .. } => Some(RunStatus::ContinuedAsNew),
        _ => None,
    })
}

/// The run's status and outcome as its history has them (the authority): a head holds
/// neither, and the run item of an older release missed the end of a run a newer one ended.
/// Payloads the run item leaves out when they are large come from the history too.
fn settle(run: &mut RunRecord, history: &[HistoryEvent]) {
    if let Some(status) = ended_status(history) {
        if run.status != status {
            run.status = status;
            run.output = None;
            run.error = None;
        }
    }
    if let Some(last) = history.iter().map(|e| e.at_ms).max() {
        run.updated_at_ms = run.updated_at_ms.max(last);
    }
    if run.input.is_null() {
        if let Some(EventKind::RunStarted { input, .. }) = history.first().map(|e| &e.kind) {
            run.input = input.clone();
        }
    }
    if run.output.is_none() && run.status == RunStatus::Completed {
        run.output = history.iter().rev().find_map(|e| match &e.kind {
            EventKind::RunCompleted { output } => Some(output.clone()),
            _ => None,
        });
    }
    // The run item holds a bounded copy of the error (a head none); the history has it whole.
    if run.error.is_some() || matches!(run.status, RunStatus::Failed | RunStatus::Cancelled) {
        if let Some(error) = history.iter().rev().find_map(|e| match &e.kind {
            EventKind::RunFailed { error } | EventKind::RunCancelled { error } => {
                Some(error.clone())
            }
            _ => None,
        }) {
            run.error = Some(error);
        }
    }
}

/// A problem noted on the run (`note_problem`) is cleared by the history going on past it
/// (the run item is not rewritten per activation).
fn clear_stale_problem(run: &mut RunRecord, noted_ms: Option<u64>, history: &[HistoryEvent]) {
    let noted_ms = noted_ms.unwrap_or(0);
    if history.iter().any(|e| e.at_ms > noted_ms) {
        run.last_error = None;
    }
}

/// Every item of partition `pk` (consistent read, all pages), in sort-key order; only the
/// `projection` attributes when given.
pub(crate) async fn query_partition(
    client: &Client,
    table: &str,
    pk: &str,
    projection: Option<&str>,
) -> Result<Vec<Item>, StoreError> {
    query_range(client, table, pk, None, projection).await
}

/// Items of partition `pk` with sort keys in `range` (inclusive), all pages.
async fn query_range(
    client: &Client,
    table: &str,
    pk: &str,
    range: Option<(&str, &str)>,
    projection: Option<&str>,
) -> Result<Vec<Item>, StoreError> {
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let mut query = client
            .query()
            .table_name(table)
            .expression_attribute_values(":pk", s(pk))
            .set_projection_expression(projection.map(str::to_owned))
            .consistent_read(true)
            .set_exclusive_start_key(start);
        query = match range {
            None => query.key_condition_expression("pk = :pk"),
            Some((from, to)) => query
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to)),
        };
        let page = query.send().await.map_err(|e| backend("Query", e))?;
        out.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(out),
        }
    }
}

fn get_n(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// The items of one partition, sorted into their kinds.
#[derive(Default)]
struct Partition {
    run: Option<RunRecord>,
    events: BTreeMap<u64, Vec<(usize, Vec<u8>)>>,
    /// `born` of history items (the creation time of the run that wrote them).
    born: BTreeMap<u64, u64>,
    /// When the run item's problem note was written.
    problem_at: Option<u64>,
    legacy_outbox: BTreeMap<u64, Vec<(usize, Vec<u8>)>>,
    leases: BTreeMap<u64, (usize, OutboxLease)>,
}

impl Partition {
    fn add(&mut self, pk: &str, item: Item) -> Result<(), StoreError> {
        let sk = item
            .get("sk")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        if sk == items::RUN_SK {
            let run = items::run_from_item(&item)?;
            self.problem_at = get_n(&item, "lastErrorAt");
            if let Some(data) = item.get("data").and_then(|v| v.as_b().ok()) {
                // A head: the run's first activation.
                self.events
                    .entry(0)
                    .or_default()
                    .push((0, data.as_ref().to_vec()));
                self.born.insert(0, run.created_at_ms);
            }
            self.run = Some(run);
            return Ok(());
        }
        if let Some(key) = sk.strip_prefix("LEASE#").and_then(|k| k.parse().ok()) {
            let lease = OutboxLease {
                owner: item
                    .get("owner")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default(),
                until_ms: get_n(&item, "leaseUntil").unwrap_or(0),
            };
            let sent = get_n(&item, "sent").unwrap_or(0) as usize;
            self.leases.insert(key, (sent, lease));
            return Ok(());
        }
        let (kind, index, part) =
            items::parse_chunk_sk(&sk).ok_or_else(|| StoreError::Corrupt {
                key: format!("{pk}/{sk}"),
                reason: "unknown sort key".into(),
            })?;
        let data = item
            .get("data")
            .and_then(|v| v.as_b().ok())
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        if let (Some(born), "EVT") = (get_n(&item, "born"), kind) {
            self.born.insert(index, born);
        }
        match kind {
            "EVT" => self.events.entry(index).or_default().push((part, data)),
            "OUT" => self
                .legacy_outbox
                .entry(index)
                .or_default()
                .push((part, data)),
            _ => {}
        }
        Ok(())
    }

    /// Drops history items an earlier run under the same id left (their `born` is not this
    /// run's creation): a run id used again after its run retired starts afresh, and its
    /// activations overwrite what is in their way. Returns how many were dropped.
    fn drop_foreign(&mut self, created_at_ms: u64) -> usize {
        let foreign: Vec<u64> = self
            .born
            .iter()
            .filter(|(_, born)| **born != created_at_ms)
            .map(|(index, _)| *index)
            .collect();
        for index in &foreign {
            self.events.remove(index);
            self.born.remove(index);
        }
        foreign.len()
    }

    /// The history batches, checked contiguous from `first`.
    fn batches(
        &mut self,
        pk: &str,
        first: u64,
    ) -> Result<Vec<(HistoryBatch, Vec<HistoryEvent>)>, StoreError> {
        let mut next = first;
        let mut out = Vec::new();
        for (index, data, _) in join_chunks(pk, std::mem::take(&mut self.events))? {
            if index != next {
                return Err(StoreError::Corrupt {
                    key: format!("{pk}/{index}"),
                    reason: format!("history item at {index}, expected {next}"),
                });
            }
            let decoded = decode_history_data(&format!("{pk}/{index}"), &data)?;
            next = index + decoded.events.len() as u64;
            out.push((
                HistoryBatch {
                    first: index,
                    events: decoded.events.len(),
                    commands: decoded.commands,
                },
                decoded.events,
            ));
        }
        Ok(out)
    }
}

/// What remains under `pk` without a run item, read leniently (expired items leave gaps).
fn leftovers(pk: &str, run_id: &str, partition: Partition, items: usize) -> Leftovers {
    let mut history = Vec::new();
    let mut complete = true;
    let mut next = 0;
    match join_chunks(pk, partition.events) {
        Ok(chunks) => {
            for (index, data, _) in chunks {
                complete &= index == next;
                match decode_history_data(&format!("{pk}/{index}"), &data) {
                    Ok(decoded) => {
                        next = index + decoded.events.len() as u64;
                        history.extend(decoded.events);
                    }
                    Err(_) => complete = false,
                }
            }
        }
        Err(_) => complete = false,
    }
    let workflow = history.iter().find_map(|e| match &e.kind {
        EventKind::RunStarted { workflow, .. } => Some(workflow.clone()),
        _ => None,
    });
    Leftovers {
        run_id: run_id.to_owned(),
        items,
        workflow,
        ended: ended_status(&history),
        complete: complete && !history.is_empty(),
        last_event_ms: history.iter().map(|e| e.at_ms).max(),
        history,
    }
}

impl DynamoStore {
    async fn load_cold(&self, run_id: &str) -> Result<Option<LoadedRun>, StoreError> {
        let pk = items::run_pk(run_id);
        let mut partition = Partition::default();
        let mut items = 0;
        for item in query_partition(&self.client, &self.table, &pk, None).await? {
            items += 1;
            partition.add(&pk, item)?;
        }
        let Some(mut run) = partition.run.take() else {
            if items == 0 {
                return Ok(None);
            }
            return Err(StoreError::Leftovers(Box::new(leftovers(
                &pk, run_id, partition, items,
            ))));
        };
        let foreign = partition.drop_foreign(run.created_at_ms);
        if foreign > 0 {
            tracing::info!(%run_id, items = foreign, reason = "earlier_run_leftovers", "history items of an earlier run under this id ignored");
            crate::metrics::count(crate::metrics::IGNORED, "earlier_run_leftovers");
        }
        let mut history = Vec::new();
        let mut batches = Vec::new();
        for (batch, events) in partition.batches(&pk, 0)? {
            batches.push(batch);
            history.extend(events);
        }
        run.version = batches.len() as u64;
        run.history_len = history.len() as u64;
        settle(&mut run, &history);
        clear_stale_problem(&mut run, partition.problem_at, &history);
        let mut outbox: Vec<OutboxBatch> = Vec::new();
        for (key, data, parts) in join_chunks(&pk, partition.legacy_outbox)? {
            let commands: Vec<Command> =
                cairn::store::decode_stored(&format!("{pk}/OUT/{key}"), &data)?;
            outbox.push(OutboxBatch {
                parts,
                ..OutboxBatch::new(key, commands)
            });
        }
        for (key, (sent, lease)) in partition.leases {
            let commands = batches
                .iter()
                .find(|b| b.first == key)
                .map(|b| b.commands.clone())
                .unwrap_or_default();
            outbox.push(OutboxBatch {
                key,
                commands,
                parts: 0,
                sent,
                lease: Some(lease),
            });
        }
        outbox.sort_by_key(|b| b.key);
        run.outbox_pending = !outbox.is_empty();
        Ok(Some(LoadedRun {
            run,
            history,
            batches,
            outbox,
        }))
    }

    /// A cached run brought up to date: only history items after it are read.
    async fn load_warm(&self, mut loaded: LoadedRun) -> Result<Option<LoadedRun>, StoreError> {
        let pk = items::run_pk(&loaded.run.run_id);
        let from = items::events_sk(loaded.run.history_len, 0);
        let to = items::events_sk(9_999_999_999, 999);
        let mut partition = Partition::default();
        for item in query_range(&self.client, &self.table, &pk, Some((&from, &to)), None).await? {
            partition.add(&pk, item)?;
        }
        partition.drop_foreign(loaded.run.created_at_ms);
        let newer = partition.batches(&pk, loaded.run.history_len)?;
        if newer.iter().any(|(b, _)| b.commands.len() >= WIDE_OUTBOX) {
            // Someone else committed a wide outbox: its lease state is only in a full load.
            return self.load_cold(&loaded.run.run_id).await;
        }
        if newer
            .iter()
            .any(|(_, events)| ended_status(events).is_some())
        {
            // The run ended elsewhere: its outcome is on the run item.
            return self.load_cold(&loaded.run.run_id).await;
        }
        for (batch, events) in newer {
            loaded.history.extend(events);
            loaded.batches.push(batch);
        }
        loaded.run.version = loaded.batches.len() as u64;
        loaded.run.history_len = loaded.history.len() as u64;
        Ok(Some(loaded))
    }

    async fn put_run(&self, run: &RunRecord, create: bool) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(items::run_to_item(run, self.ttl)));
        put = match create {
            true => put.condition_expression("attribute_not_exists(pk)"),
            // A repair of an older release's run item; a head is never rewritten (what it
            // would fix is read from the history).
            false => put
                .condition_expression("attribute_not_exists(#data)")
                .expression_attribute_names("#data", "data"),
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) if create => {
                    Err(StoreError::Conflict {
                        run_id: run.run_id.to_string(),
                        expected: None,
                    })
                }
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(()),
                _ => Err(backend("PutItem", err)),
            },
        }
    }

    /// Writes a new run's head (the creation lock), holding its first activation when
    /// `data` is given.
    async fn put_head(&self, commit: &Commit, data: Option<Vec<u8>>) -> Result<(), StoreError> {
        let run = &commit.run;
        let inline = data.is_some();
        let mut item = items::head_item(run, self.ttl, data);
        if inline {
            index_keys(commit, &mut item);
        }
        let written = item.get("data").cloned();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => {
                    // Ours, if the SDK retried this very write after its answer was lost.
                    let pk = items::run_pk(&run.run_id);
                    if inline && self.holds(&pk, items::RUN_SK, written.as_ref()).await? {
                        tracing::info!(run_id = %run.run_id, "run head found in place (its first answer was lost)");
                        return Ok(());
                    }
                    Err(StoreError::Conflict {
                        run_id: run.run_id.to_string(),
                        expected: None,
                    })
                }
                _ => Err(backend("PutItem", err)),
            },
        }
    }

    /// The body of `commit`'s history item(s), refused (TooLarge) if it could not be read
    /// back or is more than one transaction holds: nothing commits that bricks the run.
    fn history_data(commit: &Commit) -> Result<Vec<u8>, StoreError> {
        let run = &commit.run;
        let data = pack(cairn::store::encode_stored(
            &items::run_pk(&run.run_id),
            &HistoryData {
                events: commit.events.clone(),
                commands: commit.outbox.clone(),
            },
        )?);
        if data.len() > MAX_TRANSACTION_BYTES {
            return Err(StoreError::TooLarge {
                run_id: run.run_id.to_string(),
                reason: format!(
                    "{} bytes in one activation (limit {MAX_TRANSACTION_BYTES})",
                    data.len()
                ),
            });
        }
        Ok(data)
    }

    /// The history item(s) of `commit` (body from [`Self::history_data`]), and its lease
    /// item: one conditional put, or a transaction when there are several.
    async fn put_history(&self, commit: &Commit, data: Vec<u8>) -> Result<(), StoreError> {
        let run = &commit.run;
        let pk = items::run_pk(&run.run_id);
        let first = commit.first_index();
        let expires = AttributeValue::N(self.ttl.written(run.updated_at_ms).to_string());
        let shard = items::shard(&run.run_id);
        let born = AttributeValue::N(run.created_at_ms.to_string());
        let mut puts: Vec<Item> = items::chunks(&data)
            .into_iter()
            .enumerate()
            .map(|(part, bytes)| {
                Item::from([
                    ("pk".to_owned(), s(&pk)),
                    ("sk".to_owned(), s(items::events_sk(first, part))),
                    ("data".to_owned(), AttributeValue::B(bytes.to_vec().into())),
                    ("born".to_owned(), born.clone()),
                    ("expiresAt".to_owned(), expires.clone()),
                ])
            })
            .collect();
        if let Some(head) = puts.first_mut() {
            index_keys(commit, head);
        }
        if let Some(lease) = &commit.lease {
            puts.push(Item::from([
                ("pk".to_owned(), s(&pk)),
                ("sk".to_owned(), s(items::lease_sk(first))),
                ("owner".to_owned(), s(&lease.owner)),
                (
                    "leaseUntil".to_owned(),
                    AttributeValue::N(lease.until_ms.to_string()),
                ),
                ("sent".to_owned(), AttributeValue::N("0".into())),
                ("gsi3pk".to_owned(), s(items::outbox_pk(shard))),
                (
                    "gsi3sk".to_owned(),
                    s(items::time_sk(lease.until_ms, &run.run_id)),
                ),
                ("expiresAt".to_owned(), expires.clone()),
            ]));
        }
        let conflict = || StoreError::Conflict {
            run_id: run.run_id.to_string(),
            expected: commit.expected_version,
        };
        if puts.len() == 1 {
            let item = puts.pop().unwrap_or_default();
            let written = item.get("data").cloned();
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(FREE_INDEX)
                .expression_attribute_values(":born", born.clone())
                .send()
                .await;
            return match result {
                Ok(_) => Ok(()),
                Err(err) => match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(_)) => {
                        // The SDK may have retried this very write after its answer was lost:
                        // if the item holds what we wrote, the commit is ours.
                        let sk = items::events_sk(first, 0);
                        if self.holds(&pk, &sk, written.as_ref()).await? {
                            tracing::info!(run_id = %run.run_id, index = first, "commit found in place (its first answer was lost)");
                            return Ok(());
                        }
                        Err(conflict())
                    }
                    _ => Err(backend("PutItem", err)),
                },
            };
        }
        if puts.len() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::TooLarge {
                run_id: run.run_id.to_string(),
                reason: format!(
                    "{} items in one transaction (limit {MAX_TRANSACTION_ITEMS})",
                    puts.len()
                ),
            });
        }
        let writes = puts
            .into_iter()
            .map(|item| {
                Put::builder()
                    .table_name(&self.table)
                    .condition_expression(match item.contains_key("born") {
                        true => FREE_INDEX,
                        false => "attribute_not_exists(pk)",
                    })
                    .set_expression_attribute_values(
                        item.contains_key("born")
                            .then(|| HashMap::from([(":born".to_owned(), born.clone())])),
                    )
                    .set_item(Some(item))
                    .build()
                    .map(|put| TransactWriteItem::builder().put(put).build())
                    .map_err(build_err("TransactWriteItems"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancel))
                    if cancel
                        .cancellation_reasons()
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed")) =>
                {
                    Err(conflict())
                }
                _ => Err(backend("TransactWriteItems", err)),
            },
        }
    }

    /// Whether item `pk`/`sk` exists with exactly `data`.
    async fn holds(
        &self,
        pk: &str,
        sk: &str,
        data: Option<&AttributeValue>,
    ) -> Result<bool, StoreError> {
        let Some(data) = data else {
            return Ok(false);
        };
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .projection_expression("#d")
            .expression_attribute_names("#d", "data")
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        Ok(out.item.as_ref().and_then(|i| i.get("data")) == Some(data))
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .send()
            .await
            .map_err(|e| backend("DeleteItem", e))?;
        Ok(())
    }
}

impl CheckpointStore for DynamoStore {
    async fn load(&self, run_id: &str) -> Result<Option<LoadedRun>, StoreError> {
        let Some(cache) = &self.cache else {
            return self.load_cold(run_id).await;
        };
        let loaded = match cache.get(run_id) {
            Some(cached) => self.load_warm(cached).await,
            None => self.load_cold(run_id).await,
        };
        match &loaded {
            Ok(Some(run)) => cache.put(run),
            _ => cache.forget(run_id),
        }
        loaded
    }

    fn cached(&self, run_id: &str) -> Option<LoadedRun> {
        self.cache.as_ref()?.get(run_id)
    }

    async fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let run_id = &commit.run.run_id;
        let result = async {
            // Refused before anything is written: a new run's item is not created for a
            // history that cannot be stored.
            let data = match commit.events.is_empty() {
                true => None,
                false => Some(Self::history_data(commit)?),
            };
            if commit.expected_version.is_none() {
                // The head holds the first activation when it fits one item and takes no
                // lease: a run's creation is then one write.
                let fits = data
                    .as_ref()
                    .is_some_and(|d| items::chunks(d).len() == 1 && commit.lease.is_none());
                if fits {
                    self.put_head(commit, data).await?;
                    return Ok(());
                }
                self.put_head(commit, None).await?;
            }
            if let Some(data) = data {
                match self.put_history(commit, data).await {
                    Err(StoreError::Conflict { .. }) if commit.expected_version.is_none() => {
                        // The run item was free, yet history sits under the id: nobody else
                        // creates history without the run item first, so it is an earlier
                        // run's leftovers. Undo the run item and report them.
                        let pk = items::run_pk(run_id);
                        self.delete(&pk, items::RUN_SK).await?;
                        return match self.load_cold(run_id).await {
                            Err(leftovers @ StoreError::Leftovers(_)) => Err(leftovers),
                            _ => Err(StoreError::Conflict {
                                run_id: run_id.to_string(),
                                expected: None,
                            }),
                        };
                    }
                    other => other?,
                }
            }
            if commit.events.is_empty() && commit.expected_version.is_some() {
                self.put_run(&commit.run, false).await?;
            }
            Ok(())
        }
        .await;
        if let Some(cache) = &self.cache {
            match &result {
                Ok(()) => cache.committed(commit),
                Err(_) => cache.forget(run_id),
            }
        }
        result
    }

    async fn clear_outbox(&self, run_id: &str, batches: &[OutboxBatch]) -> Result<(), StoreError> {
        let pk = items::run_pk(run_id);
        for batch in batches {
            if batch.lease.is_some() {
                self.delete(&pk, &items::lease_sk(batch.key)).await?;
            }
            for part in 0..batch.parts {
                self.delete(&pk, &items::outbox_sk(batch.key, part)).await?;
            }
        }
        Ok(())
    }

    async fn lease_outbox(
        &self,
        run_id: &str,
        key: u64,
        current: &OutboxLease,
        next: &OutboxLease,
        sent: usize,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(items::run_pk(run_id)))
            .key("sk", s(items::lease_sk(key)))
            .update_expression("SET #o = :o, leaseUntil = :u, sent = :s, gsi3sk = :g")
            .condition_expression("#o = :co AND leaseUntil = :cu")
            .expression_attribute_names("#o", "owner")
            .expression_attribute_values(":o", s(&next.owner))
            .expression_attribute_values(":u", AttributeValue::N(next.until_ms.to_string()))
            .expression_attribute_values(":s", AttributeValue::N(sent.to_string()))
            .expression_attribute_values(":g", s(items::time_sk(next.until_ms, run_id)))
            .expression_attribute_values(":co", s(&current.owner))
            .expression_attribute_values(":cu", AttributeValue::N(current.until_ms.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => {
                    Err(StoreError::Conflict {
                        run_id: run_id.to_owned(),
                        expected: None,
                    })
                }
                _ => Err(backend("UpdateItem", err)),
            },
        }
    }

    async fn pending_outbox_runs(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        self.pending_outbox(before_ms, limit, cursor).await
    }

    async fn due_items(
        &self,
        after_ms: u64,
        before_ms: u64,
        limit: u32,
    ) -> Result<DuePage, StoreError> {
        self.due(after_ms, before_ms, limit).await
    }

    async fn mark(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(items::RECONCILER_PK))
            .key("sk", s(name))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("GetItem", e))?;
        Ok(item.item.as_ref().and_then(|i| get_n(i, "through")))
    }

    async fn set_mark(&self, name: &str, ms: u64) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(items::RECONCILER_PK))
            .item("sk", s(name))
            .item("through", AttributeValue::N(ms.to_string()))
            .send()
            .await
            .map_err(|e| backend("PutItem", e))?;
        Ok(())
    }

    async fn note_problem(&self, run_id: &str, problem: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(items::run_pk(run_id)))
            .key("sk", s(items::RUN_SK))
            .update_expression("SET lastError = :p, lastErrorAt = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":p", s(problem))
            .expression_attribute_values(
                ":at",
                AttributeValue::N(cairn::clock::now_ms().to_string()),
            )
            .send()
            .await
            .map(|_| ())
            .or_else(|err| match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(()),
                _ => Err(backend("UpdateItem", err)),
            })
    }

    async fn purge_leftovers(&self, run_id: &str) -> Result<usize, StoreError> {
        let pk = items::run_pk(run_id);
        let keys = query_partition(&self.client, &self.table, &pk, Some("sk")).await?;
        let sks: Vec<String> = keys
            .iter()
            .filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()).cloned())
            .collect();
        if sks.iter().any(|sk| sk == items::RUN_SK) {
            return Err(StoreError::Conflict {
                run_id: run_id.to_owned(),
                expected: None,
            });
        }
        for sk in &sks {
            self.delete(&pk, sk).await?;
        }
        if let Some(cache) = &self.cache {
            cache.forget(run_id);
        }
        Ok(sks.len())
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage, StoreError> {
        self.list(filter).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
