//! [`CheckpointStore`] on DynamoDB (the item layout is in `dynamo/items.rs`).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use cairn::infra::{InfraError, InfraErrorKind};

use crate::sdk_error::infra_error;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;

mod blob;
pub(crate) mod items;
mod listing;

pub use blob::DynamoBlobStore;

use cairn::store::{
    CheckpointStore, Commit, LoadedRun, OutboxBatch, RunFilter, RunPage, RunRecord, StoreError,
};
use cairn::workflow::{Command, EventKind, HistoryEvent, RunStatus};
use items::Item;

/// DynamoDB allows at most 100 items in one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// ... and at most 4 MB; keep a margin for keys and the run item.
const MAX_TRANSACTION_BYTES: usize = 3_800_000;

/// The production checkpoint store: one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retention_days: u32,
}

impl DynamoStore {
    /// A store on `table`; finished runs expire after `retention_days`.
    pub fn new(client: Client, table: impl Into<String>, retention_days: u32) -> Self {
        Self {
            client,
            table: table.into(),
            retention_days,
        }
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

/// Whether an `UpdateItem` failed only because its condition did not hold.
fn lost_condition(err: &SdkError<UpdateItemError, HttpResponse>) -> bool {
    matches!(
        err.as_service_error(),
        Some(UpdateItemError::ConditionalCheckFailedException(_))
    )
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

fn chunk_puts(
    table: &str,
    pk: &str,
    sk: impl Fn(usize) -> String,
    data: &[u8],
) -> Result<Vec<TransactWriteItem>, StoreError> {
    items::chunks(data)
        .into_iter()
        .enumerate()
        .map(|(part, bytes)| {
            let put = Put::builder()
                .table_name(table)
                .item("pk", s(pk))
                .item("sk", s(sk(part)))
                .item("data", AttributeValue::B(bytes.to_vec().into()))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| build_error("TransactWriteItems", e))?;
            Ok(TransactWriteItem::builder().put(put).build())
        })
        .collect()
}

/// Joins the chunks of each batch (checking parts `0..n` are all there) and decodes it.
/// Returns `(key, values, parts)` per batch.
fn decode_batches<T: serde::de::DeserializeOwned>(
    key: &str,
    parts: BTreeMap<u64, Vec<(usize, Vec<u8>)>>,
) -> Result<Vec<(u64, Vec<T>, usize)>, StoreError> {
    parts
        .into_iter()
        .map(|(index, mut chunks)| {
            chunks.sort_by_key(|(part, _)| *part);
            let corrupt = |reason: String| StoreError::Corrupt {
                key: format!("{key}/{index}"),
                reason,
            };
            if chunks.iter().enumerate().any(|(i, (part, _))| i != *part) {
                return Err(corrupt(format!(
                    "chunks are not contiguous: {:?}",
                    chunks.iter().map(|c| c.0).collect::<Vec<_>>()
                )));
            }
            let count = chunks.len();
            let data: Vec<u8> = chunks.into_iter().flat_map(|(_, bytes)| bytes).collect();
            cairn::store::decode_stored(&format!("{key}/{index}"), &data)
                .map(|values| (index, values, count))
        })
        .collect()
}

/// Restores payloads the run item leaves out when they are large.
fn restore_payloads(run: &mut RunRecord, history: &[HistoryEvent]) {
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
    // The run item holds a bounded copy of the error; the history has it whole.
    if run.error.is_some() {
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
    let mut out = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let page = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .set_projection_expression(projection.map(str::to_owned))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| backend("Query", e))?;
        out.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(out),
        }
    }
}

/// Puts of the chunk items holding `values` as JSON, and the JSON's size.
fn json_chunk_puts<T: serde::Serialize>(
    table: &str,
    pk: &str,
    sk: impl Fn(usize) -> String,
    values: &[T],
) -> Result<(Vec<TransactWriteItem>, usize), StoreError> {
    let data = cairn::store::encode_stored(pk, values)?;
    Ok((chunk_puts(table, pk, sk, &data)?, data.len()))
}

