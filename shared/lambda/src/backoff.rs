//! What happens to a record that failed, after its batch: a transient failure (throttled,
//! unreachable, timed out, a race lost too often) is backed off with `ChangeMessageVisibility`,
//! exponentially in its receive count, so an outage of hours does not burn the receives that
//! stand between a record and its dead-letter queue; a record failing its last receive is
//! logged at WARN (run id, message id, reason) before SQS dead-letters it.
//!
//! With the defaults (20 s doubling, [`MAX_VISIBILITY_SECONDS`] cap) and the template's
//! `MaxReceiveCount` of 10, receive *n* fails at 20·(2ⁿ⁻¹ − 1) s after the first: the tenth, the
//! last one before the DLQ, comes 20·511 s = 2 h 50 min after the first. Any outage shorter than
//! that is survived: some receive falls after it and succeeds. Poison (a record failing for
//! good) keeps the queue's own visibility timeout (200 s for the engine), so it still reaches
//! the DLQ after 10 receives, about 33 minutes.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, QueueAttributeName};

use crate::batch::{message_id, Processed};

/// SQS's longest visibility timeout: 12 hours.
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;

/// How long a transiently failed record stays invisible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// After the first receive; doubled at every later one.
    pub base_seconds: u32,
    /// The longest (at most [`MAX_VISIBILITY_SECONDS`]).
    pub max_seconds: u32,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            base_seconds: 20,
            max_seconds: MAX_VISIBILITY_SECONDS,
        }
    }
}

impl BackoffPolicy {
    /// The visibility timeout after a transient failure of receive `receive_count` (1-based):
    /// `base · 2^(n−1)`, capped.
    pub fn delay_seconds(&self, receive_count: u32) -> u32 {
        let doublings = receive_count.saturating_sub(1).min(31);
        let delay = u64::from(self.base_seconds.max(1)) << doublings;
        delay.min(u64::from(self.max_seconds.min(MAX_VISIBILITY_SECONDS))) as u32
    }
}

/// Backs off transiently failed records and warns of the ones about to be dead-lettered.
#[derive(Debug)]
pub struct Backoff {
    sqs: aws_sdk_sqs::Client,
    policy: BackoffPolicy,
    /// `maxReceiveCount` of each queue (by ARN) that has a redrive policy.
    max_receives: Mutex<HashMap<String, Option<u32>>>,
}

/// A record's receive count (`ApproximateReceiveCount`), 1 if absent.
pub fn receive_count(record: &SqsMessage) -> u32 {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The URL of the queue of `arn` (`arn:aws:sqs:<region>:<account>:<name>`): SQS accepts it
/// whatever endpoint the client uses (the name is read from its last segment).
fn queue_url(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "sqs", region, account, name] => Some(format!(
            "https://sqs.{region}.amazonaws.com/{account}/{name}"
        )),
        _ => None,
    }
}

impl Backoff {
    /// Backoff with `policy`, through `sqs`.
    pub fn new(sqs: aws_sdk_sqs::Client, policy: BackoffPolicy) -> Self {
        Self {
            sqs,
            policy,
            max_receives: Mutex::new(HashMap::new()),
        }
    }

    /// The policy.
    pub fn policy(&self) -> BackoffPolicy {
        self.policy
    }

