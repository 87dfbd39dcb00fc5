//! `cairn dlq list | redrive`: peek at a dead-letter queue, and move its messages back.
//!
//! Redrive sends each message to the target queue first and deletes it from the DLQ only once
//! SQS has accepted the copy, so a crash or a failed send can duplicate a message (consumers
//! dedupe by `stepId`) but never lose one. Message attributes travel with the body; for FIFO
//! queues so do the message group id and the deduplication id (renamed only inside SQS's
//! 5-minute deduplication window, see [`redrive`]).

mod redrive;

use std::collections::{HashMap, HashSet};

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};
use aws_sdk_sqs::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use cairn::infra::InfraErrorKind;
use cairn::queue_name::{dlq_name, results_queue_name, tasks_queue_name, QueueKind};
use cairn_inspect::{summarize, utc_timestamp};
use cairn_lambda::sdk_error::infra_error;
use serde_json::{json, Value};

use crate::args::{DlqCommand, DlqListArgs};
use crate::context::Ctx;
use crate::failure::Failure;
use crate::out::outln;

/// How long received messages stay hidden while we work on them.
const WORK_VISIBILITY_SECS: i32 = 120;

/// Runs one `cairn dlq` command.
pub async fn run(ctx: &Ctx, command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List(args) => list(ctx, args).await,
        DlqCommand::Redrive(args) => redrive::redrive(ctx, args).await,
    }
}

fn sqs_error<E>(op: &'static str, e: SdkError<E, HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    infra_error(op, e).into()
}

/// The URL of queue `name`, or `None` if SQS says it does not exist.
async fn queue_url(sqs: &Client, name: &str) -> anyhow::Result<Option<String>> {
    match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => Ok(out.queue_url().map(str::to_owned)),
        Err(e) => match infra_error("GetQueueUrl", e) {
            not_found if not_found.kind == InfraErrorKind::NotFound => Ok(None),
            other => Err(other.into()),
        },
    }
}

fn name_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

fn is_queue_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// The DLQ named by `queue` (see [`DlqListArgs::queue`]): its URL.
async fn resolve_dlq(ctx: &Ctx, queue: &str) -> anyhow::Result<String> {
    if queue.starts_with("https://") || queue.starts_with("http://") {
        return Ok(queue.to_owned());
    }
    let kind = if ctx.config.fifo {
        QueueKind::Fifo
    } else {
        QueueKind::Standard
    };
    let prefix = &ctx.config.prefix;
    let mut candidates = Vec::new();
    if queue == "results" {
        let results = match &ctx.config.results_queue_url {
            Some(url) => name_of(url).to_owned(),
            None => results_queue_name(prefix, kind)?,
        };
        candidates.push(dlq_name(&results));
    } else {
        if is_queue_name(queue) {
            if queue.ends_with("-dlq") || queue.ends_with("-dlq.fifo") {
                candidates.push(queue.to_owned());
            }
            // A source queue's name: its DLQ.
            candidates.push(dlq_name(queue));
        }
        // A step group: the DLQ of its tasks queue.
        if let Ok(tasks) = tasks_queue_name(prefix, queue, kind) {
            candidates.push(dlq_name(&tasks));
        }
    }
    candidates.dedup();
    for name in &candidates {
        if let Some(url) = queue_url(&ctx.clients.sqs, name).await? {
            return Ok(url);
        }
    }
    Err(Failure::not_found(format!(
        "no dead-letter queue for {queue:?} at {} (tried {}).\n  Pass a queue URL, a DLQ name, `results`, or a step group; check --prefix ({prefix}) and --fifo.",
        ctx.target.describe(),
        candidates.join(", ")
    ))
    .into())
}

/// The queue a DLQ's messages came from: by name (`<name>-dlq` → `<name>`), else the one queue
/// whose redrive policy names it.
async fn source_of(ctx: &Ctx, dlq_url: &str) -> anyhow::Result<String> {
    let name = name_of(dlq_url);
    let source = name
        .strip_suffix("-dlq.fifo")
        .map(|base| format!("{base}.fifo"))
        .or_else(|| name.strip_suffix("-dlq").map(str::to_owned));
    if let Some(source) = source {
        if let Some(url) = queue_url(&ctx.clients.sqs, &source).await? {
            return Ok(url);
        }
    }
    let listed = ctx
        .clients
        .sqs
        .list_dead_letter_source_queues()
        .queue_url(dlq_url)
        .send()
        .await;
    if let Ok(out) = listed {
        if let [only] = out.queue_urls() {
            return Ok(only.clone());
        }
    }
    Err(Failure::not_found(format!(
        "cannot tell which queue {name} is the dead-letter queue of; pass --to QUEUE_URL"
    ))
    .into())
}

