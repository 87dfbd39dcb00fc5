//! The reconciler's look at the results dead-letter queue: runs whose awaited result sits there.
//!
//! A run waiting on a step without a timeout waits forever for a result that SQS dead-lettered
//! (after an outage longer than the backoff covers, or a bug since fixed). Each pass peeks at
//! the results DLQ: a message for a run that is still running and has no recorded problem
//! (`lastError`, e.g. non-determinism: sending it back would only dead-letter it again), or a
//! `startRun` for a run that does not exist, is sent back to the results queue and deleted from
//! the DLQ; the engine ignores whatever turns out stale. Everything else stays in the DLQ, is
//! logged at WARN with its run id, message id and why it stays, and is reported, for
//! `cairn dlq list` / `cairn dlq redrive`.

use std::time::Instant;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use cairn::contract::{decode_results_message, ControlMessage, ResultsMessage};
use cairn::store::CheckpointStore;
use cairn::workflow::RunStatus;

/// Messages looked at per pass, at most.
const MAX_MESSAGES: usize = 200;
/// Messages left in the DLQ are hidden this long from the rest of the pass.
const PEEK_VISIBILITY_SECONDS: i32 = 60;

/// What one look at the DLQ did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DlqReport {
    /// Messages looked at.
    pub examined: usize,
    /// Runs whose dead-lettered message was sent back to the results queue.
    pub redriven: Vec<String>,
    /// Messages left in the DLQ: `(message id, run id or "", why)`.
    pub left: Vec<(String, String, String)>,
}

/// Why a dead-lettered message stays, or `None` to send it back.
async fn verdict<S: CheckpointStore>(store: &S, body: &str) -> (String, Option<String>) {
    let message = match decode_results_message(body) {
        Ok(message) => message,
        Err(e) => return (String::new(), Some(format!("undecodable: {e}"))),
    };
    let run_id = message.run_id().clone();
    let loaded = match store.load(&run_id).await {
        Ok(loaded) => loaded,
        Err(e) => {
            return (
                run_id.to_string(),
                Some(format!("cannot load the run: {e}")),
            )
        }
    };
    let starts = matches!(
        message,
        ResultsMessage::Control(ControlMessage::StartRun { .. })
    );
    let reason = match loaded {
        None if starts => None,
        None => Some("the run does not exist".to_owned()),
        Some(_) if starts => Some("the run exists (a duplicate start)".to_owned()),
        Some(loaded) => match (&loaded.run.status, &loaded.run.last_error) {
            (RunStatus::Running, None) => None,
            (RunStatus::Running, Some(problem)) => Some(format!(
                "the run has a problem to fix first (then cairn dlq redrive): {problem}"
            )),
            (status, _) => Some(format!("the run is {status}")),
        },
    };
    (run_id.to_string(), reason)
}

/// Peeks at the results DLQ `dlq_url` and sends back to `results_url` what a running run
/// awaits (see the module docs), within `deadline`.
pub async fn redrive_awaited<S: CheckpointStore>(
    store: &S,
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    results_url: &str,
    deadline: Option<Instant>,
) -> Result<DlqReport, cairn::infra::InfraError> {
    let mut report = DlqReport::default();
    while report.examined < MAX_MESSAGES && deadline.is_none_or(|d| Instant::now() < d) {
        let received = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(PEEK_VISIBILITY_SECONDS)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| crate::sdk_error::infra_error("ReceiveMessage", e))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            report.examined += 1;
            let id = message.message_id.clone().unwrap_or_default();
            let body = message.body.clone().unwrap_or_default();
            let (run_id, reason) = verdict(store, &body).await;
            match reason {
                Some(reason) => {
                    tracing::warn!(%run_id, message_id = %id, %reason, "results DLQ: message left for an operator");
                    report.left.push((id, run_id, reason));
                }
                None => match send_back(sqs, results_url, dlq_url, &message).await {
                    Ok(()) => {
                        tracing::warn!(%run_id, message_id = %id, "results DLQ: a running run awaited this message; sent back to the results queue");
                        report.redriven.push(run_id);
                    }
                    Err(e) => {
                        tracing::warn!(%run_id, message_id = %id, error = %e, "results DLQ: sending back failed; next pass");
                        report
                            .left
                            .push((id, run_id, format!("sending back failed: {e}")));
                    }
                },
            }
        }
    }
    Ok(report)
}

async fn send_back(
    sqs: &aws_sdk_sqs::Client,
    results_url: &str,
    dlq_url: &str,
    message: &Message,
) -> Result<(), cairn::infra::InfraError> {
    let mut send = sqs
        .send_message()
        .queue_url(results_url)
        .message_body(message.body.clone().unwrap_or_default());
    if let Some(group) = message
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
    {
        let id = message.message_id.as_deref().unwrap_or_default();
        send = send
            .message_group_id(group)
            .message_deduplication_id(format!("redrive-{id}"));
    }
    send.send()
        .await
        .map_err(|e| crate::sdk_error::infra_error("SendMessage", e))?;
    sqs.delete_message()
        .queue_url(dlq_url)
        .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
        .send()
        .await
        .map_err(|e| crate::sdk_error::infra_error("DeleteMessage", e))?;
    Ok(())
}
