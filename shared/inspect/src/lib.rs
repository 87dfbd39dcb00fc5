//! # cairn-inspect — a run the way a person wants to read it
//!
//! One line per durable operation, with attempts, timing and errors, derived from the
//! checkpointed history ([`steps`], [`table_lines`]); the run as text ([`render_text`], the
//! one renderer of the CLI and the main job) and as a self-contained HTML timeline
//! ([`timeline`]). Times and durations are written by `humantime`, tables by `comfy-table`.

mod table;
mod text;
pub mod timeline;

pub use table::table;
pub use text::{payload, render_text};

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use cairn::contract::{StepError, StepEvent};
use cairn::store::LoadedRun;
use cairn::workflow::EventKind;

/// What kind of durable operation a step line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StepKind {
    /// `ctx.remote`.
    Remote,
    /// `ctx.step`.
    Inline,
    /// `ctx.sleep`.
    Sleep,
    /// A child run.
    Child,
}

impl StepKind {
    /// The kind as people and the timeline's CSS classes name it: `remote`, `inline`, `sleep`,
    /// `child`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Remote => "remote",
            Self::Inline => "inline",
            Self::Sleep => "sleep",
            Self::Child => "child",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StepState {
    /// Dispatched or started, no result yet.
    Pending,
    /// Finished with an output.
    Completed,
    /// Last attempt failed.
    Failed,
}

impl fmt::Display for StepState {
    /// `pending`, `completed`, or `FAILED` (in capitals, to be found in a long table).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Completed => "completed",
            Self::Failed => "FAILED",
        })
    }
}

/// One durable operation of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    /// Operation number.
    pub seq: u64,
    /// Kind.
    pub kind: StepKind,
    /// Step name (`sleep` for timers).
    pub name: String,
    /// Queue token for remote steps.
    pub group: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// When the first attempt started, epoch ms.
    pub started_at_ms: u64,
    /// When it finished, epoch ms.
    pub finished_at_ms: Option<u64>,
    /// State.
    pub state: StepState,
    /// Errors of failed attempts, in order, with the time they were recorded.
    pub errors: Vec<(u64, StepError)>,
    /// Start times of every attempt (retries visible), epoch ms.
    pub attempt_starts_ms: Vec<u64>,
    /// The output, when completed.
    pub output: Option<Value>,
    /// Results that arrived after the engine had failed their attempt on its timeout.
    pub late: Vec<LateView>,
    /// What the worker logged, by attempt (from 1), in the order it logged it.
    pub events: Vec<(u32, StepEvent)>,
    /// The timeouts the latest attempt was scheduled with, as the history recorded them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<cairn::workflow::StepTimeouts>,
}

impl StepView {
    /// The lines the worker logged during `attempt` (from 1).
    pub fn attempt_events(&self, attempt: u32) -> impl Iterator<Item = &StepEvent> {
        self.events
            .iter()
            .filter(move |(a, _)| *a == attempt)
            .map(|(_, e)| e)
    }
}

/// An error for people: `code: message`, whether it may be retried, and its details.
pub fn error_text(error: &StepError) -> String {
    let mut text = error.to_string();
    match error.retryable {
        Some(true) => text.push_str(" (retryable)"),
        Some(false) => text.push_str(" (not retryable)"),
        None => {}
    }
    if let Some(details) = &error.details {
        text.push_str(" details ");
        text.push_str(&summarize(details, 200));
    }
    text
}

/// A worker's result that arrived after its attempt had timed out (`LateResult`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LateView {
    /// The attempt it answers.
    pub attempt: u32,
    /// When the engine recorded it, epoch ms.
    pub at_ms: u64,
    /// Schedule-to-start: how long the task waited in the queue before a worker started it
    /// (worker's `startedAt` minus the attempt's dispatch), when the worker said.
    pub queued_ms: Option<u64>,
    /// Start-to-result: from the worker's start to the engine recording the result (the run
    /// time plus the wait in the results queue), when the worker said.
    pub ran_ms: Option<u64>,
    /// The output, or the error.
    pub outcome: Result<Value, StepError>,
    /// The step completed with it (a success before any later attempt finished).
    pub kept: bool,
}

impl LateView {
    /// One line for people: `attempt 1 completed late (queued 40s, then 2s to the result),
    /// kept: {..}`.
    pub fn describe(&self) -> String {
        let timing = match (self.queued_ms, self.ran_ms) {
            (Some(q), Some(r)) => format!(
                " (queued {}, then {} to the result)",
                format_duration_ms(q),
                format_duration_ms(r)
            ),
            _ => String::new(),
        };
        let (what, detail) = match &self.outcome {
            Ok(output) => ("completed", summarize(output, 60)),
            Err(error) => ("failed", error.to_string()),
        };
        let kept = if self.kept {
            ", kept: the step completed with it"
        } else {
            ""
        };
        format!(
            "attempt {} {what} late{timing}{kept}: {detail}",
            self.attempt
        )
    }
}

