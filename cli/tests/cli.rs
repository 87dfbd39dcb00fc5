//! The real `cairn` binary against the local stack (moto over HTTP): resources provisioned
//! from `template.yaml` per test, the demo engine and workers running behind local event
//! source mappings, and assertions on the binary's stdout, stderr, JSON and exit codes.
//! The HTML timeline is checked in headless Chromium (`scripts/install-chromium`).
//! Dead-letter queue commands are in `cli_dlq.rs`.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cairn_tests::TestEnv;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_wait_list_and_show_a_retried_checkout() {
    let env = TestEnv::new("cli-start", false).await;
    let _runtime = env
        .run(env.engine(cairn_demo::workflows()), cairn_demo::worker())
        .await;
    let run_id = format!("flaky-{}", uuid::Uuid::new_v4().simple());

    let out = start_checkout(
        &env,
        &order("o-1", "tok_flaky", false),
        &["--run-id", &run_id, "--wait", "60"],
    )
    .await;
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.starts_with(&format!("{run_id}\ncompleted after ")),
        "{text}"
    );
    assert!(text.contains("\"chargeId\""), "{text}");

    // Idempotent on the run id.
    let again = start_checkout(
        &env,
        &order("o-1", "tok_flaky", false),
        &["--run-id", &run_id],
    )
    .await;
    assert_code(&again, 0);
    assert_eq!(stdout(&again).trim(), run_id);
    assert!(
        stderr(&again).contains("already exists (completed)"),
        "{}",
        stderr(&again)
    );

    let listed = cairn(
        &env,
        &[
            "runs",
            "list",
            "--json",
            "--workflow",
            "checkout",
            "--since",
            "10m",
        ],
    )
    .await;
    assert_code(&listed, 0);
    let runs = json_of(&listed)["runs"].as_array().unwrap().clone();
    assert!(
        runs.iter()
            .any(|r| r["runId"] == run_id.as_str() && r["status"] == "completed"),
        "{runs:?}"
    );
    let table = cairn(&env, &["runs", "list", "--status", "completed", "--all"]).await;
    assert_code(&table, 0);
    let table = stdout(&table);
    assert!(
        table.starts_with("RUN ID")
            && table
                .lines()
                .any(|l| l.starts_with(&run_id) && l.contains("checkout  completed")),
        "{table}"
    );
    let future = cairn(&env, &["runs", "list", "--since", "2999-01-01"]).await;
    assert_eq!(stdout(&future), "no runs\n");

    let shown = cairn(&env, &["runs", "show", &run_id]).await;
    assert_code(&shown, 0);
    let text = stdout(&shown);
    for expected in [
        "status    completed",
        "inventory.reserve",
        "payments.charge-card",
        "notifications.send-email",
        "\"orderId\": \"o-1\"",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let charge_row = text
        .lines()
        .find(|l| {
            l.trim_start().starts_with(char::is_numeric) && l.contains("payments.charge-card")
        })
        .unwrap();
    assert!(
        charge_row.split_whitespace().any(|w| w == "2"),
        "2 attempts: {charge_row}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("  attempt 1 ")
            && l.ends_with("failed: provider_timeout: payment provider timed out (retryable)"))
            && text
                .lines()
                .any(|l| l.starts_with("  attempt 2 ") && l.ends_with("completed")),
        "{text}"
    );

    let json = json_of(&cairn(&env, &["runs", "show", &run_id, "--json"]).await);
    let charge = json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "payments.charge-card")
        .unwrap();
    assert_eq!(charge["attempts"], 2);
    assert_eq!(charge["state"], "completed");
    assert_eq!(json["run"]["status"], "completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compensated_checkout_shows_the_failure_and_its_timeline_draws_in_chromium() {
    let env = TestEnv::new("cli-timeline", false).await;
    let _runtime = env
        .run(env.engine(cairn_demo::workflows()), cairn_demo::worker())
        .await;
    let out = start_checkout(
        &env,
        &order("o-2", "tok_declined", false),
        &["--wait", "60", "--json"],
    )
    .await;
    assert_code(&out, 5);
    let outcome = json_of(&out);
    assert_eq!(outcome["status"], "failed");
    let run_id = outcome["runId"].as_str().unwrap().to_owned();

    let text = stdout(&cairn(&env, &["runs", "show", &run_id]).await);
    for expected in [
        "status    failed",
        "error     charge failed, reservation released",
        "FAILED",
        "card_declined: card declined by issuer (not retryable)",
        "inventory.release",
        "notifications.send-email",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }

    let dir =
        std::env::temp_dir().join(format!("cairn-timeline-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("run.html");
    let out = cairn(
        &env,
        &[
            "runs",
            "timeline",
            &run_id,
            "--html",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_code(&out, 0);
    assert!(stdout(&out).contains("4 bars"), "{}", stdout(&out));
    let dom = chromium_dump_dom(&file, &dir);
    assert_eq!(
        dom.matches("class=\"bar attempt ").count(),
        4,
        "one bar per step attempt:\n{dom}"
    );
    assert_eq!(
        dom.matches("class=\"bar attempt failed\"").count(),
        1,
        "the declined charge"
    );
    assert_eq!(dom.matches("class=\"bar attempt completed\"").count(), 3);
    assert!(
        dom.contains("data-bars-drawn=\"4\"") && dom.contains("data-bars-total=\"4\""),
        "the browser laid out every bar"
    );
    assert!(
        dom.contains("payments.charge-card") && dom.contains("attempt failed"),
        "labels and legend"
    );
    let png = dir.join("run.png");
    chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,900",
        ],
        &file,
        &dir,
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "screenshot of {} bytes",
        bytes.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn chromium(extra: &[&str], page: &Path, dir: &Path) -> Output {
    let binary = Path::new("/usr/bin/chromium");
    assert!(
        binary.exists(),
        "chromium is not installed: the timeline browser test needs Debian's chromium; run scripts/install-chromium"
    );
    let profile = dir.join("profile");
    let out = Command::new("timeout")
        .arg("120")
        .arg(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
        ])
        .args([
            "--no-first-run",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    out
}

fn chromium_dump_dom(page: &Path, dir: &Path) -> String {
    stdout(&chromium(&["--dump-dom"], page, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signal_by_name_or_seed_event_and_cancel() {
    let env = TestEnv::new("cli-signal", false).await;
    let _runtime = env
        .run(env.engine(cairn_demo::workflows()), cairn_demo::worker())
        .await;
    let client = env.client();
    let mut ids = Vec::new();
    for name in ["approve", "reject", "cancel"] {
        let out = start_checkout(&env, &order(name, "tok_ok", true), &[]).await;
        assert_code(&out, 0);
        ids.push(stdout(&out).trim().to_owned());
    }
    for id in &ids {
        until_run(&env, id, waits_for_signal).await;
    }

    let out = cairn(
        &env,
        &[
            "signal",
            &ids[0],
            "approval",
            "--payload",
            r#"{"approved":true,"by":"ops"}"#,
        ],
    )
    .await;
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!("sent signal approval to run {}", ids[0])
    );
    assert_eq!(
        client
            .wait(&ids[0], Duration::from_secs(60))
            .await
            .unwrap()
            .status
            .to_string(),
        "completed"
    );

    let event = json!({ "topic": "approval", "urn": ids[1], "payload": { "approved": false, "by": "cli" }, "attempt": 0 });
    let out = cairn_stdin(&env, &["signal", "--event", "-"], Some(event.to_string())).await;
    assert_code(&out, 0);
    let rejected = client.wait(&ids[1], Duration::from_secs(60)).await.unwrap();
    assert_eq!(rejected.status.to_string(), "failed");
    assert!(rejected
        .error
        .unwrap()
        .message
        .contains("order rejected by cli"));

    let out = cairn(
        &env,
        &[
            "cancel",
            &ids[2],
            "--reason",
            "customer changed their mind",
            "--json",
        ],
    )
    .await;
    assert_code(&out, 0);
    assert_eq!(json_of(&out)["sent"], true);
    assert_eq!(
        client
            .wait(&ids[2], Duration::from_secs(60))
            .await
            .unwrap()
            .status
            .to_string(),
        "cancelled"
    );
    let again = cairn(&env, &["cancel", &ids[2]]).await;
    assert_code(&again, 0);
    assert!(
        stdout(&again).contains("already cancelled"),
        "{}",
        stdout(&again)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_runs_exit_2_with_a_clear_message() {
    let env = TestEnv::new("cli-unknown", false).await;
    for args in [
        &["runs", "show", "no-such-run"][..],
        &["runs", "timeline", "no-such-run", "--html", "/tmp/x.html"],
        &["cancel", "no-such-run"],
        &["signal", "no-such-run", "approval"],
    ] {
        let out = cairn(&env, args).await;
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains("run no-such-run not found in table")
                && err.contains(&env.resources.table_name),
            "{args:?}: {err}"
        );
    }
    // No engine in this test: the start message is never consumed.
    let out = cairn(
        &env,
        &[
            "start", "checkout", "--input", "{}", "--run-id", "never", "--wait", "1",
        ],
    )
    .await;
    assert_stderr(&out, 4, "run never was not created within 1s");
    let out = cairn(&env, &["dlq", "list", "no.such.group"]).await;
    assert_stderr(&out, 2, "no dead-letter queue for \"no.such.group\"");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_named_with_what_to_set() {
    let args = |extra: &[&str]| {
        let mut args: Vec<String> = ["--endpoint-url", "http://127.0.0.1:9"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    for command in [
        &["runs", "list"][..],
        &["runs", "show", "r-1"],
        &["start", "checkout", "--input", "{}"],
        &["dlq", "list", "results"],
    ] {
        let out = run_binary(args(command), None).await;
        assert_code(&out, 3);
        let err = stderr(&out);
        assert!(
            err.contains("cannot reach http://127.0.0.1:9") && err.contains("CAIRN_ENDPOINT_URL"),
            "{command:?}: {err}"
        );
    }
    let out = run_binary(args(&["runs", "list", "--since", "yesterday"]), None).await;
    assert_stderr(&out, 64, "--since: cannot read \"yesterday\"");
    let out = run_binary(args(&["start", "checkout", "--input", "{not json"]), None).await;
    assert_stderr(&out, 1, "--input is not valid JSON");
}

/// `--profile` reaches the SDK's config loader: the profile's region (from a config file of
/// the test's own) is the one the CLI reports, with every AWS_* of the environment removed.
#[tokio::test]
async fn the_profile_flag_chooses_the_region_from_the_config_file() {
    let dir = std::env::temp_dir().join(format!("cairn-profile-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config");
    std::fs::write(&config, "[profile cairn-test]\nregion = eu-west-3\n").unwrap();
    let args: Vec<String> = ["--profile", "cairn-test", "runs", "list"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        let mut command = command(&args);
        for (var, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
            command.env_remove(var);
        }
        command
            .env("AWS_CONFIG_FILE", &config)
            .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("credentials"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("no usable AWS credentials for AWS region eu-west-3"),
        "{err}"
    );
}

/// `cairn queues`: what a nestjs-durable peer is pointed at, read from the deployed queues'
/// tags (a FIFO stack, so peers answer on the standard peer-results queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_prints_the_group_map_peers_join_by() {
    let env = TestEnv::new("cli-queues", true).await;
    let peer_results = env.resources.peer_results_queue_url.clone().unwrap();

    let out = cairn(&env, &["queues", "--json"]).await;
    assert_code(&out, 0);
    let map: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(map["taskQueueUrls"], json!(env.resources.task_queue_urls));
    assert_eq!(map["resultsQueueUrl"], env.resources.results_queue_url);
    assert_eq!(map["peerResultsQueueUrl"], peer_results);
    assert_eq!(map["fifo"], true);

    let out = cairn(&env, &["queues"]).await;
    assert_code(&out, 0);
    let text = stdout(&out);
    for (group, url) in &env.resources.task_queue_urls {
        assert!(
            text.lines()
                .any(|l| l.starts_with(group.as_str()) && l.ends_with(url.as_str())),
            "{group}: {text}"
        );
    }
    assert!(
        text.contains(&format!("peers answer on:    {peer_results}")),
        "{text}"
    );
}
