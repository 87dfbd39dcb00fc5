//! Claim checks: a message body too large for SQS is stored as a blob and replaced by a
//! reference, resolved on receipt.
//!
//! The reference is unambiguous and bound to its message:
//! - it is a body whose only field is `claimCheck`:
//!   `{"claimCheck": {"blobId", "bytes", "sha256", "runId"?, "stepId"?}}`, with no other field
//!   in either object; a body that has a top-level `claimCheck` *and* anything else is refused,
//!   so a reference cannot be smuggled into an ordinary message;
//! - the blob must have the recorded size and SHA-256, and the body it holds must carry the
//!   recorded `runId` and `stepId` (or none), so a reference cannot point at someone else's
//!   payload;
//! - [`offload`] stores any body that would read as a reference, whatever its size, so
//!   `resolve_body(offload(body))` gives back every body unchanged.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::TransportError;
use crate::contract::{encode, RemoteTask, StepError, StepResult};
use crate::store::BlobStore;

/// Bodies larger than this (bytes) travel by claim check. SQS accepts 256 KiB per message
/// (1 MiB on newer regions); staying under the classic limit works everywhere.
pub const CLAIM_CHECK_THRESHOLD: usize = 240 * 1024;

/// The envelope's one key.
const KEY: &str = "claimCheck";

/// A reference to a stored body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimCheck {
    /// Blob id in the blob store.
    pub blob_id: String,
    /// Size of the stored body.
    pub bytes: usize,
    /// SHA-256 of the stored body, lower-case hex.
    pub sha256: String,
    /// The `runId` of the stored body, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The `stepId` of the stored body, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope {
    claim_check: ClaimCheck,
}

/// The ids a body carries at its top level, which its reference records.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Ids {
    #[serde(default)]
    run_id: Option<Value>,
    #[serde(default)]
    step_id: Option<Value>,
}

impl Ids {
    fn of(body: &str) -> (Option<String>, Option<String>) {
        let ids: Ids = serde_json::from_str(body).unwrap_or_default();
        let text = |v: Option<Value>| {
            v.map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
        };
        (text(ids.run_id), text(ids.step_id))
    }
}

/// How a received body reads.
enum Reads {
    /// An ordinary message.
    Plain,
    /// A claim-check reference.
    Reference(ClaimCheck),
    /// A top-level `claimCheck` that is not a well-formed envelope, with why.
    Malformed(String),
}

