//! A wide fan-out on the local stack (moto over HTTP): every task is sent, and so run, exactly
//! once, the start record is not dead-lettered, and a run started beside it is not held up.
//! CI size: 300 (past the 100 commands that make an outbox "wide", so it goes out under a
//! lease in groups); `scripts/bench` runs 5,000. The engine sends groups of 40 and one group
//! per invocation, so the outbox is handed on by `resumeOutbox` continuations (7 slices), as a
//! 5,000-way fan-out is when its invocations run out of time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn::contract::RemoteTask;
use cairn::transport::{ControlSender, ResultSender, TaskSender, TransportError};
use cairn::workflow::{EventKind, RunStatus};
use cairn_demo::{EmailSent, SEND_EMAIL};
use cairn_lambda::engine::{Engine, EngineOptions, WideOptions};
use cairn_tests::TestEnv;
use serde_json::json;

const WIDTH: usize = 300;
const GROUP: usize = 40;
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
    // The engine as `env.engine` builds it, sending wide outboxes a group at a time and
    // counting the tasks it sends per step id.
    let sends: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let transport = Counting {
        inner: env.clients.transport(&env.config),
        sends: sends.clone(),
    };
    let options = EngineOptions {
        timer_chunk_seconds: env.config.timer_chunk_seconds,
        wide: WideOptions {
            group: GROUP,
            slice: Some(Duration::ZERO),
        },
        ..EngineOptions::default()
    };
    let engine = Engine::new(
        Arc::new(cairn_demo::workflows()),
        env.clients.store(&env.config).with_history_cache(),
        transport,
        env.clients.blobs(&env.config),
        options,
    )
    .with_backoff(env.backoff());
    let handed_on = || {
        ["deadline", "slice"]
            .iter()
            .map(|why| {
                cairn_lambda::metrics::counted(cairn_lambda::metrics::WIDE_OUTBOX_HANDED_ON, why)
            })
            .sum::<u64>()
    };
    let handed_on_before = handed_on();
    let _runtime = env.run(engine, worker).await;
    let client = env.client();
    let wide = client.start("fan-out", json!(WIDTH), None).await.unwrap();
    let beside = client.start("fan-out", json!(3), None).await.unwrap();

    let run = client.wait(&beside, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "the run beside: {run:?}");
    let run = client.wait(&wide, WAIT).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{run:?}");
    assert_eq!(run.output, Some(json!(WIDTH)));

    let wide_prefix = format!("{wide}:");
    let sent = sends.lock().unwrap().clone();
    let sent: Vec<u32> = sent
        .iter()
        .filter(|(step, _)| step.starts_with(&wide_prefix))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(sent.len(), WIDTH, "a task sent for every step");
    assert_eq!(
        sent.iter().sum::<u32>() as usize,
        WIDTH,
        "each task sent exactly once"
    );
    let slices = handed_on() - handed_on_before;
    assert!(
        slices as usize >= WIDTH / GROUP - 1,
        "the outbox went out in slices handed on by resumeOutbox: {slices} hand-ons"
    );

    let counts = runs_per_step.lock().unwrap().clone();
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

/// The engine's transport, counting the tasks it sends per step id.
struct Counting<T> {
    inner: T,
    sends: Arc<Mutex<HashMap<String, u32>>>,
}

impl<T: TaskSender> TaskSender for Counting<T> {
    async fn send_tasks(&self, tasks: &[RemoteTask]) -> Result<(), TransportError> {
        let result = self.inner.send_tasks(tasks).await;
        let failed = match &result {
            Err(e) => e.failed_indexes(tasks.len()),
            Ok(()) => Vec::new(),
        };
        if let Ok(mut sends) = self.sends.lock() {
            for (i, task) in tasks.iter().enumerate() {
                if !failed.contains(&i) {
                    *sends.entry(task.step_id.to_string()).or_default() += 1;
                }
            }
        }
        result
    }
}

impl<T: ResultSender> ResultSender for Counting<T> {
    async fn send_results(
        &self,
        results: &[cairn::contract::StepResult],
    ) -> Result<(), TransportError> {
        self.inner.send_results(results).await
    }
}

impl<T: ControlSender> ControlSender for Counting<T> {
    async fn send_control(
        &self,
        messages: &[(cairn::contract::ControlMessage, u32)],
    ) -> Result<(), TransportError> {
        self.inner.send_control(messages).await
    }
}
