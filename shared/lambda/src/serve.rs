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
//!
//! **Dev mode.** Started outside Lambda (no `AWS_LAMBDA_RUNTIME_API`) with `CAIRN_ENDPOINT_URL`
//! set, each entry point polls its own queues on the local stack instead, through the local
//! [event source mapping](crate::event_source) (real `SqsEvent`s, batch responses honoured):
//! the engine the results queue (and the timers queue, if configured), a worker the tasks
//! queue of every step it serves. So the workspace's own binaries run unchanged against the
//! local stack (`scripts/dev`).

use std::future::Future;
#[cfg(feature = "dynamodb")]
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use cairn::worker::Worker;
#[cfg(feature = "dynamodb")]
use cairn::workflow::Workflows;
use lambda_runtime::{service_fn, Error, LambdaEvent};
#[cfg(feature = "dynamodb")]
use serde_json::Value;

use crate::aws::{sdk_config, AwsClients};
use crate::config::Config;
#[cfg(feature = "dynamodb")]
use crate::dynamo::DynamoBlobStore;
#[cfg(feature = "dynamodb")]
use crate::engine::{Engine, EngineOptions};
use crate::event_source::{EventSourceMapping, MappingOptions};
#[cfg(feature = "dynamodb")]
use crate::sqs::SqsTransport;
use crate::worker::SqsWorker;

#[cfg(feature = "dynamodb")]
/// The engine Lambda (trigger: the results queue, and the timers queue with FIFO): replays
/// `workflows` on every result and control message.
pub async fn serve_engine(workflows: Workflows) -> Result<(), Error> {
    serve_engine_with(workflows, |_, _, sqs| sqs).await
}

#[cfg(feature = "dynamodb")]
/// [`serve_engine`] with the engine's SQS transport wrapped by `transport` (given the SDK
/// configuration and the runtime [`Config`]): how `cairn_eventbridge::serve_engine` routes
/// long waits to EventBridge Scheduler without this crate (and the workers) linking it.
pub async fn serve_engine_with<T, F>(workflows: Workflows, transport: F) -> Result<(), Error>
where
    T: crate::engine::EngineTransport,
    F: FnOnce(&aws_config::SdkConfig, &Config, SqsTransport<DynamoBlobStore>) -> T,
{
    crate::telemetry::init();
    serve_engine_configured(Config::from_env()?, workflows, transport).await
}

#[cfg(feature = "dynamodb")]
/// [`serve_engine_with`] with a given configuration instead of the environment's, and no
/// logging set-up (tests; a process that reads its configuration elsewhere).
pub async fn serve_engine_configured<T, F>(
    config: Config,
    workflows: Workflows,
    transport: F,
) -> Result<(), Error>
where
    T: crate::engine::EngineTransport,
    F: FnOnce(&aws_config::SdkConfig, &Config, SqsTransport<DynamoBlobStore>) -> T,
{
    let sdk = sdk_config(config.endpoint_url.as_deref()).await;
    let clients = AwsClients::new(&sdk);
    let options = EngineOptions {
        fifo: config.fifo,
        timer_chunk_seconds: config.timer_chunk_seconds,
        ..Default::default()
    };
    let engine = Engine::new(
        Arc::new(workflows),
        clients.store(&config).with_history_cache(),
        transport(&sdk, &config, clients.transport(&config)),
        clients.blobs(&config),
        options,
    )
    .with_backoff(crate::backoff::Backoff::new(
        clients.sqs.clone(),
        config.backoff_policy(),
    ));
    let engine = &engine;
    if dev_mode(&config) {
        let transport = clients.transport(&config);
        let mut queues = vec![transport.results_queue_url().await?];
        queues.extend(config.timer_queue_url.clone());
        if config.fifo {
            // Peers answer a FIFO deployment on the standard peer-results queue (in AWS, an
            // event source mapping of the engine function).
            queues.push(transport.peer_results_queue_url().await?);
        }
        return poll_locally(&clients.sqs, queues, |event| engine.handle(event)).await;
    }
    lambda_runtime::run(service_fn(move |event| async move {
        engine.handle(event).await
    }))
    .await
}

/// A worker Lambda (trigger: one tasks queue): runs `worker`'s step handlers and sends their
/// results to the results queue. One function per tasks queue may share the binary.
pub async fn serve_worker(worker: Worker) -> Result<(), Error> {
    crate::telemetry::init();
    serve_worker_configured(Config::from_env()?, worker).await
}

