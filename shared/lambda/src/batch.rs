//! Processing one SQS batch: every record parsed and handled on its own, every failure
//! reported as a `BatchItemFailure`, panics caught per record, and nothing left unreported
//! when the Lambda deadline approaches.
//!
//! The rule is "a record is deleted only if it was confirmed": whatever did not finish with
//! `Ok` (error, panic, deadline) is reported, so SQS redelivers it and, after
//! `maxReceiveCount`, moves it to the DLQ. On FIFO queues a failed record also fails every
//! later record of its message group, which are then not processed at all (order is kept).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{FutureExt, StreamExt};

/// How a batch is processed.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// FIFO queue: in order per message group, failure rule for later records.
    pub fifo: bool,
    /// Records (standard) or message groups (FIFO) processed at once.
    pub concurrency: usize,
    /// Time left before the Lambda deadline; processing stops a margin before it.
    pub time_left: Option<Duration>,
    /// How long before the deadline processing stops, leaving room for what follows it
    /// (the worker still sends the batch's results).
    pub deadline_margin: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            fifo: false,
            concurrency: 10,
            time_left: None,
            deadline_margin: DEADLINE_MARGIN,
        }
    }
}

/// By default, records still running this long before the deadline are reported as failures.
const DEADLINE_MARGIN: Duration = Duration::from_millis(1500);

/// Identifier of a record for the batch response.
pub fn message_id(record: &SqsMessage) -> &str {
    record.message_id.as_deref().unwrap_or("")
}

fn message_group(record: &SqsMessage) -> Option<&str> {
    record.attributes.get("MessageGroupId").map(String::as_str)
}

/// Why a record was not confirmed: the reason (logged), and whether it is a transient
/// infrastructure failure (throttled, unreachable, timed out) that deserves a backoff
/// instead of burning a receive at the queue's pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// What went wrong.
    pub reason: String,
    /// The same record may succeed later without any change.
    pub transient: bool,
}

impl RecordFailure {
    /// A transient failure.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            transient: true,
        }
    }
}

impl From<String> for RecordFailure {
    fn from(reason: String) -> Self {
        Self {
            reason,
            transient: false,
        }
    }
}

impl From<&str> for RecordFailure {
    fn from(reason: &str) -> Self {
        reason.to_owned().into()
    }
}

/// What processing a batch's records came to.
#[derive(Debug, Default)]
pub struct Processed {
    /// Ids of the records confirmed (to delete).
    pub confirmed: HashSet<String>,
    /// Why each record that failed did (records unfinished at the deadline are absent).
    pub failures: HashMap<String, RecordFailure>,
}

