//! Replay tests against recorded histories in `tests/histories/*.json`.
//!
//! Each scenario is a workflow plus the messages its run received, activation by activation.
//! The checked-in history is what the engine recorded for it. The tests check that
//! 1. replaying the recorded history changes nothing (no events, no commands, same status);
//! 2. running the scenario today records exactly the checked-in history (format and
//!    behaviour are pinned);
//! 3. the scenario-specific facts (dedupe, ordering, backoff, non-determinism...).
//!
//! Regenerate after an intended change:
//! `CAIRN_WRITE_HISTORIES=1 cargo test -p cairn --test replay_histories`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use cairn::contract::StepError;
use cairn::workflow::testing::{fire, load_history, ok, signal, start, TestRun};
use cairn::workflow::{
    activate, ActivationRequest, Command, EngineError, EventKind, HistoryEvent, Incoming,
    RemoteStep, RetryPolicy, RunStatus, TimerId, WorkflowContext, WorkflowError, Workflows,
};
use futures::future::join_all;
use serde_json::{json, Value};

const CHARGE: RemoteStep<Value, Value> = RemoteStep::new("payments.charge-card");
const REFUND: RemoteStep<Value, Value> = RemoteStep::new("payments.refund");
const A: RemoteStep<Value, Value> = RemoteStep::new("a");
const B: RemoteStep<Value, Value> = RemoteStep::new("b");
const FLAKY: RemoteStep<Value, Value> = RemoteStep::new("flaky").with_retry(
    RetryPolicy::exponential(3, Duration::from_secs(2), 2.0, Duration::from_secs(60)),
);

fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.register("remote", |ctx: WorkflowContext, input: Value| async move {
        ctx.remote(&CHARGE, input).await
    });
    w.register("inline", |ctx: WorkflowContext, n: u64| async move {
        let doubled: u64 = ctx
            .step("double", move || async move { Ok::<_, StepError>(n * 2) })
            .await?;
        Ok(doubled)
    });
    w.register("timer", |ctx: WorkflowContext, _: Value| async move {
        ctx.sleep(Duration::from_secs(3600)).await?;
        Ok("woke")
    });
    w.register("signal", |ctx: WorkflowContext, _: Value| async move {
        ctx.sleep(Duration::from_secs(60)).await?;
        let approval: Value = ctx.wait_for_signal("approval").await?;
        let late: Option<Value> = ctx
            .wait_for_signal_timeout("late", Duration::from_secs(10))
            .await?;
        Ok(json!({ "approval": approval, "late": late }))
    });
    w.register("values", |ctx: WorkflowContext, _: Value| async move {
        let (now, random, uuid) = (ctx.now(), ctx.random(), ctx.uuid());
        let patched = ctx.patched("v2");
        Ok(json!([now, random, uuid, patched]))
    });
    w.register("child", |ctx: WorkflowContext, n: u64| async move {
        let child: u64 = ctx.child("inline", &n).await?;
        Ok(child + 1)
    });
    w.register("fan-out", |ctx: WorkflowContext, n: u64| async move {
        let calls: Vec<_> = (0..n)
            .map(|i| ctx.remote(&CHARGE, json!({ "item": i })))
            .collect();
        join_all(calls)
            .await
            .into_iter()
            .collect::<Result<Vec<Value>, _>>()
    });
    w.register("compensate", |ctx: WorkflowContext, _: Value| async move {
        let charge = ctx.remote(&CHARGE, json!({})).await?;
        match ctx.sleep(Duration::from_secs(3600)).await {
            Err(cancelled @ WorkflowError::Cancelled { .. }) => {
                let _: Value = ctx.remote(&REFUND, charge).await?;
                Err(cancelled)
            }
            other => other.map(|_| json!("shipped")),
        }
    });
    w.register("retry", |ctx: WorkflowContext, _: Value| async move {
        ctx.remote(&FLAKY, json!({})).await
    });
    w.register("order", |ctx: WorkflowContext, _: Value| async move {
        let a: Value = ctx.remote(&A, json!({})).await?;
        let b: Value = ctx.remote(&B, a).await?;
        Ok(b)
    });
    w.register("continue", |ctx: WorkflowContext, n: u64| async move {
        ctx.sleep(Duration::from_secs(1)).await?;
        if n < 2 {
            return Err(ctx.continue_as_new(&(n + 1)));
        }
        Ok(n)
    });
    w
}

