//! The Lambda entry points: a user's engine, worker or reconciler function is one call.
//!
//! ```no_run
//! # async fn workflows() -> cairn::workflow::Workflows { cairn::workflow::Workflows::new() }
//! // functions/engine/src/main.rs
//! #[tokio::main]
//! async fn main() -> Result<(), lambda_runtime::Error> {
//!     cairn_lambda::serve_engine(workflows().await).await
//! }
//! ```
//!
//! Each reads its configuration from the environment ([`Config::from_env`], the variables
//! the template sets), installs `lambda_runtime`'s tracing subscriber (JSON lines when the
//! function's log format is JSON; level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`), and
//! runs the Lambda runtime loop until the process ends.

use std::sync::Arc;

use cairn::worker::Worker;
use cairn::workflow::Workflows;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

use crate::aws::{sdk_config, AwsClients};
use crate::config::Config;
use crate::engine::{Engine, EngineOptions};
use crate::worker::SqsWorker;

/// The engine Lambda (trigger: the results queue, and the timers queue with FIFO): replays
/// `workflows` on every result and control message.
pub async fn serve_engine(workflows: Workflows) -> Result<(), Error> {
    crate::telemetry::init();
    let config = Config::from_env()?;
    let clients = AwsClients::new(&sdk_config(config.endpoint_url.as_deref()).await);
    let options = EngineOptions {
        fifo: config.fifo,
        timer_chunk_seconds: config.timer_chunk_seconds,
        ..Default::default()
    };
    let engine = Engine::new(
        Arc::new(workflows),
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

/// A worker Lambda (trigger: one tasks queue): runs `worker`'s step handlers and sends their
/// results to the results queue. One function per tasks queue may share the binary.
pub async fn serve_worker(worker: Worker) -> Result<(), Error> {
    crate::telemetry::init();
    let config = Config::from_env()?;
    let clients = AwsClients::new(&sdk_config(config.endpoint_url.as_deref()).await);
    let worker = worker.fifo(config.fifo);
    let (results, blobs) = (clients.transport(&config), clients.blobs(&config));
    let (worker, results, blobs) = (&worker, &results, &blobs);
    lambda_runtime::run(service_fn(move |event| async move {
        worker.run(results, blobs, event).await
    }))
    .await
}

/// The reconciler Lambda (trigger: a schedule): re-drives runs stuck with unsent commands.
pub async fn serve_reconciler() -> Result<(), Error> {
    crate::telemetry::init();
    let config = Config::from_env()?;
    let clients = AwsClients::new(&sdk_config(config.endpoint_url.as_deref()).await);
    let (store, transport) = (clients.store(&config), clients.transport(&config));
    let (store, transport, config) = (&store, &transport, &config);
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let report = crate::reconciler::reconcile_stalled(store, transport, config).await?;
        Ok::<_, Error>(serde_json::json!(report))
    }))
    .await
}