impl StepView {
    /// Duration in ms, when finished.
    pub fn duration_ms(&self) -> Option<u64> {
        self.finished_at_ms
            .map(|f| f.saturating_sub(self.started_at_ms))
    }
}

/// A signal the run received.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignalView {
    /// Signal name.
    pub name: String,
    /// When it arrived, epoch ms.
    pub at_ms: u64,
    /// Payload.
    pub payload: Value,
}

/// The steps and signals of a run, in `seq` order.
pub fn steps(run: &LoadedRun) -> (Vec<StepView>, Vec<SignalView>) {
    let mut steps: BTreeMap<u64, StepView> = BTreeMap::new();
    let mut signals = Vec::new();
    let new = |seq, kind, name: &str, group: Option<String>, at| StepView {
        seq,
        kind,
        name: name.to_owned(),
        group,
        attempts: 0,
        started_at_ms: at,
        finished_at_ms: None,
        state: StepState::Pending,
        errors: Vec::new(),
        attempt_starts_ms: Vec::new(),
        output: None,
        late: Vec::new(),
        events: Vec::new(),
        timeouts: None,
    };
    for event in &run.history {
        let at = event.at_ms;
        match &event.kind {
            EventKind::TaskScheduled {
                seq,
                name,
                group,
                attempt,
                timeouts,
                ..
            } => {
                let step = steps
                    .entry(*seq)
                    .or_insert_with(|| new(*seq, StepKind::Remote, name, Some(group.clone()), at));
                step.timeouts = *timeouts;
                step.attempts = step.attempts.max(*attempt);
                step.attempt_starts_ms.push(at);
                step.state = StepState::Pending;
            }
            EventKind::InlineStepStarted {
                seq, name, attempt, ..
            } => {
                let step = steps
                    .entry(*seq)
                    .or_insert_with(|| new(*seq, StepKind::Inline, name, None, at));
                step.attempts = step.attempts.max(*attempt);
                step.attempt_starts_ms.push(at);
                step.state = StepState::Pending;
            }
            EventKind::ChildStarted { seq, workflow, .. } => {
                let step = steps
                    .entry(*seq)
                    .or_insert_with(|| new(*seq, StepKind::Child, workflow, None, at));
                step.attempts = 1;
                step.attempt_starts_ms.push(at);
            }
            EventKind::TimerStarted { seq, .. } => {
                steps.entry(*seq).or_insert_with(|| {
                    let mut sleep = new(*seq, StepKind::Sleep, "sleep", None, at);
                    sleep.attempts = 1;
                    sleep.attempt_starts_ms.push(at);
                    sleep
                });
            }
            EventKind::TimerFired { seq, .. } => {
                if let Some(step) = steps.get_mut(seq).filter(|s| s.kind == StepKind::Sleep) {
                    step.finished_at_ms = Some(at);
                    step.state = StepState::Completed;
                }
            }
            EventKind::StepCompleted {
                seq,
                attempt,
                output,
                events,
                ..
            } => {
                if let Some(step) = steps.get_mut(seq) {
                    step.finished_at_ms = Some(at);
                    step.state = StepState::Completed;
                    step.output = Some(output.clone());
                    step.events
                        .extend(events.iter().map(|e| (*attempt, e.clone())));
                }
            }
            EventKind::StepFailed {
                seq,
                attempt,
                error,
                events,
                ..
            } => {
                if let Some(step) = steps.get_mut(seq) {
                    step.finished_at_ms = Some(at);
                    step.state = StepState::Failed;
                    step.errors.push((at, error.clone()));
                    step.events
                        .extend(events.iter().map(|e| (*attempt, e.clone())));
                }
            }
            EventKind::LateResult {
                seq,
                attempt,
                output,
                error,
                started_at_ms,
                kept,
                ..
            } => {
                if let Some(step) = steps.get_mut(seq) {
                    let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
                    let scheduled = step.attempt_starts_ms.get(index).copied();
                    let outcome = match error {
                        Some(error) => Err(error.clone()),
                        None => Ok(output.clone().unwrap_or_default()),
                    };
                    if *kept {
                        if let Ok(output) = &outcome {
                            step.state = StepState::Completed;
                            step.finished_at_ms = Some(at);
                            step.output = Some(output.clone());
                        }
                    }
                    step.late.push(LateView {
                        attempt: *attempt,
                        at_ms: at,
                        queued_ms: started_at_ms
                            .zip(scheduled)
                            .map(|(s, d)| s.saturating_sub(d)),
                        ran_ms: started_at_ms.map(|s| at.saturating_sub(s)),
                        outcome,
                        kept: *kept,
                    });
                }
            }
            EventKind::SignalReceived { name, payload, .. } => {
                signals.push(SignalView {
                    name: name.clone(),
                    at_ms: at,
                    payload: payload.clone(),
                });
            }
            _ => {}
        }
    }
    (steps.into_values().collect(), signals)
}

