//! `chaos`: checkout-like runs on the local stack while processes die and the infrastructure
//! misbehaves (`scripts/chaos`). One binary, three roles:
//!
//! - `chaos run` (the orchestrator): provisions the stack from `template.yaml`, starts a fault
//!   proxy (`cairn_devstack::fault_proxy`) in front of moto, runs engine and worker processes
//!   (this binary as `chaos engine` / `chaos worker`, in dev mode, talking to the proxy),
//!   starts N runs of five remote steps, SIGKILLs a random process every few seconds and
//!   starts it again, throttles DynamoDB and cuts SQS for a while, and has every result
//!   delivered twice (the proxy sends each results-queue send twice). Then a reconciler pass
//!   (due activations, the results DLQ), and the checks: every run terminal, none lost, no
//!   history with a step applied twice, no outbox left; handler executions are counted per
//!   step id (a step that succeeded more than once is reported: the side effect a user pays
//!   for, if the handler is not idempotent by its step id). Its last line is
//!   `chaos: runs=N completed=C failed=F stuck=S lost=L double=D kills=K`.
//! - `chaos engine` / `chaos worker`: `cairn_lambda::serve_engine_configured` /
//!   `serve_worker_configured` with the chaos workflow and steps, configured from the
//!   environment the orchestrator sets.

mod checks;
mod processes;
mod workload;