/// The new version of "order": the second call became an inline step (non-deterministic).
fn order_v2() -> Workflows {
    let mut w = Workflows::new();
    w.register("order", |ctx: WorkflowContext, _: Value| async move {
        let a: Value = ctx.remote(&A, json!({})).await?;
        let b: Value = ctx
            .step("b", move || {
                let a = a.clone();
                async move { Ok::<_, StepError>(a) }
            })
            .await?;
        Ok(b)
    });
    w
}

fn failed(seq: u64, attempt: u32, message: &str) -> Incoming {
    Incoming::StepResult {
        seq,
        attempt: Some(attempt),
        outcome: Err(StepError::retryable(message)),
        events: Vec::new(),
    }
}

struct Scenario {
    name: &'static str,
    activations: Vec<Vec<Incoming>>,
    status: RunStatus,
}

fn scenarios() -> Vec<Scenario> {
    let s = |name, activations, status| Scenario {
        name,
        activations,
        status,
    };
    vec![
        s(
            "remote",
            vec![
                vec![start("remote", json!({"cents": 100}))],
                vec![ok(1, json!({"chargeId": "ch_1"}))],
            ],
            RunStatus::Completed,
        ),
        s(
            "inline",
            vec![vec![start("inline", 21)]],
            RunStatus::Completed,
        ),
        s(
            "timer",
            vec![vec![start("timer", json!(null))], vec![fire("1")]],
            RunStatus::Completed,
        ),
        s(
            "signal_before_wait",
            vec![
                vec![start("signal", json!(null))],
                vec![signal("approval", json!({"by": "ann"}))],
                vec![fire("1")],
                vec![fire("3:signal-timeout")],
            ],
            RunStatus::Completed,
        ),
        s(
            "values",
            vec![vec![start("values", json!(null))]],
            RunStatus::Completed,
        ),
        s(
            "child",
            vec![vec![start("child", 5)], vec![ok(1, 10)]],
            RunStatus::Completed,
        ),
        s(
            "fan_out_out_of_order",
            vec![
                vec![start("fan-out", 3)],
                vec![ok(3, "c")],
                vec![ok(1, "a")],
                vec![ok(2, "b")],
            ],
            RunStatus::Completed,
        ),
        s(
            "duplicate_results",
            vec![
                vec![start("fan-out", 2)],
                vec![ok(1, "first"), ok(1, "dup-in-batch")],
                vec![ok(1, "dup-later"), ok(2, "second")],
                vec![ok(2, "dup-after-finish")],
            ],
            RunStatus::Completed,
        ),
        s(
            "timer_after_cancel",
            vec![
                vec![start("compensate", json!(null))],
                vec![ok(1, json!({"chargeId": "ch_9"}))],
                vec![Incoming::Cancel {
                    reason: Some("customer changed their mind".into()),
                }],
                vec![fire("2")],
                vec![ok(3, json!({"refunded": true}))],
                vec![fire("2")],
            ],
            RunStatus::Cancelled,
        ),
        s(
            "retry_backoff",
            vec![
                vec![start("retry", json!(null))],
                vec![failed(1, 1, "503")],
                vec![fire("1:retry:1")],
                vec![failed(1, 2, "503 again")],
                vec![fire("1:retry:2")],
                vec![ok(1, "finally")],
            ],
            RunStatus::Completed,
        ),
        s(
            "nondeterministic",
            vec![vec![start("order", json!(null))], vec![ok(1, "a-out")]],
            RunStatus::Running,
        ),
        s(
            "continue_as_new",
            vec![vec![start("continue", 0)], vec![fire("1")]],
            RunStatus::ContinuedAsNew,
        ),
    ]
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/histories")
        .join(format!("{name}.json"))
}

/// Runs a scenario live, activation by activation.
fn record(workflows: &Workflows, scenario: &Scenario) -> (Vec<HistoryEvent>, RunStatus) {
    let mut run = TestRun::new(workflows, &format!("run-{}", scenario.name));
    let mut status = RunStatus::Running;
    for incoming in &scenario.activations {
        status = run.step(incoming.clone()).status;
    }
    (run.history, status)
}

