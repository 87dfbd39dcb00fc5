//! Helpers shared by the CLI integration tests: run the real binary against a `TestEnv`.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cairn_tests::TestEnv;
use serde_json::{json, Value};

/// Runs `cairn` with the env's deployment flags, off the async runtime's threads.
pub async fn cairn(env: &TestEnv, args: &[&str]) -> Output {
    cairn_stdin(env, args, None).await
}

/// `cairn start checkout --input ORDER EXTRA...`.
pub async fn start_checkout(env: &TestEnv, order: &str, extra: &[&str]) -> Output {
    let mut args = vec!["start", "checkout", "--input", order];
    args.extend_from_slice(extra);
    cairn(env, &args).await
}

pub async fn cairn_stdin(env: &TestEnv, args: &[&str], stdin: Option<String>) -> Output {
    run_binary(with_deployment(env, args), stdin).await
}

/// Runs `cairn` with its stdout read by nobody: the pipe is closed before the binary's first
/// write, as `cairn ... | head -0` would (`head -5` does it after five lines, at a moment the
/// test could not pick). Stdout of the result is empty.
pub async fn cairn_stdout_closed(env: &TestEnv, args: &[&str]) -> Output {
    let args = with_deployment(env, args);
    tokio::task::spawn_blocking(move || {
        let mut child = command(&args).spawn().expect("spawn cairn");
        drop(child.stdout.take());
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn with_deployment(env: &TestEnv, args: &[&str]) -> Vec<String> {
    let mut full: Vec<String> = vec![
        "--endpoint-url".into(),
        env.config.endpoint_url.clone().unwrap(),
        "--table".into(),
        env.resources.table_name.clone(),
        "--prefix".into(),
        env.config.prefix.clone(),
        "--results-queue-url".into(),
        env.resources.results_queue_url.clone(),
    ];
    if env.config.fifo {
        full.push("--fifo".into());
    }
    full.extend(args.iter().map(|a| a.to_string()));
    full
}

/// The binary with `args`, every stream piped, and no `CAIRN_*` from the test's environment.
pub fn command(args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in [
        "CAIRN_ENDPOINT_URL",
        "CAIRN_TABLE_NAME",
        "CAIRN_QUEUE_PREFIX",
        "CAIRN_RESULTS_QUEUE_URL",
        "CAIRN_FIFO",
        "CAIRN_TASK_QUEUE_URLS",
    ] {
        command.env_remove(var);
    }
    command
}

pub async fn run_binary(args: Vec<String>, stdin: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = command(&args).spawn().expect("spawn cairn");
        let mut pipe = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// The command ended with `code` and said `needle` on stderr.
#[track_caller]
pub fn assert_stderr(out: &Output, code: i32, needle: &str) {
    assert_code(out, code);
    let err = stderr(out);
    assert!(
        err.contains(needle),
        "expected {needle:?} on stderr:\n{err}"
    );
}

pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(out), stderr(out)))
}

pub fn order(id: &str, card: &str, needs_approval: bool) -> String {
    json!({ "orderId": id, "amountCents": 1999, "card": card, "email": "ada@example.com", "needsApproval": needs_approval })
        .to_string()
}

/// Polls until the run exists and `ready` holds for its history.
pub async fn until_run(
    env: &TestEnv,
    run_id: &str,
    ready: impl Fn(&cairn::store::LoadedRun) -> bool,
) {
    let client = env.client();
    for _ in 0..300 {
        if let Ok(run) = client.get(run_id).await {
            if ready(&run) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run_id} never got ready");
}

pub fn waits_for_signal(run: &cairn::store::LoadedRun) -> bool {
    run.history
        .iter()
        .any(|e| matches!(e.kind, cairn::workflow::EventKind::SignalWaitStarted { .. }))
}
