//! Claim-check blobs: payloads too large for an SQS message, kept beside the runs.
//! The DynamoDB implementation is `cairn_lambda::dynamo::DynamoBlobStore`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use super::StoreError;
use crate::infra::{InfraError, InfraErrorKind};

/// Stores and fetches opaque payloads by id.
pub trait BlobStore: Send + Sync {
    /// Stores `data`, returning its id.
    fn put(&self, data: &[u8]) -> impl Future<Output = Result<String, StoreError>> + Send;
    /// Fetches a blob; `Ok(None)` if it does not exist (expired or never written).
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Whether this store holds claim checks at all; a worker without one answers a result
    /// too large for one message with a failed `payload_too_large` result instead.
    fn claim_checks(&self) -> bool {
        true
    }
}

/// No blob store: for workers built without one (a smaller Lambda with no DynamoDB client).
/// Every call fails with the reason; [`BlobStore::claim_checks`] says so up front.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoBlobStore;

impl NoBlobStore {
    fn disabled() -> StoreError {
        StoreError::Backend(InfraError::new(
            "claim check",
            InfraErrorKind::Rejected,
            "claim checks are disabled in this worker (built without a blob store)",
        ))
    }
}

impl BlobStore for NoBlobStore {
    async fn put(&self, _data: &[u8]) -> Result<String, StoreError> {
        Err(Self::disabled())
    }

    async fn get(&self, _id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Err(Self::disabled())
    }

    fn claim_checks(&self) -> bool {
        false
    }
}

/// Blobs in memory, for unit tests.
#[derive(Debug, Default)]
pub struct MemoryBlobStore {
    blobs: Mutex<HashMap<String, Vec<u8>>>,
}

impl BlobStore for MemoryBlobStore {
    async fn put(&self, data: &[u8]) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(mut blobs) = self.blobs.lock() {
            blobs.insert(id.clone(), data.to_vec());
        }
        Ok(id)
    }

    async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs.lock().ok().and_then(|b| b.get(id).cloned()))
    }
}