struct QueueInfo {
    approximate: u64,
    fifo: bool,
}

async fn info(sqs: &Client, url: &str) -> anyhow::Result<QueueInfo> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(|e| sqs_error("GetQueueAttributes", e))?;
    let attrs = out.attributes();
    let get = |name: QueueAttributeName| attrs.and_then(|a| a.get(&name)).cloned();
    Ok(QueueInfo {
        approximate: get(QueueAttributeName::ApproximateNumberOfMessages)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        fifo: get(QueueAttributeName::FifoQueue).is_some_and(|v| v == "true")
            || url.ends_with(".fifo"),
    })
}

async fn receive(sqs: &Client, url: &str, max: i32) -> anyhow::Result<Vec<Message>> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max.clamp(1, 10))
        .visibility_timeout(WORK_VISIBILITY_SECS)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| sqs_error("ReceiveMessage", e))?;
    Ok(out.messages.unwrap_or_default())
}

fn system_attr(message: &Message, name: MessageSystemAttributeName) -> Option<String> {
    message.attributes().and_then(|a| a.get(&name)).cloned()
}

fn message_json(message: &Message) -> Value {
    let body = message.body().unwrap_or_default();
    let attributes: HashMap<String, String> = message
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let message_attributes: HashMap<String, Value> = message
        .message_attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({ "dataType": v.data_type(), "stringValue": v.string_value() }),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": message.message_id(),
        "body": serde_json::from_str::<Value>(body).unwrap_or_else(|_| Value::String(body.to_owned())),
        "attributes": attributes,
        "messageAttributes": message_attributes,
    })
}

async fn list(ctx: &Ctx, args: DlqListArgs) -> anyhow::Result<()> {
    let sqs = &ctx.clients.sqs;
    let url = resolve_dlq(ctx, &args.queue).await?;
    let queue = info(sqs, &url).await?;
    // Peek: receive (hiding them briefly), then make every received message visible again.
    let mut seen = HashSet::new();
    let mut messages = Vec::new();
    let mut empty_receives = 0;
    while messages.len() < args.limit as usize && empty_receives < 2 {
        let batch = receive(
            sqs,
            &url,
            (args.limit as usize - messages.len()).min(10) as i32,
        )
        .await?;
        if batch.is_empty() {
            empty_receives += 1;
        }
        for message in batch {
            if seen.insert(message.message_id().unwrap_or_default().to_owned()) {
                messages.push(message);
            }
        }
    }
    for chunk in messages.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .visibility_timeout(0)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        sqs.change_message_visibility_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error("ChangeMessageVisibilityBatch", e))?;
    }
    if ctx.json {
        let list: Vec<Value> = messages.iter().map(message_json).collect();
        let out =
            json!({ "queueUrl": url, "approximateMessages": queue.approximate, "messages": list });
        outln!("{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(());
    }
    outln!(
        "{url}: about {} message(s){}",
        queue.approximate,
        if queue.fifo { " (FIFO)" } else { "" }
    )?;
    for message in &messages {
        let sent = system_attr(message, MessageSystemAttributeName::SentTimestamp)
            .and_then(|t| t.parse::<u64>().ok())
            .map(utc_timestamp)
            .unwrap_or_else(|| "-".into());
        let receives = system_attr(message, MessageSystemAttributeName::ApproximateReceiveCount)
            .unwrap_or_else(|| "-".into());
        let group = system_attr(message, MessageSystemAttributeName::MessageGroupId)
            .map(|g| format!("  group {g}"))
            .unwrap_or_default();
        let body = message.body().unwrap_or_default();
        let body = serde_json::from_str::<Value>(body)
            .map(|v| summarize(&v, 160))
            .unwrap_or_else(|_| body.chars().take(160).collect());
        outln!(
            "{}  sent {sent}  receives {receives}{group}\n  {body}",
            message.message_id().unwrap_or("-")
        )?;
    }
    if messages.len() < queue.approximate as usize {
        eprintln!(
            "showing {} of about {} (--limit)",
            messages.len(),
            queue.approximate
        );
    }
    Ok(())
}
