//! The reconciler on the local stack: commands committed but never sent (a crash between
//! commit and send, the record gone) are sent again, a timer whose message was lost fires
//! again, and it finds them through the sparse due index without walking idle runs.

#![allow(clippy::unwrap_used)]

use cairn::contract::{
    decode_results_message, decode_task, ControlMessage, ParentRef, ResultsMessage,
};
use cairn::store::{CheckpointStore, Commit, RunRecord};
use cairn::workflow::{Command, EventKind, HistoryEvent, RunOutcome, RunStatus};
use cairn_lambda::reconciler::{reconcile, reconcile_stalled, ReconcileOptions};
use cairn_tests::TestEnv;
use futures::StreamExt;
use serde_json::json;

fn run_record(run_id: &str, at_ms: u64, history_len: u64) -> RunRecord {
    RunRecord {
        run_id: run_id.parse().unwrap(),
        workflow: "fan-out".into(),
        status: RunStatus::Running,
        input: json!(1),
        output: None,
        error: None,
        version: 1,
        history_len,
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        parent: None,
        last_error: None,
        outbox_pending: false,
    }
}

fn started(at_ms: u64) -> HistoryEvent {
    HistoryEvent::new(
        at_ms,
        EventKind::RunStarted {
            format: cairn::workflow::HISTORY_FORMAT,
            workflow: "fan-out".into(),
            input: json!(1),
        },
    )
}

fn email(seq: u64) -> (HistoryEvent, Command) {
    let input = json!({"to": "a@example.com", "subject": "hi"});
    (
        HistoryEvent::new(
            0,
            EventKind::TaskScheduled {
                retry: None,
                seq,
                name: "notifications.send-email".into(),
                group: "notifications.send-email".into(),
                input: input.clone(),
                attempt: 1,
                timeouts: None,
            },
        ),
        Command::DispatchTask {
            seq,
            name: "notifications.send-email".into(),
            group: "notifications.send-email".into(),
            input,
            attempt: 1,
            timeout_ms: None,
            schedule_to_start_ms: None,
            scheduled_at_ms: None,
        },
    )
}

/// A run's first activation as the engine commits it: its events with the commands issued.
fn first_activation(
    run_id: &str,
    at_ms: u64,
    mut events: Vec<HistoryEvent>,
    outbox: Vec<Command>,
) -> Commit {
    events.insert(0, started(at_ms));
    Commit {
        run: run_record(run_id, at_ms, events.len() as u64),
        expected_version: None,
        events,
        outbox,
        lease: None,
        earlier_due_ms: None,
    }
}

fn sleeping(run_id: &str, at_ms: u64, fire_at_ms: u64) -> Commit {
    let timer = HistoryEvent::new(
        at_ms,
        EventKind::TimerStarted {
            seq: 1,
            timer_id: cairn::workflow::TimerId::Sleep(1),
            fire_at_ms,
        },
    );
    let command = Command::StartTimer {
        seq: 1,
        timer_id: cairn::workflow::TimerId::Sleep(1),
        fire_at_ms,
    };
    first_activation(run_id, at_ms, vec![timer], vec![command])
}

fn waiting_for_signal(run_id: &str, at_ms: u64) -> Commit {
    let wait = HistoryEvent::new(
        at_ms,
        EventKind::SignalWaitStarted {
            seq: 1,
            name: "approval".into(),
        },
    );
    first_activation(run_id, at_ms, vec![wait], vec![])
}

/// The messages on the results queue (reports to parents, fired timers).
async fn results(env: &TestEnv) -> Vec<ResultsMessage> {
    env.receive_bodies(&env.resources.results_queue_url)
        .await
        .iter()
        .map(|b| decode_results_message(b).unwrap())
        .collect()
}

/// The step ids of the email tasks sent, sorted.
async fn emailed(env: &TestEnv) -> Vec<String> {
    let url = &env.resources.task_queue_urls["notifications.send-email"];
    let mut step_ids: Vec<String> = env
        .receive_bodies(url)
        .await
        .iter()
        .map(|body| decode_task(body).unwrap().step_id.to_string())
        .collect();
    step_ids.sort();
    step_ids
}

