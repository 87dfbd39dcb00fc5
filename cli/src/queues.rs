//! `cairn queues`: the group → tasks queue URL map, and the queue peers answer on.
//!
//! A nestjs-durable worker looks its queue up as `<prefix>-tasks-<step name>`, which is not a
//! valid SQS name for `payments.charge-card`; it joins a cairn deployment through explicit
//! URLs instead (`taskQueueUrl` / `resultsQueueUrl` in Node, `tasks_queue_url` /
//! `results_queue_url` in Python), and this command prints them. See `docs/peers.md`.

use cairn_lambda::queues::queue_map;

use crate::context::Ctx;
use crate::out::outln;

/// Prints the queue map as a table, or as JSON with `--json`.
pub async fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let map = queue_map(&ctx.clients.sqs, &ctx.config).await?;
    if ctx.json {
        outln!("{}", serde_json::to_string_pretty(&map)?)?;
        return Ok(());
    }
    let width = map
        .task_queue_urls
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max("GROUP".len());
    outln!("{:width$}  {:12}  TASKS QUEUE URL", "GROUP", "CLAIM CHECKS")?;
    for (group, url) in &map.task_queue_urls {
        let claim_checks = if map.groups_without_claim_checks.contains(group) {
            "no"
        } else {
            "yes"
        };
        outln!("{group:width$}  {claim_checks:12}  {url}")?;
    }
    outln!("")?;
    outln!("peers answer on:    {}", map.peer_results_queue_url)?;
    if map.peer_results_queue_url != map.results_queue_url {
        outln!(
            "engine results:     {} (FIFO: peers send no MessageGroupId)",
            map.results_queue_url
        )?;
    }
    Ok(())
}
