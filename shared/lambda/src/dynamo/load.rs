//! Reading a run: its partition (head, history items, leases, legacy outbox items) sorted
//! into a [`LoadedRun`], with status and outcome settled from the history; a warm copy
//! brought up to date by reading only newer items; what remains of a retired run.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;

use super::codec::{decode_history_data, join_chunks};
use super::items::{self, Item};
use super::{backend, s, DynamoStore};
use cairn::store::{
    HistoryBatch, Leftovers, LoadedRun, OutboxBatch, OutboxLease, RunRecord, StoreError,
    WIDE_OUTBOX,
};
use cairn::workflow::{Command, EventKind, HistoryEvent, RunStatus, CANCELLED_CODE};

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
/// Payloads the run item leaves out when they are large come from the history too, and a
/// problem noted on the run at `noted_ms` (`note_problem`) is cleared by history past it (the
/// run item is not rewritten per activation).
pub(super) fn settle(run: &mut RunRecord, noted_ms: Option<u64>, history: &[HistoryEvent]) {
    if history.iter().any(|e| e.at_ms > noted_ms.unwrap_or(0)) {
        run.last_error = None;
    }
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

pub(super) fn get_n(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// The due time of the item's `byDue` entry, if it has one (`<due ms>#<runId>#<index>`).
fn entry_due(item: &Item) -> Option<u64> {
    let key = item.get("gsi4sk")?.as_s().ok()?;
    Some(items::parse_due_sk(key)?.0)
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
    /// The due time of each activation's `byDue` entry (from its key), by history index.
    dues: BTreeMap<u64, u64>,
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
                if let Some(due) = entry_due(&item) {
                    self.dues.insert(0, due);
                }
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
        if let (Some(due), "EVT", 0) = (entry_due(&item), kind, part) {
            self.dues.insert(index, due);
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
                    due_ms: self.dues.get(&index).copied(),
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
    pub(super) async fn load_cold(&self, run_id: &str) -> Result<Option<LoadedRun>, StoreError> {
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
        settle(&mut run, partition.problem_at, &history);
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
    pub(super) async fn load_warm(
        &self,
        mut loaded: LoadedRun,
    ) -> Result<Option<LoadedRun>, StoreError> {
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
        let ended = newer
            .iter()
            .any(|(_, events)| ended_status(events).is_some());
        for (batch, events) in newer {
            loaded.history.extend(events);
            loaded.batches.push(batch);
        }
        if ended {
            // The run ended elsewhere: its outcome is in the history just read (the note of
            // a problem, if any, came before the end).
            settle(&mut loaded.run, None, &loaded.history);
        }
        loaded.run.version = loaded.batches.len() as u64;
        loaded.run.history_len = loaded.history.len() as u64;
        Ok(Some(loaded))
    }
}
