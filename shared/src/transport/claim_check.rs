//! Claim checks: a message body too large for SQS is stored as a blob and replaced by a
//! reference, `{"claimCheck": {"blobId": "...", "bytes": N}}`, resolved on receipt.

use serde::{Deserialize, Serialize};

use super::TransportError;
use crate::contract::{encode, RemoteTask, StepError, StepResult};
use crate::store::BlobStore;

/// Bodies larger than this (bytes) travel by claim check. SQS accepts 256 KiB per message
/// (1 MiB on newer regions); staying under the classic limit works everywhere.
pub const CLAIM_CHECK_THRESHOLD: usize = 240 * 1024;

/// A reference to a stored body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimCheck {
    /// Blob id in the blob store.
    pub blob_id: String,
    /// Size of the stored body.
    pub bytes: usize,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    claim_check: ClaimCheck,
}

/// The body to send: `body` itself, or a claim-check reference after storing it.
pub async fn offload(body: String, blobs: &impl BlobStore) -> Result<String, TransportError> {
    if body.len() <= CLAIM_CHECK_THRESHOLD {
        return Ok(body);
    }
    let blob_id = blobs
        .put(body.as_bytes())
        .await
        .map_err(|e| TransportError::ClaimCheck(e.to_string()))?;
    let envelope = Envelope {
        claim_check: ClaimCheck {
            blob_id,
            bytes: body.len(),
        },
    };
    serde_json::to_string(&envelope).map_err(|e| TransportError::ClaimCheck(e.to_string()))
}

/// Code of the failure a step gets when its message is too large for a peer that cannot read
/// claim checks.
pub const PAYLOAD_TOO_LARGE_CODE: &str = "payload_too_large";

fn too_large(what: &str, bytes: usize, group: &str, reader: &str) -> StepError {
    StepError::terminal(format!(
        "{what} is {bytes} bytes, over the {CLAIM_CHECK_THRESHOLD}-byte limit for group \
         {group:?}, whose {reader} cannot read claim checks"
    ))
    .with_code(PAYLOAD_TOO_LARGE_CODE)
    .with_details(serde_json::json!({
        "bytes": bytes,
        "limit": CLAIM_CHECK_THRESHOLD,
        "group": group,
    }))
}

/// For a task to a group served by workers that cannot read claim checks (nestjs-durable's
/// peers): `None` when it fits in one message, else the failed result that answers it in
/// place of sending it. Sending it anyway would poison the peer's queue (the Python runner
/// dies on the reference, the Node one answers without a `runId`); failing the step at once
/// says why, and the workflow sees an ordinary terminal step failure.
pub fn refuse_oversize_task(task: &RemoteTask) -> Option<StepResult> {
    let bytes = encode(task).len();
    (bytes > CLAIM_CHECK_THRESHOLD).then(|| {
        let error = too_large("the task body", bytes, &task.group, "workers");
        StepResult::failed(task, error)
    })
}

/// For a result to an engine that cannot read claim checks (nestjs-durable's own): the result
/// itself when it fits in one message, else a failed result saying the output was too large.
pub fn refuse_oversize_result(task: &RemoteTask, result: StepResult) -> StepResult {
    let bytes = encode(&result).len();
    if bytes <= CLAIM_CHECK_THRESHOLD {
        return result;
    }
    let error = too_large("the result body", bytes, &task.group, "engine");
    StepResult {
        started_at: result.started_at,
        events: result.events,
        ..StepResult::failed(task, error)
    }
}

/// The real body of a received message: fetched from the blob store if it is a claim check.
pub async fn resolve_body(body: &str, blobs: &impl BlobStore) -> Result<String, TransportError> {
    // Cheap test first: claim-check envelopes are small and name their key.
    if body.len() > 1024 || !body.contains("\"claimCheck\"") {
        return Ok(body.to_owned());
    }
    let Ok(envelope) = serde_json::from_str::<Envelope>(body) else {
        return Ok(body.to_owned());
    };
    let id = &envelope.claim_check.blob_id;
    let data = blobs
        .get(id)
        .await
        .map_err(|e| TransportError::ClaimCheck(e.to_string()))?
        .ok_or_else(|| TransportError::ClaimCheck(format!("blob {id} not found (expired?)")))?;
    if data.len() != envelope.claim_check.bytes {
        return Err(TransportError::ClaimCheck(format!(
            "blob {id} has {} bytes, the reference says {} (partly expired?)",
            data.len(),
            envelope.claim_check.bytes
        )));
    }
    String::from_utf8(data)
        .map_err(|e| TransportError::ClaimCheck(format!("blob {id} is not UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::MemoryBlobStore;

    #[tokio::test]
    async fn large_bodies_round_trip_through_the_blob_store() {
        let blobs = MemoryBlobStore::default();
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(CLAIM_CHECK_THRESHOLD));
        let sent = offload(big.clone(), &blobs).await.unwrap();
        assert!(sent.len() < 200, "reference, not the payload: {sent}");
        assert_eq!(resolve_body(&sent, &blobs).await.unwrap(), big);
    }

    #[test]
    fn oversize_tasks_for_peers_are_answered_with_the_size_and_the_limit() {
        let run = crate::contract::RunId::parse("r").unwrap();
        let small = RemoteTask::new(
            &run,
            1,
            "payments.charge-card",
            "payments.charge-card",
            "x".into(),
            1,
        );
        assert_eq!(refuse_oversize_task(&small), None);
        let big = RemoteTask {
            input: "x".repeat(CLAIM_CHECK_THRESHOLD).into(),
            ..small
        };
        let refused = refuse_oversize_task(&big).unwrap();
        let error = refused.error.unwrap();
        assert_eq!(error.code.as_deref(), Some(PAYLOAD_TOO_LARGE_CODE));
        assert!(!error.is_retryable());
        let bytes = encode(&big).len();
        assert!(
            error.message.contains(&format!("{bytes} bytes"))
                && error.message.contains(&CLAIM_CHECK_THRESHOLD.to_string()),
            "{}",
            error.message
        );
        assert_eq!(error.details.unwrap()["bytes"], bytes);
        assert_eq!(
            (refused.step_id.as_str(), refused.attempt),
            ("r:1", Some(1))
        );
    }

    #[test]
    fn oversize_results_for_peer_engines_become_failures() {
        let run = crate::contract::RunId::parse("r").unwrap();
        let task = RemoteTask::new(&run, 0, "s", "s", serde_json::Value::Null, 1);
        let fits = StepResult::completed(&task, "ok".into());
        assert_eq!(refuse_oversize_result(&task, fits.clone()), fits);
        let big = StepResult::completed(&task, "x".repeat(CLAIM_CHECK_THRESHOLD).into());
        let refused = refuse_oversize_result(&task, big);
        assert_eq!(refused.output, None);
        assert_eq!(
            refused.error.unwrap().code.as_deref(),
            Some(PAYLOAD_TOO_LARGE_CODE)
        );
    }

    #[tokio::test]
    async fn small_bodies_pass_through_and_missing_blobs_are_errors() {
        let blobs = MemoryBlobStore::default();
        assert_eq!(offload("{}".into(), &blobs).await.unwrap(), "{}");
        let dangling = r#"{"claimCheck":{"blobId":"nope","bytes":3}}"#;
        assert!(matches!(
            resolve_body(dangling, &blobs).await,
            Err(TransportError::ClaimCheck(_))
        ));
    }
}
