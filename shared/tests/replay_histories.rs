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
    activate, ActivationRequest, CodeAction, Command, EngineError, EventKind, HistoryEvent,
    Incoming, Operation, RemoteStep, RetryPolicy, RunStatus, TimerId, ValueKind, WorkflowContext,
    WorkflowError, Workflows,
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

/// One attempt at most 30 s each, one retry after 5 s.
const CHARGE_TIMED: RemoteStep<Value, Value> = RemoteStep::new("payments.charge-card")
    .with_retry(RetryPolicy::fixed(2, Duration::from_secs(5)))
    .with_timeout(Duration::from_secs(30));
/// One attempt of at most 30 s.
const CHARGE_ONCE: RemoteStep<Value, Value> = RemoteStep::new("payments.charge-card")
    .with_retry(RetryPolicy::none())
    .with_timeout(Duration::from_secs(30));

fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.register("late", |ctx: WorkflowContext, _: Value| async move {
        ctx.remote(&CHARGE_TIMED, json!({})).await
    });
    w.register("refund-late", |ctx: WorkflowContext, _: Value| async move {
        let call = ctx.remote(&CHARGE_ONCE, json!({}));
        let seq = call.seq().unwrap_or_default();
        match call.await {
            Ok(receipt) => Ok(json!({ "charged": receipt })),
            Err(WorkflowError::StepFailed { .. }) => {
                // Give a late result time to arrive, then undo what it did.
                ctx.sleep(Duration::from_secs(600)).await?;
                match ctx.late_result::<Value>(seq) {
                    Some(Ok(receipt)) => {
                        let refund: Value = ctx.remote(&REFUND, receipt).await?;
                        Ok(json!({ "refunded": refund }))
                    }
                    _ => Ok(json!("never charged")),
                }
            }
            Err(e) => Err(e),
        }
    });
    w.register(
        "fails-cancelled",
        |_ctx: WorkflowContext, _: Value| async move {
            Err::<Value, _>(WorkflowError::Failed(
                StepError::terminal("the customer cancelled the order").with_code("cancelled"),
            ))
        },
    );
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

/// A result as nestjs-durable workers send it: no `attempt`, the worker's `startedAt`.
fn from_peer(seq: u64, started_at_ms: u64, outcome: Result<Value, StepError>) -> Incoming {
    Incoming::StepResult {
        seq,
        attempt: None,
        outcome,
        started_at_ms: Some(started_at_ms),
        events: Vec::new(),
    }
}

fn failed(seq: u64, attempt: u32, message: &str) -> Incoming {
    Incoming::StepResult {
        started_at_ms: None,
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
        // Attempt 1 times out (30 s), attempt 2 is dispatched after the 5 s backoff, then
        // attempt 1's success arrives (started at 1500, before attempt 2 was scheduled at
        // 3000): it wins; attempt 2's own success later changes nothing.
        s(
            "late_success_kept",
            vec![
                vec![start("late", json!(null))],
                vec![fire("1:timeout:1")],
                vec![fire("1:retry:1")],
                vec![from_peer(1, 1_500, Ok(json!({"chargeId": "ch_late"})))],
                vec![from_peer(1, 3_500, Ok(json!({"chargeId": "ch_again"})))],
            ],
            RunStatus::Completed,
        ),
        // The step failed for good on its timeout; its success arrives late, and the workflow
        // refunds it.
        s(
            "late_success_refunded",
            vec![
                vec![start("refund-late", json!(null))],
                vec![fire("1:timeout:1")],
                vec![from_peer(1, 1_500, Ok(json!({"chargeId": "ch_late"})))],
                vec![fire("2")],
                vec![ok(3, json!({"refundId": "re_1"}))],
            ],
            RunStatus::Completed,
        ),
        // Attempt 1 fails; its result is delivered again (no `attempt`) while attempt 2 runs.
        s(
            "redelivered_failure",
            vec![
                vec![start("retry", json!(null))],
                vec![from_peer(1, 1_200, Err(StepError::retryable("503")))],
                vec![fire("1:retry:1")],
                vec![from_peer(1, 1_200, Err(StepError::retryable("503")))],
                vec![from_peer(1, 4_100, Ok(json!("second try")))],
            ],
            RunStatus::Completed,
        ),
        s(
            "failed_with_cancelled_code",
            vec![vec![start("fails-cancelled", json!(null))]],
            RunStatus::Failed,
        ),
    ]
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/histories")
        .join(format!("{name}.json"))
}