    /// After a batch: every record of `records` that was not confirmed is looked at. A
    /// transient failure, or a record left unfinished at the deadline, gets its backoff; one
    /// failing its last receive is logged at WARN with its run (`run_of`: message id → run
    /// id) and reason. Best effort: what cannot be changed keeps the queue's visibility.
    pub async fn settle(
        &self,
        records: &[SqsMessage],
        processed: &Processed,
        run_of: &HashMap<String, String>,
    ) {
        let mut by_queue: HashMap<&str, Vec<(&SqsMessage, u32)>> = HashMap::new();
        for record in records {
            let id = message_id(record);
            if processed.confirmed.contains(id) {
                continue;
            }
            let failure = processed.failures.get(id);
            let (reason, transient) = match failure {
                Some(f) => (f.reason.as_str(), f.transient),
                None => ("unfinished at the deadline", true),
            };
            let receives = receive_count(record);
            let arn = record.event_source_arn.as_deref().unwrap_or_default();
            let run_id = run_of.get(id).map(String::as_str).unwrap_or("");
            if let Some(max) = self.max_receive_count(arn).await {
                if receives >= max {
                    tracing::warn!(
                        run_id,
                        message_id = id,
                        receives,
                        max_receive_count = max,
                        queue = arn,
                        %reason,
                        "record failed its last receive: SQS moves it to the dead-letter queue (the reconciler reports it; cairn dlq redrive brings it back)"
                    );
                    crate::metrics::count(
                        crate::metrics::DEAD_LETTERED,
                        if transient { "transient" } else { "failed" },
                    );
                    continue;
                }
            }
            if transient {
                let delay = self.policy.delay_seconds(receives);
                tracing::info!(run_id, message_id = id, receives, delay_seconds = delay, %reason, "transient failure: record backed off");
                by_queue.entry(arn).or_default().push((record, delay));
            }
        }
        for (arn, entries) in by_queue {
            let Some(url) = queue_url(arn) else {
                continue;
            };
            for chunk in entries.chunks(10) {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (record, delay))| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(record.receipt_handle.as_deref().unwrap_or_default())
                            .visibility_timeout(*delay as i32)
                            .build()
                            .ok()
                    })
                    .collect::<Vec<_>>();
                let sent = self
                    .sqs
                    .change_message_visibility_batch()
                    .queue_url(&url)
                    .set_entries(Some(entries))
                    .send()
                    .await;
                match sent {
                    Ok(out) if !out.failed.is_empty() => {
                        tracing::warn!(queue = arn, failed = out.failed.len(), "backoff not applied to some records: they come back after the queue's visibility timeout");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let e = crate::sdk_error::infra_error("ChangeMessageVisibilityBatch", e);
                        tracing::warn!(queue = arn, error = %e, "backoff not applied: the records come back after the queue's visibility timeout");
                    }
                }
            }
        }
    }

    /// The queue's `maxReceiveCount` (`None`: no redrive policy, or not known yet).
    async fn max_receive_count(&self, arn: &str) -> Option<u32> {
        if let Some(known) = self.max_receives.lock().ok()?.get(arn) {
            return *known;
        }
        let url = queue_url(arn)?;
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .ok()?;
        let max = out
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy).cloned())
            .and_then(|policy| serde_json::from_str::<serde_json::Value>(&policy).ok())
            .and_then(|policy| {
                let max = policy.get("maxReceiveCount")?;
                max.as_u64()
                    .or_else(|| max.as_str()?.parse().ok())
                    .map(|n| n as u32)
            });
        if let Ok(mut known) = self.max_receives.lock() {
            known.insert(arn.to_owned(), max);
        }
        max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_twelve_hours() {
        let policy = BackoffPolicy::default();
        let delays: Vec<u32> = (1..=12).map(|n| policy.delay_seconds(n)).collect();
        assert_eq!(
            delays,
            [20, 40, 80, 160, 320, 640, 1280, 2560, 5120, 10240, 20480, 40960]
        );
        assert_eq!(policy.delay_seconds(13), MAX_VISIBILITY_SECONDS);
        assert_eq!(policy.delay_seconds(1000), MAX_VISIBILITY_SECONDS);
        // The template's MaxReceiveCount (10): the last receive before the DLQ comes this long
        // after the first, so an outage up to then is survived.
        let before_last: u32 = (1..10).map(|n| policy.delay_seconds(n)).sum();
        assert_eq!(before_last, 10_220);
        assert!(before_last > 3600 * 2);
    }

    #[test]
    fn queue_urls_from_arns() {
        assert_eq!(
            queue_url("arn:aws:sqs:eu-west-1:123456789012:durable-results").as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/123456789012/durable-results")
        );
        assert_eq!(queue_url("nonsense"), None);
    }
}