impl CheckpointStore for DynamoStore {
    async fn load(&self, run_id: &str) -> Result<Option<LoadedRun>, StoreError> {
        let pk = items::run_pk(run_id);
        let mut run = None;
        let mut events: BTreeMap<u64, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
        let mut outbox: BTreeMap<u64, Vec<(usize, Vec<u8>)>> = BTreeMap::new();
        for item in query_partition(&self.client, &self.table, &pk, None).await? {
            let sk = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            if sk == items::RUN_SK {
                run = Some(items::run_from_item(&item)?);
                continue;
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
            match kind {
                "EVT" => events.entry(index).or_default().push((part, data)),
                "OUT" => outbox.entry(index).or_default().push((part, data)),
                _ => {}
            }
        }
        let Some(mut run) = run else { return Ok(None) };
        let history: Vec<HistoryEvent> = decode_batches::<HistoryEvent>(&pk, events)?
            .into_iter()
            .flat_map(|(_, batch, _)| batch)
            .collect();
        // Commits are all or nothing, but a multi-page Query is not a snapshot: a commit that
        // lands between two pages shows as a length mismatch. Reloading fixes it, so it is
        // a conflict (retried), not corruption.
        if history.len() as u64 != run.history_len {
            return Err(StoreError::Conflict {
                run_id: run_id.to_owned(),
                expected: Some(run.version),
            });
        }
        restore_payloads(&mut run, &history);
        let outbox = decode_batches::<Command>(&pk, outbox)?
            .into_iter()
            .map(|(key, commands, parts)| OutboxBatch {
                key,
                commands,
                parts,
            })
            .collect();
        Ok(Some(LoadedRun {
            run,
            history,
            outbox,
        }))
    }

    async fn commit(&self, commit: &Commit) -> Result<(), StoreError> {
        let run = &commit.run;
        let pk = items::run_pk(&run.run_id);
        let first = commit.first_index();
        let mut writes = Vec::new();
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(items::run_to_item(run, self.retention_days)));
        put = match commit.expected_version {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", AttributeValue::N(v.to_string())),
        };
        let put = put
            .build()
            .map_err(|e| build_error("TransactWriteItems", e))?;
        writes.push(TransactWriteItem::builder().put(put).build());
        let mut bytes = 0;
        if !commit.events.is_empty() {
            let sk = |part| items::events_sk(first, part);
            let (puts, size) = json_chunk_puts(&self.table, &pk, sk, &commit.events)?;
            writes.extend(puts);
            bytes += size;
        }
        if !commit.outbox.is_empty() {
            let sk = |part| items::outbox_sk(first, part);
            let (puts, size) = json_chunk_puts(&self.table, &pk, sk, &commit.outbox)?;
            writes.extend(puts);
            bytes += size;
        }
        // The run item is bounded (large payloads stay in the history), so the chunks decide.
        if bytes > MAX_TRANSACTION_BYTES {
            return Err(StoreError::TooLarge {
                run_id: run.run_id.to_string(),
                reason: format!("{bytes} bytes in one transaction (limit {MAX_TRANSACTION_BYTES})"),
            });
        }
        if writes.len() > MAX_TRANSACTION_ITEMS {
            return Err(StoreError::TooLarge {
                run_id: run.run_id.to_string(),
                reason: format!(
                    "{} items in one transaction (limit {MAX_TRANSACTION_ITEMS})",
                    writes.len()
                ),
            });
        }
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
                    Err(StoreError::Conflict {
                        run_id: run.run_id.to_string(),
                        expected: commit.expected_version,
                    })
                }
                _ => Err(backend("TransactWriteItems", err)),
            },
        }
    }

    async fn clear_outbox(&self, run_id: &str, batches: &[OutboxBatch]) -> Result<(), StoreError> {
        let pk = items::run_pk(run_id);
        let mut deletes = Vec::new();
        for batch in batches {
            for part in 0..batch.parts.max(1) {
                deletes.push(items::outbox_sk(batch.key, part));
            }
        }
        if let [sk] = deletes.as_slice() {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .key("sk", s(sk))
                .send()
                .await
                .map_err(|e| backend("DeleteItem", e))?;
            return Ok(());
        }
        // Deleting is idempotent, so a plain transaction of deletes (≤ 100) is enough.
        for group in deletes.chunks(MAX_TRANSACTION_ITEMS) {
            let writes = group
                .iter()
                .map(|sk| {
                    Delete::builder()
                        .table_name(&self.table)
                        .key("pk", s(&pk))
                        .key("sk", s(sk))
                        .build()
                        .map(|d| TransactWriteItem::builder().delete(d).build())
                        .map_err(|e| build_error("TransactWriteItems", e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .transact_write_items()
                .set_transact_items(Some(writes))
                .send()
                .await
                .map_err(|e| backend("TransactWriteItems", e))?;
        }
        Ok(())
    }

    async fn settle_outbox_marker(&self, run: &RunRecord) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(items::run_pk(&run.run_id)))
            .key("sk", s(items::RUN_SK))
            .update_expression("REMOVE gsi3pk, gsi3sk")
            .condition_expression("version = :v")
            .expression_attribute_values(":v", AttributeValue::N(run.version.to_string()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A newer commit rewrote the run (and its marker): nothing to settle.
            Err(err) if lost_condition(&err) => Ok(()),
            Err(err) => Err(backend("UpdateItem", err)),
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

    async fn retire(&self, run_id: &str) -> Result<(), StoreError> {
        let pk = items::run_pk(run_id);
        let expires_at = items::expires_at(cairn::clock::now_ms(), self.retention_days);
        for item in query_partition(&self.client, &self.table, &pk, Some("sk")).await? {
            let Some(sk) = item.get("sk").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            if sk == items::RUN_SK {
                continue;
            }
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&pk))
                .key("sk", s(sk))
                .update_expression("SET expiresAt = :t")
                .expression_attribute_values(":t", AttributeValue::N(expires_at.to_string()))
                .send()
                .await
                .map_err(|e| backend("UpdateItem", e))?;
        }
        Ok(())
    }

    async fn note_problem(&self, run_id: &str, problem: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(items::run_pk(run_id)))
            .key("sk", s(items::RUN_SK))
            .update_expression("SET lastError = :p")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":p", s(problem))
            .send()
            .await
            .map(|_| ())
            .or_else(|err| {
                if lost_condition(&err) {
                    Ok(())
                } else {
                    Err(backend("UpdateItem", err))
                }
            })
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<RunPage, StoreError> {
        self.list(filter).await
    }

    async fn stalled_runs(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        self.stalled(before_ms, limit, cursor).await
    }
}