/// A history recorded in format 1 (kept as it was recorded: never regenerated).
fn v1_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/histories/v1")
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

/// The history the engine records now for scenario `name`, run live (the checked-in file is
/// compared with it by `recorded_histories_replay_without_changes`): a test of what the engine
/// does must not read only a file it once wrote.
fn recorded(name: &str) -> Vec<HistoryEvent> {
    let scenario = scenarios()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"));
    record(&workflows(), &scenario).0
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
    let EventKind::RunCancelled { error } = &history.last().unwrap().kind else {
        panic!("not cancelled")
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
            recorded: Operation::Remote("b".into()),
            actual: CodeAction::Issued(Operation::Inline("b".into())),
        }
    );
    assert!(error.to_string().contains("seq 2"));
    // Removing an operation is caught too.
    let mut shorter = Workflows::new();
    shorter.register("order", |ctx: WorkflowContext, _: Value| async move {
        ctx.remote(&A, json!({})).await
    });
    let error = replay(&shorter, "nondeterministic", &history, vec![]).unwrap_err();
    assert_eq!(
        error,
        EngineError::NonDeterminism {
            seq: 2,
            recorded: Operation::Remote("b".into()),
            actual: CodeAction::Returned,
        }
    );
}

/// Histories recorded before steps recorded their timeouts (`tests/histories/before-timeouts/`:
/// no `TaskScheduled.timeouts`, the timeout timer due at dispatch + start-to-close) replay
/// unchanged: the recorded timers and failures count, not the code's timeouts.
#[test]
fn histories_from_before_step_timeouts_still_replay() {
    let w = workflows();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/histories/before-timeouts");
    let mut replayed_any = 0;
    for scenario in scenarios() {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{}.json", scenario.name))) else {
            continue;
        };
        let history = load_history(&text).unwrap();
        assert!(history.iter().all(|e| !matches!(
            &e.kind,
            EventKind::TaskScheduled {
                timeouts: Some(_),
                ..
            }
        )));
        let replayed = replay(&w, scenario.name, &history, vec![]).unwrap();
        assert!(
            replayed.appended.is_empty() && replayed.commands.is_empty(),
            "{}: {replayed:?}",
            scenario.name
        );
        assert_eq!(replayed.status, scenario.status, "{}", scenario.name);
        replayed_any += 1;
    }
    assert_eq!(replayed_any, 2);
}

/// Format 1 histories (`tests/histories/v1/`, recorded before format 2) replay unchanged.
#[test]
fn format_1_histories_still_replay() {
    let w = workflows();
    let mut replayed_any = 0;
    for scenario in scenarios() {
        let file = v1_path(scenario.name);
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // a scenario newer than format 1
        };
        let history = load_history(&text).unwrap();
        assert!(
            matches!(&history[0].kind, EventKind::RunStarted { format: 1, .. }),
            "{}",
            scenario.name
        );
        let replayed = replay(&w, scenario.name, &history, vec![]).unwrap();
        assert!(
            replayed.appended.is_empty() && replayed.commands.is_empty(),
            "{}: {replayed:?}",
            scenario.name
        );
        assert_eq!(replayed.status, scenario.status, "{}", scenario.name);
        replayed_any += 1;
    }
    assert_eq!(replayed_any, 12);
    // A format 1 patch marker still counts.
    let values = load_history(&std::fs::read_to_string(v1_path("values")).unwrap()).unwrap();
    assert!(values.iter().any(|e| matches!(&e.kind,
        EventKind::ValueRecorded { kind: ValueKind::Patched(change), .. } if change == "v2")));
}