fn reads(body: &str) -> Reads {
    // Cheap test first: only a body naming the key can be a reference.
    if !body.contains(KEY) {
        return Reads::Plain;
    }
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(body) else {
        return Reads::Plain;
    };
    if !object.contains_key(KEY) {
        return Reads::Plain;
    }
    if object.len() > 1 {
        return Reads::Malformed(
            "a message with a `claimCheck` field must have no other field".to_owned(),
        );
    }
    match serde_json::from_value::<Envelope>(Value::Object(object)) {
        Ok(envelope) => Reads::Reference(envelope.claim_check),
        Err(e) => Reads::Malformed(format!("malformed claim-check reference: {e}")),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// The body to send: `body` itself, or a claim-check reference after storing it. Bodies over
/// [`CLAIM_CHECK_THRESHOLD`] are stored, and so is any body that would read as a reference.
pub async fn offload(body: String, blobs: &impl BlobStore) -> Result<String, TransportError> {
    if body.len() <= CLAIM_CHECK_THRESHOLD && matches!(reads(&body), Reads::Plain) {
        return Ok(body);
    }
    let blob_id = blobs
        .put(body.as_bytes())
        .await
        .map_err(|e| TransportError::ClaimCheck(e.to_string()))?;
    let (run_id, step_id) = Ids::of(&body);
    let envelope = Envelope {
        claim_check: ClaimCheck {
            blob_id,
            bytes: body.len(),
            sha256: sha256_hex(body.as_bytes()),
            run_id,
            step_id,
        },
    };
    serde_json::to_string(&envelope).map_err(|e| TransportError::ClaimCheck(e.to_string()))
}

/// Code of the failure a step gets when its message is too large for a peer that cannot read
/// claim checks.
pub const PAYLOAD_TOO_LARGE_CODE: &str = crate::contract::ErrorCode::PayloadTooLarge.as_str();

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

/// The real body of a received message: fetched from the blob store if it is a claim check,
/// and checked against its reference.
pub async fn resolve_body(body: &str, blobs: &impl BlobStore) -> Result<String, TransportError> {
    let reference = match reads(body) {
        Reads::Plain => return Ok(body.to_owned()),
        Reads::Malformed(reason) => return Err(TransportError::ClaimCheck(reason)),
        Reads::Reference(reference) => reference,
    };
    let id = &reference.blob_id;
    let refused = |why: String| TransportError::ClaimCheck(format!("blob {id}: {why}"));
    let data = blobs
        .get(id)
        .await
        .map_err(|e| TransportError::ClaimCheck(e.to_string()))?
        .ok_or_else(|| refused("not found (expired?)".to_owned()))?;
    if data.len() != reference.bytes {
        return Err(refused(format!(
            "has {} bytes, the reference says {} (partly expired?)",
            data.len(),
            reference.bytes
        )));
    }
    if sha256_hex(&data) != reference.sha256 {
        return Err(refused(
            "its content does not match the reference's sha256".to_owned(),
        ));
    }
    let text = String::from_utf8(data).map_err(|e| refused(format!("not UTF-8: {e}")))?;
    let (run_id, step_id) = Ids::of(&text);
    if run_id != reference.run_id || step_id != reference.step_id {
        return Err(refused(format!(
            "holds the message of run {run_id:?} step {step_id:?}, the reference names run {:?} step {:?}",
            reference.run_id, reference.step_id
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::MemoryBlobStore;

    #[tokio::test]
    async fn large_bodies_round_trip_through_the_blob_store() {
        let blobs = MemoryBlobStore::default();
        let big = format!(
            "{{\"runId\":\"r\",\"stepId\":\"r:1\",\"x\":\"{}\"}}",
            "a".repeat(CLAIM_CHECK_THRESHOLD)
        );
        let sent = offload(big.clone(), &blobs).await.unwrap();
        assert!(sent.len() < 300, "reference, not the payload: {sent}");
        assert!(sent.contains(r#""runId":"r""#), "{sent}");
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
        let dangling = format!(
            r#"{{"claimCheck":{{"blobId":"nope","bytes":3,"sha256":"{}"}}}}"#,
            sha256_hex(b"abc")
        );
        let err = resolve_body(&dangling, &blobs).await.unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }

    #[tokio::test]
    async fn a_reference_cannot_be_smuggled_into_a_message() {
        let blobs = MemoryBlobStore::default();
        let smuggled = r#"{"runId":"r","seq":1,"stepId":"r:1","status":"completed","claimCheck":{"blobId":"x","bytes":0}}"#;
        let err = resolve_body(smuggled, &blobs).await.unwrap_err();
        assert!(err.to_string().contains("no other field"), "{err}");
        // Sent through offload, the same body is stored and comes back unchanged.
        let sent = offload(smuggled.to_owned(), &blobs).await.unwrap();
        assert_ne!(sent, smuggled);
        assert_eq!(resolve_body(&sent, &blobs).await.unwrap(), smuggled);
    }

    #[tokio::test]
    async fn a_reference_cannot_point_at_another_message() {
        let blobs = MemoryBlobStore::default();
        let victim = r#"{"control":"cancelRun","runId":"victim"}"#;
        let blob_id = blobs.put(victim.as_bytes()).await.unwrap();
        let forge = |run: Option<&str>, sha: &str| {
            serde_json::json!({"claimCheck": {
                "blobId": blob_id, "bytes": victim.len(), "sha256": sha, "runId": run,
            }})
            .to_string()
        };
        let right_sha = sha256_hex(victim.as_bytes());
        // The old reference shape (no hash) and a wrong hash are refused.
        let old = format!(
            r#"{{"claimCheck":{{"blobId":"{blob_id}","bytes":{}}}}}"#,
            victim.len()
        );
        assert!(resolve_body(&old, &blobs).await.is_err());
        assert!(
            resolve_body(&forge(Some("victim"), &sha256_hex(b"x")), &blobs)
                .await
                .is_err()
        );
        // Naming another run is refused; naming the victim gives the victim's own message.
        let err = resolve_body(&forge(Some("attacker"), &right_sha), &blobs)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("reference names run"), "{err}");
        assert!(resolve_body(&forge(None, &right_sha), &blobs)
            .await
            .is_err());
        assert_eq!(
            resolve_body(&forge(Some("victim"), &right_sha), &blobs)
                .await
                .unwrap(),
            victim
        );
        // An envelope with an extra field inside is refused too.
        let extra = forge(Some("victim"), &right_sha).replace("\"bytes\"", "\"x\":1,\"bytes\"");
        assert!(resolve_body(&extra, &blobs).await.is_err());
    }
}
