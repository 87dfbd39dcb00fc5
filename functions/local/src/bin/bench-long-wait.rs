//! What one long wait costs, measured on the local stack (moto over HTTP): AWS requests,
//! engine invocations and US$ of a durable sleep, at two lengths, extrapolated to 30 days from
//! the measured difference.
//!
//! A wait is chained in SQS hops of `CAIRN_TIMER_CHUNK_SECONDS` (900 s in AWS). The bench
//! shrinks the hop to `--chunk-seconds` (1 s) and counts the timer messages the engine really
//! received (a hop takes a little longer than its delay, so a wait of `n` seconds takes
//! somewhat fewer than `n` here). Two lengths give the cost per timer delivery (their
//! difference) and the cost every wait pays once (its start and finish); a 30-day wait in AWS
//! takes 2,880 deliveries of 900 s.
//!
//! Counted: every request of the engine's SQS and DynamoDB clients (an SDK interceptor),
//! except empty long polls, which are the standing cost of a listening event source, not of a
//! wait: a receive is counted when it delivered messages, i.e. once per engine invocation.
//! The client's start message is not counted (the same for any run).
//!
//! `--long-waits` measures the same with EventBridge Scheduler (moto, fired by the local
//! firing loop): a wait past `--threshold-seconds` is one schedule that fires
//! `--lead-seconds` early, whatever its length, so the two lengths cost the same and that is
//! the 30-day figure. The scheduler's invocations are counted by the firing loop, and each
//! one's SendMessage (billed to the account as an SQS request) is added to the SQS requests.
//! It also measures a 30-day sleep cancelled after it started (its schedule is deleted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cairn::client::Client;
use cairn::transport::{LongWaitPolicy, LongWaitTransport};
use cairn::workflow::RunStatus;
use cairn_devstack::event_source::MappingOptions;
use cairn_devstack::local_runtime::LocalRuntime;
use cairn_devstack::local_stack::{provision_from_template, TemplateParams};
use cairn_devstack::schedules::{provision_schedule_group, ScheduleFiring};
use cairn_eventbridge::{aws_sdk_scheduler, EventBridgeScheduler};
use cairn_lambda::aws::{sdk_config, AwsClients, RequestCounter};
use cairn_lambda::config::Config;
use cairn_lambda::engine::{Engine, EngineOptions};
use clap::Parser;

/// US$ per request or invocation, us-east-1 list prices, free tiers ignored.
const SQS_STANDARD_PER_REQUEST: f64 = 0.40e-6;
const LAMBDA_PER_INVOCATION: f64 = 0.20e-6;
const SCHEDULER_PER_INVOCATION: f64 = 1.00e-6;
/// One SQS hop in AWS, and 30 days in hops of it.
const AWS_CHUNK_SECONDS: u64 = 900;
const THIRTY_DAYS_SECONDS: u64 = 30 * 86_400;

#[derive(Debug, Parser)]
#[command(about = "Cost of one long durable wait (a sleep), before extrapolation to 30 days")]
struct Args {
    /// Local stack endpoint (set by `scripts/local-stack start`).
    #[arg(long, env = "CAIRN_ENDPOINT_URL")]
    endpoint_url: String,
    /// The SQS hop of the bench, seconds (stands in for 900).
    #[arg(long, default_value_t = 1)]
    chunk_seconds: u32,
    /// The two wait lengths measured, seconds.
    #[arg(long, num_args = 2, default_values_t = [4, 16])]
    seconds: Vec<u64>,
    /// Route long waits through EventBridge Scheduler (the AFTER figures).
    #[arg(long)]
    long_waits: bool,
    /// With --long-waits: waits due further than this are scheduled, seconds (use a
    /// --chunk-seconds of at least the lead, as in AWS: 900 and 300).
    #[arg(long, default_value_t = 3)]
    threshold_seconds: u32,
    /// With --long-waits: the schedule fires this early, seconds.
    #[arg(long, default_value_t = 2)]
    lead_seconds: u32,
}

/// What one wait cost.
#[derive(Debug, Default, Clone)]
struct Cost {
    /// `(service, operation) -> requests`, receives = non-empty receives.
    requests: std::collections::BTreeMap<(String, String), u64>,
    invocations: u64,
    /// Timer messages the engine received (invocations but the start).
    deliveries: u64,
    /// EventBridge Scheduler invocations (each also one SendMessage to SQS).
    scheduler: u64,
}

