//! A run as a timeline: one row per durable operation, one bar segment per attempt (so retries
//! show), the waits between them (retry backoff, sleeps, signal waits), failures in their own
//! colour. [`layout`] computes the rows from the history; [`render_html`] draws them as one
//! self-contained HTML page (inline CSS and SVG, no external assets) for `cairn runs timeline`.
//!
//! Every drawn segment is an SVG `rect` with class `bar` plus its kind (`attempt`, or `wait`
//! with `backoff` / `sleep` / `signal`) and, for attempts, the outcome (`completed`, `failed`,
//! `pending`), and carries `data-seq` (and `data-attempt` for attempts): stable hooks for
//! browser tests and user styles. A short inline script counts the bars the browser actually
//! laid out and records it on `<body data-bars-drawn=…>`.

mod html;

use std::collections::BTreeMap;

use crate::{summarize, StepKind, StepState};
use cairn::store::LoadedRun;
use cairn::workflow::EventKind;

pub use html::{escape, render_html};

/// What a segment of a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// One attempt of a step (or a child run).
    Attempt,
    /// Waiting between a failed attempt and the next one.
    Backoff,
    /// A durable sleep.
    Sleep,
    /// Waiting for a signal.
    SignalWait,
    /// A worker's result for an attempt that had already timed out: from the worker's start
    /// (when it said) to the engine recording it.
    LateResult,
}

/// One bar segment, in epoch ms.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// What it shows.
    pub kind: SegmentKind,
    /// How it ended (`Pending` while still open; the segment then runs to the timeline's end).
    pub state: StepState,
    /// Attempt number from 1 (attempts only; 0 otherwise).
    pub attempt: u32,
    /// Start, epoch ms.
    pub start_ms: u64,
    /// End, epoch ms.
    pub end_ms: u64,
    /// Tooltip text (error message, output summary, ...).
    pub detail: String,
}

/// One row: a durable operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Operation number.
    pub seq: u64,
    /// `remote`, `inline`, `sleep`, `child` or `signal`.
    pub kind: &'static str,
    /// Step name, `sleep`, or the awaited signal's name.
    pub name: String,
    /// Queue token of remote steps.
    pub group: Option<String>,
    /// Segments in time order.
    pub segments: Vec<Segment>,
}

/// The whole picture.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// When the run was created, epoch ms (the left edge).
    pub start_ms: u64,
    /// The right edge: the run's last change or last event, whichever is later.
    pub end_ms: u64,
    /// Rows in `seq` order.
    pub rows: Vec<Row>,
    /// Signals received: (name, epoch ms).
    pub signals: Vec<(String, u64)>,
}

/// Lays a run out as rows of segments.
pub fn layout(run: &LoadedRun) -> Timeline {
    let start_ms = run.run.created_at_ms;
    let last_event = run
        .history
        .iter()
        .map(|e| e.at_ms)
        .max()
        .unwrap_or(start_ms);
    let end_ms = run.run.updated_at_ms.max(last_event).max(start_ms);
    let (steps, signals) = crate::steps(run);
    let mut rows: BTreeMap<u64, Row> = BTreeMap::new();
    for step in &steps {
        let mut segments = Vec::new();
        if step.kind == StepKind::Sleep {
            segments.push(Segment {
                kind: SegmentKind::Sleep,
                state: step.state,
                attempt: 0,
                start_ms: step.started_at_ms,
                end_ms: step.finished_at_ms.unwrap_or(end_ms),
                detail: "sleep".into(),
            });
        }
        let attempts = if step.kind == StepKind::Sleep {
            &[][..]
        } else {
            &step.attempt_starts_ms[..]
        };
        for (i, &begin) in attempts.iter().enumerate() {
            // Errors are recorded in attempt order: attempt i failed at errors[i], if present.
            let (state, end, mut detail) = match step.errors.get(i) {
                Some((at, error)) => (StepState::Failed, *at, crate::error_text(error)),
                None if i + 1 == attempts.len() && step.state == StepState::Completed => (
                    StepState::Completed,
                    step.finished_at_ms.unwrap_or(end_ms),
                    step.output
                        .as_ref()
                        .map(|o| format!("output {}", summarize(o, 120)))
                        .unwrap_or_default(),
                ),
                None => (StepState::Pending, end_ms, "no result yet".into()),
            };
            // What the worker logged during the attempt, one line each.
            for event in step.attempt_events(i as u32 + 1) {
                detail.push('\n');
                detail.push_str(&event.summary());
            }
            if let (Some(prev), true) = (segments.last(), i > 0) {
                let prev: &Segment = prev;
                if prev.state == StepState::Failed && begin > prev.end_ms {
                    let wait = Segment {
                        kind: SegmentKind::Backoff,
                        state: StepState::Completed,
                        attempt: 0,
                        start_ms: prev.end_ms,
                        end_ms: begin,
                        detail: format!("retry backoff before attempt {}", i + 1),
                    };
                    segments.push(wait);
                }
            }
            let attempt = Segment {
                kind: SegmentKind::Attempt,
                state,
                attempt: i as u32 + 1,
                start_ms: begin,
                end_ms: end.max(begin),
                detail,
            };
            segments.push(attempt);
        }
        for late in &step.late {
            let start = late
                .ran_ms
                .map_or(late.at_ms, |ran| late.at_ms.saturating_sub(ran));
            segments.push(Segment {
                kind: SegmentKind::LateResult,
                state: match late.outcome {
                    Ok(_) => StepState::Completed,
                    Err(_) => StepState::Failed,
                },
                attempt: late.attempt,
                start_ms: start,
                end_ms: late.at_ms,
                detail: late.describe(),
            });
        }
        rows.insert(
            step.seq,
            Row {
                seq: step.seq,
                kind: step.kind.as_str(),
                name: step.name.clone(),
                group: step.group.clone(),
                segments,
            },
        );
    }
    // Signal waits: the k-th wait for a name consumes the k-th signal of that name.
    let mut received: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for signal in &signals {
        received
            .entry(signal.name.as_str())
            .or_default()
            .push(signal.at_ms);
    }
    let mut consumed: BTreeMap<String, usize> = BTreeMap::new();
    for event in &run.history {
        if let EventKind::SignalWaitStarted { seq, name } = &event.kind {
            let k = consumed.entry(name.clone()).or_default();
            let arrival = received
                .get(name.as_str())
                .and_then(|times| times.get(*k))
                .copied();
            *k += 1;
            let (state, end) = match arrival {
                Some(at) => (StepState::Completed, at.max(event.at_ms)),
                None => (StepState::Pending, end_ms),
            };
            let segment = Segment {
                kind: SegmentKind::SignalWait,
                state,
                attempt: 0,
                start_ms: event.at_ms,
                end_ms: end,
                detail: format!("waiting for signal {name}"),
            };
            rows.insert(
                *seq,
                Row {
                    seq: *seq,
                    kind: "signal",
                    name: name.clone(),
                    group: None,
                    segments: vec![segment],
                },
            );
        }
    }
    Timeline {
        start_ms,
        end_ms,
        rows: rows.into_values().collect(),
        signals: signals.into_iter().map(|s| (s.name, s.at_ms)).collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
