//! What every command needs: the configuration (flags over `CAIRN_*` env vars), the SDK
//! clients, and the cairn client over the DynamoDB store and SQS transport.

use std::io::Read as _;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::timeout::TimeoutConfig;
use cairn::client::Client;
use cairn_lambda::aws::{sdk_config_with, AwsClients, SdkChoice};
use cairn_lambda::config::Config;
use cairn_lambda::dynamo::{DynamoBlobStore, DynamoStore};
use cairn_lambda::sqs::SqsTransport;
use serde_json::Value;

use crate::args::Global;
use crate::failure::Target;

/// The cairn client the CLI uses.
pub type AwsClient = Client<DynamoStore, SqsTransport<DynamoBlobStore>>;

/// Configuration and clients for one invocation.
pub struct Ctx {
    /// The deployment's configuration.
    pub config: Config,
    /// SDK clients.
    pub clients: AwsClients,
    /// `--json`.
    pub json: bool,
    /// Where we talk to, for messages.
    pub target: Target,
}

/// The configuration from `CAIRN_*` env vars, overridden by the flags.
pub fn config(global: &Global) -> anyhow::Result<Config> {
    let mut config = Config::from_env().context("reading CAIRN_* environment variables")?;
    config.prefix = global.prefix.clone();
    config.table_name = global
        .table
        .clone()
        .unwrap_or_else(|| format!("{}-runs", global.prefix));
    config.results_queue_url = global.results_queue_url.clone();
    config.endpoint_url = global.endpoint_url.clone().filter(|u| !u.trim().is_empty());
    config.fifo = global.fifo;
    Ok(config)
}

/// Where the CLI will talk to (before any request is made).
pub fn target(config: &Config, global: &Global) -> Target {
    Target {
        endpoint_url: config.endpoint_url.clone(),
        region: global.region.clone(),
        table: config.table_name.clone(),
    }
}

impl Ctx {
    /// Loads the SDK configuration (`--region`/`--profile` given to the config loader) and
    /// builds the clients.
    pub async fn new(global: &Global, config: Config, mut target: Target) -> Self {
        let choice = SdkChoice {
            region: global.region.clone(),
            profile: global.profile.clone(),
        };
        let sdk = sdk_config_with(config.endpoint_url.as_deref(), &choice).await;
        // Fail fast on an unreachable endpoint instead of hanging in connect.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(30))
            .build();
        let sdk = sdk.into_builder().timeout_config(timeouts).build();
        if target.region.is_none() {
            target.region = sdk.region().map(|r| r.to_string());
        }
        Self {
            clients: AwsClients::new(&sdk),
            config,
            json: global.json,
            target,
        }
    }

    /// The cairn client (store reads, control messages).
    pub fn client(&self) -> AwsClient {
        Client::new(
            self.clients.store(&self.config),
            self.clients.transport(&self.config),
        )
    }
}

/// Reads a JSON argument: inline JSON, `@FILE`, or `-` for stdin. `what` names it in errors.
pub fn read_json(arg: &str, what: &str) -> anyhow::Result<Value> {
    let text = read_text(arg, what)?;
    serde_json::from_str(&text)
        .with_context(|| format!("{what} is not valid JSON: {}", preview(&text)))
}

/// The text of `arg`: itself, the file after `@`, or stdin for `-`.
pub fn read_text(arg: &str, what: &str) -> anyhow::Result<String> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(|| format!("reading {what} from stdin"))?;
        Ok(text)
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).with_context(|| format!("reading {what} from {path}"))
    } else {
        Ok(arg.to_owned())
    }
}

fn preview(text: &str) -> String {
    let head: String = text.chars().take(80).collect();
    if head.len() < text.len() {
        format!("{head}…")
    } else {
        head
    }
}
