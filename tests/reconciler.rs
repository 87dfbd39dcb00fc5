//! The reconciler on the local stack: a run whose commands were committed but never sent
//! (a crash between commit and send, its record gone) is found and re-driven.

#![allow(clippy::unwrap_used)]

use cairn::contract::decode_task;
use cairn::store::{CheckpointStore, Commit, RunRecord};
use cairn::workflow::{Command, EventKind, HistoryEvent, RunStatus};
use cairn_lambda::reconciler::{reconcile, reconcile_stalled, ReconcileOptions};
use cairn_tests::TestEnv;
use serde_json::json;

fn stuck_run(run_id: &str, updated_at_ms: u64, with_outbox: bool) -> Commit {
    let run = RunRecord {
        run_id: run_id.parse().unwrap(),
        workflow: "fan-out".into(),
        status: RunStatus::Running,
        input: json!(1),
        output: None,
        error: None,
        version: 1,
        history_len: 2,
        created_at_ms: updated_at_ms,
        updated_at_ms,
        parent: None,
        last_error: None,
        outbox_pending: with_outbox,
    };
    let events = vec![
        HistoryEvent::new(
            updated_at_ms,
            EventKind::RunStarted {
                format: cairn::workflow::HISTORY_FORMAT,
                workflow: "fan-out".into(),
                input: json!(1),
            },
        ),
        HistoryEvent::new(
            updated_at_ms,
            EventKind::TaskScheduled {
                retry: None,
                seq: 1,
                name: "notifications.send-email".into(),
                group: "notifications.send-email".into(),
                input: json!({"to": "a@example.com", "subject": "hi"}),
                attempt: 1,
            },
        ),
    ];
    let outbox = if with_outbox {
        vec![Command::DispatchTask {
            seq: 1,
            name: "notifications.send-email".into(),
            group: "notifications.send-email".into(),
            input: json!({"to": "a@example.com", "subject": "hi"}),
            attempt: 1,
            timeout_ms: None,
        }]
    } else {
        vec![]
    };
    Commit {
        run,
        expected_version: None,
        events,
        outbox,
    }
}

#[tokio::test]
async fn a_run_stuck_with_unsent_commands_is_redriven_once() {
    let env = TestEnv::new("reconciler", false).await;
    let store = env.clients.store(&env.config);
    let transport = env.clients.transport(&env.config);
    let now = cairn::clock::now_ms();
    store
        .commit(&stuck_run("stuck", now - 600_000, true))
        .await
        .unwrap();
    store
        .commit(&stuck_run("idle", now - 600_000, false))
        .await
        .unwrap();
    store.commit(&stuck_run("fresh", now, true)).await.unwrap();
    // A finished child whose report to its parent was never sent: not `running`, but its
    // pending outbox puts it in the index the reconciler reads first.
    let mut finished = stuck_run("finished", now - 600_000, true);
    finished.run.status = RunStatus::Completed;
    store.commit(&finished).await.unwrap();

    let report = reconcile_stalled(&store, &transport, &env.config)
        .await
        .unwrap();
    let mut redriven = report.redriven.clone();
    redriven.sort();
    assert_eq!(
        redriven,
        vec!["finished".to_owned(), "stuck".to_owned()],
        "{report:?}"
    );
    // Pending-outbox phase: finished, stuck. Stalled-running phase (timers): stuck, idle —
    // neither has an overdue timer. The fresh run is in neither yet.
    assert_eq!(report.examined, 4, "{report:?}");
    assert_eq!(
        report.idle, 2,
        "runs waiting with nothing to send are left alone"
    );
    assert!(report.failed.is_empty());

    let url = &env.resources.task_queue_urls["notifications.send-email"];
    let tasks: Vec<_> = env
        .receive_bodies(url)
        .await
        .iter()
        .map(|body| decode_task(body).unwrap())
        .collect();
    let mut step_ids: Vec<&str> = tasks.iter().map(|t| t.step_id.as_str()).collect();
    step_ids.sort();
    assert_eq!(step_ids, vec!["finished:1", "stuck:1"]);
    assert!(
        store
            .load("stuck")
            .await
            .unwrap()
            .unwrap()
            .outbox
            .is_empty(),
        "the outbox is cleared after the re-drive"
    );

    // A second pass finds nothing left to send.
    let options = ReconcileOptions {
        before_ms: now - 300_000,
        max_runs: 100,
        timer_chunk_seconds: 900,
    };
    let again = reconcile(&store, &transport, options).await.unwrap();
    assert!(again.redriven.is_empty());
}

#[tokio::test]
async fn an_overdue_timer_whose_message_was_lost_fires_again() {
    let env = TestEnv::new("reconciler-timer", false).await;
    let store = env.clients.store(&env.config);
    let transport = env.clients.transport(&env.config);
    let now = cairn::clock::now_ms();
    let mut sleeper = stuck_run("sleeper", now - 600_000, false);
    sleeper.events[1] = HistoryEvent::new(
        now - 600_000,
        EventKind::TimerStarted {
            seq: 1,
            timer_id: cairn::workflow::TimerId::Sleep(1),
            fire_at_ms: now - 300_000,
        },
    );
    store.commit(&sleeper).await.unwrap();

    let report = reconcile_stalled(&store, &transport, &env.config)
        .await
        .unwrap();
    assert_eq!(
        report.timers_refired,
        vec!["sleeper".to_owned()],
        "{report:?}"
    );

    let bodies = env.receive_bodies(&env.resources.results_queue_url).await;
    let fired: Vec<_> = bodies
        .iter()
        .map(|b| cairn::contract::decode_results_message(b).unwrap())
        .collect();
    assert_eq!(fired.len(), 1);
    assert!(matches!(
        &fired[0],
        cairn::contract::ResultsMessage::Control(cairn::contract::ControlMessage::TimerFired { timer_id, .. }) if timer_id == "1"
    ));
}
