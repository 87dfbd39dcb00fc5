//! What the main job does: provision from `template.yaml`, run the engine and workers behind
//! local event source mappings, start checkout runs, signal the one waiting for approval,
//! wait, and print each run's status and step timeline as read back from DynamoDB.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cairn::client::Client;
use cairn::workflow::RunStatus;
use cairn_devstack::event_source::MappingOptions;
use cairn_devstack::local_runtime::{LocalRuntime, Queues};
use cairn_devstack::local_stack::{provision_from_template, TemplateParams};
use cairn_lambda::aws::{sdk_config, AwsClients, RequestCounter};
use cairn_lambda::config::Config;
use cairn_lambda::engine::{Engine, EngineOptions};
use serde_json::json;

/// Command-line options.
#[derive(Debug, clap::Parser)]
#[command(about = "Run the cairn demo end to end on the local stack (moto)")]
pub struct Args {
    /// Local stack endpoint (set by `scripts/local-stack start`).
    #[arg(long, env = "CAIRN_ENDPOINT_URL")]
    endpoint_url: String,
    /// Queue and table prefix.
    #[arg(long, default_value = "durable")]
    prefix: String,
    /// Extra plain checkout runs, for measuring (prints request and write counts).
    #[arg(long, default_value_t = 0)]
    checkouts: usize,
    /// How long to wait for the runs.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Only create the queues and table from template.yaml, then exit (`scripts/dev`).
    #[arg(long)]
    provision_only: bool,
    /// Run the cost benchmark instead of the demo (`scripts/bench`).
    #[arg(long)]
    bench: bool,
    /// Benchmark sizes.
    #[command(flatten)]
    bench_args: crate::bench::BenchArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.bench {
        return crate::bench::run(&args.endpoint_url, &args.prefix, &args.bench_args).await;
    }
    let sdk = sdk_config(Some(&args.endpoint_url)).await;
    let counter = RequestCounter::new();
    let clients = AwsClients::counted(&sdk, &counter);
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
            .context("reading template.yaml")?;
    let params = TemplateParams {
        prefix: args.prefix.clone(),
        ..TemplateParams::default()
    };
    let resources = provision_from_template(&template, &params, &clients.sqs, &clients.dynamodb)
        .await
        .context("creating the queues and table from template.yaml")?;
    println!(
        "local stack {}: table {}, {} tasks queues (from template.yaml)",
        args.endpoint_url,
        resources.table_name,
        resources.task_queue_urls.len()
    );
    if args.provision_only {
        return Ok(());
    }

    let config = Config {
        table_name: resources.table_name.clone(),
        prefix: args.prefix.clone(),
        results_queue_url: Some(resources.results_queue_url.clone()),
        timer_queue_url: resources.timer_queue_url.clone(),
        task_queue_urls: resources.task_queue_urls.clone(),
        timer_chunk_seconds: 900,
        endpoint_url: Some(args.endpoint_url.clone()),
        ..Config::default()
    };
    let mapping = MappingOptions {
        visibility_timeout: Some(5),
        ..MappingOptions::default()
    };
    let engine = Engine::new(
        Arc::new(cairn_demo::workflows()),
        clients.store(&config).with_history_cache(),
        clients.transport(&config),
        clients.blobs(&config),
        EngineOptions::default(),
    );
    let mut runtime = LocalRuntime::serve(
        &clients.sqs,
        &Queues::from(&resources),
        mapping,
        Arc::new(engine),
        Arc::new(cairn_demo::worker()),
        Arc::new(clients.transport(&config)),
        Arc::new(clients.blobs(&config)),
    )
    .await?;