/// One line of a run's step table: a step, or a signal wait (not a step, but it takes time).
/// The text view and the HTML page show the same lines.
#[derive(Debug, Clone, PartialEq)]
pub struct TableLine {
    /// Operation number.
    pub seq: u64,
    /// `remote`, `inline`, `sleep`, `child`, or `signal` for a signal wait.
    pub kind: &'static str,
    /// Step name, `sleep`, or the awaited signal's name.
    pub name: String,
    /// Queue token of remote steps.
    pub group: Option<String>,
    /// Attempts made (steps only).
    pub attempts: Option<u32>,
    /// Start, epoch ms.
    pub start_ms: u64,
    /// End, epoch ms, once finished (or the signal received).
    pub end_ms: Option<u64>,
    /// `pending`, `completed`, `FAILED`; `waiting` or `received` for a signal wait.
    pub state: String,
    /// The output of a completed step or the last error of a failed one, in a line.
    pub result: Option<String>,
}

impl TableLine {
    /// Duration in ms, when finished.
    pub fn duration_ms(&self) -> Option<u64> {
        self.end_ms.map(|end| end.saturating_sub(self.start_ms))
    }
}

/// The step table of a run, by `seq`.
pub fn table_lines(run: &LoadedRun) -> Vec<TableLine> {
    let (steps, _) = steps(run);
    let mut lines: Vec<TableLine> = steps
        .into_iter()
        .map(|step| TableLine {
            seq: step.seq,
            kind: step.kind.as_str(),
            attempts: Some(step.attempts),
            start_ms: step.started_at_ms,
            end_ms: step.finished_at_ms,
            state: step.state.to_string(),
            result: match step.state {
                StepState::Pending => None,
                StepState::Completed => step.output.as_ref().map(|o| summarize(o, 100)),
                StepState::Failed => step.errors.last().map(|(_, e)| e.to_string()),
            },
            name: step.name,
            group: step.group,
        })
        .collect();
    for row in timeline::layout(run).rows {
        if let (Some(wait), "signal") = (row.segments.first(), row.kind) {
            let received = wait.state == StepState::Completed;
            lines.push(TableLine {
                seq: row.seq,
                kind: row.kind,
                name: row.name,
                group: None,
                attempts: None,
                start_ms: wait.start_ms,
                end_ms: received.then_some(wait.end_ms),
                state: if received { "received" } else { "waiting" }.to_owned(),
                result: None,
            });
        }
    }
    lines.sort_by_key(|line| line.seq);
    lines
}

/// A payload for people: pretty JSON, or a summary when large.
pub fn summarize(value: &Value, max_chars: usize) -> String {
    let text = value.to_string();
    if text.len() <= max_chars {
        return text;
    }
    let kind = match value {
        Value::String(s) => format!("string of {} chars", s.chars().count()),
        Value::Array(a) => format!("array of {} items", a.len()),
        Value::Object(o) => format!("object with {} keys", o.len()),
        _ => "value".to_owned(),
    };
    let head: String = text.chars().take(max_chars.min(60)).collect();
    format!("{head}… ({kind}, {} bytes)", text.len())
}

/// A duration for people, as `humantime` writes it: `250ms`, `1s 500ms`, `2m 5s` (whole
/// seconds from a minute up: milliseconds only matter for short steps).
pub fn format_duration_ms(ms: u64) -> String {
    let ms = if ms >= 60_000 { ms - ms % 1000 } else { ms };
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// An epoch-ms time as RFC 3339 UTC with milliseconds: `2026-11-26T05:40:01.123Z`.
pub fn utc_timestamp(ms: u64) -> String {
    let mut text = String::new();
    let stamp = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
    // Past year 9999 humantime declines: say the raw number rather than fail.
    if write!(text, "{stamp}").is_err() {
        return format!("{ms} ms after 1970");
    }
    text
}

#[cfg(test)]
mod time_format_tests {
    use super::*;

    #[test]
    fn utc_timestamps_are_rfc3339() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc_timestamp(1_795_671_601_123), "2026-11-26T05:40:01.123Z");
        assert_eq!(
            utc_timestamp(u64::MAX),
            "18446744073709551615 ms after 1970"
        );
    }

    #[test]
    fn durations_keep_milliseconds_under_a_minute() {
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(250), "250ms");
        assert_eq!(format_duration_ms(1500), "1s 500ms");
        assert_eq!(format_duration_ms(125_250), "2m 5s");
        assert_eq!(format_duration_ms(90_061_000), "1day 1h 1m 1s");
    }
}
