//! The benchmark's cost meter: an SDK interceptor that sees every request attempt with its
//! response and prices it the way AWS bills it.
//!
//! - Requests are counted per `(service, operation)`. Attempts answered with a 5xx (moto's
//!   occasional 500s, retried by the SDK) are counted apart: AWS does not bill them.
//! - DynamoDB writes are priced in write units from the request bodies: an item costs one WRU
//!   per started KiB of the larger of its old and new image, twice inside a transaction, and a
//!   failed conditional write costs as if it had succeeded. To know old images and index
//!   entries, the meter keeps a shadow copy of every item this process wrote, and prices each
//!   global secondary index entry that a write creates, changes or removes (one WRU per
//!   started KiB of the projected entry; a key change is a delete plus a put).
//! - DynamoDB reads are priced in read units from the response bodies: per request, the items'
//!   sizes summed and rounded up to 4 KiB (`GetItem`/`BatchGetItem`: per item), halved for
//!   eventually consistent reads (index queries always are).
//! - SQS requests are billed per started 64 KiB of payload (sends), one otherwise. Receives
//!   that return nothing are counted apart (idle long polls of the event source mappings).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::{Map, Value};

mod dynamodb;
use dynamodb::dynamodb;

/// How a global secondary index projects items.
#[derive(Debug, Clone)]
pub struct IndexSpec {
    /// Its partition and (optional) sort key attributes.
    pub keys: Vec<String>,
    /// `None`: ALL; otherwise the projected non-key attributes (empty: KEYS_ONLY).
    pub include: Option<Vec<String>>,
}

/// Totals so far.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Billed requests per `(service, operation)` (empty receives excluded).
    pub requests: BTreeMap<(String, String), u64>,
    /// Attempts answered with a 5xx (retried by the SDK; not billed).
    pub server_errors: u64,
    /// Receives that returned no message.
    pub empty_receives: u64,
    /// DynamoDB write units on the table.
    pub table_wru: f64,
    /// DynamoDB write units on indexes.
    pub index_wru: f64,
    /// DynamoDB read units.
    pub rru: f64,
    /// Bytes of items DynamoDB returned.
    pub bytes_read: u64,
    /// SQS billed request units (64 KiB chunks).
    pub sqs_units: u64,
    /// Messages sent, by queue URL.
    pub sent_by_queue: BTreeMap<String, u64>,
    /// `stepId`s of tasks sent, with how many times each was sent.
    pub task_sends: HashMap<String, u32>,
}

impl Totals {
    /// Billed requests, all services.
    pub fn request_count(&self) -> u64 {
        self.requests.values().sum()
    }

    /// DynamoDB requests.
    pub fn dynamodb_requests(&self) -> u64 {
        self.requests
            .iter()
            .filter(|((s, _), _)| s.eq_ignore_ascii_case("dynamodb"))
            .map(|(_, n)| n)
            .sum()
    }

    /// Write units, table and indexes.
    pub fn wru(&self) -> f64 {
        self.table_wru + self.index_wru
    }

    /// `self - earlier`, field by field (maps: per key).
    pub fn since(&self, earlier: &Totals) -> Totals {
        let mut requests = self.requests.clone();
        for (key, n) in &earlier.requests {
            if let Some(v) = requests.get_mut(key) {
                *v = v.saturating_sub(*n);
            }
        }
        let mut sent_by_queue = self.sent_by_queue.clone();
        for (key, n) in &earlier.sent_by_queue {
            if let Some(v) = sent_by_queue.get_mut(key) {
                *v = v.saturating_sub(*n);
            }
        }
        let mut task_sends = self.task_sends.clone();
        for (key, n) in &earlier.task_sends {
            if let Some(v) = task_sends.get_mut(key) {
                *v = v.saturating_sub(*n);
            }
        }
        task_sends.retain(|_, n| *n > 0);
        Totals {
            requests,
            server_errors: self.server_errors - earlier.server_errors,
            empty_receives: self.empty_receives - earlier.empty_receives,
            table_wru: self.table_wru - earlier.table_wru,
            index_wru: self.index_wru - earlier.index_wru,
            rru: self.rru - earlier.rru,
            bytes_read: self.bytes_read - earlier.bytes_read,
            sqs_units: self.sqs_units - earlier.sqs_units,
            sent_by_queue,
            task_sends,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    totals: Totals,
    shadow: HashMap<(String, String), Map<String, Value>>,
}

/// The interceptor; clone it into every client.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    state: Arc<Mutex<State>>,
    indexes: Arc<Mutex<Vec<IndexSpec>>>,
}

impl Meter {
    /// A meter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The table's indexes, for pricing index entries.
    pub fn set_indexes(&self, indexes: Vec<IndexSpec>) {
        if let Ok(mut i) = self.indexes.lock() {
            *i = indexes;
        }
    }

    /// Totals so far.
    pub fn totals(&self) -> Totals {
        self.state
            .lock()
            .map(|s| s.totals.clone())
            .unwrap_or_default()
    }

