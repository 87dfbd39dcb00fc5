//! Long waits on the local stack: timers due past the threshold become one EventBridge
//! Scheduler schedule each (moto over HTTP), fired by the local firing loop, and withdrawn when
//! the run stops waiting for them. The threshold is 3 s here, so a 6 s sleep takes the
//! scheduler path; the schedule fires 2 s early and the engine delays the rest.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cairn::contract::{ControlMessage, RunId};
use cairn::store::CheckpointStore;
use cairn::transport::{schedule_name, ControlSender};
use cairn::workflow::{EventKind, RunStatus, WorkflowContext, WorkflowError, Workflows};
use cairn_demo::worker;
use cairn_eventbridge::parse_at_expression;
use cairn_tests::{LongWaits, TestEnv};
use serde_json::{json, Value};

const THIRTY_DAYS: Duration = Duration::from_secs(30 * 86_400);

fn workflows() -> Workflows {
    let mut workflows = cairn_demo::workflows();
    workflows
        .register("approval", |ctx: WorkflowContext, _: Value| async move {
            let approval: Option<Value> =
                ctx.wait_for_signal_timeout("approval", THIRTY_DAYS).await?;
            Ok::<_, WorkflowError>(json!({ "approved": approval.is_some() }))
        })
        .register("month", |ctx: WorkflowContext, _: Value| async move {
            ctx.sleep(THIRTY_DAYS).await?;
            Ok::<_, WorkflowError>(json!("slept"))
        });
    workflows
}

/// Names of the schedules in the group, with their `at(...)` instants.
async fn schedules(long_waits: &LongWaits) -> Vec<(String, u64)> {
    let listed = long_waits
        .scheduler
        .list_schedules()
        .group_name(&long_waits.target.group)
        .send()
        .await
        .unwrap();
    let mut found = Vec::new();
    for summary in listed.schedules {
        let name = summary.name.unwrap();
        let schedule = long_waits
            .scheduler
            .get_schedule()
            .group_name(&long_waits.target.group)
            .name(&name)
            .send()
            .await
            .unwrap();
        let at = parse_at_expression(&schedule.schedule_expression.unwrap()).unwrap();
        found.push((name, at));
    }
    found
}

fn count(env: &TestEnv, operation: &str) -> u64 {
    env.counter
        .snapshot()
        .iter()
        .filter(|((_, op), _)| op == operation)
        .map(|(_, n)| n)
        .sum()
}

/// `(timer id, fire at)` of the run's started timers.
async fn started_timers(env: &TestEnv, run_id: &str) -> Vec<(String, u64)> {
    let loaded = env
        .clients
        .store(&env.config)
        .load(run_id)
        .await
        .unwrap()
        .unwrap();
    loaded.started_timers().collect()
}