#[tokio::test]
async fn a_run_stuck_with_unsent_commands_is_redriven_once() {
    let env = TestEnv::new("reconciler", false).await;
    let store = env.clients.store(&env.config);
    let transport = env.clients.transport(&env.config);
    let now = cairn::clock::now_ms();
    let (scheduled, dispatch) = email(1);
    let stuck = first_activation(
        "stuck",
        now - 600_000,
        vec![scheduled.clone()],
        vec![dispatch.clone()],
    );
    store.commit(&stuck).await.unwrap();
    store
        .commit(&waiting_for_signal("idle", now - 600_000))
        .await
        .unwrap();
    let fresh = first_activation(
        "fresh",
        now,
        vec![scheduled.clone()],
        vec![dispatch.clone()],
    );
    store.commit(&fresh).await.unwrap();
    // A task that got its result: its command had its effect and is not sent again.
    let mut answered = first_activation(
        "answered",
        now - 600_000,
        vec![
            scheduled.clone(),
            serde_json::from_value(
                json!({"type": "stepCompleted", "seq": 1, "attempt": 1, "output": 1, "atMs": 0}),
            )
            .unwrap(),
        ],
        vec![dispatch],
    );
    answered.run.history_len = 3;
    store.commit(&answered).await.unwrap();
    // A finished child whose report to its parent was never sent.
    let mut finished = first_activation(
        "finished",
        now - 600_000,
        vec![HistoryEvent::new(
            0,
            EventKind::RunCompleted { output: json!(7) },
        )],
        vec![Command::ReportToParent {
            outcome: RunOutcome::Completed { output: json!(7) },
        }],
    );
    finished.run.status = RunStatus::Completed;
    finished.run.parent = Some(ParentRef {
        run_id: "parent".parse().unwrap(),
        seq: 4,
    });
    store.commit(&finished).await.unwrap();

    let report = reconcile_stalled(&store, &transport, &env.config, None)
        .await
        .unwrap();
    let mut redriven = report.redriven.clone();
    redriven.sort();
    assert_eq!(
        redriven,
        vec!["finished".to_owned(), "stuck".to_owned()],
        "{report:?}"
    );
    // Only activations that issued something and are due are looked at: the run waiting
    // for a signal and the fresh one are not; the answered one is, and is left alone.
    assert_eq!(report.examined, 3, "{report:?}");
    assert_eq!(report.idle, 1, "{report:?}");
    assert!(report.failed.is_empty());

    assert_eq!(emailed(&env).await, vec!["stuck:1"]);
    let reports = results(&env).await;
    assert!(
        matches!(&reports[..], [ResultsMessage::Step(r)] if r.run_id == "parent" && r.seq == 4),
        "{reports:?}"
    );

    // A second pass finds nothing left to send.
    let options = ReconcileOptions {
        before_ms: cairn::clock::now_ms() - 300_000,
        max_runs: 100,
        timer_chunk_seconds: 900,
        deadline: None,
    };
    let again = reconcile(&store, &transport, options).await.unwrap();
    assert!(again.redriven.is_empty(), "{again:?}");
    assert_eq!(again.examined, 0, "{again:?}");
}

#[tokio::test]
async fn an_overdue_timer_whose_message_was_lost_fires_again() {
    let env = TestEnv::new("reconciler-timer", false).await;
    let store = env.clients.store(&env.config);
    let transport = env.clients.transport(&env.config);
    let now = cairn::clock::now_ms();
    store
        .commit(&sleeping("sleeper", now - 600_000, now - 400_000))
        .await
        .unwrap();

    let report = reconcile_stalled(&store, &transport, &env.config, None)
        .await
        .unwrap();
    assert_eq!(
        report.timers_refired,
        vec!["sleeper".to_owned()],
        "{report:?}"
    );

    let fired = results(&env).await;
    assert_eq!(fired.len(), 1);
    assert!(matches!(
        &fired[0],
        ResultsMessage::Control(ControlMessage::TimerFired { timer_id, .. }) if timer_id == "1"
    ));
}

/// Idle runs on purpose (signal waits, long sleeps) do not stand between the reconciler and
/// a newer run whose timer message was lost: it looks only at what is due.
#[tokio::test]
async fn the_newest_of_two_thousand_idle_runs_lost_its_timer_and_is_fired() {
    let env = TestEnv::new("reconciler-idle", false).await;
    let store = env.clients.store(&env.config);
    let transport = env.clients.transport(&env.config);
    let now = cairn::clock::now_ms();
    let commits: Vec<Commit> = (0..2_000u64)
        .map(|i| {
            let at = now - 3_600_000 + i;
            if i % 2 == 0 {
                waiting_for_signal(&format!("idle-{i}"), at)
            } else {
                sleeping(&format!("idle-{i}"), at, now + 86_400_000)
            }
        })
        .collect();
    futures::stream::iter(commits.iter())
        .for_each_concurrent(16, |commit| {
            let store = &store;
            async move { store.commit(commit).await.unwrap() }
        })
        .await;
    store
        .commit(&sleeping("newest", now - 600_000, now - 400_000))
        .await
        .unwrap();

    let report = reconcile_stalled(&store, &transport, &env.config, None)
        .await
        .unwrap();
    assert_eq!(
        report.timers_refired,
        vec!["newest".to_owned()],
        "{report:?}"
    );
    assert_eq!(report.examined, 1, "idle runs are not examined: {report:?}");
    let bodies = env.receive_bodies(&env.resources.results_queue_url).await;
    assert_eq!(bodies.len(), 1);
}

