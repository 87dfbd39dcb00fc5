#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::html::tick_step;
use super::*;
use cairn::contract::{StepError, StepEvent};
use cairn::store::RunRecord;
use cairn::workflow::{HistoryEvent, RunStatus};

fn run(status: RunStatus, events: Vec<(u64, EventKind)>) -> LoadedRun {
    let last = events.iter().map(|(at, _)| *at).max().unwrap_or(0);
    LoadedRun {
        run: RunRecord {
            run_id: "r-1".parse().unwrap(),
            workflow: "checkout".into(),
            status,
            input: json!({"orderId": "o-1"}),
            output: None,
            error: None,
            version: 3,
            history_len: events.len() as u64,
            created_at_ms: 0,
            updated_at_ms: last,
            parent: None,
            last_error: None,
            outbox_pending: false,
        },
        batches: Vec::new(),
        history: events
            .into_iter()
            .map(|(at, kind)| HistoryEvent::new(at, kind))
            .collect(),
        outbox: Vec::new(),
    }
}

/// Inline step, a remote step that fails once and then succeeds, a sleep, a signal wait.
pub(crate) fn retried_run() -> LoadedRun {
    use EventKind::*;
    run(
        RunStatus::Completed,
        vec![
            (
                0,
                RunStarted {
                    format: cairn::workflow::HISTORY_FORMAT,
                    workflow: "checkout".into(),
                    input: json!({}),
                },
            ),
            (
                10,
                InlineStepStarted {
                    retry: None,
                    seq: 0,
                    name: "inventory.reserve".into(),
                    attempt: 1,
                },
            ),
            (
                10,
                StepCompleted {
                    started_at_ms: None,
                    seq: 0,
                    attempt: 1,
                    output: json!({"reservationId": "res_1"}),
                    events: vec![],
                },
            ),
            (
                20,
                TaskScheduled {
                    retry: None,
                    seq: 1,
                    name: "payments.charge-card".into(),
                    group: "payments.charge-card".into(),
                    input: json!({}),
                    attempt: 1,
                    timeouts: None,
                },
            ),
            (
                120,
                StepFailed {
                    started_at_ms: None,
                    seq: 1,
                    attempt: 1,
                    error: StepError::retryable("provider timed out")
                        .with_code("provider_timeout")
                        .with_details(json!({"provider": "acme"})),
                    events: vec![StepEvent::log(90, "warn", "provider slow")],
                },
            ),
            (
                620,
                TaskScheduled {
                    retry: None,
                    seq: 1,
                    name: "payments.charge-card".into(),
                    group: "payments.charge-card".into(),
                    input: json!({}),
                    attempt: 2,
                    timeouts: None,
                },
            ),
            (
                700,
                StepCompleted {
                    started_at_ms: None,
                    seq: 1,
                    attempt: 2,
                    output: json!({"chargeId": "ch_1"}),
                    events: vec![StepEvent {
                        data: Some(json!({"orderId": "o-1"})),
                        ..StepEvent::log(650, "info", "charging card")
                    }],
                },
            ),
            (
                700,
                TimerStarted {
                    seq: 2,
                    timer_id: cairn::workflow::TimerId::Sleep(2),
                    fire_at_ms: 1700,
                },
            ),
            (
                1700,
                TimerFired {
                    seq: 2,
                    timer_id: cairn::workflow::TimerId::Sleep(2),
                },
            ),
            (
                1700,
                SignalWaitStarted {
                    seq: 3,
                    name: "approval".into(),
                },
            ),
            (
                2000,
                SignalReceived {
                    name: "approval".into(),
                    payload: json!({"approved": true}),
                    signal_id: None,
                },
            ),
            (
                2000,
                RunCompleted {
                    output: json!({"ok": true}),
                },
            ),
        ],
    )
}

