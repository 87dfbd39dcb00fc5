//! [`CheckpointStore`] on DynamoDB.
//!
//! A commit is one conditional `PutItem`: the run's head when it is created (holding its first
//! activation), else the activation's history item; nothing is rewritten when the run ends.
//! Only a history item too large for one item, or a wide outbox with its lease, takes a
//! transaction. A warm store keeps each run's loaded history (`cache`) and then queries only
//! the items after it.
//!
//! - `items`: the table's item layout (keys, attributes, index entries, TTL);
//! - `codec`: a history item's body (events and commands, deflated, chunked);
//! - `write`: committing an activation; `load`: reading a run back;
//! - `listing`: the sharded indexes (listings, due activations, wide outboxes);
//! - `cache`: the warm engine's copies; `blob`: claim-check payloads.

use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use cairn::infra::{InfraError, InfraErrorKind};

use crate::sdk_error::infra_error;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

mod blob;
mod cache;
mod codec;
pub(crate) mod items;
mod listing;
mod load;
mod write;

use load::get_n;
pub(crate) use load::query_partition;

pub use blob::DynamoBlobStore;

use cairn::store::{
    CheckpointStore, Commit, DuePage, LoadedRun, OutboxBatch, OutboxLease, RunFilter, RunPage,
    StoreError,
};
use items::Ttl;

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

fn build_err(operation: &'static str) -> impl Fn(BuildError) -> StoreError {
    move |e| build_error(operation, e)
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
                self.repair_run(&commit.run).await?;
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
