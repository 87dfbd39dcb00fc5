//! A wide outbox handed on by `resumeOutbox` continuations: each invocation sends its slice,
//! records the progress, releases the lease and acknowledges its record; the continuation
//! goes on from the progress, so every task is sent once and no record is failed. Stale and
//! duplicate continuations are ignored; one redelivered while the lease is held comes back.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use cairn::contract::{encode, ControlMessage, RemoteTask, StepResult};
use cairn::store::{CheckpointStore, MemoryBlobStore, MemoryStore, OutboxLease};
use cairn::transport::{ControlSender, MemoryTransport, ResultSender, TaskSender, TransportError};
use cairn::workflow::{RemoteStep, WorkflowContext, WorkflowError, Workflows};
use cairn_lambda::engine::{Engine, EngineOptions, WideOptions};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;

const PING: RemoteStep<usize, usize> = RemoteStep::new("net.ping");
const WIDTH: usize = 450;
const GROUP: usize = 100;

async fn fan(ctx: WorkflowContext, n: usize) -> Result<usize, WorkflowError> {
    let calls: Vec<_> = (0..n).map(|i| ctx.remote(&PING, i)).collect();
    let done = futures::future::join_all(calls).await;
    Ok(done.into_iter().filter(Result::is_ok).count())
}

fn event(message: &ControlMessage, receive_count: u32) -> LambdaEvent<SqsEvent> {
    let mut record = SqsMessage::default();
    record.message_id = Some(uuid::Uuid::new_v4().to_string());
    record.body = Some(encode(message));
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    let mut event = SqsEvent::default();
    event.records = vec![record];
    LambdaEvent::new(event, Context::default())
}

/// A memory transport the test reads while the engine sends through it.
#[derive(Clone)]
struct Shared(Arc<MemoryTransport>);

impl TaskSender for Shared {
    async fn send_tasks(&self, tasks: &[RemoteTask]) -> Result<(), TransportError> {
        self.0.send_tasks(tasks).await
    }
}

impl ResultSender for Shared {
    async fn send_results(&self, results: &[StepResult]) -> Result<(), TransportError> {
        self.0.send_results(results).await
    }
}

impl ControlSender for Shared {
    async fn send_control(&self, messages: &[(ControlMessage, u32)]) -> Result<(), TransportError> {
        self.0.send_control(messages).await
    }
}

type TestEngine = Engine<MemoryStore, Shared, MemoryBlobStore>;

fn engine(transport: Arc<MemoryTransport>) -> TestEngine {
    let mut workflows = Workflows::new();
    workflows.register("fan", fan);
    Engine::new(
        Arc::new(workflows),
        MemoryStore::new(),
        Shared(transport),
        MemoryBlobStore::default(),
        EngineOptions {
            // One group per invocation: every invocation hands the rest on.
            wide: WideOptions {
                group: GROUP,
                slice: Some(Duration::ZERO),
            },
            ..EngineOptions::default()
        },
    )
}

/// The `resumeOutbox` messages sent so far.
fn resumes(transport: &MemoryTransport) -> Vec<ControlMessage> {
    transport
        .control
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| matches!(m, ControlMessage::ResumeOutbox { .. }))
        .map(|(m, _)| m.clone())
        .collect()
}

fn seqs(tasks: &[RemoteTask]) -> Vec<u64> {
    tasks.iter().map(|t| t.seq).collect()
}

#[tokio::test]
async fn a_wide_outbox_goes_out_in_slices_handed_on_once_each_and_sent_once() {
    let transport = Arc::new(MemoryTransport::default());
    let engine = engine(transport.clone());
    let start = ControlMessage::StartRun {
        run_id: "wide".parse().unwrap(),
        workflow: "fan".into(),
        input: json!(WIDTH),
        parent: None,
    };
    let response = engine.handle(event(&start, 1)).await.unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "the start record is acknowledged after its slice: {response:?}"
    );
    assert_eq!(transport.tasks.lock().unwrap().len(), GROUP);
    assert_eq!(resumes(&transport).len(), 1, "the rest is handed on");

    // Each continuation sends one more group and hands on again, until all is sent.
    let mut handled = 0;
    while let Some(next) = resumes(&transport).get(handled).cloned() {
        handled += 1;
        let response = engine.handle(event(&next, 1)).await.unwrap();
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        assert!(
            handled <= WIDTH / GROUP,
            "no more continuations than slices"
        );
    }
    assert_eq!(handled, WIDTH.div_ceil(GROUP) - 1);
    let tasks = transport.tasks.lock().unwrap().clone();
    let mut distinct = seqs(&tasks);
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(tasks.len(), WIDTH, "each task sent once");
    assert_eq!(distinct.len(), WIDTH, "every task sent");
    let loaded = engine.store().load("wide").await.unwrap().unwrap();
    assert!(loaded.outbox.is_empty(), "a finished outbox is cleared");

    // A duplicate of a continuation, after the outbox went out: ignored, nothing sent.
    let last = resumes(&transport).last().cloned().unwrap();
    let before = cairn_lambda::metrics::counted(cairn_lambda::metrics::IGNORED, "resume_sent");
    let response = engine.handle(event(&last, 1)).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(transport.tasks.lock().unwrap().len(), WIDTH);
    assert_eq!(
        cairn_lambda::metrics::counted(cairn_lambda::metrics::IGNORED, "resume_sent"),
        before + 1
    );
}

