//! `cairn runs list | show | timeline | purge`.

use anyhow::Context as _;
use cairn::clock::now_ms;
use cairn::store::{LoadedRun, RunFilter, RunRecord};
use cairn_inspect::{format_duration_ms, utc_timestamp};
use serde_json::{json, Value};

use crate::args::{ListArgs, RunsCommand, ShowArgs, TimelineArgs};
use crate::context::Ctx;
use crate::failure::{code, Failure};
use crate::out::{self, outln};
use crate::since::parse_since;

/// Runs one `cairn runs` command.
pub async fn run(ctx: &Ctx, command: RunsCommand) -> anyhow::Result<()> {
    match command {
        RunsCommand::List(args) => list(ctx, args).await,
        RunsCommand::Show(args) => show_run(ctx, args).await,
        RunsCommand::Timeline(args) => timeline(ctx, args).await,
        RunsCommand::Purge(args) => purge(ctx, args).await,
    }
}

/// `cairn runs purge`: a retired run's leftovers deleted.
async fn purge(ctx: &Ctx, args: ShowArgs) -> anyhow::Result<()> {
    use cairn::store::{CheckpointStore, StoreError};
    let store = ctx.clients.store(&ctx.config);
    match store.purge_leftovers(&args.run_id).await {
        Ok(items) => {
            if ctx.json {
                outln!("{}", json!({ "runId": args.run_id, "deleted": items }))?;
            } else if items == 0 {
                outln!("run {}: nothing left to delete", args.run_id)?;
            } else {
                outln!("run {}: {items} leftover item(s) deleted", args.run_id)?;
            }
            Ok(())
        }
        Err(StoreError::Conflict { .. }) => Err(Failure::new(
            code::FAILURE,
            format!(
                "run {} exists (its run item is there): nothing is purged; it is not a leftover",
                args.run_id
            ),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

async fn list(ctx: &Ctx, args: ListArgs) -> anyhow::Result<()> {
    let since_ms = match &args.since {
        Some(text) => Some(
            parse_since(text, now_ms())
                .map_err(|e| Failure::new(code::USAGE, format!("--since: {e}")))?,
        ),
        None => None,
    };
    let mut filter = RunFilter {
        status: args.status,
        workflow: args.workflow,
        since_ms,
        limit: args.limit,
        cursor: args.cursor,
    };
    let client = ctx.client();
    let mut runs = Vec::new();
    // A page can come back short (the store filters after reading): keep reading until the
    // page is full, or through every page with --all.
    let next_cursor = loop {
        let page = client.list(&filter).await?;
        runs.extend(page.runs);
        let wanted = (args.limit as usize).saturating_sub(runs.len());
        match page.next_cursor {
            Some(cursor) if filter.cursor.as_ref() != Some(&cursor) && (args.all || wanted > 0) => {
                if !args.all {
                    filter.limit = wanted as u32;
                }
                filter.cursor = Some(cursor);
            }
            other => break other,
        }
    };
    if ctx.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "runs": runs, "nextCursor": next_cursor }))?
        )?;
        return Ok(());
    }
    out::raw(table(&runs, now_ms()).as_bytes())?;
    if let Some(cursor) = next_cursor {
        // Cursors are JSON: quote them for the shell.
        eprintln!(
            "more runs: --cursor '{}'  (or --all)",
            cursor.replace('\'', "'\\''")
        );
    }
    Ok(())
}

/// The runs as an aligned table.
pub fn table(runs: &[RunRecord], now_ms: u64) -> String {
    if runs.is_empty() {
        return "no runs\n".to_owned();
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let took = if r.status.is_terminal() {
                format_duration_ms(r.updated_at_ms.saturating_sub(r.created_at_ms))
            } else {
                format!(
                    "{} so far",
                    format_duration_ms(now_ms.saturating_sub(r.created_at_ms))
                )
            };
            let created = utc_timestamp(r.created_at_ms);
            let created = created
                .get(..19)
                .map(|s| s.replace('T', " "))
                .unwrap_or(created);
            vec![
                r.run_id.to_string(),
                r.workflow.clone(),
                r.status.to_string(),
                created,
                took,
            ]
        })
        .collect();
    let header = ["RUN ID", "WORKFLOW", "STATUS", "CREATED (UTC)", "DURATION"];
    cairn_inspect::table("", &header, &rows, &[])
}

async fn show_run(ctx: &Ctx, args: ShowArgs) -> anyhow::Result<()> {
    let run = ctx.client().get(&args.run_id).await?;
    if ctx.json {
        outln!("{}", serde_json::to_string_pretty(&show_json(&run))?)?;
    } else {
        out::raw(cairn_inspect::render_text(&run).as_bytes())?;
    }
    Ok(())
}

/// The JSON of `cairn runs show --json`: the run, its steps and signals, and the raw history.
fn show_json(run: &LoadedRun) -> Value {
    let (steps, signals) = cairn_inspect::steps(run);
    serde_json::json!({
        "run": run.run,
        "steps": steps,
        "signals": signals,
        "pendingOutboxBatches": run.outbox.len(),
        "history": run.history,
    })
}

async fn timeline(ctx: &Ctx, args: TimelineArgs) -> anyhow::Result<()> {
    let run = ctx.client().get(&args.run_id).await?;
    let html = cairn_inspect::timeline::render_html(&run);
    let bars = cairn_inspect::timeline::layout(&run)
        .rows
        .iter()
        .map(|r| r.segments.len())
        .sum::<usize>();
    if args.html.as_os_str() == "-" {
        return out::raw(html.as_bytes());
    }
    std::fs::write(&args.html, &html)
        .with_context(|| format!("writing {}", args.html.display()))?;
    if ctx.json {
        outln!(
            "{}",
            json!({ "runId": run.run.run_id, "file": args.html, "bars": bars, "bytes": html.len() })
        )?;
    } else {
        outln!(
            "wrote {} ({} bars, run {} {})",
            args.html.display(),
            bars,
            run.run.run_id,
            run.run.status
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use cairn::workflow::RunStatus;
    use serde_json::Value;

    use super::*;

    fn record(id: &str, status: RunStatus, created: u64, updated: u64) -> RunRecord {
        RunRecord {
            run_id: id.parse().expect("a valid run id"),
            workflow: "checkout".into(),
            status,
            input: Value::Null,
            output: None,
            error: None,
            version: 1,
            history_len: 1,
            created_at_ms: created,
            updated_at_ms: updated,
            parent: None,
            last_error: None,
            outbox_pending: false,
        }
    }

    #[test]
    fn table_aligns_columns_and_shows_durations() {
        let text = table(
            &[
                record("run-a", RunStatus::Completed, 0, 1500),
                record("a-much-longer-run-id", RunStatus::Running, 0, 10),
            ],
            60_000,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("RUN ID                WORKFLOW  STATUS"),
            "{text}"
        );
        assert!(
            lines[1].contains("completed") && lines[1].ends_with("1s 500ms"),
            "{text}"
        );
        assert!(
            lines[2].contains("1970-01-01 00:00:00") && lines[2].ends_with("1m so far"),
            "{text}"
        );
        assert_eq!(table(&[], 0), "no runs\n");
    }
}
