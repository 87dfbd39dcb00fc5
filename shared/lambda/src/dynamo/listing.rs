//! Listing runs through the GSIs (`byStatus`, `byWorkflow`), with opaque page cursors.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use super::items::{self, Item};
use super::{backend, s, DynamoStore};
use cairn::store::{RunFilter, RunPage, RunRecord, StoreError};
use cairn::workflow::RunStatus;

impl DynamoStore {
    async fn query_runs(
        &self,
        q: IndexQuery<'_>,
    ) -> Result<(Vec<RunRecord>, Option<Item>), StoreError> {
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(q.index)
            .key_condition_expression(q.key_condition)
            .set_filter_expression(q.filter.map(str::to_owned))
            .set_expression_attribute_values(Some(q.values))
            .scan_index_forward(q.forward)
            .limit(q.limit.clamp(1, 1000) as i32)
            .set_exclusive_start_key(q.cursor)
            .send()
            .await
            .map_err(|e| backend("Query", e))?;
        let runs = page
            .items
            .unwrap_or_default()
            .iter()
            .map(items::run_from_item)
            .collect::<Result<_, _>>()?;
        Ok((runs, page.last_evaluated_key.filter(|k| !k.is_empty())))
    }
}

/// A query on one of the run indexes.
struct IndexQuery<'a> {
    index: &'a str,
    key_condition: &'a str,
    values: HashMap<String, AttributeValue>,
    filter: Option<&'a str>,
    forward: bool,
    limit: u32,
    cursor: Option<Item>,
}

fn encode_cursor(key: Option<Item>) -> Option<String> {
    let key = key?;
    let map: BTreeMap<String, String> = key
        .into_iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|v| (k, v.clone())))
        .collect();
    serde_json::to_string(&map).ok()
}

fn decode_cursor(cursor: Option<&str>) -> Result<Option<Item>, StoreError> {
    let Some(raw) = cursor else { return Ok(None) };
    let map: BTreeMap<String, String> =
        serde_json::from_str(raw).map_err(|e| StoreError::Corrupt {
            key: "cursor".into(),
            reason: e.to_string(),
        })?;
    Ok(Some(map.into_iter().map(|(k, v)| (k, s(v))).collect()))
}

impl DynamoStore {
    pub(super) async fn list(&self, filter: &RunFilter) -> Result<RunPage, StoreError> {
        let cursor = decode_cursor(filter.cursor.as_deref())?;
        let since = filter.since_ms.unwrap_or(0);
        let mut values = HashMap::from([(":since".to_owned(), s(items::time_sk(since, "")))]);
        let (runs, next) = if let Some(status) = &filter.status {
            values.insert(":pk".into(), s(items::status_pk(&status.to_string())));
            let filter_expr = filter.workflow.as_ref().map(|w| {
                values.insert(":wf".into(), s(w));
                "workflow = :wf"
            });
            self.query_runs(IndexQuery {
                index: "byStatus",
                key_condition: "gsi1pk = :pk AND gsi1sk >= :since",
                values,
                filter: filter_expr,
                forward: false,
                limit: filter.limit,
                cursor,
            })
            .await?
        } else if let Some(workflow) = &filter.workflow {
            values.insert(":pk".into(), s(format!("WF#{workflow}")));
            self.query_runs(IndexQuery {
                index: "byWorkflow",
                key_condition: "gsi2pk = :pk AND gsi2sk >= :since",
                values,
                filter: None,
                forward: false,
                limit: filter.limit,
                cursor,
            })
            .await?
        } else {
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
            let mut runs: Vec<RunRecord> = page
                .items
                .unwrap_or_default()
                .iter()
                .map(items::run_from_item)
                .collect::<Result<_, _>>()?;
            runs.sort_by_key(|r| std::cmp::Reverse(r.created_at_ms));
            (runs, page.last_evaluated_key.filter(|k| !k.is_empty()))
        };
        Ok(RunPage {
            runs,
            next_cursor: encode_cursor(next),
        })
    }

    pub(super) async fn stalled(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        let pk = items::status_pk(&RunStatus::Running.to_string());
        let query = older_than(
            "byStatus",
            "gsi1pk = :pk AND gsi1sk < :before",
            pk,
            before_ms,
        );
        self.page(query, limit, cursor).await
    }

    pub(super) async fn pending_outbox(
        &self,
        before_ms: u64,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        let pk = items::OUTBOX_PK.to_owned();
        let query = older_than(
            "byOutbox",
            "gsi3pk = :pk AND gsi3sk < :before",
            pk,
            before_ms,
        );
        self.page(query, limit, cursor).await
    }

    async fn page(
        &self,
        mut query: IndexQuery<'_>,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<RunPage, StoreError> {
        query.limit = limit;
        query.cursor = decode_cursor(cursor.as_deref())?;
        let (runs, next) = self.query_runs(query).await?;
        Ok(RunPage {
            runs,
            next_cursor: encode_cursor(next),
        })
    }
}

/// An oldest-first query of index partition `pk` for `<time>#<runId>` sort keys before
/// `before_ms`.
fn older_than(
    index: &'static str,
    key_condition: &'static str,
    pk: String,
    before_ms: u64,
) -> IndexQuery<'static> {
    IndexQuery {
        index,
        key_condition,
        values: HashMap::from([
            (":pk".to_owned(), s(pk)),
            (":before".to_owned(), s(items::time_sk(before_ms, ""))),
        ]),
        filter: None,
        forward: true,
        limit: 100,
        cursor: None,
    }
}
