//! `cairn start | signal | cancel`: control messages on the results queue (the engine is the
//! only writer of runs), with read-back checks so mistakes are reported, not silently queued.

use std::time::Duration;

use anyhow::Context as _;
use cairn::client::ClientError;
use cairn::contract::WorkflowEvent;
use cairn::workflow::RunStatus;
use cairn_inspect::payload;
use serde_json::json;

use crate::args::{CancelArgs, SignalArgs, StartArgs};
use crate::context::{read_json, read_text, Ctx};
use crate::failure::{code, Failure};
use crate::out::outln;

/// `cairn start`: prints the run id (and, with `--wait`, the outcome).
pub async fn start(ctx: &Ctx, args: StartArgs) -> anyhow::Result<()> {
    let input = read_json(&args.input, "--input")?;
    let client = ctx.client();
    // Starting is idempotent by id; say so when the id is already taken.
    let existing = match &args.run_id {
        Some(id) => match client.get(id).await {
            Ok(loaded) => Some(loaded.run),
            Err(ClientError::NotFound(_)) => None,
            // An earlier run of this id left items behind: the engine deletes a retired
            // run's leftovers when it takes this start (or restores a lost run item).
            Err(ClientError::Store(cairn::store::StoreError::Leftovers(leftovers))) => {
                eprintln!("note: {leftovers}");
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let run_id = match &existing {
        Some(run) => {
            if run.workflow != args.workflow {
                return Err(Failure::new(
                    code::FAILURE,
                    format!(
                        "run {} already exists as a {} run (not {}); pick another --run-id",
                        run.run_id, run.workflow, args.workflow
                    ),
                )
                .into());
            }
            eprintln!(
                "run {} already exists ({}); not started again",
                run.run_id, run.status
            );
            run.run_id.to_string()
        }
        None => {
            client
                .start(&args.workflow, input, args.run_id.clone())
                .await?
        }
    };
    let Some(secs) = args.wait else {
        if ctx.json {
            outln!(
                "{}",
                json!({ "runId": run_id, "started": existing.is_none() })
            )?;
        } else {
            outln!("{run_id}")?;
        }
        return Ok(());
    };
    let run = client.wait(&run_id, Duration::from_secs(secs)).await.map_err(|e| match e {
        // The engine never created the run from the start message.
        ClientError::Timeout { status: None, .. } => Failure::new(
            code::TIMEOUT,
            format!(
                "run {run_id} was not created within {secs}s: is an engine consuming the results queue?"
            ),
        )
        .into(),
        ClientError::Timeout {
            status: Some(status),
            ..
        } => Failure::new(
            code::TIMEOUT,
            format!("run {run_id} is still {status} after {secs}s"),
        )
        .into(),
        other => anyhow::Error::from(other),
    })?;
    if ctx.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({ "runId": run.run_id, "status": run.status, "output": run.output, "error": run.error })
            )?
        )?;
    } else {
        outln!("{run_id}")?;
        outln!(
            "{} after {}ms",
            run.status,
            run.updated_at_ms.saturating_sub(run.created_at_ms)
        )?;
        if let Some(output) = &run.output {
            outln!("output {}", payload(output, "       "))?;
        }
        if let Some(error) = &run.error {
            outln!("error  {error}")?;
        }
    }
    match run.status {
        RunStatus::Completed | RunStatus::ContinuedAsNew => Ok(()),
        status => {
            Err(Failure::new(code::RUN_UNSUCCESSFUL, format!("run {run_id} {status}")).into())
        }
    }
}

/// `cairn signal RUN NAME --payload JSON` or `cairn signal --event FILE|-`.
pub async fn signal(ctx: &Ctx, args: SignalArgs) -> anyhow::Result<()> {
    let event = match &args.event {
        Some(source) => {
            let text = if source == "-" {
                read_text("-", "--event")?
            } else {
                read_text(&format!("@{source}"), "--event")?
            };
            let event: WorkflowEvent = serde_json::from_str(&text)
                .context("--event is not an IWorkflowEvent: expected {\"topic\": signal name, \"urn\": run id, \"payload\": any}")?;
            event
        }
        None => {
            let run_id = args
                .run_id
                .clone()
                .context("RUN_ID is required without --event")?;
            let name = args.name.clone().context("NAME is required")?;
            WorkflowEvent {
                topic: name,
                urn: run_id.into(),
                payload: Some(read_json(&args.payload, "--payload")?),
                attempt: 0,
            }
        }
    };
    let run_id = event.run_id()?;
    let client = ctx.client();
    if !args.no_check {
        let loaded = client.get(&run_id).await?;
        if loaded.run.status.is_terminal() {
            eprintln!(
                "note: run {run_id} is already {}; nothing will consume this signal",
                loaded.run.status
            );
        }
    }
    let name = event.topic.clone();
    client.signal_event(event).await?;
    if ctx.json {
        outln!(
            "{}",
            json!({ "runId": run_id, "signal": name, "sent": true })
        )?;
    } else {
        outln!("sent signal {name} to run {run_id}")?;
    }
    Ok(())
}

/// `cairn cancel RUN [--reason R]`.
pub async fn cancel(ctx: &Ctx, args: CancelArgs) -> anyhow::Result<()> {
    let client = ctx.client();
    let loaded = client.get(&args.run_id).await?;
    if loaded.run.status.is_terminal() {
        if ctx.json {
            outln!(
                "{}",
                json!({ "runId": args.run_id, "sent": false, "status": loaded.run.status })
            )?;
        } else {
            outln!(
                "run {} is already {}; nothing to cancel",
                args.run_id,
                loaded.run.status
            )?;
        }
        return Ok(());
    }
    client.cancel(&args.run_id, args.reason.clone()).await?;
    if ctx.json {
        outln!("{}", json!({ "runId": args.run_id, "sent": true }))?;
    } else {
        outln!(
            "asked run {} to cancel (it ends as cancelled at its next activation)",
            args.run_id
        )?;
    }
    Ok(())
}
