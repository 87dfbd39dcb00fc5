//! A wide outbox (a fan-out's commands) whose sender crashes mid-send: a concurrent delivery
//! does not send it again while the lease is held, and once the lease expired the redelivered
//! record resumes from the recorded progress, so only what was not recorded as sent goes out.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use cairn::contract::{encode, ControlMessage, RemoteTask, StepResult};
use cairn::infra::{InfraError, InfraErrorKind};
use cairn::store::{CheckpointStore, MemoryBlobStore, MemoryStore, OutboxLease};
use cairn::transport::{ControlSender, MemoryTransport, ResultSender, TaskSender, TransportError};
use cairn::workflow::{Command, RemoteStep, WorkflowContext, WorkflowError, Workflows};
use cairn_lambda::engine::{Engine, EngineOptions};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::json;

const PING: RemoteStep<usize, usize> = RemoteStep::new("net.ping");
const WIDTH: usize = 600;

async fn fan(ctx: WorkflowContext, n: usize) -> Result<usize, WorkflowError> {
    let calls: Vec<_> = (0..n).map(|i| ctx.remote(&PING, i)).collect();
    let done = futures::future::join_all(calls).await;
    Ok(done.into_iter().filter(Result::is_ok).count())
}

/// Sends until its budget is spent, then fails every message after it (the process died
/// there: nothing after the budget left).
#[derive(Clone)]
struct Crashing {
    sent: Arc<MemoryTransport>,
    budget: Arc<AtomicUsize>,
}

impl TaskSender for Crashing {
    async fn send_tasks(&self, tasks: &[RemoteTask]) -> Result<(), TransportError> {
        let budget = self.budget.load(Ordering::SeqCst);
        let n = budget.min(tasks.len());
        self.budget.store(budget - n, Ordering::SeqCst);
        self.sent.send_tasks(&tasks[..n]).await?;
        if n == tasks.len() {
            return Ok(());
        }
        Err(TransportError::Partial {
            failed: (n..tasks.len()).collect(),
            cause: InfraError::new("SendMessageBatch", InfraErrorKind::Other, "crashed"),
        })
    }
}

impl ResultSender for Crashing {
    async fn send_results(&self, results: &[StepResult]) -> Result<(), TransportError> {
        self.sent.send_results(results).await
    }
}

impl ControlSender for Crashing {
    async fn send_control(&self, messages: &[(ControlMessage, u32)]) -> Result<(), TransportError> {
        self.sent.send_control(messages).await
    }
}

fn start_event(receive_count: u32) -> LambdaEvent<SqsEvent> {
    let mut record = SqsMessage::default();
    record.message_id = Some("m-start".into());
    record.body = Some(encode(&ControlMessage::StartRun {
        run_id: "wide".parse().unwrap(),
        workflow: "fan".into(),
        input: json!(WIDTH),
        parent: None,
    }));
    record
        .attributes
        .insert("ApproximateReceiveCount".into(), receive_count.to_string());
    let mut event = SqsEvent::default();
    event.records = vec![record];
    LambdaEvent::new(event, Context::default())
}

fn seqs(tasks: &[RemoteTask]) -> Vec<u64> {
    tasks.iter().map(|t| t.seq).collect()
}

#[tokio::test]
async fn a_wide_outbox_cut_by_a_crash_is_resumed_from_its_progress_and_sent_once() {
    let mut workflows = Workflows::new();
    workflows.register("fan", fan);
    let transport = Crashing {
        sent: Arc::new(MemoryTransport::default()),
        // The first progress record comes after 250 commands; the crash hits 50 later.
        budget: Arc::new(AtomicUsize::new(300)),
    };
    let engine = Engine::new(
        Arc::new(workflows),
        MemoryStore::new(),
        transport.clone(),
        MemoryBlobStore::default(),
        EngineOptions::default(),
    );
    let tasks = || transport.sent.tasks.lock().unwrap().clone();

    let response = engine.handle(start_event(1)).await.unwrap();
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "the crashed send fails its record"
    );
    assert_eq!(tasks().len(), 300);
    let loaded = engine.store().load("wide").await.unwrap().unwrap();
    let pending = &loaded.outbox[0];
    assert_eq!(pending.commands.len(), WIDTH);
    assert_eq!(pending.sent, 250, "progress recorded per group of 250");
    let lease = pending.lease.clone().unwrap();

    // Redelivered while the dead sender's lease still holds: nothing is sent again.
    transport.budget.store(usize::MAX, Ordering::SeqCst);
    let response = engine.handle(start_event(2)).await.unwrap();
    assert_eq!(
        response.batch_item_failures.len(),
        1,
        "comes back after the lease"
    );
    assert_eq!(tasks().len(), 300, "a held lease keeps other senders off");

    // The lease runs out (as time would make it): the next delivery resumes at 250.
    let expired = OutboxLease {
        owner: lease.owner.clone(),
        until_ms: 0,
    };
    engine
        .store()
        .lease_outbox("wide", pending.key, &lease, &expired, pending.sent)
        .await
        .unwrap();
    let response = engine.handle(start_event(3)).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let all = tasks();
    let resumed = seqs(&all[300..]);
    let expected: Vec<u64> = pending.commands[250..]
        .iter()
        .filter_map(|c| match c {
            Command::DispatchTask { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        resumed, expected,
        "only the commands not recorded as sent go out (from 250 on)"
    );
    let mut distinct = seqs(&all);
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), WIDTH, "every task sent");
    assert_eq!(
        all.len(),
        WIDTH + 50,
        "resent: only the 50 sent after the last progress record"
    );
    let loaded = engine.store().load("wide").await.unwrap().unwrap();
    assert!(loaded.outbox.is_empty(), "a finished outbox is cleared");
}
