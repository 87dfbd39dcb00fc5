//! `cairn dlq redrive`: send each message to the target queue, then delete it from the DLQ.

use std::collections::HashSet;

use anyhow::Context as _;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};
use cairn::clock::now_ms;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::{info, name_of, receive, resolve_dlq, source_of, sqs_error, system_attr};

use crate::args::RedriveArgs;
use crate::context::Ctx;
use crate::failure::Failure;
use crate::out::outln;

/// Show a progress bar from this many messages on.
const PROGRESS_FROM: u64 = 20;
/// SQS FIFO deduplication window (5 minutes), plus a margin for clock skew.
const DEDUP_WINDOW_MS: u64 = 5 * 60_000;
const DEDUP_MARGIN_MS: u64 = 60_000;

/// The deduplication id to redrive a FIFO message with, and whether it is a new one.
///
/// The original id is kept, except within SQS's 5-minute deduplication window of the original
/// send: SQS would accept the copy and silently drop it as a duplicate, and deleting the DLQ
/// message would then lose it. There the id becomes `redrive-<DLQ message id>`: new to SQS, and
/// the same if this redrive is retried, so a retry is still deduplicated.
fn fifo_dedup_id(
    original: Option<String>,
    sent_ms: Option<u64>,
    now_ms: u64,
    message_id: &str,
) -> (Option<String>, bool) {
    let fresh =
        sent_ms.is_none_or(|sent| now_ms.saturating_sub(sent) < DEDUP_WINDOW_MS + DEDUP_MARGIN_MS);
    match original {
        Some(original) if !fresh => (Some(original), false),
        _ => (Some(format!("redrive-{message_id}")), true),
    }
}

/// Moves the messages (see the module docs).
pub async fn redrive(ctx: &Ctx, args: RedriveArgs) -> anyhow::Result<()> {
    let sqs = &ctx.clients.sqs;
    let dlq = resolve_dlq(ctx, &args.queue).await?;
    let target = match &args.to {
        Some(url) => url.clone(),
        None => source_of(ctx, &dlq).await?,
    };
    if target == dlq {
        return Err(Failure::new(
            crate::failure::code::FAILURE,
            "the target is the dead-letter queue itself",
        )
        .into());
    }
    let source = info(sqs, &dlq).await?;
    let target_fifo = info(sqs, &target)
        .await
        .with_context(|| format!("target queue {target}"))?
        .fifo;
    let total = args
        .max
        .map_or(source.approximate, |max| max.min(source.approximate));
    let progress = if total >= PROGRESS_FROM && !ctx.json {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} redriving [{bar:30}] {pos}/{len} {per_sec} {msg}")
    {
        progress.set_style(style.progress_chars("=> "));
    }
    let (mut moved, mut failed, mut empty_receives) = (0u64, Vec::<String>::new(), 0);
    let mut renamed_dedup = 0u64;
    let mut seen = HashSet::new();
    while args
        .max
        .is_none_or(|max| moved + (failed.len() as u64) < max)
        && empty_receives < 2
    {
        let want =
            args.max
                .map_or(10, |max| (max - moved - failed.len() as u64).min(10)) as i32;
        let batch: Vec<Message> = receive(sqs, &dlq, want)
            .await?
            .into_iter()
            // A message we already handled is back only if its delete failed: do not send it twice.
            .filter(|m| seen.insert(m.message_id().unwrap_or_default().to_owned()))
            .collect();
        if batch.is_empty() {
            empty_receives += 1;
            continue;
        }
        let mut entries = Vec::with_capacity(batch.len());
        for (i, message) in batch.iter().enumerate() {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(message.body().unwrap_or_default())
                .set_message_attributes(
                    message
                        .message_attributes()
                        .cloned()
                        .filter(|a| !a.is_empty()),
                );
            if target_fifo {
                let sent_ms = system_attr(message, MessageSystemAttributeName::SentTimestamp)
                    .and_then(|t| t.parse().ok());
                let (dedup, renamed) = fifo_dedup_id(
                    system_attr(message, MessageSystemAttributeName::MessageDeduplicationId),
                    sent_ms,
                    now_ms(),
                    message.message_id().unwrap_or_default(),
                );
                renamed_dedup += u64::from(renamed);
                entry = entry
                    .set_message_group_id(system_attr(
                        message,
                        MessageSystemAttributeName::MessageGroupId,
                    ))
                    .set_message_deduplication_id(dedup);
            }
            entries.push(entry.build()?);
        }
        let sent = sqs
            .send_message_batch()
            .queue_url(&target)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sqs_error("SendMessageBatch", e))?;
        for failure in sent.failed() {
            let id = batch
                .get(failure.id().parse::<usize>().unwrap_or(usize::MAX))
                .and_then(|m| m.message_id());
            failed.push(format!(
                "{}: {}",
                id.unwrap_or("?"),
                failure.message().unwrap_or(failure.code())
            ));
        }
        // Delete only what SQS confirmed it accepted.
        let deletes = sent
            .successful()
            .iter()
            .filter_map(|ok| {
                batch
                    .get(ok.id().parse::<usize>().ok()?)
                    .map(|m| (ok.id(), m))
            })
            .map(|(id, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !deletes.is_empty() {
            let count = deletes.len() as u64;
            let deleted = sqs
                .delete_message_batch()
                .queue_url(&dlq)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(|e| sqs_error("DeleteMessageBatch", e))?;
            for failure in deleted.failed() {
                failed.push(format!(
                    "copied but not deleted (it will reappear in the DLQ): {}",
                    failure.message().unwrap_or(failure.code())
                ));
            }
            moved += count - deleted.failed().len() as u64;
        }
        progress.set_position(moved);
    }
    progress.finish_and_clear();
    if renamed_dedup > 0 {
        eprintln!(
            "note: {renamed_dedup} FIFO message(s) were first sent less than {} minutes ago; they were redriven with \
             deduplication id redrive-<message id> so SQS does not drop them as duplicates of the original send",
            DEDUP_WINDOW_MS / 60_000
        );
    }
    if ctx.json {
        outln!(
            "{}",
            json!({ "from": dlq, "to": target, "moved": moved, "failed": failed })
        )?;
    } else {
        outln!(
            "moved {moved} message(s) from {} to {}",
            name_of(&dlq),
            name_of(&target)
        )?;
        for failure in &failed {
            eprintln!("  not moved: {failure}");
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            crate::failure::code::FAILURE,
            format!("{} message(s) not moved; run redrive again", failed.len()),
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_dedup_ids_are_kept_outside_the_window_and_renamed_inside_it() {
        let now = 10 * DEDUP_WINDOW_MS;
        let old = now - DEDUP_WINDOW_MS - DEDUP_MARGIN_MS;
        assert_eq!(
            fifo_dedup_id(Some("d-1".into()), Some(old), now, "m-1"),
            (Some("d-1".into()), false)
        );
        assert_eq!(
            fifo_dedup_id(Some("d-1".into()), Some(now - 1000), now, "m-1"),
            (Some("redrive-m-1".into()), true)
        );
        // Content-based dedup (no id): a fresh copy needs one of its own.
        assert_eq!(
            fifo_dedup_id(None, Some(old), now, "m-2"),
            (Some("redrive-m-2".into()), true)
        );
        assert_eq!(
            fifo_dedup_id(Some("d-3".into()), None, now, "m-3"),
            (Some("redrive-m-3".into()), true)
        );
    }
}
