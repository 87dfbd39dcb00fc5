//! The command line, as clap derive types. Only parsing lives here; each command group's
//! logic is in its own module.

use std::path::PathBuf;

use cairn::workflow::RunStatus;
use clap::{Args, Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   failure (see the message)
  2   not found: unknown run id, queue or table
  3   cannot reach AWS / the local stack, or no credentials or region
  4   --wait timed out
  5   --wait: the run ended failed or cancelled
  64  bad command line";

/// Durable workflows on AWS Lambda: start, inspect, signal, cancel and redrive runs.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Where the runs and queues are.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command understands: where to find the deployment.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Deployment (any command)")]
pub struct Global {
    /// Local stack endpoint (e.g. http://127.0.0.1:4566); leave unset for AWS.
    #[arg(long, global = true, env = "CAIRN_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS region.
    #[arg(long, global = true, env = "AWS_REGION")]
    pub region: Option<String>,
    /// AWS profile (from ~/.aws/config).
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,
    /// DynamoDB table of runs [default: PREFIX-runs].
    #[arg(long, global = true, env = "CAIRN_TABLE_NAME", value_name = "NAME")]
    pub table: Option<String>,
    /// Queue name prefix of the deployment.
    #[arg(
        long,
        global = true,
        env = "CAIRN_QUEUE_PREFIX",
        default_value = "durable"
    )]
    pub prefix: String,
    /// Results queue URL [default: looked up by name, PREFIX-results].
    #[arg(
        long,
        global = true,
        env = "CAIRN_RESULTS_QUEUE_URL",
        value_name = "URL"
    )]
    pub results_queue_url: Option<String>,
    /// The deployment uses FIFO queues.
    #[arg(long, global = true, env = "CAIRN_FIFO")]
    pub fifo: bool,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List and inspect runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Start a run of a workflow (idempotent on --run-id).
    Start(StartArgs),
    /// Send a signal to a run.
    Signal(SignalArgs),
    /// Ask a run to cancel.
    Cancel(CancelArgs),
    /// Inspect and redrive dead-letter queues.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Print the step group -> tasks queue URL map and the queue peer workers answer on (for
    /// pointing nestjs-durable workers at this deployment; `--json` gives
    /// `taskQueueUrls` in the shape of CAIRN_TASK_QUEUE_URLS).
    Queues,
    /// Add to the project (no AWS needed).
    #[command(subcommand)]
    Scaffold(ScaffoldCommand),
}

/// `cairn scaffold ...`.
#[derive(Debug, Subcommand)]
pub enum ScaffoldCommand {
    /// A step group: its queue, dead-letter queue, worker function and role in template.yaml,
    /// the engine's and reconciler's queue maps, and a worker crate with a handler stub.
    Step(ScaffoldStepArgs),
}

/// `cairn scaffold step`.
#[derive(Debug, Args)]
pub struct ScaffoldStepArgs {
    /// The step group (= step name), e.g. images.resize.
    pub group: String,
    /// The project root (template.yaml and the workspace Cargo.toml) [default: the nearest
    /// directory holding both, from here up].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The worker function's timeout, seconds (the queue's visibility is 6x + 20).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=900))]
    pub timeout: u32,
}

/// `cairn runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs (newest first with --status or --workflow; an unfiltered list is in table order).
    List(ListArgs),
    /// A run with every step: attempts, timing, payloads, errors.
    Show(ShowArgs),
    /// Write a run's timeline as a self-contained HTML page.
    Timeline(TimelineArgs),
    /// Delete what a retired run left (history items whose run item expired), so its id
    /// starts afresh; refused while the run item exists.
    Purge(ShowArgs),
}

/// `cairn runs list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only runs with this status (running, completed, failed, cancelled, continuedAsNew).
    #[arg(long)]
    pub status: Option<RunStatus>,
    /// Only runs of this workflow.
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only runs started since: an age (90s, 15m, 1h, 2d, 1h30m), an RFC 3339 time
    /// (2026-11-26T05:00:00Z) or date (2026-11-26), or epoch milliseconds.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Page size.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Continue after a previous page (the cursor `runs list` prints after `more runs:`).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow the cursor through every page.
    #[arg(long)]
    pub all: bool,
}

/// `cairn runs show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The run id.
    pub run_id: String,
}

/// `cairn runs timeline`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// The run id.
    pub run_id: String,
    /// Where to write the page (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
}

/// `cairn start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The registered workflow name.
    pub workflow: String,
    /// Input JSON, `@FILE`, or `-` for stdin.
    #[arg(long, default_value = "null", value_name = "JSON")]
    pub input: String,
    /// Run id (starting an existing id again does nothing) [default: a new UUID].
    #[arg(long)]
    pub run_id: Option<String>,
    /// Wait up to SECS for the run to finish, then print its outcome.
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
}

/// `cairn signal`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["run_id", "event"]))]
pub struct SignalArgs {
    /// The run id.
    #[arg(requires = "name")]
    pub run_id: Option<String>,
    /// The signal name.
    pub name: Option<String>,
    /// Payload JSON, `@FILE`, or `-` for stdin.
    #[arg(
        long,
        default_value = "null",
        value_name = "JSON",
        conflicts_with = "event"
    )]
    pub payload: String,
    /// A seed-style IWorkflowEvent ({"topic","urn","payload"}) from FILE, or `-` for stdin.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["run_id", "name"])]
    pub event: Option<String>,
    /// Send even if the run is not found (it may be about to start).
    #[arg(long)]
    pub no_check: bool,
}

/// `cairn cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run id.
    pub run_id: String,
    /// Why (recorded in the run's error).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `cairn dlq ...`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Peek at a dead-letter queue's messages (they stay in the queue).
    List(DlqListArgs),
    /// Move a dead-letter queue's messages back to their source queue.
    Redrive(RedriveArgs),
}

/// `cairn dlq list`.
#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// A DLQ URL or name, a source queue name, `results`, or a step group.
    pub queue: String,
    /// At most this many messages.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
}

/// `cairn dlq redrive`.
#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// A DLQ URL or name, a source queue name, `results`, or a step group.
    pub queue: String,
    /// Target queue URL [default: the DLQ's source queue].
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Move at most this many messages.
    #[arg(long)]
    pub max: Option<u64>,
}