fn load(name: &str) -> Vec<HistoryEvent> {
    let text = std::fs::read_to_string(path(name))
        .unwrap_or_else(|e| panic!("{}: {e}", path(name).display()));
    load_history(&text).unwrap()
}

fn replay(
    workflows: &Workflows,
    name: &str,
    history: &[HistoryEvent],
    incoming: Vec<Incoming>,
) -> Result<cairn::workflow::Activation, EngineError> {
    let run_id = format!("run-{name}");
    futures::executor::block_on(activate(
        workflows,
        ActivationRequest {
            run_id: &run_id,
            history,
            incoming,
            now_ms: 999_000,
        },
    ))
}

#[test]
fn recorded_histories_replay_without_changes() {
    let w = workflows();
    let write = std::env::var_os("CAIRN_WRITE_HISTORIES").is_some();
    for scenario in scenarios() {
        let (recorded, status) = record(&w, &scenario);
        assert_eq!(status, scenario.status, "{}", scenario.name);
        if write {
            std::fs::write(
                path(scenario.name),
                serde_json::to_string_pretty(&recorded).unwrap() + "\n",
            )
            .unwrap();
        }
        let history = load(scenario.name);
        assert_eq!(
            history, recorded,
            "{}: the engine no longer records the checked-in history",
            scenario.name
        );
        let replayed = replay(&w, scenario.name, &history, vec![]).unwrap();
        assert!(
            replayed.appended.is_empty(),
            "{}: {:?}",
            scenario.name,
            replayed.appended
        );
        assert!(
            replayed.commands.is_empty(),
            "{}: {:?}",
            scenario.name,
            replayed.commands
        );
        assert_eq!(replayed.status, scenario.status, "{}", scenario.name);
    }
}

fn kinds(history: &[HistoryEvent]) -> Vec<&EventKind> {
    history.iter().map(|e| &e.kind).collect()
}

