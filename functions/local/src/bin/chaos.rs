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

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cairn::client::Client;
use cairn::contract::StepError;
use cairn::store::{CheckpointStore, StoreError};
use cairn::worker::{TaskContext, Worker};
use cairn::workflow::{
    EventKind, RemoteStep, RetryPolicy, RunStatus, WorkflowContext, WorkflowError, Workflows,
};
use cairn_devstack::fault_proxy::{Fault, FaultProxy, Faults};
use cairn_devstack::local_stack::{provision_from_template, TemplateParams};
use cairn_lambda::aws::{sdk_config, AwsClients};
use cairn_lambda::config::Config;
use clap::Parser;
use serde_json::{json, Value};

const RETRY: RetryPolicy =
    RetryPolicy::exponential(8, Duration::from_millis(200), 2.0, Duration::from_secs(2));
/// Five remote steps over the template's three tasks queues.
const STEPS: [(&str, RemoteStep<Value, Value>); 5] = [
    (
        "reserve",
        RemoteStep::new("reports.generate").with_retry(RETRY),
    ),
    (
        "charge",
        RemoteStep::new("payments.charge-card").with_retry(RETRY),
    ),
    (
        "ship",
        RemoteStep::new("notifications.send-email").with_retry(RETRY),
    ),
    (
        "invoice",
        RemoteStep::new("reports.generate").with_retry(RETRY),
    ),
    (
        "notify",
        RemoteStep::new("notifications.send-email").with_retry(RETRY),
    ),
];
const WORKFLOW: &str = "chaos-checkout";

async fn checkout(ctx: WorkflowContext, order: Value) -> Result<Value, WorkflowError> {
    let mut done = Vec::new();
    for (op, step) in &STEPS {
        let out = ctx
            .remote(step, json!({ "op": op, "order": order }))
            .await?;
        done.push(out);
    }
    Ok(json!({ "order": order, "steps": done.len() }))
}

fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows.register(WORKFLOW, checkout);
    workflows
}

/// A cheap random number (no extra crate): xorshift on a per-call seed.
fn random(bound: u64) -> u64 {
    let mut x = (uuid::Uuid::new_v4().as_u128() as u64) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x % bound.max(1)
}

/// Every successful execution is appended to the executions file (one step id a line) before
/// the handler returns: what a user would pay for.
async fn handler(input: Value, task: TaskContext) -> Result<Value, StepError> {
    tokio::time::sleep(Duration::from_millis(5 + random(25))).await;
    if random(100) < 3 {
        return Err(StepError::retryable("chaos: a transient step failure"));
    }
    if let Ok(path) = std::env::var("CHAOS_EXECUTIONS") {
        let line = format!("{}\n", task.step_id);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| StepError::retryable(format!("executions file: {e}")))?;
        file.write_all(line.as_bytes())
            .map_err(|e| StepError::retryable(format!("executions file: {e}")))?;
    }
    Ok(json!({ "op": input["op"], "stepId": task.step_id }))
}

fn worker() -> Worker {
    let mut worker = Worker::new();
    let mut seen = std::collections::BTreeSet::new();
    for (_, step) in &STEPS {
        if seen.insert(step.name()) {
            worker = worker.handle(step, handler);
        }
    }
    worker
}

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

/// The engine and worker processes, killed and restarted at will.
struct Processes {
    exe: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
    children: Vec<(&'static str, usize, Option<Child>)>,
    kills: usize,
}

impl Processes {
    fn spawn(&self, role: &str, index: usize) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{role}-{index}.log")))?;
        Ok(Command::new(&self.exe)
            .arg(role)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?)
    }

    fn start_all(&mut self, engines: usize, workers: usize) -> anyhow::Result<()> {
        for index in 0..engines {
            let child = self.spawn("engine", index)?;
            self.children.push(("engine", index, Some(child)));
        }
        for index in 0..workers {
            let child = self.spawn("worker", index)?;
            self.children.push(("worker", index, Some(child)));
        }
        Ok(())
    }

