//! The engine Lambda's logic: consume the results queue, checkpoint, replay, send.
//!
//! For each record: decode (claim checks resolved) → load the run → activation (replay) →
//! commit the events with the commands they issued (one conditional write) → send the new
//! commands. A lost race ([`StoreError::Conflict`]) re-runs the activation on fresh state;
//! anything else fails the record alone, so SQS redelivers it (and dead-letters it after
//! `maxReceiveCount`).
//!
//! The outbox guarantee without an outbox write: a record is deleted only after its commands
//! were sent, so a crash between commit and send brings the record back. A redelivered
//! record whose effect is already in the history re-sends the commands of the activation
//! that recorded it (receivers are idempotent). A wide outbox (a fan-out) is sent under a
//! lease with its progress recorded, bounded by the Lambda deadline, and resumed where it
//! stopped. The reconciler covers records that were dead-lettered.
//!
//! Here: the engine, its batch loop and the grouping of records by run. `activate` (one
//! activation: optimistic, then on the run as stored), `received` (decoded messages →
//! `Incoming`), `error` (record failures), `repair` (lost run items, unstorable
//! activations), `outbox`/`deferred`/`wide` (sending), `moot`/`release` (timers dropped or
//! released), `optimism` (when to trust the warm copy).

mod activate;
mod deferred;
mod error;
mod moot;
mod optimism;
mod outbox;
mod received;
mod release;
mod repair;
mod unstorable;
mod wide;

pub use error::RecordError;
use error::{failure, reject};
use received::{redelivered, to_incoming, Received};

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;

use crate::backoff::Backoff;
use crate::batch::{
    batch_response, process_records, process_units, time_left, BatchOptions, RecordFailure, Unit,
};
use cairn::contract::{
    decode_results_message, ControlMessage, DecodeError, ResultsMessage, RunId, StepStatus,
};
use cairn::store::{
    BlobStore, CheckpointStore, Commit, LoadedRun, OutboxLease, RunRecord, StoreError, WIDE_OUTBOX,
};
use cairn::transport::{resolve_body, ControlSender, ResultSender, TaskSender, TransportError};
use cairn::workflow::{
    activate, ActivationRequest, EngineError, EventKind, Incoming, RunStatus, Workflows,
};

pub use outbox::{send_commands, send_outbox};
pub use wide::{lease_until, resume as resume_wide, send_wide, WideOptions, LEASE_MS};

/// How often a conflicting activation is re-run before the record is handed back to SQS.
const MAX_CONFLICT_RETRIES: usize = 5;

/// Events a run's history may hold; past it the run fails (the remedy is
/// `continue_as_new`). Replaying it stays within a Lambda's memory and time.
pub const MAX_HISTORY_EVENTS: u64 = 100_000;
/// A run past this share of the limit is warned about at every activation.
const HISTORY_WARN_PERCENT: u64 = 80;
/// The error code of a run failed for its history size.
pub const HISTORY_LIMIT_CODE: &str = "history_limit";

/// Anything that can send what the engine sends.
pub trait EngineTransport: TaskSender + ResultSender + ControlSender {}
impl<T: TaskSender + ResultSender + ControlSender> EngineTransport for T {}

/// The engine: its workflows and its ports.
pub struct Engine<S, T, B> {
    workflows: Arc<Workflows>,
    store: S,
    transport: T,
    blobs: B,
    options: EngineOptions,
    moot: moot::MootTimers,
    backoff: Option<Backoff>,
    optimism: optimism::Optimism,
}

/// Engine settings.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// FIFO results queue.
    pub fifo: bool,
    /// Runs processed at once within a batch.
    pub concurrency: usize,
    /// Longest single delay for timers; longer ones are chained.
    pub timer_chunk_seconds: u32,
    /// How wide outboxes (fan-outs) are sent: group size, time slice per invocation.
    pub wide: WideOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            fifo: false,
            concurrency: 10,
            timer_chunk_seconds: 900,
            wide: WideOptions::default(),
        }
    }
}

pub use cairn::clock::now_ms;

impl<S: CheckpointStore, T: EngineTransport, B: BlobStore> Engine<S, T, B> {
    /// An engine hosting `workflows`.
    pub fn new(
        workflows: Arc<Workflows>,
        store: S,
        transport: T,
        blobs: B,
        options: EngineOptions,
    ) -> Self {
        Self {
            workflows,
            store,
            transport,
            blobs,
            options,
            moot: moot::MootTimers::default(),
            backoff: None,
            optimism: optimism::Optimism::default(),
        }
    }