/// [`serve_worker`] with a given configuration instead of the environment's, and no logging
/// set-up.
pub async fn serve_worker_configured(config: Config, worker: Worker) -> Result<(), Error> {
    let clients = AwsClients::new(&sdk_config(config.endpoint_url.as_deref()).await);
    let worker = worker.fifo(config.fifo);
    let (results, blobs) = (clients.transport(&config), clients.blobs(&config));
    let (worker, results, blobs) = (&worker, &results, &blobs);
    if dev_mode(&config) {
        let mut queues = Vec::new();
        let mut steps: Vec<&str> = worker.steps().collect();
        steps.sort_unstable();
        // Groups without claim checks (CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS) are left to the peer
        // workers that serve them.
        for step in steps
            .into_iter()
            .filter(|s| !config.groups_without_claim_checks.contains(*s))
        {
            queues.push(results.tasks_queue_url(step).await?);
        }
        return poll_locally(&clients.sqs, queues, |event| {
            worker.run(results, blobs, event)
        })
        .await;
    }
    lambda_runtime::run(service_fn(move |event| async move {
        worker.run(results, blobs, event).await
    }))
    .await
}

#[cfg(feature = "dynamodb")]
/// The reconciler Lambda (trigger: a schedule): re-drives runs stuck with unsent commands.
pub async fn serve_reconciler() -> Result<(), Error> {
    crate::telemetry::init();
    let config = Config::from_env()?;
    let clients = AwsClients::new(&sdk_config(config.endpoint_url.as_deref()).await);
    let (store, transport) = (clients.store(&config), clients.transport(&config));
    let (store, transport, config, sqs) = (&store, &transport, &config, &clients.sqs);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // Stop a few seconds before the deadline; the next pass goes on from the mark.
        let deadline = crate::batch::time_left(&event.context).map(|left| {
            std::time::Instant::now() + left.saturating_sub(std::time::Duration::from_secs(5))
        });
        let report =
            crate::reconciler::reconcile_stalled(store, transport, config, deadline).await?;
        // Then the results DLQ: what running runs await goes back (a failure here is logged;
        // the pass's own report stands).
        let dlq = match results_dlq(transport, config).await {
            Ok((dlq, results)) => {
                crate::dead_letters::redrive_awaited(store, sqs, &dlq, &results, deadline)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &dlq {
            tracing::warn!(error = %e, "results DLQ not examined");
        }
        Ok::<_, Error>(serde_json::json!({ "pass": report, "resultsDlq": dlq.ok() }))
    }))
    .await
}

#[cfg(feature = "dynamodb")]
/// The results DLQ's URL and the results queue's (`CAIRN_RESULTS_DLQ_URL`, else by name).
async fn results_dlq<B: cairn::store::BlobStore>(
    transport: &SqsTransport<B>,
    config: &Config,
) -> Result<(String, String), cairn::transport::TransportError> {
    let results = transport.results_queue_url().await?;
    if let Some(dlq) = &config.results_dlq_url {
        return Ok((dlq.clone(), results));
    }
    let name = results.rsplit('/').next().unwrap_or_default();
    let dlq = transport
        .queue_url(&cairn::queue_name::dlq_name(name))
        .await?;
    Ok((dlq, results))
}

/// Outside Lambda, against the local stack.
fn dev_mode(config: &Config) -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() && config.endpoint_url.is_some()
}

/// Dev mode: what Lambda's event source mappings do, for `queues`, until the process ends.
async fn poll_locally<'h, H, Fut>(
    sqs: &aws_sdk_sqs::Client,
    queues: Vec<String>,
    handler: H,
) -> Result<(), Error>
where
    H: Fn(LambdaEvent<SqsEvent>) -> Fut + Copy + 'h,
    Fut: Future<Output = Result<SqsBatchResponse, Error>> + 'h,
{
    // `CAIRN_DEV_VISIBILITY_SECONDS` (default 30): how soon a failed or abandoned record
    // comes back (`scripts/chaos` shortens it).
    let visibility = std::env::var("CAIRN_DEV_VISIBILITY_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(30);
    let options = MappingOptions {
        visibility_timeout: Some(visibility),
        ..MappingOptions::default()
    };
    let mut mappings = Vec::new();
    for url in queues {
        tracing::info!(queue = %url, "dev mode: polling the local stack (no Lambda runtime API)");
        // SQS may be unreachable right now (a restart during an outage): wait for it rather
        // than exit.
        let mapping = loop {
            match EventSourceMapping::new(sqs.clone(), url.clone(), options.clone()).await {
                Ok(mapping) => break mapping,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the queue yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        mappings.push(mapping);
    }
    let loops = mappings.iter().map(|mapping| async move {
        loop {
            if let Err(e) = mapping.poll_once(handler).await {
                tracing::warn!(error = %e, "poll failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    futures::future::join_all(loops).await;
    Ok(())
}
