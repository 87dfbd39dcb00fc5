//! `cairn::testing::TestEnv`: in-process runs on a virtual clock, through the public API only.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cairn::contract::StepError;
use cairn::testing::{load_history, replay, ReplayError, TestEnv, TestEnvError};
use cairn::workflow::{
    EngineError, RemoteStep, RetryPolicy, RunStatus, WorkflowContext, WorkflowError, Workflows,
};
use serde_json::{json, Value};

const DAY: Duration = Duration::from_secs(24 * 3600);

const DOUBLE: RemoteStep<u64, u64> = RemoteStep::new("math.double");
const FLAKY: RemoteStep<u64, u64> =
    RemoteStep::new("math.flaky").with_retry(RetryPolicy::fixed(3, Duration::from_secs(60)));

async fn sleepy(ctx: WorkflowContext, days: u64) -> Result<Value, WorkflowError> {
    let before = ctx.now();
    ctx.sleep(DAY * days as u32).await?;
    let doubled = ctx.remote(&DOUBLE, days).await?;
    Ok(json!({ "sleptMs": ctx.now() - before, "doubled": doubled }))
}

async fn approval(ctx: WorkflowContext, _: ()) -> Result<String, WorkflowError> {
    match ctx
        .wait_for_signal_timeout::<Value>("approve", DAY * 7)
        .await?
    {
        Some(by) => Ok(format!("approved by {by}")),
        None => Ok("timed out".into()),
    }
}

async fn flaky(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    ctx.remote(&FLAKY, n).await
}

async fn parent(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    let a: Value = ctx.child("sleepy", &n).await?;
    let b: u64 = ctx.child("countdown", &3u64).await?;
    Ok(a["doubled"].as_u64().unwrap_or(0) + b)
}

async fn countdown(ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    ctx.sleep(DAY).await?;
    if n == 0 {
        return Ok(100);
    }
    Err(ctx.continue_as_new(&(n - 1)))
}

fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.register("sleepy", sleepy)
        .register("approval", approval)
        .register("flaky", flaky)
        .register("parent", parent)
        .register("countdown", countdown);
    w
}

fn env() -> TestEnv {
    TestEnv::new(workflows()).mock(&DOUBLE, |n: u64| Ok::<_, StepError>(n * 2))
}

#[tokio::test]
async fn a_thirty_day_sleep_is_skipped_and_the_step_call_recorded() {
    let mut env = env();
    let started = std::time::Instant::now();
    let out: Value = env.execute("sleepy", 30).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(out, json!({ "sleptMs": 30 * 86_400_000u64, "doubled": 60 }));
    assert_eq!(env.elapsed(), DAY * 30);
    let calls = env.calls_to("math.double");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].input::<u64>().unwrap(), 30);
    assert_eq!(calls[0].task.step_id, "run-1:3");
    assert_eq!(calls[0].at_ms, env.now_ms());
    assert_eq!(env.status("run-1"), Some(RunStatus::Completed));
}

