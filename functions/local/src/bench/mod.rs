//! `cairn-local --bench`: the cost benchmark (`scripts/bench`).
//!
//! Four loads on the local stack, each metered by [`Meter`] on the engine's
//! and the workers' clients (the client that starts runs and waits for them is not metered):
//! a batch of concurrent checkouts, one lone checkout, a fan-out of many remote steps (with
//! runs started beside it), and one long run of sequential remote steps (flatness: DynamoDB
//! requests and bytes read per step early and late in the run). Prices are us-east-1 list
//! prices; the last line is the summary the issue "Hot path" asks for.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_dynamodb::types::ProjectionType;
use aws_sdk_sqs::types::QueueAttributeName;
use cairn::client::Client;
use cairn::workflow::{RunStatus, WorkflowContext, WorkflowError};
use cairn_devstack::event_source::MappingOptions;
use cairn_devstack::local_runtime::LocalRuntime;
use cairn_devstack::local_stack::{provision_from_template, StackResources, TemplateParams};
use cairn_lambda::aws::{sdk_config, AwsClients};
use cairn_lambda::config::Config;
use cairn_lambda::engine::{Engine, EngineOptions};
use cairn_lambda::worker::SqsWorker;
use serde_json::json;

use crate::meter::{IndexSpec, Meter, Totals};

mod loads;

const SQS_PER_MILLION: f64 = 0.40;
const WRU_PER_MILLION: f64 = 0.625;
const RRU_PER_MILLION: f64 = 0.125;
const LAMBDA_PER_MILLION: f64 = 0.20;
const GB_SECOND: f64 = 0.000_013_333_4;
const LAMBDA_GB: f64 = 0.125;
/// The reconciler Lambda's time per pass (its 120 s timeout less a margin).
const RECONCILER_TIME: Duration = Duration::from_secs(110);

/// Benchmark sizes.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Concurrent checkouts of the batched load.
    #[arg(long, default_value_t = 200)]
    pub bench_checkouts: usize,
    /// Width of the fan-out.
    #[arg(long, default_value_t = 5000)]
    pub bench_fanout: usize,
    /// Remote steps of the long run.
    #[arg(long, default_value_t = 10_000)]
    pub bench_steps: u64,
    /// Seconds between reconciler passes (the template's schedule: 5 minutes).
    #[arg(long, default_value_t = 300)]
    pub bench_reconcile_seconds: u64,
    /// Only these loads (comma-separated: batched,lone,fanout,long).
    #[arg(long, default_value = "batched,lone,fanout,long")]
    pub bench_only: String,
}

/// Lambda invocations and handler time, as the local event source mappings saw them.
#[derive(Debug, Default)]
struct LambdaStats {
    invocations: AtomicU64,
    handler_ms: AtomicU64,
}

impl LambdaStats {
    /// Runs one invocation's handler, counting it and its time.
    async fn invoke<T>(&self, handler: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = handler.await;
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.handler_ms
            .fetch_add(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        out
    }

    fn snapshot(&self) -> (u64, u64) {
        (
            self.invocations.load(Ordering::Relaxed),
            self.handler_ms.load(Ordering::Relaxed),
        )
    }
}

/// `n` sequential remote steps (the long-history load).
async fn sequence(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    for i in 0..n {
        let email = cairn_demo::Email {
            to: format!("user{i}@example.com"),
            subject: "step".into(),
        };
        ctx.remote(&cairn_demo::SEND_EMAIL, email).await?;
    }
    Ok(n)
}

struct Bench {
    meter: Meter,
    lambda: Arc<LambdaStats>,
    client: Client<
        cairn_lambda::dynamo::DynamoStore,
        cairn_lambda::sqs::SqsTransport<cairn_lambda::dynamo::DynamoBlobStore>,
    >,
    sqs: aws_sdk_sqs::Client,
    resources: StackResources,
    tag: String,
}

/// One measured load.
struct Measured {
    name: &'static str,
    remote_steps: f64,
    totals: Totals,
    invocations: u64,
    handler_ms: u64,
    wall: Duration,
}

impl Measured {
    fn usd_per_million(&self) -> f64 {
        let t = &self.totals;
        let sqs = t.sqs_units as f64 * SQS_PER_MILLION;
        let ddb = t.wru() * WRU_PER_MILLION + t.rru * RRU_PER_MILLION;
        let lambda = self.invocations as f64 * LAMBDA_PER_MILLION
            + self.handler_ms as f64 / 1000.0 * LAMBDA_GB * GB_SECOND * 1e6;
        (sqs + ddb + lambda) / self.remote_steps
    }