#[test]
fn retries_become_attempt_segments_with_the_backoff_between() {
    let timeline = layout(&retried_run());
    assert_eq!((timeline.start_ms, timeline.end_ms), (0, 2000));
    let kinds: Vec<_> = timeline.rows.iter().map(|r| (r.seq, r.kind)).collect();
    assert_eq!(
        kinds,
        [(0, "inline"), (1, "remote"), (2, "sleep"), (3, "signal")]
    );
    let charge = &timeline.rows[1].segments;
    let shape: Vec<_> = charge
        .iter()
        .map(|s| (s.kind, s.state, s.attempt, s.start_ms, s.end_ms))
        .collect();
    assert_eq!(
        shape,
        [
            (SegmentKind::Attempt, StepState::Failed, 1, 20, 120),
            (SegmentKind::Backoff, StepState::Completed, 0, 120, 620),
            (SegmentKind::Attempt, StepState::Completed, 2, 620, 700),
        ]
    );
    // Each attempt's detail: its error with details, then what the worker logged.
    assert_eq!(
        charge[0].detail,
        "provider_timeout: provider timed out (retryable) details {\"provider\":\"acme\"}\nwarn provider slow"
    );
    assert!(
        charge[2]
            .detail
            .ends_with("\ninfo charging card {\"orderId\":\"o-1\"}"),
        "{}",
        charge[2].detail
    );
    assert_eq!(
        (
            timeline.rows[2].segments[0].kind,
            timeline.rows[2].segments[0].end_ms
        ),
        (SegmentKind::Sleep, 1700)
    );
    let wait = &timeline.rows[3].segments[0];
    assert_eq!(
        (wait.kind, wait.start_ms, wait.end_ms, wait.state),
        (SegmentKind::SignalWait, 1700, 2000, StepState::Completed)
    );
    assert_eq!(timeline.signals, [("approval".to_owned(), 2000)]);
}

#[test]
fn open_attempts_and_waits_run_to_the_end_as_pending() {
    use EventKind::*;
    let loaded = run(
        RunStatus::Running,
        vec![
            (
                0,
                RunStarted {
                    format: cairn::workflow::HISTORY_FORMAT,
                    workflow: "checkout".into(),
                    input: json!({}),
                },
            ),
            (
                5,
                SignalWaitStarted {
                    seq: 0,
                    name: "approval".into(),
                },
            ),
            (
                5,
                TaskScheduled {
                    retry: None,
                    seq: 1,
                    name: "email".into(),
                    group: "email".into(),
                    input: json!({}),
                    attempt: 1,
                    timeouts: None,
                },
            ),
            (
                50,
                ValueRecorded {
                    seq: 2,
                    kind: cairn::workflow::ValueKind::Now,
                    value: json!(50),
                },
            ),
        ],
    );
    let timeline = layout(&loaded);
    let states: Vec<_> = timeline
        .rows
        .iter()
        .map(|r| (r.segments[0].state, r.segments[0].end_ms))
        .collect();
    assert_eq!(states, [(StepState::Pending, 50), (StepState::Pending, 50)]);
}

#[test]
fn html_has_one_classed_bar_per_attempt_and_wait() {
    let html = render_html(&retried_run());
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("class=\"bar attempt ").count(), 3, "{html}");
    assert_eq!(
        html.matches("class=\"bar attempt failed\" data-seq=\"1\" data-attempt=\"1\"")
            .count(),
        1
    );
    assert_eq!(html.matches("class=\"bar wait backoff\"").count(), 1);
    assert_eq!(html.matches("class=\"bar wait sleep\"").count(), 1);
    assert_eq!(html.matches("class=\"bar wait signal\"").count(), 1);
    assert_eq!(html.matches("class=\"marker signal\"").count(), 1);
    // Self-contained: no external fetches.
    for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!html.contains(external), "{external}");
    }
    assert!(
        html.contains("#3 wait for signal approval"),
        "signal wait label"
    );
    assert!(
        html.contains("<tr data-seq=\"3\"><td>3</td><td>signal</td><td>approval</td>"),
        "signal waits are listed among the steps"
    );
    assert!(
        html.contains("retry backoff") && html.contains("attempt failed"),
        "legend"
    );
}