#[tokio::test]
async fn retries_back_off_in_virtual_time() {
    let mut env = TestEnv::new(workflows()).handle(&FLAKY, |n: u64, task| async move {
        if task.attempt < 3 {
            Err(StepError::retryable(format!(
                "attempt {} fails",
                task.attempt
            )))
        } else {
            Ok(n + 1)
        }
    });
    let out: u64 = env.execute("flaky", 41).await.unwrap();
    assert_eq!(out, 42);
    let attempts: Vec<u32> = env.calls().iter().map(|c| c.task.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert_eq!(env.elapsed(), Duration::from_secs(120), "two 60 s backoffs");
    // Exhausted: the run fails with the last error.
    let mut env = TestEnv::new(workflows())
        .mock(&FLAKY, |_: u64| Err::<u64, _>(StepError::retryable("down")));
    let err = env.execute::<u64>("flaky", 1).await.unwrap_err();
    assert!(
        matches!(&err, TestEnvError::RunFailed { status: RunStatus::Failed, error, .. } if error.message.contains("down")),
        "{err}"
    );
    assert_eq!(env.calls().len(), 3);
}

#[tokio::test]
async fn a_missing_handler_fails_the_step_like_a_worker_without_it() {
    let mut env = TestEnv::new(workflows());
    let err = env.execute::<Value>("sleepy", 1).await.unwrap_err();
    let TestEnvError::RunFailed { error, .. } = err else {
        panic!("{err}")
    };
    assert!(
        error.message.contains("no handler for step"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn signals_are_injected_now_or_at_a_chosen_time() {
    // Interactive: the run waits; the test signals it after three days.
    let mut env = env();
    let run = env.start("approval", ()).await.unwrap();
    assert_eq!(env.status(&run), Some(RunStatus::Running));
    env.advance(DAY * 3).await.unwrap();
    env.signal(&run, "approve", "ada").await.unwrap();
    assert_eq!(
        env.run_to_end::<String>(&run).await.unwrap(),
        "approved by \"ada\""
    );
    assert_eq!(env.elapsed(), DAY * 3);

    // Scheduled: six days in (before the timeout) it is approved; eight days in, too late.
    let mut env = env_with_scheduled(6).await;
    assert_eq!(
        env.run_to_end::<String>("run-1").await.unwrap(),
        "approved by \"bob\""
    );
    let mut env = env_with_scheduled(8).await;
    assert_eq!(
        env.run_to_end::<String>("run-1").await.unwrap(),
        "timed out"
    );
    assert_eq!(
        env.elapsed(),
        DAY * 7,
        "ended at the timeout, before the late signal"
    );
}

async fn env_with_scheduled(days: u32) -> TestEnv {
    let mut env = env();
    let run = env.start("approval", ()).await.unwrap();
    env.signal_after(&run, DAY * days, "approve", "bob")
        .unwrap();
    env
}

#[tokio::test]
async fn a_run_waiting_for_a_signal_nobody_sends_is_reported_blocked() {
    let mut w = Workflows::new();
    w.register("wait", |ctx: WorkflowContext, _: ()| async move {
        ctx.wait_for_signal::<Value>("go").await
    });
    let err = TestEnv::new(w)
        .execute::<Value>("wait", ())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TestEnvError::Blocked { waiting, .. } if waiting.contains("go")),
        "{err}"
    );
}

#[tokio::test]
async fn cancellation_lands_where_the_test_puts_it() {
    let mut env = env();
    let run = env.start("sleepy", 30).await.unwrap();
    env.cancel_after(&run, DAY * 10, Some("changed my mind"))
        .unwrap();
    let err = env.run_to_end::<Value>(&run).await.unwrap_err();
    assert!(
        matches!(&err, TestEnvError::RunFailed { status: RunStatus::Cancelled, error, .. } if error.message.contains("changed my mind")),
        "{err}"
    );
    assert_eq!(env.elapsed(), DAY * 10);
    assert!(env.calls().is_empty(), "cancelled before the step");
}

#[tokio::test]
async fn children_and_continue_as_new_run_as_runs_of_their_own() {
    let mut env = env();
    let out: u64 = env.execute("parent", 2).await.unwrap();
    assert_eq!(out, 4 + 100);
    let ids: Vec<&str> = env.run_ids().collect();
    assert_eq!(
        ids,
        [
            "run-1",
            "run-1~c1",
            "run-1~c2",
            "run-1~c2~1",
            "run-1~c2~2",
            "run-1~c2~3"
        ]
    );
    assert_eq!(env.status("run-1~c2"), Some(RunStatus::ContinuedAsNew));
    assert_eq!(env.elapsed(), DAY * (2 + 4));
}

#[tokio::test]
async fn the_saved_history_replays_and_catches_a_changed_workflow() {
    let mut env = env();
    let _: Value = env.execute("sleepy", 30).await.unwrap();
    let dir = std::env::temp_dir().join(format!("cairn-test-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sleepy.json");
    env.save_history("run-1", &path).unwrap();
    let history = load_history(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(history, env.history("run-1").unwrap());
    assert_eq!(
        replay(&workflows(), "run-1", &history).await,
        Ok(RunStatus::Completed)
    );
    // A new version that calls the step before sleeping no longer matches the record.
    let mut changed = Workflows::new();
    changed.register("sleepy", |ctx: WorkflowContext, days: u64| async move {
        let doubled = ctx.remote(&DOUBLE, days).await?;
        ctx.sleep(DAY * days as u32).await?;
        Ok(doubled)
    });
    let err = replay(&changed, "run-1", &history).await.unwrap_err();
    assert!(
        matches!(
            err,
            ReplayError::Engine(EngineError::NonDeterminism { seq: 1, .. })
        ),
        "{err}"
    );
    // Same operations, another ending: diverged.
    let mut other = Workflows::new();
    other.register("sleepy", |ctx: WorkflowContext, days: u64| async move {
        let before = ctx.now();
        ctx.sleep(DAY * days as u32).await?;
        let doubled = ctx.remote(&DOUBLE, days).await?;
        Ok(json!({ "sleptMs": ctx.now() - before, "doubled": doubled + 1 }))
    });
    let err = replay(&other, "run-1", &history).await.unwrap_err();
    assert!(matches!(err, ReplayError::Diverged { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// As on the deployed stack: a workflow output nested past the store's 100-level limit fails
/// the run with code `unstorable` instead of completing.
#[tokio::test]
async fn a_run_that_records_something_too_deep_to_store_fails_as_the_engine_fails_it() {
    let mut w = Workflows::new();
    w.register("deep", |_ctx: WorkflowContext, levels: usize| async move {
        let mut value = json!([]);
        for _ in 0..levels {
            value = json!([value]);
        }
        Ok::<_, WorkflowError>(value)
    });
    let mut env = TestEnv::new(w);
    let run_id = env.start("deep", 120).await.unwrap();
    let err = env.run_to_end::<Value>(&run_id).await.unwrap_err();
    let TestEnvError::RunFailed { error, status, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(status, RunStatus::Failed);
    assert_eq!(error.code.as_deref(), Some("unstorable"), "{error:?}");
    // Shallower output completes.
    let out: Value = env.execute("deep", 10).await.unwrap();
    assert!(out.is_array());
}