    /// Failed records are backed off (transient failures) and warned of (last receive)
    /// through `backoff` after each batch.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// The store (for tests and tools).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The Lambda handler: one results-queue batch in, its batch item failures out.
    pub async fn handle(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let left = time_left(&event.context);
        let options = BatchOptions {
            fifo: self.options.fifo,
            concurrency: self.options.concurrency,
            time_left: left,
            ..BatchOptions::default()
        };
        // Sending a wide outbox stops this long before the deadline (progress is recorded).
        let deadline =
            left.map(|d| std::time::Instant::now() + d.saturating_sub(options.deadline_margin * 4));
        // The batch's sends end before the Lambda does (what is cut off is re-sent by the
        // records, reported as failures).
        let flush_by =
            left.map(|d| std::time::Instant::now() + d.saturating_sub(options.deadline_margin / 2));
        let records = event.payload.records;
        if options.fifo {
            // FIFO: the queue already orders each run's messages (group = run id); keep that
            // order record by record.
            let run_of = std::sync::Mutex::new(HashMap::new());
            let run_of_ref = &run_of;
            let processed = process_records(&records, options, |record| async move {
                let message = match self.decode_record(&record).await {
                    Ok(message) => message,
                    Err(error) => {
                        reject(record.message_id.as_deref().unwrap_or_default(), &error);
                        return Err(RecordFailure::from(error));
                    }
                };
                if let Ok(mut run_of) = run_of_ref.lock() {
                    run_of.insert(
                        record.message_id.clone().unwrap_or_default(),
                        message.run_id().to_string(),
                    );
                }
                let received = Received {
                    message_id: record.message_id.clone().unwrap_or_default(),
                    message,
                    redelivered: redelivered(&record),
                };
                let (run_id, ids) = (
                    received.message.run_id().to_string(),
                    [received.message_id.clone()],
                );
                self.apply_all(vec![received], deadline, None)
                    .await
                    .map_err(|e| failure(&run_id, &ids, e))
            })
            .await;
            let run_of = run_of.into_inner().unwrap_or_default();
            self.settle(&records, &processed, &run_of).await;
            return Ok(batch_response(&records, &processed.confirmed, true));
        }
        // Standard queue: all messages of one run in the batch go into one activation, so
        // a fan-in of many results costs one commit and never races itself.
        let decoded = futures::future::join_all(records.iter().map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            (id, redelivered(record), self.decode_record(record).await)
        }))
        .await;
        let mut units: Vec<Unit<Vec<Received>>> = Vec::new();
        // Redelivered records of a run are a unit apart from its new ones: a redelivery may
        // have to resume a wide outbox, which can outlast the invocation, and the new records
        // (a fan-out's results) must not wait for it (the two activations serialize on the
        // history index like any concurrent ones).
        let mut by_run: HashMap<(RunId, bool), usize> = HashMap::new();
        let mut run_of = HashMap::new();
        let mut rejected = Vec::new();
        for (id, redelivered, message) in decoded {
            match message {
                Err(error) => {
                    reject(&id, &error);
                    rejected.push((id, RecordFailure::from(error)));
                }
                Ok(message) => {
                    run_of.insert(id.clone(), message.run_id().to_string());
                    let index = *by_run
                        .entry((message.run_id().to_owned(), redelivered))
                        .or_insert_with(|| {
                            units.push(Unit {
                                ids: Vec::new(),
                                item: Vec::new(),
                            });
                            units.len() - 1
                        });
                    units[index].ids.push(id.clone());
                    units[index].item.push(Received {
                        message_id: id,
                        message,
                        redelivered,
                    });
                }
            }
        }
        let mut ids_by_run: HashMap<RunId, Vec<String>> = HashMap::new();
        for ((run_id, _), index) in by_run {
            ids_by_run
                .entry(run_id)
                .or_default()
                .extend(units[index].ids.iter().cloned());
        }
        // The activations leave their commands here; they are sent together below.
        let deferred = deferred::Deferred::default();
        let deferred = &deferred;
        let mut processed = process_units(units, options, |messages| async move {
            let run_id = messages
                .first()
                .map(|m| m.message.run_id().to_string())
                .unwrap_or_default();
            let ids: Vec<String> = messages.iter().map(|m| m.message_id.clone()).collect();
            self.apply_all(messages, deadline, Some(deferred))
                .await
                .map_err(|e| failure(&run_id, &ids, e))
        })
        .await;
        let unsent = match flush_by {
            None => deferred.flush(&self.transport).await,
            Some(by) => {
                let runs = deferred.runs();
                let left = by.saturating_duration_since(std::time::Instant::now());
                match tokio::time::timeout(left, deferred.flush(&self.transport)).await {
                    Ok(unsent) => unsent,
                    Err(_) => {
                        tracing::warn!(runs = runs.len(), "the batch's sends did not finish before the deadline; their records come back to send again");
                        let cut = RecordFailure::transient("sends cut by the deadline");
                        runs.into_iter().map(|run| (run, cut.clone())).collect()
                    }
                }
            }
        };
        for (run_id, ids) in ids_by_run {
            if let Some(failure) = unsent.get(&run_id) {
                for id in ids {
                    processed.confirmed.remove(&id);
                    processed.failures.insert(id, failure.clone());
                }
            }
        }
        processed.failures.extend(rejected);
        self.settle(&records, &processed, &run_of).await;
        Ok(batch_response(&records, &processed.confirmed, false))
    }

    /// Backs off what failed transiently and warns of what is bound for the DLQ.
    async fn settle(
        &self,
        records: &[SqsMessage],
        processed: &crate::batch::Processed,
        run_of: &HashMap<String, String>,
    ) {
        if let Some(backoff) = &self.backoff {
            backoff.settle(records, processed, run_of).await;
        }
    }

    async fn decode_record(&self, record: &SqsMessage) -> Result<ResultsMessage, RecordError> {
        let body = record.body.as_deref().ok_or(RecordError::NoBody)?;
        let body = resolve_body(body, &self.blobs).await?;
        Ok(decode_results_message(&body)?)
    }

    /// Processes one record end to end.
    pub async fn process_record(&self, record: &SqsMessage) -> Result<(), RecordError> {
        self.process_record_until(record, None).await
    }

    async fn process_record_until(
        &self,
        record: &SqsMessage,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), RecordError> {
        let message = self.decode_record(record).await?;
        let received = Received {
            message_id: record.message_id.clone().unwrap_or_default(),
            message,
            redelivered: redelivered(record),
        };
        self.apply_all(vec![received], deadline, None).await
    }

    /// Applies one decoded message to its run.
    pub async fn apply(
        &self,
        message: ResultsMessage,
        message_id: &str,
    ) -> Result<(), RecordError> {
        let received = Received {
            message_id: message_id.to_owned(),
            message,
            redelivered: false,
        };
        self.apply_all(vec![received], None, None).await
    }

    /// Applies decoded messages of one run in one activation; with `deferred`, the commands
    /// of a small outbox are left there for the batch to send. A `resumeOutbox` among them
    /// goes on sending its wide outbox meanwhile.
    async fn apply_all(
        &self,
        mut messages: Vec<Received>,
        deadline: Option<std::time::Instant>,
        deferred: Option<&deferred::Deferred>,
    ) -> Result<(), RecordError> {
        let Some((run_id, indexes)) = wide::take_resumes(&mut messages) else {
            return self.apply_messages(messages, deadline, deferred).await;
        };
        // Both on the heap: side by side in one future they would be as large as the two
        // together, and the handler's future lives on the caller's stack.
        let (resumed, applied) = futures::join!(
            Box::pin(wide::continue_sending(
                &self.transport,
                &self.store,
                &run_id,
                &indexes,
                self.options.timer_chunk_seconds,
                deadline,
                self.options.wide,
            )),
            Box::pin(self.apply_messages(messages, deadline, deferred)),
        );
        resumed.and(applied)
    }

    async fn apply_messages(
        &self,
        messages: Vec<Received>,
        deadline: Option<std::time::Instant>,
        deferred: Option<&deferred::Deferred>,
    ) -> Result<(), RecordError> {
        let Some(run_id) = messages.first().map(|r| r.message.run_id().to_owned()) else {
            return Ok(());
        };
        let now = now_ms();
        let mut incoming = Vec::new();
        let mut parent = None;
        let mut hops = Vec::new();
        // Timers known moot (a warm engine saw their op resolve or their run end) are dropped
        // before anything is loaded.
        let messages: Vec<Received> = messages
            .into_iter()
            .filter(|received| match &received.message {
                ResultsMessage::Control(ControlMessage::TimerFired { timer_id, .. })
                    if !received.redelivered && self.moot.is_moot(run_id.as_str(), timer_id) =>
                {
                    tracing::info!(%run_id, %timer_id, reason = "moot_timer", "timer of a resolved operation dropped before loading the run");
                    crate::metrics::count(crate::metrics::IGNORED, "moot_timer");
                    false
                }
                _ => true,
            })
            .collect();
        let fire_times = self.recorded_fire_times(&run_id, &messages).await?;
        for received in messages {
            let message_id = received.message_id;
            match received.message {
                ResultsMessage::Control(ControlMessage::TimerFired {
                    run_id, timer_id, ..
                }) => {
                    // The history is the authority on when a timer is due: the message's own
                    // `fireAtMs` is not trusted (a forged 0 would end any sleep at once).
                    let Some(&fire_at_ms) = fire_times.get(&timer_id) else {
                        tracing::info!(%run_id, %timer_id, message_id, reason = "unknown_timer", "timerFired for a timer the run never started; dropped");
                        crate::metrics::count(crate::metrics::IGNORED, "unknown_timer");
                        continue;
                    };
                    if fire_at_ms > now + 500 {
                        // One hop of a chained delay: not due yet, schedule the next hop.
                        let delay = outbox::delay_seconds(
                            fire_at_ms,
                            now,
                            self.options.timer_chunk_seconds,
                        );
                        let hop = ControlMessage::TimerFired {
                            run_id,
                            timer_id,
                            fire_at_ms,
                        };
                        hops.push((hop, delay));
                        continue;
                    }
                    let message = ResultsMessage::Control(ControlMessage::TimerFired {
                        run_id,
                        timer_id,
                        fire_at_ms,
                    });
                    let Some((item, _)) = to_incoming(message, &message_id) else {
                        continue;
                    };
                    incoming.push((item, received.redelivered));
                }
                message => {
                    let Some((item, start_parent)) = to_incoming(message, &message_id) else {
                        continue;
                    };
                    parent = parent.or(start_parent);
                    incoming.push((item, received.redelivered));
                }
            }
        }
        if !hops.is_empty() {
            self.transport.send_control(&hops).await?;
        }
        if incoming.is_empty() {
            return Ok(());
        }
        // Step results first (as `Incoming::results_first` orders a batch), keeping each
        // item's redelivery flag with it.
        incoming.sort_by_key(|(item, _)| !matches!(item, Incoming::StepResult { .. }));
        // A redelivered record may have to re-send what its activation issued: that needs
        // the run as stored, not as this process last saw it.
        let redelivery = incoming.iter().any(|(_, redelivered)| *redelivered);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let fresh = redelivery || attempt > 1;
            let result = self
                .activate_once(
                    &run_id,
                    &incoming,
                    parent.clone(),
                    deadline,
                    deferred,
                    fresh,
                )
                .await;
            match result {
                Err(RecordError::Store(StoreError::Conflict { .. }))
                    if attempt < MAX_CONFLICT_RETRIES =>
                {
                    // Another invocation advanced the run: re-run on fresh state, after a
                    // short jittered pause so the racers spread out.
                    let jitter = (uuid::Uuid::new_v4().as_u128() % 40) as u64;
                    let pause = (10 + jitter) * attempt as u64;
                    tracing::debug!(%run_id, attempt, pause, "activation lost a race; re-running on fresh state");
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
                Err(RecordError::Engine(EngineError::UnknownWorkflow(workflow)))
                    if parent.is_some() =>
                {
                    // A child of a workflow this engine does not host: the parent hears it as
                    // a terminal failure of its child call instead of waiting forever.
                    let Some(parent) = parent.as_ref() else {
                        return Ok(());
                    };
                    tracing::error!(%run_id, %workflow, parent_run = %parent.run_id, "child run of an unknown workflow");
                    let error = cairn::contract::StepError::terminal(format!(
                        "no workflow named {workflow:?} is registered"
                    ))
                    .with_code(cairn::contract::ErrorCode::UnknownWorkflow);
                    let outcome = cairn::workflow::RunOutcome::Failed { error };
                    let result = outbox::parent_result(parent, outcome, None);
                    self.transport.send_results(&[result]).await?;
                    return Ok(());
                }
                Err(RecordError::Engine(err)) => {
                    // Loud: the run keeps its state, the record goes back to SQS (and to the
                    // DLQ), and the reason is on the run for `cairn runs show`.
                    tracing::error!(%run_id, error = %err, "activation failed");
                    let _ = self.store.note_problem(&run_id, &err.to_string()).await;
                    return Err(RecordError::Engine(err));
                }
                other => return other,
            }
        }
    }
}
