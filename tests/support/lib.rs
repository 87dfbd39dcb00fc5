//! Support for the integration suite: the local stack (moto server over HTTP), resources
//! provisioned from `template.yaml` under a unique prefix per test, and the engine and
//! workers running behind local event source mappings.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_config::SdkConfig;
use cairn::client::Client;
use cairn::transport::{LongWaitPolicy, LongWaitTransport};
use cairn::workflow::Workflows;
use cairn_devstack::event_source::MappingOptions;
use cairn_devstack::local_runtime::{LocalRuntime, Queues};
use cairn_devstack::local_stack::{provision_from_template, StackResources, TemplateParams};
use cairn_devstack::schedules::{provision_schedule_group, ScheduleFiring};
use cairn_eventbridge::aws_sdk_scheduler;
use cairn_eventbridge::{EventBridgeScheduler, ScheduleTarget};
use cairn_lambda::aws::{sdk_config, AwsClients, RequestCounter};
use cairn_lambda::backoff::{Backoff, BackoffPolicy};
use cairn_lambda::config::Config;
use cairn_lambda::dynamo::{DynamoBlobStore, DynamoStore};
use cairn_lambda::engine::{Engine, EngineOptions, EngineTransport};
use cairn_lambda::sqs::SqsTransport;
use cairn_lambda::worker::Worker;

pub mod peers;

pub type AwsEngine = Engine<DynamoStore, SqsTransport<DynamoBlobStore>, DynamoBlobStore>;
pub type AwsClient = Client<DynamoStore, SqsTransport<DynamoBlobStore>>;
pub type LongWaitSqs = LongWaitTransport<SqsTransport<DynamoBlobStore>, EventBridgeScheduler>;
pub type LongWaitEngine = Engine<DynamoStore, LongWaitSqs, DynamoBlobStore>;

/// Long waits on the local stack: the template's schedule group in moto, a counted scheduler
/// client, and the policy the engine routes by.
pub struct LongWaits {
    pub scheduler: aws_sdk_scheduler::Client,
    pub target: ScheduleTarget,
    pub policy: LongWaitPolicy,
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The local stack's endpoint: `CAIRN_ENDPOINT_URL`, or a server started once by
/// `scripts/local-stack start`.
pub fn endpoint() -> String {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            if let Ok(url) = std::env::var("CAIRN_ENDPOINT_URL") {
                return url;
            }
            let out = std::process::Command::new(repo_root().join("scripts/local-stack"))
                .arg("start")
                .output()
                .expect("run scripts/local-stack");
            assert!(
                out.status.success(),
                "local stack failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("export CAIRN_ENDPOINT_URL=")
                        .map(str::to_owned)
                })
                .expect("endpoint line")
        })
        .clone()
}

/// A unique resource prefix for one test (queues and table are per test).
pub fn unique_prefix(test: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}-{}", &id[..8], test.replace('_', "-"))
        .chars()
        .take(30)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// SDK configuration for the local stack.
pub async fn local_sdk_config() -> SdkConfig {
    sdk_config(Some(&endpoint())).await
}

/// One test's world: resources from the template, clients, config.
pub struct TestEnv {
    pub clients: AwsClients,
    pub counter: RequestCounter,
    pub resources: StackResources,
    pub config: Config,
}

impl TestEnv {
    /// Provisions the template's resources under a fresh prefix.
    pub async fn new(test: &str, fifo: bool) -> Self {
        Self::with_receive_count(test, fifo, 3).await
    }

    /// As [`TestEnv::new`], with the DLQ redrive threshold.
    pub async fn with_receive_count(test: &str, fifo: bool, max_receive_count: u32) -> Self {
        let sdk = local_sdk_config().await;
        let counter = RequestCounter::new();
        let clients = AwsClients::counted(&sdk, &counter);
        let template = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
        let params = TemplateParams {
            prefix: unique_prefix(test),
            fifo,
            max_receive_count,
            ..TemplateParams::default()
        };
        let resources =
            provision_from_template(&template, &params, &clients.sqs, &clients.dynamodb)
                .await
                .unwrap();
        let config = Config {
            table_name: resources.table_name.clone(),
            prefix: params.prefix.clone(),
            results_queue_url: Some(resources.results_queue_url.clone()),
            timer_queue_url: resources.timer_queue_url.clone(),
            task_queue_urls: resources.task_queue_urls.clone(),
            fifo,
            timer_chunk_seconds: 2,
            endpoint_url: Some(endpoint()),
            ..Config::default()
        };
        Self {
            clients,
            counter,
            resources,
            config,
        }
    }

    pub fn engine(&self, workflows: Workflows) -> AwsEngine {
        let options = EngineOptions {
            fifo: self.config.fifo,
            timer_chunk_seconds: self.config.timer_chunk_seconds,
            ..Default::default()
        };
        Engine::new(
            Arc::new(workflows),
            self.clients.store(&self.config).with_history_cache(),
            self.clients.transport(&self.config),
            self.clients.blobs(&self.config),
            options,
        )
        .with_backoff(self.backoff())
    }