#[test]
fn fan_out_results_out_of_order() {
    let history = load("fan_out_out_of_order");
    let completed: Vec<u64> = kinds(&history)
        .into_iter()
        .filter_map(|k| match k {
            EventKind::StepCompleted { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(completed, vec![3, 1, 2]);
    // All three were scheduled by the first activation, before any result.
    let scheduled = history
        .iter()
        .take_while(|e| !matches!(e.kind, EventKind::StepCompleted { .. }));
    assert_eq!(
        scheduled
            .filter(|e| matches!(e.kind, EventKind::TaskScheduled { .. }))
            .count(),
        3
    );
    assert!(
        matches!(&history.last().unwrap().kind, EventKind::RunCompleted { output } if *output == json!(["a", "b", "c"]))
    );
}

#[test]
fn duplicate_results_are_applied_once() {
    let w = workflows();
    let history = load("duplicate_results");
    let for_seq1 = kinds(&history)
        .into_iter()
        .filter(|k| matches!(k, EventKind::StepCompleted { seq: 1, .. }))
        .count();
    assert_eq!(for_seq1, 1);
    assert!(
        matches!(&history.last().unwrap().kind, EventKind::RunCompleted { output } if *output == json!(["first", "second"]))
    );
    // Before the end too: a redelivered result for a resolved seq adds nothing.
    let upto = history
        .iter()
        .position(|e| matches!(e.kind, EventKind::StepCompleted { seq: 1, .. }))
        .unwrap()
        + 1;
    let again = replay(
        &w,
        "duplicate_results",
        &history[..upto],
        vec![ok(1, "redelivered")],
    )
    .unwrap();
    assert!(again.appended.is_empty() && again.commands.is_empty());
    assert_eq!(again.status, RunStatus::Running);
}

#[test]
fn signal_before_its_wait_is_buffered() {
    let history = load("signal_before_wait");
    let signal_at = history
        .iter()
        .position(|e| matches!(e.kind, EventKind::SignalReceived { .. }))
        .unwrap();
    let wait_at = history
        .iter()
        .position(|e| matches!(e.kind, EventKind::SignalWaitStarted { .. }))
        .unwrap();
    assert!(signal_at < wait_at, "the signal arrived before the wait");
    assert!(matches!(&history.last().unwrap().kind,
        EventKind::RunCompleted { output } if *output == json!({"approval": {"by": "ann"}, "late": null})));
}

#[test]
fn timer_firing_after_cancel_changes_nothing() {
    let w = workflows();
    let history = load("timer_after_cancel");
    let cancel_at = history
        .iter()
        .position(|e| matches!(e.kind, EventKind::CancelRequested { .. }))
        .unwrap();
    let fired_at = history
        .iter()
        .position(|e| matches!(e.kind, EventKind::TimerFired { .. }))
        .unwrap();
    assert!(cancel_at < fired_at);
    // The refund (compensation) was dispatched right after the cancel, not after the timer.
    assert!(
        matches!(&history[cancel_at + 1].kind, EventKind::TaskScheduled { name, .. } if name == "payments.refund")
    );
    let EventKind::RunFailed { error } = &history.last().unwrap().kind else {
        panic!("not failed")
    };
    assert_eq!(error.code.as_deref(), Some("cancelled"));
    // The run is over: a late timer adds nothing.
    let late = replay(&w, "timer_after_cancel", &history, vec![fire("2")]).unwrap();
    assert!(late.appended.is_empty() && late.commands.is_empty());
    assert_eq!(late.status, RunStatus::Cancelled);
}

#[test]
fn retry_sequence_with_backoff() {
    let history = load("retry_backoff");
    let mut attempts = vec![];
    let mut delays = vec![];
    let mut failed_at = 0;
    for event in &history {
        match &event.kind {
            EventKind::TaskScheduled { attempt, .. } => attempts.push(*attempt),
            EventKind::StepFailed { .. } => failed_at = event.at_ms,
            EventKind::TimerStarted { fire_at_ms, .. } => delays.push(fire_at_ms - failed_at),
            _ => {}
        }
    }
    assert_eq!(attempts, vec![1, 2, 3]);
    assert_eq!(delays, vec![2_000, 4_000], "exponential backoff from 2 s");
    // Replaying a prefix that ends with a failure re-derives the same backoff timer.
    let w = workflows();
    let upto = history
        .iter()
        .position(|e| matches!(e.kind, EventKind::StepFailed { .. }))
        .unwrap()
        + 1;
    let prefix = replay(&w, "retry_backoff", &history[..upto], vec![]).unwrap();
    assert!(matches!(
        &prefix.commands[..],
        [Command::StartTimer {
            timer_id: TimerId::Retry { seq: 1, attempt: 1 },
            ..
        }]
    ));
}

#[test]
fn non_deterministic_change_is_a_typed_error() {
    let history = load("nondeterministic");
    let error = replay(&order_v2(), "nondeterministic", &history, vec![]).unwrap_err();
    assert_eq!(
        error,
        EngineError::NonDeterminism {
            seq: 2,
            recorded: "remote step \"b\"".into(),
            actual: "inline step \"b\"".into()
        }
    );
    assert!(error.to_string().contains("seq 2"));
    // Removing an operation is caught too.
    let mut shorter = Workflows::new();
    shorter.register("order", |ctx: WorkflowContext, _: Value| async move {
        ctx.remote(&A, json!({})).await
    });
    let error = replay(&shorter, "nondeterministic", &history, vec![]).unwrap_err();
    assert!(
        matches!(error, EngineError::NonDeterminism { seq: 2, .. }),
        "{error}"
    );
}

#[test]
fn each_operation_kind_is_recorded() {
    let expect = [
        ("remote", "taskScheduled"),
        ("inline", "inlineStepStarted"),
        ("timer", "timerFired"),
        ("signal_before_wait", "signalWaitStarted"),
        ("values", "valueRecorded"),
        ("child", "childStarted"),
        ("continue_as_new", "continuedAsNew"),
    ];
    for (name, kind) in expect {
        let text = std::fs::read_to_string(path(name)).unwrap();
        assert!(
            text.contains(&format!("\"type\": \"{kind}\"")),
            "{name} lacks {kind}"
        );
    }
}