async fn wait_for_schedules(long_waits: &LongWaits, n: usize) -> Vec<(String, u64)> {
    for _ in 0..50 {
        let found = schedules(long_waits).await;
        if found.len() == n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    schedules(long_waits).await
}

#[tokio::test]
async fn a_long_sleep_is_one_schedule_fired_once_and_ends_on_time() {
    long_sleep(false).await;
}

#[tokio::test]
async fn with_fifo_queues_the_schedule_sends_to_the_standard_timers_queue() {
    long_sleep(true).await;
}

async fn long_sleep(fifo: bool) {
    let env = TestEnv::new("long-sleep", fifo).await;
    assert_eq!(
        env.resources.timer_target_arn.ends_with("-timers"),
        fifo,
        "{}",
        env.resources.timer_target_arn
    );
    let long_waits = env.long_waits(3, 2).await;
    let mut runtime = env
        .run(env.long_wait_engine(workflows(), &long_waits), worker())
        .await;
    let firing = env.schedule_firing(&long_waits).await;
    runtime.fire_schedules(firing.clone(), Duration::from_millis(200));
    let client = env.client();
    let run_id = client
        .start("timer", json!(6), Some("sleeper".into()))
        .await
        .unwrap();

    let found = wait_for_schedules(&long_waits, 1).await;
    let timers = started_timers(&env, &run_id).await;
    let [(timer_id, fire_at_ms)] = timers.as_slice() else {
        panic!("one timer: {timers:?}")
    };
    assert_eq!(
        found,
        vec![(
            schedule_name(&run_id, timer_id, *fire_at_ms),
            (fire_at_ms - 2_000) / 1000 * 1000
        )],
        "one schedule, named after the timer, due 2 s early"
    );

    let run = client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    let loaded = env
        .clients
        .store(&env.config)
        .load(&run_id)
        .await
        .unwrap()
        .unwrap();
    let fired_at = loaded
        .history
        .iter()
        .find(|e| matches!(e.kind, EventKind::TimerFired { .. }))
        .unwrap()
        .at_ms;
    // To the second: the engine applies a timer due within 500 ms, and the last SQS delay
    // is whole seconds (polling adds a little).
    assert!(
        fired_at + 500 >= *fire_at_ms && fired_at < fire_at_ms + 2_000,
        "the timer fired at {fired_at}, due at {fire_at_ms}"
    );
    assert_eq!(firing.invocations(), 1, "one scheduler invocation");
    assert_eq!(count(&env, "CreateSchedule"), 1);
    assert!(
        schedules(&long_waits).await.is_empty(),
        "the schedule deleted itself after it ran"
    );
    runtime.stop();
}

#[tokio::test]
async fn a_signal_before_its_long_timeout_deletes_the_schedule() {
    let env = TestEnv::new("long-signal", false).await;
    let long_waits = env.long_waits(3, 2).await;
    let mut runtime = env
        .run(env.long_wait_engine(workflows(), &long_waits), worker())
        .await;
    let firing = env.schedule_firing(&long_waits).await;
    runtime.fire_schedules(firing.clone(), Duration::from_millis(200));
    let client = env.client();
    let run_id = client
        .start("approval", json!(null), Some("approver".into()))
        .await
        .unwrap();
    let found = wait_for_schedules(&long_waits, 1).await;
    assert_eq!(
        found.len(),
        1,
        "the 30-day timeout is a schedule: {found:?}"
    );

    client
        .signal(&run_id, "approval", json!({"by": "ops"}))
        .await
        .unwrap();
    let run = client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(json!({ "approved": true })));
    assert!(
        wait_for_schedules(&long_waits, 0).await.is_empty(),
        "the released timeout's schedule is deleted"
    );
    assert_eq!(count(&env, "DeleteSchedule"), 1);
    assert_eq!(firing.invocations(), 0);
    runtime.stop();
}