    /// An engine whose own requests go to `endpoint` (a fault proxy in front of the local
    /// stack), with the SDK's retries off so every receive meets the fault; failed records
    /// are backed off through the direct clients.
    pub async fn engine_via(&self, endpoint: &str, workflows: Workflows) -> AwsEngine {
        let sdk = sdk_config(Some(endpoint))
            .await
            .into_builder()
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build();
        let clients = AwsClients::new(&sdk);
        let options = EngineOptions {
            fifo: self.config.fifo,
            timer_chunk_seconds: self.config.timer_chunk_seconds,
            ..Default::default()
        };
        Engine::new(
            Arc::new(workflows),
            clients.store(&self.config).with_history_cache(),
            clients.transport(&self.config),
            clients.blobs(&self.config),
            options,
        )
        .with_backoff(self.backoff())
    }

    /// Creates the template's schedule group; timers due past `threshold_seconds` will be
    /// scheduled to fire `lead_seconds` early (scheduler requests are counted too).
    pub async fn long_waits(&self, threshold_seconds: u32, lead_seconds: u32) -> LongWaits {
        let sdk = local_sdk_config().await;
        let conf = aws_sdk_scheduler::config::Builder::from(&sdk)
            .interceptor(self.counter.clone())
            .build();
        let scheduler = aws_sdk_scheduler::Client::from_conf(conf);
        let target = provision_schedule_group(&scheduler, &self.resources)
            .await
            .unwrap()
            .expect("the template declares a schedule group");
        LongWaits {
            scheduler,
            target,
            policy: LongWaitPolicy::new(threshold_seconds, lead_seconds).unwrap(),
        }
    }

    /// The engine's transport with long waits routed to the local EventBridge Scheduler.
    pub fn long_wait_transport(&self, long_waits: &LongWaits) -> LongWaitSqs {
        LongWaitTransport::new(
            self.clients.transport(&self.config),
            Some(EventBridgeScheduler::new(
                long_waits.scheduler.clone(),
                long_waits.target.clone(),
            )),
            long_waits.policy,
        )
    }

    /// An engine whose long waits become schedules.
    pub fn long_wait_engine(&self, workflows: Workflows, long_waits: &LongWaits) -> LongWaitEngine {
        let options = EngineOptions {
            fifo: self.config.fifo,
            timer_chunk_seconds: self.config.timer_chunk_seconds,
            ..Default::default()
        };
        Engine::new(
            Arc::new(workflows),
            self.clients.store(&self.config),
            self.long_wait_transport(long_waits),
            self.clients.blobs(&self.config),
            options,
        )
        .with_backoff(self.backoff())
    }

    /// The firing loop of the local scheduler for `long_waits` (its own uncounted clients:
    /// in AWS the scheduler's own work is not the engine's requests).
    pub async fn schedule_firing(&self, long_waits: &LongWaits) -> ScheduleFiring {
        let sdk = local_sdk_config().await;
        ScheduleFiring::new(
            aws_sdk_scheduler::Client::new(&sdk),
            aws_sdk_sqs::Client::new(&sdk),
            long_waits.target.group.clone(),
        )
    }

    /// Transient failures backed off from 1 s (the tests' pace), doubling.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(
            self.clients.sqs.clone(),
            BackoffPolicy {
                base_seconds: 1,
                ..BackoffPolicy::default()
            },
        )
    }

    pub fn client(&self) -> AwsClient {
        Client::new(
            self.clients.store(&self.config),
            self.clients.transport(&self.config),
        )
    }

    /// Bodies of up to 10 messages received from `url` (waiting up to 2 s), deleted once read.
    pub async fn receive_bodies(&self, url: &str) -> Vec<String> {
        let out = self
            .clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        let mut bodies = Vec::new();
        for message in out.messages.unwrap_or_default() {
            self.clients
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
            bodies.push(message.body.unwrap());
        }
        bodies
    }

    /// Mapping options fit for tests: short visibility timeout so failures come back fast.
    pub fn mapping(&self) -> MappingOptions {
        MappingOptions {
            batch_size: 10,
            wait_seconds: 1,
            visibility_timeout: Some(2),
            function_timeout: Duration::from_secs(30),
        }
    }

    /// Runs `engine` alone on the results queue (the test plays the worker, or maps its own
    /// on the runtime returned).
    pub async fn engine_alone<T: EngineTransport + 'static>(
        &self,
        engine: Arc<Engine<DynamoStore, T, DynamoBlobStore>>,
    ) -> LocalRuntime {
        let mut runtime = LocalRuntime::new();
        let handler = Arc::new(move |event| {
            let engine = engine.clone();
            async move { engine.handle(event).await }
        });
        runtime
            .map(
                &self.clients.sqs,
                &self.resources.results_queue_url,
                self.mapping(),
                handler,
            )
            .await
            .unwrap();
        runtime
    }

    /// Runs `engine` on the results (and timers) queue and `worker` on every tasks queue.
    pub async fn run<T: EngineTransport + 'static>(
        &self,
        engine: Engine<DynamoStore, T, DynamoBlobStore>,
        worker: Worker,
    ) -> LocalRuntime {
        LocalRuntime::serve(
            &self.clients.sqs,
            &Queues::from(&self.resources),
            self.mapping(),
            Arc::new(engine),
            Arc::new(worker.fifo(self.config.fifo)),
            Arc::new(self.clients.transport(&self.config)),
            Arc::new(self.clients.blobs(&self.config)),
        )
        .await
        .unwrap()
    }
}
