//! A run as text for people: one renderer for `cairn runs show` and the main job.

use std::fmt::Write as _;

use cairn::store::LoadedRun;
use serde_json::Value;

use crate::table::table;
use crate::{error_text, format_duration_ms, summarize, utc_timestamp, StepState};

/// Pretty JSON up to this many bytes; larger payloads are summarized.
const PRETTY_MAX: usize = 1500;

/// A payload for people: pretty JSON, continuation lines indented by `indent`, or a one-line summary when large.
pub fn payload(value: &Value, indent: &str) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
    if pretty.len() > PRETTY_MAX {
        return summarize(value, 120);
    }
    pretty
        .lines()
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

/// Time of day with milliseconds and the offset from the run's start: `05:40:01.135 (+12ms)`.
fn when(ms: u64, start_ms: u64) -> String {
    let stamp = utc_timestamp(ms);
    let time = stamp.get(11..23).unwrap_or(&stamp);
    format!(
        "{time} (+{})",
        format_duration_ms(ms.saturating_sub(start_ms))
    )
}

/// A run for people (`cairn runs show`, the main job): its summary, a table of its steps
/// and signal waits, then each step's attempts and output.
pub fn render_text(run: &LoadedRun) -> String {
    let r = &run.run;
    let start = r.created_at_ms;
    let mut out = String::new();
    let _ = writeln!(out, "run       {}", r.run_id);
    let _ = writeln!(out, "workflow  {}", r.workflow);
    let _ = writeln!(out, "status    {}", r.status);
    let _ = writeln!(out, "created   {}", utc_timestamp(start));
    let label = if r.status.is_terminal() {
        "finished"
    } else {
        "updated "
    };
    let _ = writeln!(
        out,
        "{label}  {}  ({} after start)",
        utc_timestamp(r.updated_at_ms),
        format_duration_ms(r.updated_at_ms.saturating_sub(start))
    );
    let _ = writeln!(
        out,
        "history   {} events, version {}",
        r.history_len, r.version
    );
    if let Some(parent) = &r.parent {
        let _ = writeln!(
            out,
            "parent    {}",
            serde_json::to_string(parent).unwrap_or_default()
        );
    }
    if !run.outbox.is_empty() {
        let _ = writeln!(
            out,
            "outbox    {} batch(es) not yet sent (the reconciler re-drives them)",
            run.outbox.len()
        );
    }
    let _ = writeln!(out, "input     {}", payload(&r.input, "          "));
    if let Some(output) = &r.output {
        let _ = writeln!(out, "output    {}", payload(output, "          "));
    }
    if let Some(error) = &r.error {
        let _ = writeln!(out, "error     {}", error_text(error));
    }
    if let Some(problem) = &r.last_error {
        let _ = writeln!(out, "engine problem: {problem}");
    }
    let (steps, signals) = crate::steps(run);
    let rows = table_rows(run);
    let _ = writeln!(out, "\nsteps ({})", rows.len());
    if rows.is_empty() {
        out.push_str("  (none yet)\n");
    }
    if !rows.is_empty() {
        let header = [
            "SEQ", "KIND", "NAME", "GROUP", "ATTEMPTS", "STARTED", "FINISHED", "DURATION", "STATE",
        ];
        out.push_str(&table("  ", &header, &rows, &[0, 4, 7]));
    }
    for step in &steps {
        let group = step
            .group
            .as_deref()
            .filter(|g| *g != step.name)
            .map(|g| format!(", group {g}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "\nstep {} {} ({}{group}): {}",
            step.seq, step.name, step.kind, step.state
        );
        if let Some(timeouts) = &step.timeouts {
            let _ = writeln!(out, "  timeouts  {}", timeouts_text(timeouts));
        }
        let last = step.attempt_starts_ms.len().saturating_sub(1);
        for (i, at) in step.attempt_starts_ms.iter().enumerate() {
            // Errors are recorded in attempt order: attempt i failed at errors[i], if present.
            let outcome = match (step.errors.get(i), step.finished_at_ms) {
                (Some((failed_at, error)), _) => format!(
                    "→ {}  failed: {}",
                    when(*failed_at, start),
                    error_text(error)
                ),
                (None, Some(done)) if i == last && step.state == StepState::Completed => {
                    format!("→ {}  completed", when(done, start))
                }
                _ => "→ …  in progress".to_owned(),
            };
            let _ = writeln!(out, "  attempt {}  {} {outcome}", i + 1, when(*at, start));
            // What the worker logged during the attempt (nestjs-durable's step events).
            for event in step.attempt_events(i as u32 + 1) {
                let at = event.at.map(|ms| when(ms, start)).unwrap_or_default();
                let _ = writeln!(out, "    {at} {}", event.summary());
            }
        }
        for late in &step.late {
            let _ = writeln!(out, "  {} at {}", late.describe(), when(late.at_ms, start));
        }
        if let Some(output) = &step.output {
            let _ = writeln!(out, "  output  {}", payload(output, "          "));
        }
    }
    if !signals.is_empty() {
        let _ = writeln!(out, "\nsignals ({})", signals.len());
        for signal in &signals {
            let _ = writeln!(
                out,
                "  {} at {}\n    payload {}",
                signal.name,
                when(signal.at_ms, start),
                payload(&signal.payload, "            ")
            );
        }
    }
    out
}

/// The table's cells, one row per [`TableLine`].
fn table_rows(run: &LoadedRun) -> Vec<Vec<String>> {
    let start = run.run.created_at_ms;
    let dash = || "-".to_owned();
    crate::table_lines(run)
        .into_iter()
        .map(|line| {
            vec![
                line.seq.to_string(),
                line.kind.to_owned(),
                line.name.clone(),
                line.group.clone().unwrap_or_else(dash),
                line.attempts.map(|n| n.to_string()).unwrap_or_else(dash),
                when(line.start_ms, start),
                line.end_ms.map(|end| when(end, start)).unwrap_or_else(dash),
                line.duration_ms()
                    .map(format_duration_ms)
                    .unwrap_or_else(dash),
                line.state,
            ]
        })
        .collect()
}

/// A step's timeouts for people: what the worker enforces, and when the engine gives up.
fn timeouts_text(timeouts: &cairn::workflow::StepTimeouts) -> String {
    let mut parts = Vec::new();
    if let Some(wait) = timeouts.schedule_to_start_ms {
        parts.push(format!("schedule-to-start {}", format_duration_ms(wait)));
    }
    if let Some(run) = timeouts.start_to_close_ms {
        parts.push(format!("start-to-close {}", format_duration_ms(run)));
    }
    if let Some(backstop) = timeouts.backstop_ms(0) {
        parts.push(format!(
            "no result {} after scheduling fails the attempt",
            format_duration_ms(backstop)
        ));
    }
    parts.join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_pretty_and_indented_or_summarized_when_large() {
        let small = serde_json::json!({ "orderId": "o-1", "amountCents": 1999 });
        assert_eq!(
            payload(&small, "    "),
            "{\n      \"amountCents\": 1999,\n      \"orderId\": \"o-1\"\n    }"
        );
        let large = serde_json::json!({ "items": vec!["x".repeat(100); 40] });
        let text = payload(&large, "    ");
        assert!(
            !text.contains('\n') && text.contains("object with 1 keys"),
            "{text}"
        );
    }

    #[test]
    fn a_run_reads_as_summary_step_table_and_attempts() {
        let text = render_text(&crate::timeline::tests::retried_run());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..3],
            ["run       r-1", "workflow  checkout", "status    completed"]
        );
        assert!(text.contains("\nfinished  1970-01-01T00:00:02.000Z  (2s after start)\n"));
        let header = lines
            .iter()
            .position(|l| l.starts_with("  SEQ  KIND "))
            .unwrap();
        assert!(lines[header].ends_with("  DURATION  STATE"), "{text}");
        // One row per step and signal wait, numbers right-aligned under their headers.
        let charge = lines[header + 2];
        assert!(
            charge.starts_with("    1  remote  payments.charge-card "),
            "{text}"
        );
        assert!(charge.ends_with(" 680ms  completed"), "{text}");
        assert!(lines[header + 4].ends_with("300ms  received"), "{text}");
        // Each attempt with its error (details included) and the lines the worker logged.
        assert!(text.contains(
            "  attempt 1  00:00:00.020 (+20ms) → 00:00:00.120 (+120ms)  failed: provider_timeout: provider timed out (retryable) details {\"provider\":\"acme\"}\n    00:00:00.090 (+90ms) warn provider slow\n  attempt 2  00:00:00.620 (+620ms) → 00:00:00.700 (+700ms)  completed\n    00:00:00.650 (+650ms) info charging card {\"orderId\":\"o-1\"}\n"
        ), "{text}");
    }
}