#[tokio::test]
async fn a_continuation_leaves_a_held_outbox_to_its_holder_unless_redelivered() {
    let transport = Arc::new(MemoryTransport::default());
    let engine = engine(transport.clone());
    let start = ControlMessage::StartRun {
        run_id: "held".parse().unwrap(),
        workflow: "fan".into(),
        input: json!(WIDTH),
        parent: None,
    };
    engine.handle(event(&start, 1)).await.unwrap();
    let resume = resumes(&transport)[0].clone();
    let loaded = engine.store().load("held").await.unwrap().unwrap();
    let pending = loaded.outbox[0].clone();
    assert_eq!(pending.sent, GROUP, "progress recorded when handed on");
    let released = pending.lease.clone().unwrap();
    assert_eq!(released.until_ms, 0, "the lease is released when handed on");

    // Another sender takes it (a duplicate continuation that got there first).
    let other = OutboxLease {
        owner: "other".into(),
        until_ms: cairn::clock::now_ms() + 30_000,
    };
    engine
        .store()
        .lease_outbox("held", pending.key, &released, &other, pending.sent)
        .await
        .unwrap();
    let response = engine.handle(event(&resume, 1)).await.unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "a duplicate is ignored"
    );
    assert_eq!(
        transport.tasks.lock().unwrap().len(),
        GROUP,
        "nothing sent twice"
    );
    let response = engine.handle(event(&resume, 2)).await.unwrap();
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "redelivered while held: it may be the holder's own record, so it comes back"
    );
    assert_eq!(transport.tasks.lock().unwrap().len(), GROUP);

    // The holder died: once its lease expired, the redelivery goes on from the progress.
    let expired = OutboxLease {
        owner: "other".into(),
        until_ms: 1,
    };
    engine
        .store()
        .lease_outbox("held", pending.key, &other, &expired, pending.sent)
        .await
        .unwrap();
    let response = engine.handle(event(&resume, 3)).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let tasks = transport.tasks.lock().unwrap().clone();
    assert_eq!(
        seqs(&tasks[GROUP..]),
        seqs(&tasks[..GROUP])
            .iter()
            .map(|s| s + GROUP as u64)
            .collect::<Vec<_>>(),
        "the next group, from the recorded progress"
    );
}

#[tokio::test]
async fn a_send_with_no_time_left_hands_everything_on_without_failing_its_record() {
    let transport = Arc::new(MemoryTransport::default());
    let engine = engine(transport.clone());
    let start = ControlMessage::StartRun {
        run_id: "late".parse().unwrap(),
        workflow: "fan".into(),
        input: json!(WIDTH),
        parent: None,
    };
    // 7 s left: the sending deadline (6 s before the end) is 1 s away, less than a wave may
    // take, so nothing is begun.
    let mut late = event(&start, 1);
    let end = std::time::SystemTime::now() + Duration::from_secs(7);
    late.context.deadline = end
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let before =
        cairn_lambda::metrics::counted(cairn_lambda::metrics::WIDE_OUTBOX_HANDED_ON, "deadline");
    let response = engine.handle(late).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(transport.tasks.lock().unwrap().is_empty());
    assert_eq!(
        cairn_lambda::metrics::counted(cairn_lambda::metrics::WIDE_OUTBOX_HANDED_ON, "deadline"),
        before + 1
    );
    let loaded = engine.store().load("late").await.unwrap().unwrap();
    let pending = &loaded.outbox[0];
    assert_eq!(pending.sent, 0);
    assert_eq!(pending.lease.as_ref().unwrap().until_ms, 0, "released");

    // The continuation, with time, goes on (one group per invocation here).
    let resume = resumes(&transport)[0].clone();
    let response = engine.handle(event(&resume, 1)).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(transport.tasks.lock().unwrap().len(), GROUP);
}