    fn per_step(&self, v: f64) -> f64 {
        v / self.remote_steps
    }

    fn print(&self) {
        let t = &self.totals;
        println!(
            "\n== {}: {} remote steps, wall {:.1}s",
            self.name,
            self.remote_steps,
            self.wall.as_secs_f64()
        );
        for ((service, operation), n) in t.requests.iter().filter(|(_, n)| **n > 0) {
            println!(
                "  {service:<9} {operation:<20} {n:>8}  {:>7.2}/step",
                self.per_step(*n as f64)
            );
        }
        println!(
            "  requests {:.2}/step (DynamoDB {:.2}); idle empty receives {} (not per step); SDK retries of 5xx {} (not billed)",
            self.per_step(t.request_count() as f64),
            self.per_step(t.dynamodb_requests() as f64),
            t.empty_receives,
            t.server_errors
        );
        println!(
            "  WRU {:.2}/step (table {:.2}, indexes {:.2}); RRU {:.2}/step; bytes read {:.0}/step; SQS billed units {:.2}/step",
            self.per_step(t.wru()),
            self.per_step(t.table_wru),
            self.per_step(t.index_wru),
            self.per_step(t.rru),
            self.per_step(t.bytes_read as f64),
            self.per_step(t.sqs_units as f64),
        );
        println!(
            "  Lambda: {} invocations ({:.2}/step), handler {:.1} ms/step; US$ {:.2} per million remote steps",
            self.invocations,
            self.per_step(self.invocations as f64),
            self.per_step(self.handler_ms as f64),
            self.usd_per_million()
        );
    }
}

impl Bench {
    async fn queues_idle(&self) -> anyhow::Result<bool> {
        let mut urls = vec![self.resources.results_queue_url.clone()];
        urls.extend(self.resources.timer_queue_url.clone());
        urls.extend(self.resources.task_queue_urls.values().cloned());
        for url in urls {
            let attrs = self
                .sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await?;
            let attrs = attrs.attributes.unwrap_or_default();
            for name in [
                QueueAttributeName::ApproximateNumberOfMessages,
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            ] {
                if attrs.get(&name).is_some_and(|v| v != "0") {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Waits until every queue is empty (late timers included), up to `limit`.
    async fn drain(&self, limit: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + limit;
        let mut quiet = 0;
        while Instant::now() < until {
            if self.queues_idle().await? {
                quiet += 1;
                if quiet >= 3 {
                    return Ok(());
                }
            } else {
                quiet = 0;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("  (queues not drained after {}s)", limit.as_secs());
        Ok(())
    }

    async fn measure<F, Fut>(
        &self,
        name: &'static str,
        remote_steps: f64,
        load: F,
    ) -> anyhow::Result<Measured>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        self.drain(Duration::from_secs(60)).await?;
        let before = self.meter.totals();
        let (inv0, ms0) = self.lambda.snapshot();
        let started = Instant::now();
        load().await?;
        let wall = started.elapsed();
        // Late work (e.g. step timeout timers that fire after the run finished) is cost too.
        self.drain(Duration::from_secs(60)).await?;
        let (inv1, ms1) = self.lambda.snapshot();
        let measured = Measured {
            name,
            remote_steps,
            totals: self.meter.totals().since(&before),
            invocations: inv1 - inv0,
            handler_ms: ms1 - ms0,
            wall,
        };
        measured.print();
        Ok(measured)
    }

    /// Waits for a run with a big history, reading it every 15 s: `Client::wait` reads the
    /// whole run every 200 ms, which for a 5,000-way fan-out (megabytes) keeps the local stack
    /// too busy to serve the workers.
    async fn wait_wide(
        &self,
        run_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<cairn::store::RunRecord> {
        let until = Instant::now() + timeout;
        loop {
            let run = match self.client.get(run_id).await {
                Ok(loaded) => loaded.run,
                // Not yet: the run exists once the engine took its start message.
                Err(cairn::client::ClientError::NotFound(_)) if Instant::now() < until => {
                    tracing::warn!(run_id, "bench: the run read as not found; reading again");
                    tokio::time::sleep(Duration::from_secs(15)).await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if run.status.is_terminal() {
                return Ok(run);
            }
            if Instant::now() > until {
                bail!(
                    "run {run_id} still {} after {}s",
                    run.status,
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_secs(15)).await;
        }
    }

    async fn checkouts(&self, n: usize, label: &str) -> anyhow::Result<()> {
        self.checkouts_within(n, label, Duration::from_secs(600))
            .await
            .map(|_| ())
    }

    /// `n` checkouts, waited for up to `wait` each; their ids.
    async fn checkouts_within(
        &self,
        n: usize,
        label: &str,
        wait: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = format!("{label}-{}-{i}", self.tag);
            let input = json!({ "orderId": id, "amountCents": 100 + i, "card": "tok_visa", "email": "bench@example.com" });
            ids.push(
                self.client
                    .start("checkout", input, Some(id.clone()))
                    .await?,
            );
        }
        for id in &ids {
            let run = self.client.wait(id, wait).await?;
            if run.status != RunStatus::Completed {
                bail!("benchmark run {id} ended {}", run.status);
            }
        }
        Ok(ids)
    }
}

fn index_specs(table: &aws_sdk_dynamodb::types::TableDescription) -> Vec<IndexSpec> {
    table
        .global_secondary_indexes()
        .iter()
        .map(|gsi| {
            let keys = gsi
                .key_schema()
                .iter()
                .map(|k| k.attribute_name().to_owned())
                .collect();
            let projection = gsi.projection();
            let include = match projection.and_then(|p| p.projection_type()) {
                Some(ProjectionType::All) | None => None,
                Some(ProjectionType::KeysOnly) => Some(Vec::new()),
                Some(_) => Some(
                    projection
                        .map(|p| p.non_key_attributes().to_vec())
                        .unwrap_or_default(),
                ),
            };
            IndexSpec { keys, include }
        })
        .collect()
}

/// Runs the benchmark; prints one block per load and the summary line last.
pub async fn run(endpoint_url: &str, prefix: &str, args: &BenchArgs) -> anyhow::Result<()> {
    let sdk = sdk_config(Some(endpoint_url)).await;
    let plain = AwsClients::new(&sdk);
    let meter = Meter::new();
    let metered = AwsClients {
        sqs: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .interceptor(meter.clone())
                .build(),
        ),
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(meter.clone())
                .build(),
        ),
    };
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
            .context("reading template.yaml")?;
    let params = TemplateParams {
        prefix: prefix.to_owned(),
        ..TemplateParams::default()
    };
    let resources = provision_from_template(&template, &params, &plain.sqs, &plain.dynamodb)
        .await
        .context("creating the queues and table from template.yaml")?;
    let table = plain
        .dynamodb
        .describe_table()
        .table_name(&resources.table_name)
        .send()
        .await?;
    if let Some(table) = table.table() {
        meter.set_indexes(index_specs(table));
    }
    let config = Config {
        table_name: resources.table_name.clone(),
        prefix: prefix.to_owned(),
        results_queue_url: Some(resources.results_queue_url.clone()),
        timer_queue_url: resources.timer_queue_url.clone(),
        task_queue_urls: resources.task_queue_urls.clone(),
        timer_chunk_seconds: 900,
        endpoint_url: Some(endpoint_url.to_owned()),
        ..Config::default()
    };
    let mut workflows = cairn_demo::workflows();
    workflows.register("sequence", sequence);
    // Wired as `serve` wires the engine Lambda: transient failures backed off.
    let engine = Arc::new(
        Engine::new(
            Arc::new(workflows),
            metered.store(&config).with_history_cache(),
            metered.transport(&config),
            metered.blobs(&config),
            EngineOptions::default(),
        )
        .with_backoff(cairn_lambda::backoff::Backoff::new(
            metered.sqs.clone(),
            config.backoff_policy(),
        )),
    );
    // The reconciler Lambda, on the template's schedule (what it costs is counted too).
    let reconciler = {
        let (store, transport, config) = (
            metered.store(&config),
            metered.transport(&config),
            config.clone(),
        );
        let every = Duration::from_secs(args.bench_reconcile_seconds.max(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let deadline = Instant::now() + RECONCILER_TIME;
                match cairn_lambda::reconciler::reconcile_stalled(
                    &store,
                    &transport,
                    &config,
                    Some(deadline),
                )
                .await
                {
                    Ok(report) => tracing::info!(?report, "bench: reconciler pass"),
                    Err(error) => tracing::warn!(%error, "bench: reconciler pass failed"),
                }
            }
        })
    };
    let worker = Arc::new(cairn_demo::worker());
    let results = Arc::new(metered.transport(&config));
    let blobs = Arc::new(metered.blobs(&config));
    let lambda = Arc::new(LambdaStats::default());
    let mapping = MappingOptions {
        visibility_timeout: Some(30),
        ..MappingOptions::default()
    };
    // The engine and worker handlers as `LocalRuntime::serve` maps them, timed.
    let mut runtime = LocalRuntime::new();
    let engine_queues = std::iter::once(&resources.results_queue_url)
        .chain(resources.timer_queue_url.as_ref())
        .chain(resources.peer_results_queue_url.as_ref());
    for url in engine_queues {
        let (engine, stats) = (engine.clone(), lambda.clone());
        let handler = Arc::new(move |event| {
            let (engine, stats) = (engine.clone(), stats.clone());
            async move { stats.invoke(engine.handle(event)).await }
        });
        runtime
            .map(&metered.sqs, url, mapping.clone(), handler)
            .await?;
    }
    for url in resources.task_queue_urls.values() {
        let (worker, results, blobs, stats) = (
            worker.clone(),
            results.clone(),
            blobs.clone(),
            lambda.clone(),
        );
        let handler = Arc::new(move |event| {
            let (worker, results, blobs, stats) = (
                worker.clone(),
                results.clone(),
                blobs.clone(),
                stats.clone(),
            );
            async move {
                stats
                    .invoke(worker.run(results.as_ref(), blobs.as_ref(), event))
                    .await
            }
        });
        runtime
            .map(&metered.sqs, url, mapping.clone(), handler)
            .await?;
    }
    let bench = Bench {
        meter: meter.clone(),
        lambda,
        // With the history cache, waiting on a finished-sending fan-out reads only what is new.
        client: Client::new(
            plain.store(&config).with_history_cache(),
            plain.transport(&config),
        ),
        sqs: plain.sqs.clone(),
        resources,
        tag: uuid::Uuid::new_v4().simple().to_string()[..6].to_owned(),
    };
    let only: Vec<&str> = args.bench_only.split(',').map(str::trim).collect();
    let mut summary = BTreeMap::new();

    if only.contains(&"batched") {
        let n = args.bench_checkouts;
        let m = bench
            .measure("batched checkouts", (n * 2) as f64, || {
                bench.checkouts(n, "batched")
            })
            .await?;
        summary.insert("batched", m);
    }
    if only.contains(&"lone") {
        let m = bench
            .measure("lone checkout", 2.0, || bench.checkouts(1, "lone"))
            .await?;
        summary.insert("lone", m);
    }
    let mut fan_sends = None;
    if only.contains(&"fanout") {
        let (m, sends) = bench.fan_out(args.bench_fanout).await?;
        fan_sends = Some(sends);
        summary.insert("fanout", m);
    }
    if only.contains(&"long") {
        summary.insert("long", bench.long_run(args.bench_steps).await?);
    }
    runtime.stop();
    reconciler.abort();
    if let Some(b) = summary.get("batched") {
        let t = &b.totals;
        println!(
            "per remote step: requests={:.2} wru={:.2} rru={:.2} usd_per_million={:.2}; lone run: requests={}; fan-out {}: sends={}",
            b.per_step(t.request_count() as f64),
            b.per_step(t.wru()),
            b.per_step(t.rru),
            b.usd_per_million(),
            summary
                .get("lone")
                .map(|l| format!("{:.2}", l.per_step(l.totals.request_count() as f64)))
                .unwrap_or_else(|| "-".into()),
            args.bench_fanout,
            fan_sends.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        );
    }
    Ok(())
}