    fn record(&self, service: &str, operation: &str, status: u16, req: &[u8], resp: &[u8]) {
        let indexes = self.indexes.lock().map(|i| i.clone()).unwrap_or_default();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if status >= 500 {
            state.totals.server_errors += 1;
            return;
        }
        let request: Value = serde_json::from_slice(req).unwrap_or(Value::Null);
        let response: Value = serde_json::from_slice(resp).unwrap_or(Value::Null);
        let ok = status < 300;
        if service.eq_ignore_ascii_case("sqs") {
            sqs(&mut state.totals, operation, &request, &response, ok);
        } else {
            dynamodb(&mut state, &indexes, operation, &request, &response, ok);
            *state
                .totals
                .requests
                .entry((service.to_owned(), operation.to_owned()))
                .or_default() += 1;
        }
    }
}

fn sqs(totals: &mut Totals, operation: &str, request: &Value, response: &Value, ok: bool) {
    let empty = operation == "ReceiveMessage"
        && ok
        && response
            .get("Messages")
            .and_then(Value::as_array)
            .is_none_or(|m| m.is_empty());
    if empty {
        totals.empty_receives += 1;
        return;
    }
    *totals
        .requests
        .entry(("SQS".into(), operation.into()))
        .or_default() += 1;
    let bodies: Vec<&str> = match operation {
        "SendMessage" => request
            .get("MessageBody")
            .and_then(Value::as_str)
            .into_iter()
            .collect(),
        "SendMessageBatch" => request
            .get("Entries")
            .and_then(Value::as_array)
            .map(|e| {
                e.iter()
                    .filter_map(|e| e.get("MessageBody").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if bodies.is_empty() {
        totals.sqs_units += 1;
        return;
    }
    let bytes: usize = bodies.iter().map(|b| b.len()).sum();
    totals.sqs_units += bytes.div_ceil(64 * 1024).max(1) as u64;
    if ok {
        let url = request
            .get("QueueUrl")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        *totals.sent_by_queue.entry(url).or_default() += bodies.len() as u64;
        for body in bodies {
            let step = serde_json::from_str::<Value>(body).ok().and_then(|b| {
                b.get("stepId")
                    .and_then(Value::as_str)
                    .filter(|_| b.get("name").is_some() && b.get("status").is_none())
                    .map(str::to_owned)
            });
            if let Some(step) = step {
                *totals.task_sends.entry(step).or_default() += 1;
            }
        }
    }
}

/// The request body, kept between the hooks of one attempt.
#[derive(Debug, Clone)]
struct RequestBody(Vec<u8>);

impl aws_smithy_types::config_bag::Storable for RequestBody {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "cairn-bench-meter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context
            .request()
            .body()
            .bytes()
            .unwrap_or_default()
            .to_vec();
        cfg.interceptor_state().store_put(RequestBody(body));
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(metadata) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let req = cfg
            .load::<RequestBody>()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        let response = context.response();
        let resp = response.body().bytes().unwrap_or_default();
        self.record(
            metadata.service(),
            metadata.name(),
            response.status().as_u16(),
            &req,
            resp,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn spec(include: Option<Vec<String>>) -> Vec<IndexSpec> {
        vec![IndexSpec {
            keys: vec!["g1".into(), "g1s".into()],
            include,
        }]
    }

    #[test]
    fn transactions_cost_double_and_index_key_changes_cost_a_delete_and_a_put() {
        let meter = Meter::new();
        meter.set_indexes(spec(Some(vec![])));
        let item = json!({"TransactItems": [{"Put": {"Item": {
            "pk": {"S": "RUN#a"}, "sk": {"S": "RUN"}, "g1": {"S": "running"}, "g1s": {"S": "1"},
            "data": {"B": "A".repeat(2000)}}}}]});
        meter.record(
            "DynamoDB",
            "TransactWriteItems",
            200,
            item.to_string().as_bytes(),
            b"{}",
        );
        let t = meter.totals();
        assert_eq!(t.table_wru, 4.0, "1.5 KB item, transactional");
        assert_eq!(t.index_wru, 1.0);
        let update = json!({"Key": {"pk": {"S": "RUN#a"}, "sk": {"S": "RUN"}},
            "UpdateExpression": "SET g1 = :s REMOVE data",
            "ExpressionAttributeValues": {":s": {"S": "completed"}}});
        meter.record(
            "DynamoDB",
            "UpdateItem",
            200,
            update.to_string().as_bytes(),
            b"{}",
        );
        let t = meter.totals();
        assert_eq!(t.table_wru, 6.0, "an update costs the larger image");
        assert_eq!(t.index_wru, 3.0, "key change: delete + put");
    }

    #[test]
    fn reads_round_per_request_and_empty_receives_and_errors_are_apart() {
        let meter = Meter::new();
        let items = json!({"Items": [{"pk": {"S": "x"}}, {"pk": {"S": "y"}}]});
        meter.record(
            "DynamoDB",
            "Query",
            200,
            br#"{"ConsistentRead":true}"#,
            items.to_string().as_bytes(),
        );
        meter.record("SQS", "ReceiveMessage", 200, b"{}", b"{}");
        meter.record("SQS", "ReceiveMessage", 500, b"{}", b"{}");
        let t = meter.totals();
        assert_eq!(t.rru, 1.0);
        assert_eq!(t.empty_receives, 1);
        assert_eq!(t.server_errors, 1);
        assert_eq!(t.request_count(), 1);
    }
}
