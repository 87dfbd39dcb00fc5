//! Reading the sharded `KEYS_ONLY` indexes: listing runs (`byStatus` for failed, cancelled
//! and continued runs, `byWorkflow`, else a scan of run items), wide
//! outboxes whose lease expired (`byOutbox`) and due activations (`byDue`).
//!
//! Every index partition is split into [`SHARDS`](items::SHARDS) by run id, so no partition
//! takes every run's writes. A listing queries each shard and merges; its cursor holds each
//! shard's position. Index entries carry keys only (one write unit each, whatever the run
//! holds); listed runs are read with `BatchGetItem`.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::items::{self, Item};
use super::{backend, s, DynamoStore};
use cairn::store::{DueItem, DuePage, RunFilter, RunPage, RunRecord, StoreError};
use cairn::workflow::RunStatus;

/// One index query, run on every shard.
struct ShardQuery {
    index: &'static str,
    /// Index partition key attribute and sort key attribute.
    keys: (&'static str, &'static str),
    /// The partition of shard `n`.
    pk: Box<dyn Fn(u32) -> String + Send + Sync>,
    /// Sort key range `(from, to)`, inclusive; `None` for an open end.
    from: Option<String>,
    to: Option<String>,
    forward: bool,
}

/// Per-shard positions: the last index sort key and table key returned from each shard;
/// `None` once a shard is exhausted.
type Cursor = BTreeMap<u32, Option<(String, String, String)>>;

fn encode_cursor(cursor: &Cursor) -> Option<String> {
    let done = (0..items::SHARDS).all(|shard| matches!(cursor.get(&shard), Some(None)));
    if done {
        return None;
    }
    serde_json::to_string(cursor).ok()
}

fn decode_cursor(raw: Option<&str>) -> Result<Option<Cursor>, StoreError> {
    raw.map(|raw| {
        serde_json::from_str(raw).map_err(|e| StoreError::Corrupt {
            key: "cursor".into(),
            reason: e.to_string(),
        })
    })
    .transpose()
}

