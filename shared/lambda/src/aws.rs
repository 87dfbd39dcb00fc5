//! AWS SDK wiring: one `SdkConfig` for every client, with operation and attempt timeouts,
//! pointed at the local stack only when `CAIRN_ENDPOINT_URL` is set, and an interceptor that
//! counts requests per operation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Loads the SDK configuration from the usual AWS environment (region, credentials, profile).
///
/// With `endpoint_url` (the local stack), every client talks to that endpoint, with test
/// credentials and `us-east-1` unless a region is set: production code paths never set it.
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    sdk_config_with(endpoint_url, &SdkChoice::default()).await
}

/// Longest wait for one attempt of an AWS request, by default; `CAIRN_SDK_ATTEMPT_TIMEOUT_MS`
/// overrides it. DynamoDB and SQS answer in milliseconds: an attempt this slow is a hang.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a whole AWS request, retries included, by default;
/// `CAIRN_SDK_OPERATION_TIMEOUT_MS` overrides it. Shorter than the engine's 30 s Lambda
/// timeout, so a hung request fails its record (with the operation named) before the deadline.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait to connect, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);

/// The timeouts every client gets: without them the SDK waits for a hung request forever.
/// A request that runs past one fails with `InfraErrorKind::TimedOut` (transient: the
/// record is backed off) and the engine logs the operation, run id and message ids.
pub fn sdk_timeouts() -> TimeoutConfig {
    let ms = |name: &str, default: Duration| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .unwrap_or(default)
    };
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ms("CAIRN_SDK_ATTEMPT_TIMEOUT_MS", ATTEMPT_TIMEOUT))
        .operation_timeout(ms("CAIRN_SDK_OPERATION_TIMEOUT_MS", OPERATION_TIMEOUT))
        .build()
}

/// A region and profile chosen by the caller (the CLI's `--region` / `--profile`), taken over
/// what the environment says.
#[derive(Debug, Clone, Default)]
pub struct SdkChoice {
    /// The region.
    pub region: Option<String>,
    /// The profile in the shared config and credentials files.
    pub profile: Option<String>,
}

/// [`sdk_config`] with the caller's region and profile given to the config loader.
pub async fn sdk_config_with(endpoint_url: Option<&str>, choice: &SdkChoice) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .timeout_config(sdk_timeouts());
    if let Some(profile) = &choice.profile {
        loader = loader.profile_name(profile);
    }
    let region = choice.region.clone();
    if let Some(endpoint) = endpoint_url {
        let region = region
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned());
        loader = loader
            .endpoint_url(endpoint)
            .region(Region::new(region))
            .credentials_provider(Credentials::new(
                "test",
                "test",
                None,
                None,
                "cairn-local-stack",
            ));
    } else if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    loader.load().await
}

/// The HTTP client of every SDK client (and of the credential providers): hyper with rustls
/// over ring. The SDK's default client (its `default-https-client` feature, rustls over aws-lc)
/// is not compiled in: ring makes smaller Lambdas and builds without aws-lc's C build. Plain
/// `http://` endpoints (the local stack) work as well.
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK clients cairn uses, built once and shared (they are cheap to clone).
#[derive(Debug, Clone)]
pub struct AwsClients {
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB client.
    #[cfg(feature = "dynamodb")]
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl AwsClients {
    /// Clients from a shared configuration.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            sqs: aws_sdk_sqs::Client::new(config),
            #[cfg(feature = "dynamodb")]
            dynamodb: aws_sdk_dynamodb::Client::new(config),
        }
    }

    /// Clients that report every request attempt (retries included) to `counter`.
    pub fn counted(config: &SdkConfig, counter: &RequestCounter) -> Self {
        let sqs = aws_sdk_sqs::config::Builder::from(config)
            .interceptor(counter.clone())
            .build();
        #[cfg(feature = "dynamodb")]
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(config)
            .interceptor(counter.clone())
            .build();
        Self {
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            #[cfg(feature = "dynamodb")]
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
        }
    }
}

/// Counts AWS requests per `(service, operation)`, one per transmitted attempt, and the
/// DynamoDB items those requests write.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<(String, String), u64>>>,
    items_written: Arc<Mutex<u64>>,
}

/// Items a DynamoDB write request writes, read from its JSON body.
fn items_written(operation: &str, body: Option<&[u8]>) -> u64 {
    let parsed = || body.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok());
    match operation {
        "PutItem" | "UpdateItem" | "DeleteItem" => 1,
        "TransactWriteItems" => parsed()
            .and_then(|v| {
                v.get("TransactItems")
                    .and_then(|t| t.as_array())
                    .map(|a| a.len() as u64)
            })
            .unwrap_or(0),
        "BatchWriteItem" => parsed()
            .and_then(|v| {
                v.get("RequestItems")
                    .and_then(|r| r.as_object())
                    .map(|tables| {
                        tables
                            .values()
                            .filter_map(|w| w.as_array())
                            .map(|w| w.len() as u64)
                            .sum()
                    })
            })
            .unwrap_or(0),
        _ => 0,
    }
}

impl RequestCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts so far, keyed by `(service, operation)`.
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// DynamoDB items written so far (each item of a transaction counts).
    pub fn dynamodb_items_written(&self) -> u64 {
        self.items_written.lock().map(|n| *n).unwrap_or(0)
    }

    /// Resets every count to zero.
    pub fn reset(&self) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.clear();
        }
        if let Ok(mut items) = self.items_written.lock() {
            *items = 0;
        }
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "cairn-request-counter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            let key = (metadata.service().to_owned(), metadata.name().to_owned());
            let written = items_written(metadata.name(), context.request().body().bytes());
            if let Ok(mut counts) = self.counts.lock() {
                *counts.entry(key).or_default() += 1;
            }
            if written > 0 {
                if let Ok(mut items) = self.items_written.lock() {
                    *items += written;
                }
            }
        }
        Ok(())
    }
}

/// Where claim-check payloads live: the runs table, or nowhere in a worker built without the
/// `dynamodb` feature.
#[cfg(feature = "dynamodb")]
pub type Blobs = crate::dynamo::DynamoBlobStore;
/// Where claim-check payloads live: the runs table, or nowhere in a worker built without the
/// `dynamodb` feature.
#[cfg(not(feature = "dynamodb"))]
pub type Blobs = cairn::store::NoBlobStore;

impl AwsClients {
    /// The DynamoDB checkpoint store named by `config`.
    #[cfg(feature = "dynamodb")]
    pub fn store(&self, config: &crate::config::Config) -> crate::dynamo::DynamoStore {
        crate::dynamo::DynamoStore::new(
            self.dynamodb.clone(),
            &config.table_name,
            config.retention_days,
        )
    }

    /// The claim-check blob store (same table).
    #[cfg(feature = "dynamodb")]
    pub fn blobs(&self, config: &crate::config::Config) -> Blobs {
        crate::dynamo::DynamoBlobStore::new(
            self.dynamodb.clone(),
            &config.table_name,
            config.retention_days,
        )
    }

    /// No claim-check blob store: this build has no DynamoDB client.
    #[cfg(not(feature = "dynamodb"))]
    pub fn blobs(&self, _config: &crate::config::Config) -> Blobs {
        cairn::store::NoBlobStore
    }

    /// The SQS transport named by `config`.
    pub fn transport(&self, config: &crate::config::Config) -> crate::sqs::SqsTransport<Blobs> {
        crate::sqs::SqsTransport::new(
            self.sqs.clone(),
            self.blobs(config),
            crate::sqs::SqsTransportConfig::from_config(config),
        )
    }
}