#[tokio::test]
async fn a_cancelled_run_deletes_its_pending_long_wait() {
    let env = TestEnv::new("long-cancel", false).await;
    let long_waits = env.long_waits(3, 2).await;
    let mut runtime = env
        .run(env.long_wait_engine(workflows(), &long_waits), worker())
        .await;
    let client = env.client();
    let run_id = client
        .start("month", json!(null), Some("sleepy".into()))
        .await
        .unwrap();
    assert_eq!(wait_for_schedules(&long_waits, 1).await.len(), 1);

    client
        .cancel(&run_id, Some("changed my mind".into()))
        .await
        .unwrap();
    let run = client.wait(&run_id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(
        wait_for_schedules(&long_waits, 0).await.is_empty(),
        "the cancelled run's schedule is deleted"
    );
    runtime.stop();
}

#[tokio::test]
async fn a_duplicate_activation_creates_the_schedule_once() {
    let env = TestEnv::new("long-dup", false).await;
    let long_waits = env.long_waits(3, 2).await;
    let engine = env.long_wait_engine(workflows(), &long_waits);
    let client = env.client();
    let run_id = client
        .start("month", json!(null), Some("twice".into()))
        .await
        .unwrap();
    // The start record, delivered twice (SQS is at least once).
    let received = env
        .clients
        .sqs
        .receive_message()
        .queue_url(&env.resources.results_queue_url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let message = received.messages.unwrap().remove(0);
    let mut record = aws_lambda_events::event::sqs::SqsMessage::default();
    record.message_id = message.message_id;
    record.body = message.body;
    engine.process_record(&record).await.unwrap();
    engine.process_record(&record).await.unwrap();
    // And its outbox re-sent, as a redelivery after a crash before the outbox was cleared
    // (or the reconciler) does.
    let timers = started_timers(&env, &run_id).await;
    let [(timer_id, fire_at_ms)] = timers.as_slice() else {
        panic!("one timer: {timers:?}")
    };
    let again = ControlMessage::TimerFired {
        run_id: RunId::parse(run_id.as_str()).unwrap(),
        timer_id: timer_id.clone(),
        fire_at_ms: *fire_at_ms,
    };
    env.long_wait_transport(&long_waits)
        .send_control(&[(again, 900)])
        .await
        .unwrap();

    let found = schedules(&long_waits).await;
    assert_eq!(
        found,
        vec![(
            schedule_name(&run_id, timer_id, *fire_at_ms),
            (fire_at_ms - 2_000) / 1000 * 1000
        )]
    );
    assert_eq!(
        count(&env, "CreateSchedule"),
        2,
        "the re-sent outbox asked again and was told the schedule exists"
    );
}

#[tokio::test]
async fn the_reconciler_fires_an_overdue_long_wait_whose_schedule_is_missing() {
    use cairn::store::{Commit, RunRecord};
    use cairn::workflow::{HistoryEvent, TimerId, HISTORY_FORMAT};

    let env = TestEnv::new("long-lost", false).await;
    let long_waits = env.long_waits(3, 2).await;
    let store = env.clients.store(&env.config);
    // A 30-day sleep started 30 days ago whose schedule is gone (deleted by hand, or its
    // create failed): nothing will ever deliver its timer.
    let now = cairn::clock::now_ms();
    let started = now - THIRTY_DAYS.as_millis() as u64 - 300_000;
    let run = RunRecord {
        run_id: "lost".parse().unwrap(),
        workflow: "month".into(),
        status: RunStatus::Running,
        input: json!(null),
        output: None,
        error: None,
        version: 1,
        history_len: 2,
        created_at_ms: started,
        updated_at_ms: started,
        parent: None,
        last_error: None,
        outbox_pending: false,
    };
    let events = vec![
        HistoryEvent::new(
            started,
            EventKind::RunStarted {
                format: HISTORY_FORMAT,
                workflow: "month".into(),
                input: json!(null),
            },
        ),
        HistoryEvent::new(
            started,
            EventKind::TimerStarted {
                seq: 1,
                timer_id: TimerId::Sleep(1),
                fire_at_ms: now - 300_000,
            },
        ),
    ];
    // The engine commits the timer's command with its events (that is what puts the
    // activation in the reconciler's due index).
    let outbox = vec![cairn::workflow::Command::StartTimer {
        seq: 1,
        timer_id: TimerId::Sleep(1),
        fire_at_ms: now - 300_000,
    }];
    store
        .commit(&Commit {
            run,
            expected_version: None,
            events,
            outbox,
            lease: None,
            earlier_due_ms: None,
        })
        .await
        .unwrap();
    assert!(schedules(&long_waits).await.is_empty());

    // The reconciler, with the engine's long-wait transport, fires it again.
    let report = cairn_lambda::reconciler::reconcile_stalled(
        &store,
        &env.long_wait_transport(&long_waits),
        &env.config,
        None,
    )
    .await
    .unwrap();
    assert_eq!(report.timers_refired, vec!["lost".to_owned()], "{report:?}");
    assert!(
        schedules(&long_waits).await.is_empty(),
        "an overdue timer is sent at once, not scheduled"
    );
    let mut runtime = env
        .run(env.long_wait_engine(workflows(), &long_waits), worker())
        .await;
    let run = env
        .client()
        .wait("lost", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    runtime.stop();
}