fn attr(item: &Item, name: &str) -> String {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

impl DynamoStore {
    /// Up to `limit` entries in index order over all shards, from `cursor`; the next cursor.
    async fn merged(
        &self,
        q: &ShardQuery,
        limit: u32,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<Item>, Cursor), StoreError> {
        let limit = limit.clamp(1, 1000);
        let cursor = cursor.unwrap_or_default();
        let sort_key = |i: &Item| attr(i, q.keys.1);
        // Per shard: its entries from its position, and whether the index holds more.
        let mut fetched: BTreeMap<u32, (Vec<Item>, bool)> = BTreeMap::new();
        for shard in 0..items::SHARDS {
            let start = match cursor.get(&shard) {
                Some(None) => continue, // exhausted
                Some(Some(pos)) => Some(pos.clone()),
                None => None,
            };
            let pk = (q.pk)(shard);
            let mut condition = format!("{} = :pk", q.keys.0);
            let mut values = HashMap::from([(":pk".to_owned(), s(&pk))]);
            match (&q.from, &q.to) {
                (Some(from), Some(to)) => {
                    condition.push_str(&format!(" AND {} BETWEEN :from AND :to", q.keys.1));
                    values.insert(":from".into(), s(from));
                    values.insert(":to".into(), s(to));
                }
                (Some(from), None) => {
                    condition.push_str(&format!(" AND {} >= :from", q.keys.1));
                    values.insert(":from".into(), s(from));
                }
                (None, Some(to)) => {
                    condition.push_str(&format!(" AND {} <= :to", q.keys.1));
                    values.insert(":to".into(), s(to));
                }
                (None, None) => {}
            }
            let start_key = start.map(|(isk, tpk, tsk)| {
                Item::from([
                    (q.keys.0.to_owned(), s(&pk)),
                    (q.keys.1.to_owned(), s(isk)),
                    ("pk".to_owned(), s(tpk)),
                    ("sk".to_owned(), s(tsk)),
                ])
            });
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(q.index)
                .key_condition_expression(condition)
                .set_expression_attribute_values(Some(values))
                .scan_index_forward(q.forward)
                .limit(limit as i32)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(|e| backend("Query", e))?;
            let more = page.last_evaluated_key.is_some_and(|k| !k.is_empty());
            fetched.insert(shard, (page.items.unwrap_or_default(), more));
        }
        let mut all: Vec<(u32, Item)> = fetched
            .iter()
            .flat_map(|(shard, (items, _))| items.iter().map(|i| (*shard, i.clone())))
            .collect();
        all.sort_by(|(_, a), (_, b)| {
            let order = sort_key(a).cmp(&sort_key(b));
            if q.forward {
                order
            } else {
                order.reverse()
            }
        });
        all.truncate(limit as usize);
        let mut next = cursor;
        for (shard, (items, more)) in &fetched {
            let taken: Vec<&Item> = all
                .iter()
                .filter(|(s, _)| s == shard)
                .map(|(_, i)| i)
                .collect();
            if let Some(last) = taken.last() {
                next.insert(
                    *shard,
                    Some((sort_key(last), attr(last, "pk"), attr(last, "sk"))),
                );
            }
            if taken.len() == items.len() && !more {
                next.insert(*shard, None);
            }
        }
        Ok((all.into_iter().map(|(_, i)| i).collect(), next))
    }

    /// The run items of `run_ids`, in that order (missing ones skipped).
    async fn runs_by_id(&self, run_ids: &[String]) -> Result<Vec<RunRecord>, StoreError> {
        let mut found: HashMap<String, RunRecord> = HashMap::new();
        for group in run_ids.chunks(100) {
            let mut keys: Vec<Item> = group
                .iter()
                .map(|id| {
                    Item::from([
                        ("pk".to_owned(), s(items::run_pk(id))),
                        ("sk".to_owned(), s(items::RUN_SK)),
                    ])
                })
                .collect();
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .build()
                    .map_err(|e| super::build_error("BatchGetItem", e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| backend("BatchGetItem", e))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let run = self.settled(&item).await?;
                    found.insert(run.run_id.to_string(), run);
                }
                if let Some(rest) = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    keys = rest.keys;
                }
            }
        }
        Ok(run_ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    /// The run of a run item, with its status and outcome from its history: the head's own
    /// first activation, else the run's last history item (one query; a run whose last
    /// activation took several items is loaded whole).
    pub(super) async fn settled(&self, item: &Item) -> Result<RunRecord, StoreError> {
        let mut run = items::run_from_item(item)?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        let noted = super::load::get_n(item, "lastErrorAt");
        let pk = items::run_pk(&run.run_id);
        // Settles `run` on the history item `from` (at history index `index`).
        let settle_on = |run: &mut RunRecord, from: &Item, index: u64| {
            let data = from.get("data").and_then(|v| v.as_b().ok());
            let data = data.map(|b| b.as_ref()).unwrap_or_default();
            let batch = super::codec::decode_history_data(&format!("{pk}/{index}"), data)?;
            super::load::settle(run, noted, &batch.events);
            Ok::<_, StoreError>(())
        };
        if item.get("data").is_some_and(|v| v.as_b().is_ok()) {
            settle_on(&mut run, item, 0)?;
            if run.status.is_terminal() {
                return Ok(run);
            }
        }
        let last = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":from", s("EVT#"))
            .expression_attribute_values(":to", s("EVT#~"))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| backend("Query", e))?
            .items
            .unwrap_or_default()
            .pop();
        let Some(last) = last else {
            return Ok(run);
        };
        let sk = attr(&last, "sk");
        match items::parse_chunk_sk(&sk) {
            Some((_, index, 0)) => {
                settle_on(&mut run, &last, index)?;
                Ok(run)
            }
            _ => match self.load_cold(run.run_id.as_str()).await? {
                Some(loaded) => Ok(loaded.run),
                None => Ok(run),
            },
        }
    }

    async fn run_page(
        &self,
        q: &ShardQuery,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<RunPage, StoreError> {
        let (entries, next) = self.merged(q, limit, decode_cursor(cursor)?).await?;
        let mut ids: Vec<String> = Vec::new();
        for entry in &entries {
            let id = attr(entry, "pk").trim_start_matches("RUN#").to_owned();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(RunPage {
            runs: self.runs_by_id(&ids).await?,
            next_cursor: encode_cursor(&next),
        })
    }

    pub(super) async fn list(&self, filter: &RunFilter) -> Result<RunPage, StoreError> {
        let since = items::time_sk(filter.since_ms.unwrap_or(0), "");
        // Only endings other than completion are indexed by status; running and completed
        // runs are listed by workflow (or all runs) and filtered on their history.
        let indexed = filter
            .status
            .filter(|s| !matches!(s, RunStatus::Running | RunStatus::Completed));
        let mut page = if let Some(status) = indexed {
            let q = ShardQuery {
                index: "byStatus",
                keys: ("gsi1pk", "gsi1sk"),
                pk: Box::new(move |shard| items::status_pk(&status.to_string(), shard)),
                from: Some(since),
                to: None,
                forward: false,
            };
            self.run_page(&q, filter.limit, filter.cursor.as_deref())
                .await?
        } else if let Some(workflow) = filter.workflow.clone() {
            let q = ShardQuery {
                index: "byWorkflow",
                keys: ("gsi2pk", "gsi2sk"),
                pk: Box::new(move |shard| items::workflow_pk(&workflow, shard)),
                from: Some(since),
                to: None,
                forward: false,
            };
            self.run_page(&q, filter.limit, filter.cursor.as_deref())
                .await?
        } else {
            self.scan_runs(filter).await?
        };
        // Index entries hold keys only: the other filter is applied to the runs read.
        if let Some(workflow) = &filter.workflow {
            page.runs.retain(|r| &r.workflow == workflow);
        }
        if let Some(status) = filter.status {
            page.runs.retain(|r| r.status == status);
        }
        Ok(page)
    }

    async fn scan_runs(&self, filter: &RunFilter) -> Result<RunPage, StoreError> {
        let since = filter.since_ms.unwrap_or(0);
        let cursor = filter
            .cursor
            .as_deref()
            .map(|raw| {
                serde_json::from_str::<BTreeMap<String, String>>(raw).map_err(|e| {
                    StoreError::Corrupt {
                        key: "cursor".into(),
                        reason: e.to_string(),
                    }
                })
            })
            .transpose()?
            .map(|m| m.into_iter().map(|(k, v)| (k, s(v))).collect::<Item>());
        let page = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :run AND createdAt >= :since")
            .expression_attribute_values(":run", s(items::RUN_SK))
            .expression_attribute_values(":since", AttributeValue::N(since.to_string()))
            .limit(filter.limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(cursor)
            .send()
            .await
            .map_err(|e| backend("Scan", e))?;
        let mut runs: Vec<RunRecord> = Vec::new();
        for item in page.items.unwrap_or_default() {
            runs.push(self.settled(&item).await?);
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r.created_at_ms));
        let next_cursor = page
            .last_evaluated_key
            .filter(|k| !k.is_empty())
            .and_then(|k| {
                let map: BTreeMap<String, String> = k
                    .into_iter()
                    .filter_map(|(k, v)| v.as_s().ok().map(|v| (k, v.clone())))
                    .collect();
                serde_json::to_string(&map).ok()
            });
        Ok(RunPage { runs, next_cursor })
    }

    pub(super) async fn pending_outbox(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        let q = ShardQuery {
            index: "byOutbox",
            keys: ("gsi3pk", "gsi3sk"),
            pk: Box::new(items::outbox_pk),
            from: None,
            to: Some(items::time_sk(before_ms, "")),
            forward: true,
        };
        self.run_page(&q, limit, cursor.as_deref()).await
    }

    pub(super) async fn due(
        &self,
        after_ms: u64,
        before_ms: u64,
        limit: u32,
    ) -> Result<DuePage, StoreError> {
        let q = ShardQuery {
            index: "byDue",
            keys: ("gsi4pk", "gsi4sk"),
            pk: Box::new(items::due_pk),
            // `(after, before]`: every sort key of a later millisecond sorts above `after~`.
            from: Some(format!("{after_ms:013}~")),
            to: Some(format!("{before_ms:013}~")),
            forward: true,
        };
        let (entries, next) = self.merged(&q, limit, None).await?;
        let items = entries
            .iter()
            .filter_map(|i| {
                let key = attr(i, "gsi4sk");
                let (due_ms, run_id, index) = items::parse_due_sk(&key)?;
                Some(DueItem {
                    run_id: run_id.to_owned(),
                    index,
                    due_ms,
                })
            })
            .collect();
        let done = (0..items::SHARDS).all(|shard| matches!(next.get(&shard), Some(None)));
        Ok(DuePage { items, more: !done })
    }
}