/// An activation that only issues commands writes no due entry of its own when an earlier
/// activation's entry (a timer) comes due within `DUE_COVER_MS`: a checkout's email after its
/// charge with a timeout costs no index write. A command of it that was lost is still sent
/// again, when that entry comes due.
#[tokio::test]
async fn a_lost_command_covered_by_an_earlier_timer_entry_is_sent_again_when_it_comes_due() {
    let env = TestEnv::new("reconciler-covered", false).await;
    let store = env.clients.store(&env.config);
    let transport = env.clients.transport(&env.config);
    let now = cairn::clock::now_ms();
    let (started_at, fire_at, emailed_at) = (now - 900_000, now - 400_000, now - 800_000);
    for (run_id, covered) in [("covered", true), ("uncovered", false)] {
        store
            .commit(&sleeping(run_id, started_at, fire_at))
            .await
            .unwrap();
        let (mut scheduled, dispatch) = email(2);
        scheduled.at_ms = emailed_at;
        let mut run = run_record(run_id, started_at, 3);
        run.version = 2;
        run.updated_at_ms = emailed_at;
        let second = Commit {
            run,
            expected_version: Some(1),
            events: vec![scheduled],
            outbox: vec![dispatch],
            lease: None,
            earlier_due_ms: covered.then_some(fire_at),
        };
        assert_eq!(second.due_ms().is_none(), covered);
        store.commit(&second).await.unwrap();
    }
    // One entry for the covered run (its timer), two for the other.
    let due = store.due_items(0, now + 1_000, 100).await.unwrap();
    let entries = |run_id: &str| {
        due.items
            .iter()
            .filter(|i| i.run_id == run_id)
            .map(|i| i.index)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(entries("covered"), [0].into());
    assert_eq!(entries("uncovered"), [0, 2].into());

    let report = reconcile_stalled(&store, &transport, &env.config, None)
        .await
        .unwrap();
    let mut redriven = report.redriven.clone();
    redriven.sort();
    assert_eq!(redriven, vec!["covered", "uncovered"], "{report:?}");
    assert_eq!(emailed(&env).await, vec!["covered:2", "uncovered:2"]);
}

/// A step's timeout backstop is never sent as a message (the worker enforces the step's
/// timeouts; the backstop is for an attempt nothing answers): the reconciler fires it from
/// the activation's due entry, and leaves it alone once the attempt was answered.
#[tokio::test]
async fn a_timeout_backstop_is_fired_by_the_reconciler_unless_its_attempt_was_answered() {
    let env = TestEnv::new("reconciler-backstop", false).await;
    let store = env.clients.store(&env.config);
    let transport = env.clients.transport(&env.config);
    let now = cairn::clock::now_ms();
    let (started_at, fire_at) = (now - 900_000, now - 400_000);
    let backstop = cairn::workflow::TimerId::Timeout { seq: 1, attempt: 1 };
    for (run_id, answered) in [("unanswered", false), ("answered", true)] {
        let (mut scheduled, dispatch) = email(1);
        scheduled.at_ms = started_at;
        let mut events = vec![
            scheduled,
            HistoryEvent::new(
                started_at,
                EventKind::TimerStarted {
                    seq: 1,
                    timer_id: backstop,
                    fire_at_ms: fire_at,
                },
            ),
        ];
        if answered {
            events.push(
                serde_json::from_value(json!({"type": "stepCompleted", "seq": 1, "attempt": 1,
                    "output": {"messageId": "m"}, "atMs": started_at + 1_000}))
                .unwrap(),
            );
        }
        let commands = vec![
            dispatch,
            Command::StartTimer {
                seq: 1,
                timer_id: backstop,
                fire_at_ms: fire_at,
            },
        ];
        store
            .commit(&first_activation(run_id, started_at, events, commands))
            .await
            .unwrap();
    }
    let report = reconcile_stalled(&store, &transport, &env.config, None)
        .await
        .unwrap();
    assert_eq!(report.timers_refired, vec!["unanswered"], "{report:?}");
    let fired = results(&env).await;
    assert!(
        matches!(&fired[..], [ResultsMessage::Control(ControlMessage::TimerFired { run_id, timer_id, .. })]
            if run_id == "unanswered" && timer_id == "1:timeout:1"),
        "{fired:?}"
    );
}
