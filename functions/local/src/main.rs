//! The main job: the demo end to end on the local stack. Wiring only; see `cairn-local --help`.

mod bench;
mod job;
mod meter;

use clap::Parser;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    cairn_lambda::telemetry::init();
    job::run(job::Args::parse()).await
}
