//! A local event source mapping: what Lambda's SQS trigger does, for the local stack.
//!
//! Long-polls a queue, hands the handler a real [`SqsEvent`] (every record field AWS sets,
//! `ApproximateReceiveCount` included), deletes the records the batch response did not list,
//! and leaves the failures to reappear after the visibility timeout, so the queue's redrive
//! policy moves a record that keeps failing to its DLQ, as on AWS.

use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use aws_sdk_sqs::Client;
use lambda_runtime::{Context, LambdaEvent};

/// How the mapping polls and delivers.
#[derive(Debug, Clone)]
pub struct MappingOptions {
    /// Records per invocation (1–10).
    pub batch_size: i32,
    /// Long-poll wait, seconds (0–20).
    pub wait_seconds: i32,
    /// Visibility timeout for received records, seconds (`None`: the queue's own).
    pub visibility_timeout: Option<i32>,
    /// The function timeout the handler is told (its `Context` deadline).
    pub function_timeout: Duration,
}

impl Default for MappingOptions {
    fn default() -> Self {
        Self {
            batch_size: 10,
            wait_seconds: 1,
            visibility_timeout: None,
            function_timeout: Duration::from_secs(30),
        }
    }
}

/// What one poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Records delivered to the handler.
    pub received: usize,
    /// Records the handler confirmed (deleted).
    pub deleted: usize,
    /// Records reported as failures (left for redelivery).
    pub failed: usize,
}

/// A failure of the mapping itself (not of a record).
#[derive(Debug, thiserror::Error)]
#[error("event source mapping on {queue_url}: {message}")]
pub struct MappingError {
    /// The queue.
    pub queue_url: String,
    /// What went wrong.
    pub message: String,
}

/// A local SQS → handler mapping for one queue.
#[derive(Debug, Clone)]
pub struct EventSourceMapping {
    client: Client,
    queue_url: String,
    queue_arn: String,
    options: MappingOptions,
}

impl EventSourceMapping {
    /// A mapping for `queue_url` (its ARN is looked up once).
    pub async fn new(
        client: Client,
        queue_url: impl Into<String>,
        options: MappingOptions,
    ) -> Result<Self, MappingError> {
        let queue_url = queue_url.into();
        let attrs = client
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| MappingError {
                queue_url: queue_url.clone(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
        let queue_arn = attrs
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .cloned()
            })
            .unwrap_or_default();
        Ok(Self {
            client,
            queue_url,
            queue_arn,
            options,
        })
    }

    /// The queue URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Receives one batch (waiting up to `wait_seconds`), invokes `handler`, applies its
    /// response. A handler error fails the whole batch, as on Lambda.
    pub async fn poll_once<H, Fut>(&self, handler: H) -> Result<PollOutcome, MappingError>
    where
        H: FnOnce(LambdaEvent<SqsEvent>) -> Fut,
        Fut: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>>,
    {
        let err = |message: String| MappingError {
            queue_url: self.queue_url.clone(),
            message,
        };
        let long_poll = Duration::from_secs(self.options.wait_seconds.clamp(0, 20) as u64)
            + crate::aws::ATTEMPT_TIMEOUT;
        let received = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.options.batch_size.clamp(1, 10))
            .wait_time_seconds(self.options.wait_seconds.clamp(0, 20))
            .set_visibility_timeout(self.options.visibility_timeout)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::default().timeout_config(
                    // A long poll waits on purpose: its attempt may take the wait and then some.
                    aws_config::timeout::TimeoutConfig::builder()
                        .operation_attempt_timeout(long_poll)
                        .operation_timeout(long_poll * 3)
                        .build(),
                ),
            )
            .send()
            .await
            .map_err(|e| err(DisplayErrorContext(&e).to_string()))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(PollOutcome::default());
        }
        let mut event = SqsEvent::default();
        let mut receipts = std::collections::HashMap::new();
        for message in messages {
            let record = self.to_record(message);
            receipts.insert(
                record.message_id.clone().unwrap_or_default(),
                record.receipt_handle.clone().unwrap_or_default(),
            );
            event.records.push(record);
        }
        let received_count = event.records.len();
        let mut context = Context::default();
        context.request_id = uuid::Uuid::new_v4().to_string();
        let deadline = std::time::SystemTime::now() + self.options.function_timeout;
        context.deadline = deadline
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let failed: std::collections::HashSet<String> = match handler(LambdaEvent::new(
            event, context,
        ))
        .await
        {
            Ok(response) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Err(e) => {
                tracing::warn!(queue = %self.queue_url, error = %e, "handler failed: the whole batch will be redelivered");
                receipts.keys().cloned().collect()
            }
        };
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .filter(|(id, _)| !failed.contains(*id))
            .enumerate()
            .filter_map(|(i, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .ok()
            })
            .collect();
        let deleted = entries.len();
        if !entries.is_empty() {
            self.client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| err(DisplayErrorContext(&e).to_string()))?;
        }
        Ok(PollOutcome {
            received: received_count,
            deleted,
            failed: received_count - deleted,
        })
    }

    fn to_record(&self, message: aws_sdk_sqs::types::Message) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id;
        record.receipt_handle = message.receipt_handle;
        record.body = message.body;
        record.md5_of_body = message.md5_of_body;
        record.md5_of_message_attributes = message.md5_of_message_attributes;
        record.attributes = message
            .attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.as_str().to_owned(), v))
            .collect();
        record.message_attributes = message
            .message_attributes
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let mut attribute = SqsMessageAttribute::default();
                attribute.string_value = v.string_value;
                attribute.data_type = Some(v.data_type);
                (k, attribute)
            })
            .collect();
        record.event_source = Some("aws:sqs".to_owned());
        record.event_source_arn = Some(self.queue_arn.clone());
        record.aws_region = Some(
            self.queue_arn
                .split(':')
                .nth(3)
                .unwrap_or("us-east-1")
                .to_owned(),
        );
        record
    }
}