/// The batch response for `records`, given the ids that were confirmed.
pub fn batch_response(
    records: &[SqsMessage],
    confirmed: &HashSet<String>,
    fifo: bool,
) -> SqsBatchResponse {
    let mut failed_groups: HashSet<&str> = HashSet::new();
    let mut response = SqsBatchResponse::default();
    for record in records {
        let id = message_id(record);
        let group = message_group(record);
        let group_blocked = fifo && group.is_some_and(|g| failed_groups.contains(g));
        if group_blocked || !confirmed.contains(id) {
            if let (true, Some(group)) = (fifo, group) {
                failed_groups.insert(group);
            }
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.to_owned();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// Runs `handle` for every record and builds the batch response.
///
/// `handle` returns `Err(reason)` for a record that must be retried; the reason is logged
/// with the message id.
pub async fn process_batch<F, Fut, E>(
    event: SqsEvent,
    options: BatchOptions,
    handle: F,
) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<RecordFailure>,
{
    let processed = process_records(&event.records, options, handle).await;
    batch_response(&event.records, &processed.confirmed, options.fifo)
}

/// Runs `handle` for every record (see [`process_batch`]) and returns the ids of the records
/// it confirmed and why the others failed, for callers that have more to do before answering.
pub async fn process_records<F, Fut, E>(
    records: &[SqsMessage],
    options: BatchOptions,
    handle: F,
) -> Processed
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<RecordFailure>,
{
    if !options.fifo {
        let units = records
            .iter()
            .map(|record| Unit {
                ids: vec![message_id(record).to_owned()],
                item: record.clone(),
            })
            .collect();
        return process_units(units, options, handle).await;
    }
    // FIFO: groups in parallel, records of one group in order, stopping at its first
    // failure. Records without a group (a standard timers queue read by the same function)
    // are independent: each is its own group.
    let processed = Mutex::new(Processed::default());
    let mut groups: BTreeMap<(String, usize), Vec<SqsMessage>> = BTreeMap::new();
    for (index, record) in records.iter().cloned().enumerate() {
        let key = match message_group(&record) {
            Some(group) => (group.to_owned(), 0),
            None => (String::new(), index),
        };
        groups.entry(key).or_default().push(record);
    }
    let all = futures::stream::iter(groups.into_values()).for_each_concurrent(
        options.concurrency.max(1),
        |group| async {
            for record in group {
                let ids = vec![message_id(&record).to_owned()];
                if !confirm_if_ok(ids, async { handle(record).await }, &processed).await {
                    break;
                }
            }
        },
    );
    with_deadline(options.time_left, options.deadline_margin, all).await;
    let processed = processed.into_inner().unwrap_or_default();
    log_unfinished(records.iter().map(message_id), &processed);
    processed
}

/// Names the records still unfinished when the deadline cut the batch.
fn log_unfinished<'a>(ids: impl Iterator<Item = &'a str>, processed: &Processed) {
    let unfinished: Vec<&str> = ids
        .filter(|id| !processed.confirmed.contains(*id) && !processed.failures.contains_key(*id))
        .collect();
    if !unfinished.is_empty() {
        tracing::warn!(message_ids = ?unfinished, "unfinished at the deadline: reported for redelivery");
    }
}

/// Awaits `work` with panics caught; on `Ok` confirms `ids`, otherwise logs why they will
/// be redelivered. Returns whether they were confirmed.
async fn confirm_if_ok<E: Into<RecordFailure>>(
    ids: Vec<String>,
    work: impl Future<Output = Result<(), E>>,
    processed: &Mutex<Processed>,
) -> bool {
    let failure = match AssertUnwindSafe(work).catch_unwind().await {
        Ok(Ok(())) => {
            if let Ok(mut processed) = processed.lock() {
                processed.confirmed.extend(ids);
            }
            return true;
        }
        Ok(Err(failure)) => {
            let failure: RecordFailure = failure.into();
            tracing::warn!(message_ids = ?ids, reason = %failure.reason, transient = failure.transient, "failed; reported for redelivery");
            failure
        }
        Err(panic) => {
            let reason = cairn::panic::panic_message(panic.as_ref());
            tracing::error!(message_ids = ?ids, %reason, "handler panicked; reported for redelivery");
            RecordFailure::from(format!("panic: {reason}"))
        }
    };
    if let Ok(mut processed) = processed.lock() {
        for id in ids {
            processed.failures.insert(id, failure.clone());
        }
    }
    false
}

/// A unit of work covering one or more records: confirming it confirms them all.
#[derive(Debug)]
pub struct Unit<T> {
    /// The message ids of the records the unit covers.
    pub ids: Vec<String>,
    /// The work item.
    pub item: T,
}

/// Runs `handle` for every unit concurrently (standard queues), with the same rules as
/// [`process_records`]: a unit that errs, panics or is unfinished at the deadline confirms
/// none of its records.
pub async fn process_units<T, F, Fut, E>(
    units: Vec<Unit<T>>,
    options: BatchOptions,
    handle: F,
) -> Processed
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Into<RecordFailure>,
{
    let processed = Mutex::new(Processed::default());
    let all_ids: Vec<String> = units.iter().flat_map(|u| u.ids.clone()).collect();
    let all =
        futures::stream::iter(units).for_each_concurrent(options.concurrency.max(1), |unit| {
            // The handler is called inside the caught future, so even a panic before its first
            // await fails only this unit.
            let work = async { handle(unit.item).await };
            let processed = &processed;
            async move {
                confirm_if_ok(unit.ids, work, processed).await;
            }
        });
    with_deadline(options.time_left, options.deadline_margin, all).await;
    let processed = processed.into_inner().unwrap_or_default();
    log_unfinished(all_ids.iter().map(String::as_str), &processed);
    processed
}

/// Runs `work`, giving up a margin before the deadline (what is unfinished stays unconfirmed).
async fn with_deadline(
    time_left: Option<Duration>,
    margin: Duration,
    work: impl Future<Output = ()>,
) {
    match time_left {
        Some(left) => {
            let budget = left.saturating_sub(margin);
            if tokio::time::timeout(budget, work).await.is_err() {
                tracing::warn!("deadline near: unfinished records reported as failures");
            }
        }
        None => work.await,
    }
}

/// Time left before the deadline of a Lambda invocation; `None` when the context has none
/// (`Context::default()` in tests has a zero deadline).
pub fn time_left(context: &lambda_runtime::Context) -> Option<Duration> {
    context
        .deadline()
        .duration_since(std::time::SystemTime::now())
        .ok()
        .filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(id: &str, group: Option<&str>, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        if let Some(g) = group {
            m.attributes.insert("MessageGroupId".into(), g.into());
        }
        m
    }

    fn event(records: Vec<SqsMessage>) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = records;
        e
    }

    fn failed_ids(r: &SqsBatchResponse) -> Vec<&str> {
        r.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    #[tokio::test]
    async fn errors_and_panics_fail_only_their_record() {
        let records = vec![
            record("a", None, "ok"),
            record("b", None, "err"),
            record("c", None, "panic"),
            record("d", None, "ok"),
        ];
        let response = process_batch(event(records), BatchOptions::default(), |m| async move {
            match m.body.as_deref() {
                Some("err") => Err("bad".to_owned()),
                Some("panic") => panic!("boom"),
                _ => Ok(()),
            }
        })
        .await;
        assert_eq!(failed_ids(&response), vec!["b", "c"]);
    }

    #[tokio::test]
    async fn fifo_failure_fails_later_records_of_the_same_group_only() {
        let records = vec![
            record("1", Some("g1"), "ok"),
            record("2", Some("g1"), "err"),
            record("3", Some("g2"), "ok"),
            record("4", Some("g1"), "ok"),
            record("5", Some("g2"), "ok"),
        ];
        let seen = Mutex::new(Vec::new());
        let options = BatchOptions {
            fifo: true,
            ..Default::default()
        };
        let response = process_batch(event(records), options, |m| {
            seen.lock().unwrap().push(m.message_id.clone().unwrap());
            async move {
                if m.body.as_deref() == Some("err") {
                    Err::<(), String>("bad".into())
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert_eq!(failed_ids(&response), vec!["2", "4"]);
        assert!(
            !seen.lock().unwrap().contains(&"4".to_owned()),
            "later records of a failed group are not processed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn records_unfinished_at_the_deadline_are_reported() {
        let records = vec![record("fast", None, "0"), record("slow", None, "60")];
        let options = BatchOptions {
            time_left: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let response = process_batch(event(records), options, |m| async move {
            let secs: u64 = m.body.unwrap().parse().unwrap();
            tokio::time::sleep(Duration::from_secs(secs)).await;
            Ok::<(), String>(())
        })
        .await;
        assert_eq!(failed_ids(&response), vec!["slow"]);
    }
}
