//! Claim-check blobs: payloads too large for an SQS message, kept beside the runs.
//! The DynamoDB implementation is `cairn_lambda::dynamo::DynamoBlobStore`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use super::StoreError;

/// Stores and fetches opaque payloads by id.
pub trait BlobStore: Send + Sync {
    /// Stores `data`, returning its id.
    fn put(&self, data: &[u8]) -> impl Future<Output = Result<String, StoreError>> + Send;
    /// Fetches a blob; `Ok(None)` if it does not exist (expired or never written).
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
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
