//! Committing an activation: one conditional `PutItem` (the run's head when it is created,
//! else the activation's history item) with the index entries it needs; a transaction only
//! for a history item too large for one item or a wide outbox with its lease.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::codec::{pack, HistoryData};
use super::items::{self, Item};
use super::{backend, build_err, s, DynamoStore};
use cairn::store::{Commit, RunRecord, StoreError};
use cairn::workflow::RunStatus;

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
    let ended = commit.events.iter().any(|e| e.kind.ends_run());
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

impl DynamoStore {
    /// Repairs the run item of an older release (a run is created with its head); a head is
    /// never rewritten: what the repair would fix is read from the history.
    pub(super) async fn repair_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(items::run_to_item(run, self.ttl)))
            .condition_expression("attribute_not_exists(#data)")
            .expression_attribute_names("#data", "data");
        match put.send().await {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(()),
                _ => Err(backend("PutItem", err)),
            },
        }
    }

    /// Writes a new run's head (the creation lock), holding its first activation when
    /// `data` is given.
    pub(super) async fn put_head(
        &self,
        commit: &Commit,
        data: Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let run = &commit.run;
        let inline = data.is_some();
        let mut item = items::head_item(run, self.ttl, data);
        if inline {
            index_keys(commit, &mut item);
        }
        let conflict = StoreError::Conflict {
            run_id: run.run_id.to_string(),
            expected: None,
        };
        self.put_conditional(item, "attribute_not_exists(pk)", None, conflict)
            .await
    }

    /// One conditional `PutItem`. A failed condition is `conflict`, unless the item holds
    /// what we wrote: the SDK retried this very write after its answer was lost, and the
    /// write is ours.
    async fn put_conditional(
        &self,
        item: Item,
        condition: &'static str,
        values: Option<HashMap<String, AttributeValue>>,
        conflict: StoreError,
    ) -> Result<(), StoreError> {
        let key = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let (pk, sk) = (key("pk"), key("sk"));
        let written = item.get("data").cloned();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => {
                    if self.holds(&pk, &sk, written.as_ref()).await? {
                        tracing::info!(%pk, %sk, "write found in place (its first answer was lost)");
                        return Ok(());
                    }
                    Err(conflict)
                }
                _ => Err(backend("PutItem", err)),
            },
        }
    }

    /// The body of `commit`'s history item(s), refused (TooLarge) if it could not be read
    /// back or is more than one transaction holds: nothing commits that bricks the run.
    pub(super) fn history_data(commit: &Commit) -> Result<Vec<u8>, StoreError> {
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
    pub(super) async fn put_history(
        &self,
        commit: &Commit,
        data: Vec<u8>,
    ) -> Result<(), StoreError> {
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
            let values = HashMap::from([(":born".to_owned(), born.clone())]);
            return self
                .put_conditional(item, FREE_INDEX, Some(values), conflict())
                .await;
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
    pub(super) async fn holds(
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

    pub(super) async fn delete(&self, pk: &str, sk: &str) -> Result<(), StoreError> {
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