#[test]
fn a_late_success_wins_and_the_run_records_it() {
    let history = recorded("late_success_kept");
    let late: Vec<_> = kinds(&history)
        .into_iter()
        .filter_map(|k| match k {
            EventKind::LateResult {
                attempt,
                kept,
                output,
                ..
            } => Some((*attempt, *kept, output.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(late, vec![(1, true, Some(json!({"chargeId": "ch_late"})))]);
    assert!(matches!(&history.last().unwrap().kind,
        EventKind::RunCompleted { output } if *output == json!({"chargeId": "ch_late"})));
}

#[test]
fn a_late_success_reaches_the_workflow() {
    let history = recorded("late_success_refunded");
    assert!(kinds(&history).iter().any(|k| matches!(
        k,
        EventKind::LateResult {
            attempt: 1,
            kept: false,
            ..
        }
    )));
    assert!(kinds(&history).iter().any(|k| matches!(k,
        EventKind::TaskScheduled { name, input, .. }
            if name == "payments.refund" && *input == json!({"chargeId": "ch_late"}))));
    assert!(matches!(&history.last().unwrap().kind,
        EventKind::RunCompleted { output } if *output == json!({"refunded": {"refundId": "re_1"}})));
}

#[test]
fn a_redelivered_result_without_attempt_does_not_burn_a_retry() {
    let history = recorded("redelivered_failure");
    let failures = kinds(&history)
        .into_iter()
        .filter(|k| matches!(k, EventKind::StepFailed { .. }))
        .count();
    assert_eq!(failures, 1, "the redelivery is not attempt 2's failure");
    let attempts: Vec<u32> = kinds(&history)
        .into_iter()
        .filter_map(|k| match k {
            EventKind::TaskScheduled { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, vec![1, 2]);
    assert!(matches!(&history.last().unwrap().kind,
        EventKind::RunCompleted { output } if *output == json!("second try")));
}

#[test]
fn a_workflow_error_coded_cancelled_is_a_failure() {
    let w = workflows();
    let history = load("failed_with_cancelled_code");
    assert!(matches!(
        &history.last().unwrap().kind,
        EventKind::RunFailed { .. }
    ));
    let replayed = replay(&w, "failed_with_cancelled_code", &history, vec![]).unwrap();
    assert_eq!(replayed.status, RunStatus::Failed);
}

#[test]
fn the_retry_policy_is_the_one_recorded() {
    // Attempt 1 failed and attempt 2 is dispatched under "flaky"'s policy (3 attempts)...
    let history = load("retry_backoff");
    let upto = history
        .iter()
        .position(|e| matches!(e.kind, EventKind::TaskScheduled { attempt: 2, .. }))
        .unwrap()
        + 1;
    let in_flight = &history[..upto];
    // ... then the code changes the step's policy to a single attempt.
    const STRICT: RemoteStep<Value, Value> =
        RemoteStep::new("flaky").with_retry(RetryPolicy::none());
    let mut strict = Workflows::new();
    strict.register("retry", |ctx: WorkflowContext, _: Value| async move {
        match ctx.remote(&STRICT, json!({})).await {
            Err(WorkflowError::StepFailed { .. }) => Ok(json!("gave up")),
            other => other,
        }
    });
    let replayed = replay(&strict, "retry_backoff", in_flight, vec![]).unwrap();
    assert!(replayed.appended.is_empty() && replayed.commands.is_empty());
    assert_eq!(replayed.status, RunStatus::Running);
    // Attempt 2 fails: the recorded policy (3 attempts, backoff) goes on, not the code's.
    let next = replay(
        &strict,
        "retry_backoff",
        in_flight,
        vec![failed(1, 2, "503")],
    )
    .unwrap();
    assert!(
        matches!(
            &next.commands[..],
            [Command::StartTimer {
                timer_id: TimerId::Retry { seq: 1, attempt: 2 },
                ..
            }]
        ),
        "{next:?}"
    );
    // A format 1 history did not record the policy: the change is refused, not reinterpreted.
    let v1 = load_history(&std::fs::read_to_string(v1_path("retry_backoff")).unwrap()).unwrap();
    let error = replay(&strict, "retry_backoff", &v1[..upto], vec![]).unwrap_err();
    assert_eq!(
        error,
        EngineError::RetryDiverged {
            seq: 1,
            step: Some(Operation::Remote("flaky".into())),
            gave_up_after: 1,
            recorded_attempts: 2,
        }
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