use checks::{count_executions, double_applied, still_running};
use processes::{lock, Processes};
use workload::{random, worker, workflows, WORKFLOW};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cairn::client::Client;
use cairn::store::{CheckpointStore, StoreError};
use cairn::workflow::RunStatus;
use cairn_devstack::fault_proxy::{Fault, FaultProxy, Faults};
use cairn_devstack::local_stack::{provision_from_template, TemplateParams};
use cairn_lambda::aws::{sdk_config, AwsClients};
use cairn_lambda::config::Config;
use clap::Parser;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "cairn under chaos on the local stack (scripts/chaos)")]
enum Cli {
    /// Orchestrate a chaos run.
    Run(RunArgs),
    /// An engine process (started by `run`).
    Engine,
    /// A worker process (started by `run`).
    Worker,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Local stack endpoint (moto).
    #[arg(long, env = "CAIRN_ENDPOINT_URL")]
    endpoint_url: String,
    /// Concurrent runs.
    #[arg(long, default_value_t = 500)]
    runs: usize,
    /// Engine processes.
    #[arg(long, default_value_t = 2)]
    engines: usize,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// A random process is SIGKILLed every this many seconds on average (0: never).
    #[arg(long, default_value_t = 5.0)]
    kill_every_secs: f64,
    /// DynamoDB is throttled for this long ...
    #[arg(long, default_value_t = 60)]
    throttle_secs: u64,
    /// ... starting this long after the runs were started.
    #[arg(long, default_value_t = 10)]
    throttle_at_secs: u64,
    /// SQS is cut for this long ...
    #[arg(long, default_value_t = 30)]
    cut_secs: u64,
    /// ... starting this long after the throttle ended.
    #[arg(long, default_value_t = 10)]
    cut_after_secs: u64,
    /// Give up waiting for the runs after this long (500 runs take about 15 minutes on a
    /// busy 2-core machine, moto being the bottleneck).
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Queue and table prefix (default: a fresh one).
    #[arg(long)]
    prefix: Option<String>,
    /// Visibility timeout of the processes' local event source mappings, seconds.
    #[arg(long, default_value_t = 8)]
    visibility_secs: u32,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse() {
        Cli::Engine => {
            cairn_lambda::telemetry::init();
            let config = Config::from_env()?;
            cairn_lambda::serve_engine_configured(config, workflows(), |_, _, sqs| sqs)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
        Cli::Worker => {
            cairn_lambda::telemetry::init();
            let config = Config::from_env()?;
            cairn_lambda::serve_worker_configured(config, worker())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))
        }
        Cli::Run(args) => run(args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let prefix = args
        .prefix
        .clone()
        .unwrap_or_else(|| format!("chaos{}", &uuid::Uuid::new_v4().simple().to_string()[..6]));
    let sdk = sdk_config(Some(&args.endpoint_url)).await;
    let clients = AwsClients::new(&sdk);
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
            .context("reading template.yaml")?;
    let params = TemplateParams::with_prefix(&prefix);
    let resources = provision_from_template(&template, &params, &clients.sqs, &clients.dynamodb)
        .await
        .context("provisioning")?;
    let config = Config {
        table_name: resources.table_name.clone(),
        prefix: prefix.clone(),
        results_queue_url: Some(resources.results_queue_url.clone()),
        task_queue_urls: resources.task_queue_urls.clone(),
        endpoint_url: Some(args.endpoint_url.clone()),
        ..Config::default()
    };
    let proxy = FaultProxy::start(&args.endpoint_url).await?;
    proxy.set(Faults {
        duplicate_sends_to: Some(
            resources
                .results_queue_url
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
        ..Faults::default()
    });
    let dir = std::env::temp_dir().join(format!("cairn-chaos-{prefix}"));
    std::fs::create_dir_all(&dir)?;
    let executions = dir.join("executions.log");
    let env = vec![
        ("CAIRN_ENDPOINT_URL".into(), proxy.endpoint()),
        ("CAIRN_QUEUE_PREFIX".into(), prefix.clone()),
        ("CAIRN_TABLE_NAME".into(), resources.table_name.clone()),
        (
            "CAIRN_RESULTS_QUEUE_URL".into(),
            resources.results_queue_url.clone(),
        ),
        (
            "CAIRN_TASK_QUEUE_URLS".into(),
            serde_json::to_string(&resources.task_queue_urls)?,
        ),
        ("CAIRN_BACKOFF_BASE_SECONDS".into(), "1".into()),
        (
            "CAIRN_DEV_VISIBILITY_SECONDS".into(),
            args.visibility_secs.to_string(),
        ),
        ("CHAOS_EXECUTIONS".into(), executions.display().to_string()),
        (
            "RUST_LOG".into(),
            std::env::var("CHAOS_RUST_LOG")
                .unwrap_or_else(|_| "warn,aws_config=error,aws_smithy_runtime=error".into()),
        ),
    ];
    let processes = Arc::new(Mutex::new(Processes {
        exe: std::env::current_exe()?,
        env,
        logs: dir.clone(),
        children: Vec::new(),
        kills: 0,
    }));
    lock(&processes).start_all(args.engines, args.workers)?;
    eprintln!(
        "chaos: prefix {prefix}, {} engines + {} workers through the fault proxy {}, logs in {}",
        args.engines,
        args.workers,
        proxy.endpoint(),
        dir.display()
    );

    // Start the runs (straight to moto: the driver is not under test).
    let client = Client::new(clients.store(&config), clients.transport(&config));
    let ids: Vec<String> = (0..args.runs).map(|i| format!("{prefix}-o{i}")).collect();
    for chunk in ids.chunks(25) {
        for id in chunk {
            client
                .start(WORKFLOW, json!({ "id": id }), Some(id.clone()))
                .await?;
        }
    }
    let runs_started = Instant::now();
    eprintln!(
        "chaos: {} runs started in {:.1}s",
        ids.len(),
        started.elapsed().as_secs_f64()
    );

    // Faults on a timeline; kills at random until the runs are done.
    let proxy = Arc::new(proxy);
    let faults = {
        let proxy = proxy.clone();
        let (at, throttle, gap, cut) = (
            args.throttle_at_secs,
            args.throttle_secs,
            args.cut_after_secs,
            args.cut_secs,
        );
        tokio::spawn(async move {
            if throttle > 0 {
                tokio::time::sleep(Duration::from_secs(at)).await;
                eprintln!("chaos: DynamoDB throttled for {throttle}s");
                proxy.set_dynamodb(Fault::Throttle);
                tokio::time::sleep(Duration::from_secs(throttle)).await;
                proxy.set_dynamodb(Fault::Ok);
                eprintln!("chaos: DynamoDB back");
            }
            if cut > 0 {
                tokio::time::sleep(Duration::from_secs(gap)).await;
                eprintln!("chaos: SQS cut for {cut}s");
                proxy.set_sqs(Fault::Reset);
                tokio::time::sleep(Duration::from_secs(cut)).await;
                proxy.set_sqs(Fault::Ok);
                eprintln!("chaos: SQS back");
            }
        })
    };
    let killing = {
        let processes = processes.clone();
        let every = args.kill_every_secs;
        tokio::spawn(async move {
            if every <= 0.0 {
                return;
            }
            loop {
                let pause = every * (0.5 + random(1000) as f64 / 1000.0);
                tokio::time::sleep(Duration::from_secs_f64(pause)).await;
                let slot = lock(&processes).kill_one();
                tokio::time::sleep(Duration::from_millis(200 + random(1300))).await;
                if let Some(slot) = slot {
                    lock(&processes).restart(slot);
                }
                // A process that died on its own (it should not) is started again too.
                lock(&processes).restart_dead();
            }
        })
    };

    let deadline = runs_started + Duration::from_secs(args.timeout_secs);
    let mut pending: Vec<String> = ids.clone();
    let mut last_report = Instant::now();
    while !pending.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        pending = still_running(&client, pending).await;
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!(
                "chaos: t={:.0}s {} of {} runs not finished, {} kills",
                runs_started.elapsed().as_secs_f64(),
                pending.len(),
                ids.len(),
                lock(&processes).kills
            );
        }
    }
    killing.abort();
    faults.abort();
    proxy.set(Faults::default());
    lock(&processes).restart_dead();