impl Cost {
    /// SQS requests, the scheduler's deliveries included.
    fn sqs(&self) -> u64 {
        self.requests
            .iter()
            .filter(|((service, _), _)| service == "sqs" || service == "SQS")
            .map(|(_, n)| n)
            .sum::<u64>()
            + self.scheduler
    }

    /// Requests cairn makes (engine and event source), the scheduler's own not included.
    fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    fn usd(&self) -> f64 {
        self.sqs() as f64 * SQS_STANDARD_PER_REQUEST
            + self.invocations as f64 * LAMBDA_PER_INVOCATION
            + self.scheduler as f64 * SCHEDULER_PER_INVOCATION
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    cairn_lambda::telemetry::init();
    let args = Args::parse();
    let sdk = sdk_config(Some(&args.endpoint_url)).await;
    let counter = RequestCounter::new();
    let clients = AwsClients::counted(&sdk, &counter);
    let prefix = format!("lw{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let params = TemplateParams::with_prefix(&prefix);
    let template = cairn_devstack::local_stack::TEMPLATE_YAML;
    let resources = provision_from_template(template, &params, &clients.sqs, &clients.dynamodb)
        .await
        .context("creating the queues and table from template.yaml")?;
    let config = Config {
        table_name: resources.table_name.clone(),
        prefix: prefix.clone(),
        results_queue_url: Some(resources.results_queue_url.clone()),
        timer_queue_url: resources.timer_queue_url.clone(),
        task_queue_urls: resources.task_queue_urls.clone(),
        timer_chunk_seconds: args.chunk_seconds,
        endpoint_url: Some(args.endpoint_url.clone()),
        ..Config::default()
    };
    // The scheduler client is counted like the others; the firing loop (what AWS does on its
    // side) is not.
    let scheduler_client = aws_sdk_scheduler::Client::from_conf(
        aws_sdk_scheduler::config::Builder::from(&sdk)
            .interceptor(counter.clone())
            .build(),
    );
    let mut firing = None;
    let mut scheduler = None;
    if args.long_waits {
        let target = provision_schedule_group(&scheduler_client, &resources)
            .await?
            .context("the template declares no schedule group")?;
        firing = Some(ScheduleFiring::new(
            aws_sdk_scheduler::Client::new(&sdk),
            AwsClients::new(&sdk).sqs,
            target.group.clone(),
        ));
        scheduler = Some(EventBridgeScheduler::new(scheduler_client, target));
    }
    let policy = LongWaitPolicy::new(args.threshold_seconds, args.lead_seconds)
        .map_err(anyhow::Error::msg)?;
    let engine = Arc::new(Engine::new(
        Arc::new(cairn_demo::workflows()),
        clients.store(&config),
        LongWaitTransport::new(clients.transport(&config), scheduler, policy),
        clients.blobs(&config),
        EngineOptions {
            timer_chunk_seconds: args.chunk_seconds,
            ..EngineOptions::default()
        },
    ));
    // Only the engine's queue is mapped: a sleep dispatches no task.
    let invocations = Arc::new(AtomicU64::new(0));
    let mut runtime = LocalRuntime::new();
    let handler = {
        let (engine, invocations) = (engine.clone(), invocations.clone());
        Arc::new(move |event| {
            let (engine, invocations) = (engine.clone(), invocations.clone());
            async move {
                invocations.fetch_add(1, Ordering::SeqCst);
                engine.handle(event).await
            }
        })
    };
    let mapping = MappingOptions {
        wait_seconds: 20,
        ..MappingOptions::default()
    };
    runtime
        .map(&clients.sqs, &resources.results_queue_url, mapping, handler)
        .await?;
    if let Some(firing) = &firing {
        runtime.fire_schedules(firing.clone(), Duration::from_millis(250));
    }
    let fired = || firing.as_ref().map_or(0, ScheduleFiring::invocations);

    let plain = AwsClients::new(&sdk);
    let client = Client::new(plain.store(&config), plain.transport(&config));
    let mut measured = Vec::new();
    println!(
        "one durable sleep at a time; SQS hop {} s here, {AWS_CHUNK_SECONDS} s in AWS; {}",
        args.chunk_seconds,
        if args.long_waits {
            format!(
                "long waits (> {} s) through EventBridge Scheduler, fired {} s early",
                args.threshold_seconds, args.lead_seconds
            )
        } else {
            "no scheduler: long waits are chained".to_owned()
        }
    );
    for &seconds in &args.seconds {
        counter.reset();
        invocations.store(0, Ordering::SeqCst);
        let fired_before = fired();
        let run_id = format!("{prefix}-sleep-{seconds}");
        let started = Instant::now();
        client
            .start("timer", serde_json::json!(seconds), Some(run_id.clone()))
            .await?;
        let run = client
            .wait(&run_id, Duration::from_secs(seconds * 3 + 60))
            .await?;
        if run.status != RunStatus::Completed {
            bail!("run {run_id} ended {}", run.status);
        }
        // The event source deletes the last record after the handler returned.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut requests = counter.snapshot();
        let invoked = invocations.load(Ordering::SeqCst);
        for ((_, operation), n) in requests.iter_mut() {
            if operation == "ReceiveMessage" {
                *n = invoked;
            }
        }
        let deliveries = invoked.saturating_sub(1);
        println!(
            "sleep of {seconds} s: {deliveries} timer deliveries, {:.1} s wall",
            started.elapsed().as_secs_f64()
        );
        measured.push(Cost {
            requests,
            invocations: invoked,
            deliveries,
            scheduler: fired() - fired_before,
        });
    }
    report(&measured);
    if args.long_waits {
        // Early resolution: a 30-day sleep cancelled once its schedule exists.
        counter.reset();
        invocations.store(0, Ordering::SeqCst);
        let fired_before = fired();
        let run_id = format!("{prefix}-cancelled");
        client
            .start(
                "timer",
                serde_json::json!(30 * 86_400),
                Some(run_id.clone()),
            )
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        client.cancel(&run_id, Some("bench".into())).await?;
        let run = client.wait(&run_id, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let invoked = invocations.load(Ordering::SeqCst);
        println!(
            "\na 30-day sleep cancelled after it started: run {}, {} engine invocations, {} scheduler invocations",
            run.status,
            invoked,
            fired() - fired_before
        );
        for ((service, operation), n) in counter.snapshot() {
            let n = if operation == "ReceiveMessage" {
                invoked
            } else {
                n
            };
            println!("  {service} {operation}: {n}");
        }
    }
    runtime.stop();
    Ok(())
}

/// Prints both measurements, the cost per timer delivery and the 30-day extrapolation.
fn report(measured: &[Cost]) {
    let [a, b] = measured else {
        return;
    };
    let (h1, h2) = (a.deliveries, b.deliveries);
    // Chained waits cost per delivery; a scheduled wait's deliveries do not grow with its
    // length (then the 30-day figure is what the longer wait cost).
    let span = if h2 > h1 {
        (h2 - h1) as f64
    } else {
        f64::INFINITY
    };
    let mut keys: Vec<_> = a
        .requests
        .keys()
        .chain(b.requests.keys())
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    let hops_30d = THIRTY_DAYS_SECONDS.div_ceil(AWS_CHUNK_SECONDS) as f64;
    println!(
        "\n{:<32} {:>9} {:>9} {:>9} {:>12}",
        "requests (receives: non-empty)",
        format!("{h1} deliv."),
        format!("{h2} deliv."),
        "per deliv.",
        "30 days"
    );
    let row = |name: &str, x: u64, y: u64| {
        let per_hop = (y as f64 - x as f64) / span;
        let once = x as f64 - per_hop * h1 as f64;
        let month = once + per_hop * hops_30d;
        println!("{name:<32} {x:>9} {y:>9} {per_hop:>9.2} {month:>12.0}");
    };
    for key in &keys {
        let get = |c: &Cost| c.requests.get(key).copied().unwrap_or(0);
        row(&format!("{} {}", key.0, key.1), get(a), get(b));
    }
    row("all AWS requests", a.total(), b.total());
    row("  of which SQS", a.sqs(), b.sqs());
    row("engine invocations", a.invocations, b.invocations);
    row("scheduler invocations", a.scheduler, b.scheduler);
    let per_hop = (b.usd() - a.usd()) / span;
    let once = a.usd() - per_hop * h1 as f64;
    println!(
        "US$ (SQS requests incl. the scheduler's sends + Lambda requests + scheduler \
         invocations; DynamoDB and Lambda duration not included): {:.8} per delivery, 30-day \
         wait {:.6} (= {:.0} per million waits)",
        per_hop,
        once + per_hop * hops_30d,
        (once + per_hop * hops_30d) * 1e6
    );
}
