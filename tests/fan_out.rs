//! A wide fan-out on the local stack (moto over HTTP): every task is sent, and so run, exactly
//! once, the start record is not dead-lettered, and a run started beside it is not held up.
//! CI size: 300 (past the 100 commands that make an outbox "wide", so it goes out under a
//! lease in groups); `scripts/bench` runs 5,000.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn::workflow::{EventKind, RunStatus};
use cairn_demo::{EmailSent, SEND_EMAIL};
use cairn_tests::TestEnv;
use serde_json::json;

const WIDTH: usize = 300;
const WAIT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_fan_out_sends_each_task_once_and_holds_up_no_other_run() {
    let env = TestEnv::new("fanwide", false).await;
    // The demo's worker, with the email step counting its executions per step id: a task sent
    // twice would run twice (nothing in this test crashes or loses a message).
    let runs_per_step: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let counted = runs_per_step.clone();
    let worker = cairn_demo::worker().handle(&SEND_EMAIL, move |email, task| {
        let counted = counted.clone();
        async move {
            if let Ok(mut counts) = counted.lock() {
                *counts.entry(task.step_id.clone()).or_default() += 1;
            }
            Ok(EmailSent {
                message_id: format!("msg-{}", email.to),
            })
        }
    });
    let _runtime = env.run(env.engine(cairn_demo::workflows()), worker).await;
    let client = env.client();
    let wide = client.start("fan-out", json!(WIDTH), None).await.unwrap();
    let beside = client.start("fan-out", json!(3), None).await.unwrap();

    let run = client.wait(&beside, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "the run beside: {run:?}");
    let run = client.wait(&wide, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(run.output, Some(json!(WIDTH)));

    let counts = runs_per_step.lock().unwrap().clone();
    let wide_prefix = format!("{wide}:");
    let wide_counts: Vec<u32> = counts
        .iter()
        .filter(|(step, _)| step.starts_with(&wide_prefix))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(wide_counts.len(), WIDTH, "every task of the fan-out ran");
    let twice = wide_counts.iter().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "{twice} tasks were sent more than once");

    let history = client.get(&wide).await.unwrap().history;
    let completed = history
        .iter()
        .filter(|e| matches!(e.kind, EventKind::StepCompleted { .. }))
        .count();
    assert_eq!(completed, WIDTH, "each result applied exactly once");
    let dead = env.receive_bodies(&env.resources.results_dlq_url).await;
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
}