    /// SIGKILLs one process at random; returns its slot.
    fn kill_one(&mut self) -> Option<usize> {
        let slot = random(self.children.len() as u64) as usize;
        let (role, index, child) = self.children.get_mut(slot)?;
        let mut child = child.take()?;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        self.kills += 1;
        eprintln!("chaos: killed {role}-{index}");
        Some(slot)
    }

    fn restart(&mut self, slot: usize) {
        let (role, index) = (self.children[slot].0, self.children[slot].1);
        match self.spawn(role, index) {
            Ok(child) => self.children[slot].2 = Some(child),
            Err(e) => eprintln!("chaos: restarting {role}-{index} failed: {e}"),
        }
    }

    /// Every slot running again.
    fn restart_dead(&mut self) {
        for slot in 0..self.children.len() {
            let dead = match &mut self.children[slot].2 {
                None => true,
                Some(child) => child.try_wait().ok().flatten().is_some(),
            };
            if dead {
                self.restart(slot);
            }
        }
    }

    fn stop_all(&mut self) {
        for (_, _, child) in &mut self.children {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all();
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

    // The reconciler's pass: due activations and the results DLQ.
    let store = clients.store(&config);
    let transport = clients.transport(&config);
    let pass = cairn_lambda::reconciler::reconcile(
        &store,
        &transport,
        cairn_lambda::reconciler::ReconcileOptions {
            before_ms: cairn::clock::now_ms(),
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

fn lock(processes: &Mutex<Processes>) -> std::sync::MutexGuard<'_, Processes> {
    processes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The ids among `pending` whose run is not finished (a slice of 25 checked per call, so
/// polling stays light on the local stack, which is the bottleneck).
async fn still_running<S: CheckpointStore, T: cairn::transport::ControlSender>(
    client: &Client<S, T>,
    pending: Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, id) in pending.into_iter().enumerate() {
        if i >= 25 {
            out.push(id);
            continue;
        }
        match client.get(&id).await {
            Ok(run) if run.run.status.is_terminal() => {}
            _ => out.push(id),
        }
    }
    // Rotate, so the next call looks at others.
    let n = out.len().min(25);
    out.rotate_left(n);
    out
}

/// Why a history applied something twice, if it did: a step resolved twice, one attempt's
/// result applied twice, or one attempt scheduled twice.
fn double_applied(history: &[cairn::workflow::HistoryEvent]) -> Option<String> {
    let mut completed = HashMap::<u64, usize>::new();
    let mut results = HashMap::<(u64, u32), usize>::new();
    let mut scheduled = HashMap::<(u64, u32), usize>::new();
    for event in history {
        match &event.kind {
            EventKind::StepCompleted { seq, attempt, .. } => {
                *completed.entry(*seq).or_default() += 1;
                *results.entry((*seq, *attempt)).or_default() += 1;
            }
            EventKind::StepFailed { seq, attempt, .. } => {
                *results.entry((*seq, *attempt)).or_default() += 1;
            }
            EventKind::TaskScheduled { seq, attempt, .. } => {
                *scheduled.entry((*seq, *attempt)).or_default() += 1;
            }
            _ => {}
        }
    }
    if let Some((seq, n)) = completed.iter().find(|(_, n)| **n > 1) {
        return Some(format!("seq {seq} completed {n} times"));
    }
    if let Some(((seq, attempt), n)) = results.iter().find(|(_, n)| **n > 1) {
        return Some(format!("seq {seq} attempt {attempt} applied {n} times"));
    }
    if let Some(((seq, attempt), n)) = scheduled.iter().find(|(_, n)| **n > 1) {
        return Some(format!("seq {seq} attempt {attempt} scheduled {n} times"));
    }
    None
}

/// Successful handler executions per step id, from the executions file.
fn count_executions(path: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines().filter(|l| !l.is_empty()) {
            *counts.entry(line.to_owned()).or_default() += 1;
        }
    }
    counts
}