    // The reconciler's pass: due activations and the results DLQ. Everything is treated as
    // stalled by now, including activations that only issued commands, whose entries come due
    // a while after their commit (`COMMANDS_DUE_AFTER_MS`).
    let store = clients.store(&config);
    let transport = clients.transport(&config);
    let pass = cairn_lambda::reconciler::reconcile(
        &store,
        &transport,
        cairn_lambda::reconciler::ReconcileOptions {
            before_ms: cairn::clock::now_ms() + cairn::store::COMMANDS_DUE_AFTER_MS,
            max_runs: 100_000,
            timer_chunk_seconds: 900,
            deadline: None,
        },
    )
    .await;
    let dlq = cairn_lambda::dead_letters::redrive_awaited(
        &store,
        &clients.sqs,
        &resources.results_dlq_url,
        &resources.results_queue_url,
        None,
    )
    .await;
    match (&pass, &dlq) {
        (Ok(pass), Ok(dlq)) => eprintln!(
            "chaos: reconciler: {} examined, {} re-driven, {} timers re-fired; results DLQ: {} examined, {} sent back, {} left",
            pass.examined,
            pass.redriven.len(),
            pass.timers_refired.len(),
            dlq.examined,
            dlq.redriven.len(),
            dlq.left.len()
        ),
        _ => eprintln!("chaos: reconciler failed: {pass:?} {dlq:?}"),
    }
    if !pending.is_empty() {
        // What the reconciler sent again gets a last chance.
        let grace = Instant::now() + Duration::from_secs(60);
        while !pending.is_empty() && Instant::now() < grace {
            tokio::time::sleep(Duration::from_secs(1)).await;
            pending = still_running(&client, pending).await;
        }
    }
    let kills = lock(&processes).kills;
    lock(&processes).stop_all();

    // The checks.
    let mut counts = BTreeMap::<&str, usize>::new();
    let mut doubles = Vec::new();
    let mut undrained = Vec::new();
    for id in &ids {
        let key = match store.load(id).await {
            Ok(Some(loaded)) => {
                if let Some(why) = double_applied(&loaded.history) {
                    doubles.push(format!("{id}: {why}"));
                }
                if !loaded.outbox.is_empty() {
                    undrained.push(id.clone());
                }
                match loaded.run.status {
                    RunStatus::Completed => "completed",
                    RunStatus::Failed | RunStatus::Cancelled => "failed",
                    _ => "stuck",
                }
            }
            Ok(None) | Err(StoreError::Leftovers(_)) => "lost",
            Err(e) => {
                eprintln!("chaos: {id}: {e}");
                "lost"
            }
        };
        *counts.entry(key).or_default() += 1;
    }
    let executions = count_executions(&executions);
    let repeated: Vec<(&String, &usize)> = executions.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "chaos: fault proxy: {}",
        serde_json::to_string(&proxy.counts())?
    );
    for line in doubles.iter().take(10) {
        eprintln!("chaos: double-applied {line}");
    }
    if !undrained.is_empty() {
        eprintln!("chaos: outbox not drained: {undrained:?}");
    }
    println!(
        "chaos: handler executions: {} successful, {} step ids, {} succeeded more than once{}",
        executions.values().sum::<usize>(),
        executions.len(),
        repeated.len(),
        if repeated.is_empty() {
            String::new()
        } else {
            format!(
                " (e.g. {})",
                repeated
                    .iter()
                    .take(5)
                    .map(|(id, n)| format!("{id} x{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let stuck = counts.get("stuck").copied().unwrap_or(0) + undrained.len();
    let (lost, double) = (counts.get("lost").copied().unwrap_or(0), doubles.len());
    println!(
        "chaos: runs={} completed={} failed={} stuck={} lost={} double={} kills={}",
        ids.len(),
        counts.get("completed").copied().unwrap_or(0),
        counts.get("failed").copied().unwrap_or(0),
        stuck,
        lost,
        double,
        kills
    );
    if stuck + lost + double > 0 {
        std::process::exit(1);
    }
    Ok(())
}
