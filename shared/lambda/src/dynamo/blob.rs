//! Claim-check blobs in the runs table (`pk = BLOB#<id>`, one item per 350 KB chunk), expired
//! by TTL.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use cairn::store::{BlobStore, StoreError};

use super::items;
use super::{backend, query_partition};

/// Blobs in the cairn DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoBlobStore {
    client: Client,
    table: String,
    retention_days: u32,
}

impl DynamoBlobStore {
    /// Blobs in `table`, expiring after `retention_days`.
    pub fn new(client: Client, table: impl Into<String>, retention_days: u32) -> Self {
        Self {
            client,
            table: table.into(),
            retention_days,
        }
    }
}

fn now_secs() -> u64 {
    cairn::clock::now_ms() / 1000
}

impl BlobStore for DynamoBlobStore {
    async fn put(&self, data: &[u8]) -> Result<String, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let expires_at = now_secs() + u64::from(self.retention_days) * 86_400;
        // Chunks are written one by one: the blob is only referenced once every put succeeded.
        for (part, bytes) in items::chunks(data).into_iter().enumerate() {
            self.client
                .put_item()
                .table_name(&self.table)
                .item("pk", AttributeValue::S(format!("BLOB#{id}")))
                .item("sk", AttributeValue::S(format!("CHUNK#{part:04}")))
                .item("data", AttributeValue::B(bytes.to_vec().into()))
                .item("expiresAt", AttributeValue::N(expires_at.to_string()))
                .send()
                .await
                .map_err(|e| backend("PutItem", e))?;
        }
        Ok(id)
    }

    async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let items = query_partition(&self.client, &self.table, &format!("BLOB#{id}"), None).await?;
        if items.is_empty() {
            return Ok(None);
        }
        let mut data = Vec::new();
        for item in items {
            if let Some(bytes) = item.get("data").and_then(|v| v.as_b().ok()) {
                data.extend_from_slice(bytes.as_ref());
            }
        }
        Ok(Some(data))
    }
}
