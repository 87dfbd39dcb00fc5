//! Claim checks: a message body too large for SQS is stored as a blob and replaced by a
//! reference, `{"claimCheck": {"blobId": "...", "bytes": N}}`, resolved on receipt.

use serde::{Deserialize, Serialize};

use super::TransportError;
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