    // The client (starting, signalling, and polling for the end) is not counted: the figures
    // are what the engine and workers cost.
    let plain = AwsClients::new(&sdk);
    let client = Client::new(plain.store(&config), plain.transport(&config));
    let batch = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    let order = |id: &str, card: &str| json!({ "orderId": id, "amountCents": 4200, "card": card, "email": "ada@example.com" });
    let mut demo = Vec::new();
    let started = Instant::now();
    let id = |name: &str| format!("{name}-{batch}");
    let mut happy = order(&id("order-ok"), "tok_flaky");
    happy["coolingOffSecs"] = json!(2);
    demo.push(
        client
            .start("checkout", happy, Some(id("order-ok")))
            .await?,
    );
    demo.push(
        client
            .start(
                "checkout",
                order(&id("order-declined"), "tok_declined"),
                Some(id("order-declined")),
            )
            .await?,
    );
    let mut approval = order(&id("order-approval"), "tok_visa");
    approval["needsApproval"] = json!(true);
    let approval_id = client
        .start("checkout", approval, Some(id("order-approval")))
        .await?;
    demo.push(approval_id.clone());
    let report = json!({ "userId": 42, "startDate": "2026-11-01", "endDate": "2026-11-26", "simulatedMs": 1500 });
    demo.push(client.start("report", report, Some(id("report"))).await?);

    // The approval arrives a little later, as a seed-style IWorkflowEvent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let event = serde_json::from_value(
        json!({ "topic": "approval", "urn": approval_id, "payload": { "approved": true, "by": "ops@example.com" }, "attempt": 0 }),
    )?;
    client.signal_event(event).await?;
    println!("sent the approval signal to {approval_id}");

    let timeout = Duration::from_secs(args.timeout_secs);
    for run_id in &demo {
        client.wait(run_id, timeout).await?;
    }
    println!(
        "demo runs finished in {:.1}s\n",
        started.elapsed().as_secs_f64()
    );
    for run_id in &demo {
        println!("{}", cairn_inspect::render_text(&client.get(run_id).await?));
    }
    let expected = [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Completed,
        RunStatus::Completed,
    ];
    for (run_id, want) in demo.iter().zip(expected) {
        let got = client.get(run_id).await?.run.status;
        if got != want {
            bail!("run {run_id} ended {got}, expected {want}");
        }
    }
    if args.checkouts > 0 {
        measure(&client, &counter, args.checkouts, &batch, timeout).await?;
    }
    runtime.stop();
    println!("all demo runs ended as expected");
    Ok(())
}

/// Runs `n` plain checkouts and prints AWS requests per remote step and items written.
async fn measure(
    client: &Client<
        cairn_lambda::dynamo::DynamoStore,
        cairn_lambda::sqs::SqsTransport<cairn_lambda::dynamo::DynamoBlobStore>,
    >,
    counter: &RequestCounter,
    n: usize,
    batch: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    counter.reset();
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("bench-{batch}-{i}");
        let input = json!({ "orderId": id, "amountCents": 100 + i, "card": "tok_visa", "email": "bench@example.com" });
        ids.push(client.start("checkout", input, Some(id.clone())).await?);
    }
    for id in &ids {
        let run = client.wait(id, timeout).await?;
        if run.status != RunStatus::Completed {
            bail!("benchmark run {id} ended {}", run.status);
        }
    }
    let wall = started.elapsed();
    // Snapshot before anything else talks to AWS (the polling loops keep receiving).
    let counts = counter.snapshot();
    let items = counter.dynamodb_items_written();
    // Per checkout: 2 remote steps (charge, email) and 1 inline step.
    let remote_steps = (n * 2) as f64;
    println!(
        "\n{n} checkouts: wall {:.1}s ({:.1} runs/s)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    );
    println!("AWS requests per remote step (engine, workers and their SQS polling; the client's start messages not included):");
    let mut total = 0;
    for ((service, operation), count) in &counts {
        total += count;
        println!(
            "  {service:<9} {operation:<20} {count:>7}  {:>6.2}/step",
            *count as f64 / remote_steps
        );
    }
    println!(
        "  total                          {total:>7}  {:>6.2}/step",
        total as f64 / remote_steps
    );
    println!(
        "DynamoDB items written: {items} ({:.2} per remote step, {:.1} per run)",
        items as f64 / remote_steps,
        items as f64 / n as f64
    );
    Ok(())
}