#[test]
fn untrusted_text_is_escaped() {
    use EventKind::*;
    let mut loaded = run(
        RunStatus::Failed,
        vec![
            (
                0,
                RunStarted {
                    format: cairn::workflow::HISTORY_FORMAT,
                    workflow: "w".into(),
                    input: json!({}),
                },
            ),
            (
                1,
                InlineStepStarted {
                    retry: None,
                    seq: 0,
                    name: "<script>alert(1)</script>".into(),
                    attempt: 1,
                },
            ),
            (
                2,
                StepFailed {
                    started_at_ms: None,
                    seq: 0,
                    attempt: 1,
                    error: StepError::terminal("bad \"quote\" & <tag>"),
                    events: vec![],
                },
            ),
        ],
    );
    loaded.run.input = json!({"html": "</pre><img src=x onerror=alert(1)>"});
    let html = render_html(&loaded);
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("bad &quot;quote&quot; &amp; &lt;tag&gt;"));
}

#[test]
fn ticks_are_round_and_few() {
    assert_eq!(tick_step(1), 1);
    assert_eq!(tick_step(2000), 500);
    assert_eq!(tick_step(7_300), 1000);
    for span in [1, 9, 99, 1234, 65_000, 3_600_000, u64::MAX / 4] {
        assert!(span / tick_step(span) <= 8, "{span}");
    }
}

#[test]
fn a_late_result_is_drawn_from_the_workers_start_to_its_arrival() {
    use cairn::workflow::TimerId;
    use EventKind::*;
    let late = run(
        RunStatus::Completed,
        vec![
            (
                0,
                RunStarted {
                    workflow: "checkout".into(),
                    input: json!({}),
                    format: cairn::workflow::HISTORY_FORMAT,
                },
            ),
            (
                0,
                TaskScheduled {
                    seq: 1,
                    name: "payments.charge-card".into(),
                    group: "payments.charge-card".into(),
                    input: json!({}),
                    attempt: 1,
                    retry: None,
                    timeouts: None,
                },
            ),
            (
                0,
                TimerStarted {
                    seq: 1,
                    timer_id: TimerId::Timeout { seq: 1, attempt: 1 },
                    fire_at_ms: 100,
                },
            ),
            (
                100,
                TimerFired {
                    seq: 1,
                    timer_id: TimerId::Timeout { seq: 1, attempt: 1 },
                },
            ),
            (
                100,
                StepFailed {
                    seq: 1,
                    attempt: 1,
                    error: StepError::retryable("attempt 1 timed out").with_code("timeout"),
                    started_at_ms: None,
                    events: Vec::new(),
                },
            ),
            (
                400,
                LateResult {
                    seq: 1,
                    attempt: 1,
                    output: Some(json!({"chargeId": "ch_1"})),
                    error: None,
                    started_at_ms: Some(250),
                    events: Vec::new(),
                    kept: true,
                },
            ),
            (
                400,
                RunCompleted {
                    output: json!({"chargeId": "ch_1"}),
                },
            ),
        ],
    );
    let timeline = layout(&late);
    let segments = &timeline.rows[0].segments;
    let shape: Vec<_> = segments
        .iter()
        .map(|s| (s.kind, s.state, s.attempt, s.start_ms, s.end_ms))
        .collect();
    assert_eq!(
        shape,
        [
            (SegmentKind::Attempt, StepState::Failed, 1, 0, 100),
            (SegmentKind::LateResult, StepState::Completed, 1, 250, 400),
        ]
    );
    assert!(
        segments[1]
            .detail
            .starts_with("attempt 1 completed late (queued 250ms, then 150ms to the result), kept"),
        "{}",
        segments[1].detail
    );
    assert!(render_html(&late).contains("class=\"bar late attempt completed\""));
}
