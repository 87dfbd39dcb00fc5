//! The engine Lambda: consumes `<prefix>-results` and advances runs. Wiring only.

use std::sync::Arc;

use cairn_lambda::aws::{sdk_config, AwsClients};
use cairn_lambda::config::Config;
use cairn_lambda::engine::{Engine, EngineOptions};
use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    cairn_lambda::telemetry::init();
    let config = Config::from_env()?;
    let clients = AwsClients::new(&sdk_config(config.endpoint_url.as_deref()).await);
    let options = EngineOptions {
        fifo: config.fifo,
        timer_chunk_seconds: config.timer_chunk_seconds,
        ..Default::default()
    };
    let engine = Engine::new(
        Arc::new(cairn_demo::workflows()),
        clients.store(&config),
        clients.transport(&config),
        clients.blobs(&config),
        options,
    );
    let engine = &engine;
    lambda_runtime::run(service_fn(move |event| async move {
        engine.handle(event).await
    }))
    .await
}
