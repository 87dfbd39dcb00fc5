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

mod deferred;
mod moot;
mod optimism;
mod outbox;
mod release;
mod unstorable;
mod wide;

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

/// Why one results-queue record was not processed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record has no body.
    #[error("record has no body")]
    NoBody,
    /// The body is not a valid results-queue message.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// A result or signal for a run that does not exist.
    #[error("run {0} does not exist")]
    UnknownRun(String),
    /// Replay failed (non-determinism, unknown workflow, ...).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed, or conflicts persisted past the retries.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sending commands failed; the record comes back and sends them again.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A wide outbox was not fully sent before the deadline (progress recorded; the
    /// redelivered record resumes it).
    #[error("run {run_id}: {sent} of {total} commands sent before the deadline")]
    OutboxUnfinished {
        /// The run.
        run_id: String,
        /// Commands sent so far.
        sent: usize,
        /// Commands in the outbox.
        total: usize,
    },
}

impl RecordError {
    /// Whether the record may succeed later as it is: the store or the transport failed
    /// transiently, races were lost too often, or a wide outbox ran out of time. Such a
    /// record is backed off instead of burning its receives at the queue's pace.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(StoreError::Conflict { .. }) | Self::OutboxUnfinished { .. } => true,
            Self::Store(e) => e.is_transient(),
            Self::Transport(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<RecordError> for RecordFailure {
    fn from(error: RecordError) -> Self {
        Self {
            transient: error.is_transient(),
            reason: error.to_string(),
        }
    }
}

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
        let (resumed, applied) = futures::join!(
            wide::continue_sending(
                &self.transport,
                &self.store,
                &run_id,
                &indexes,
                self.options.timer_chunk_seconds,
                deadline,
                self.options.wide,
            ),
            self.apply_messages(messages, deadline, deferred),
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

    /// When each timer named by a `timerFired` among `messages` is due, as the run's history
    /// recorded it (timers it never started are absent). Loads the run only if there is one.
    async fn recorded_fire_times(
        &self,
        run_id: &RunId,
        messages: &[Received],
    ) -> Result<HashMap<String, u64>, RecordError> {
        let fires_timer = |m: &ResultsMessage| {
            matches!(
                m,
                ResultsMessage::Control(ControlMessage::TimerFired { .. })
            )
        };
        if !messages.iter().any(|r| fires_timer(&r.message)) {
            return Ok(HashMap::new());
        }
        let fire_times =
            |loaded: &LoadedRun| -> HashMap<String, u64> { loaded.started_timers().collect() };
        // A timer's due time never changes once recorded, so a cached copy of the run answers
        // for the timers it knows; one it does not know needs the run as stored.
        if let Some(cached) = self.store.cached(run_id) {
            let known = fire_times(&cached);
            let all_known = messages.iter().all(|r| match &r.message {
                ResultsMessage::Control(ControlMessage::TimerFired { timer_id, .. }) => {
                    known.contains_key(timer_id)
                }
                _ => true,
            });
            if all_known {
                return Ok(known);
            }
        }
        let loaded = match self.load_repairing(run_id).await {
            // A retired run: its timers are dropped (as unknown) below.
            Err(RecordError::Store(StoreError::Leftovers(_))) => None,
            other => other?,
        };
        let Some(loaded) = loaded else {
            return Ok(HashMap::new());
        };
        Ok(fire_times(&loaded))
    }

    /// One activation. Unless `fresh`, it is first tried without reading the store: on the
    /// run as this process last saw it (`CheckpointStore::cached`), or, for a start of a run
    /// it does not know, on nothing. The conditional write is the check: if the copy was
    /// stale, the history index (or the run item) is taken and the commit fails. Anything
    /// but a successful commit (a conflict, nothing to append, an error) is then redone on
    /// the run as stored, so nothing is dropped or failed on a stale copy.
    async fn activate_once(
        &self,
        run_id: &RunId,
        incoming: &[(Incoming, bool)],
        parent: Option<cairn::contract::ParentRef>,
        deadline: Option<std::time::Instant>,
        deferred: Option<&deferred::Deferred>,
        fresh: bool,
    ) -> Result<(), RecordError> {
        if !fresh && self.optimism.try_it() {
            let starts = incoming
                .iter()
                .any(|(i, _)| matches!(i, Incoming::Start { .. }));
            let guess = match self.store.cached(run_id) {
                Some(cached) => Some(Some(cached)),
                None if starts => Some(None),
                None => None,
            };
            if let Some(guess) = guess {
                let outcome = match self
                    .activate_on(
                        run_id,
                        incoming,
                        parent.clone(),
                        deadline,
                        deferred,
                        guess,
                        false,
                    )
                    .await
                {
                    // An earlier run's leftovers under the id: dealt with on the run as stored.
                    Err(RecordError::Store(StoreError::Leftovers(_))) => Outcome::Unverified,
                    other => other?,
                };
                match outcome {
                    Outcome::Committed => {
                        self.optimism.record(false);
                        return Ok(());
                    }
                    Outcome::Stale => {
                        tracing::debug!(%run_id, "the cached run was stale; re-running on the run as stored");
                        self.optimism.record(true);
                    }
                    Outcome::Unverified => {}
                }
            }
        }
        let loaded = match self.load_repairing(run_id).await {
            Err(RecordError::Store(StoreError::Leftovers(leftovers))) => {
                let starts = incoming
                    .iter()
                    .any(|(i, _)| matches!(i, Incoming::Start { .. }));
                if !starts {
                    tracing::info!(%run_id, reason = "retired_run", %leftovers, "message for a retired run dropped");
                    crate::metrics::count(crate::metrics::IGNORED, "retired_run");
                    return Ok(());
                }
                // The id is used again after its earlier run retired: what remains of that
                // run goes, and the new run starts afresh.
                let purged = self.store.purge_leftovers(run_id).await?;
                tracing::info!(%run_id, purged, %leftovers, "run id used again: the retired run's leftovers deleted");
                None
            }
            other => other?,
        };
        self.activate_on(run_id, incoming, parent, deadline, deferred, loaded, true)
            .await?;
        Ok(())
    }

    /// An activation on `loaded` (`verified`: read from the store for it).
    #[allow(clippy::too_many_arguments)]
    async fn activate_on(
        &self,
        run_id: &RunId,
        incoming: &[(Incoming, bool)],
        parent: Option<cairn::contract::ParentRef>,
        deadline: Option<std::time::Instant>,
        deferred: Option<&deferred::Deferred>,
        loaded: Option<LoadedRun>,
        verified: bool,
    ) -> Result<Outcome, RecordError> {
        let now = now_ms();
        let start = incoming
            .iter()
            .map(|(i, _)| i)
            .find(|i| matches!(i, Incoming::Start { .. }));
        let exists = loaded.is_some();
        let loaded = match loaded {
            Some(loaded) => loaded,
            None => match start {
                Some(Incoming::Start { workflow, input }) => LoadedRun {
                    run: RunRecord {
                        run_id: run_id.clone(),
                        workflow: workflow.clone(),
                        status: RunStatus::Running,
                        input: input.clone(),
                        output: None,
                        error: None,
                        version: 0,
                        history_len: 0,
                        created_at_ms: now,
                        updated_at_ms: now,
                        parent,
                        last_error: None,
                        outbox_pending: false,
                    },
                    history: Vec::new(),
                    batches: Vec::new(),
                    outbox: Vec::new(),
                },
                _ => return Err(RecordError::UnknownRun(run_id.to_string())),
            },
        };
        self.moot.learn(&loaded.run, &loaded.history);
        // Redelivered records already recorded: their activation's commands may not have
        // gone out (the record came back because sending did not finish). Send them again.
        let resend = outbox::batches_to_resend(&loaded, incoming);
        if verified {
            // Before the replay: resuming a wide outbox gets all the time left (replaying a
            // fan-out's history is the slow part of its activation).
            self.resend(&loaded, &resend, deadline).await?;
        }
        let run = &loaded.run;
        let request = ActivationRequest {
            run_id,
            history: &loaded.history,
            incoming: incoming.iter().map(|(i, _)| i.clone()).collect(),
            now_ms: now,
        };
        let activation = match activate(&self.workflows, request).await {
            Ok(activation) => activation,
            // Judged on a copy that may be stale: judge again on the run as stored.
            Err(_) if !verified => return Ok(Outcome::Unverified),
            Err(error) => return Err(error.into()),
        };
        if activation.appended.is_empty() && !verified {
            // Nothing to append may only mean the copy is stale (e.g. a result for an attempt
            // scheduled elsewhere): never drop a message on a copy.
            return Ok(Outcome::Unverified);
        }
        if activation.appended.is_empty() {
            count_ignored(&activation.ignored);
            if exists && activation.status != run.status && activation.status.is_terminal() {
                // The history ended the run but the run item missed it (a crash between the
                // two writes): write the run item alone.
                let mut repaired = run.clone();
                repaired.status = activation.status;
                restore_outcome(&mut repaired, &loaded.history);
                tracing::info!(%run_id, status = %repaired.status, "run item repaired from its history");
                let commit = Commit {
                    run: repaired,
                    expected_version: Some(run.version),
                    events: Vec::new(),
                    outbox: Vec::new(),
                    lease: None,
                    earlier_due_ms: None,
                };
                self.store.commit(&commit).await?;
            }
            return Ok(Outcome::Committed);
        }
        let was_terminal = run.status.is_terminal();
        let mut next = run.clone();
        next.version = run.version + 1;
        next.updated_at_ms = now;
        next.status = activation.status;
        next.last_error = None;
        next.outbox_pending = false;
        let mut appended = activation.appended;
        let mut commands = activation.commands;
        release::drop_released_starts(&mut commands, &activation.released_timers);
        let released =
            release::started_before(run_id, &loaded.history, &activation.released_timers);
        let limit = history_limit(run_id.as_str(), run.history_len, appended.len() as u64);
        if let Some(error) = limit {
            // Over the limit: the run fails with a clear reason instead of growing on.
            appended = vec![cairn::workflow::HistoryEvent::new(
                now,
                EventKind::RunFailed { error },
            )];
            commands = Vec::new();
            next.status = RunStatus::Failed;
        }
        next.history_len = run.history_len + appended.len() as u64;
        for event in &appended {
            match &event.kind {
                EventKind::RunCompleted { output } => next.output = Some(output.clone()),
                EventKind::RunFailed { error } | EventKind::RunCancelled { error } => {
                    next.error = Some(error.clone())
                }
                _ => {}
            }
        }
        if !was_terminal && next.status.is_terminal() {
            outbox::ensure_parent_report(&next, &mut commands);
        }
        let lease = (commands.len() >= WIDE_OUTBOX).then(|| OutboxLease {
            owner: uuid::Uuid::new_v4().to_string(),
            until_ms: lease_until(deadline),
        });
        let commit = Commit {
            run: next,
            expected_version: exists.then_some(run.version),
            events: appended,
            outbox: commands,
            lease,
            earlier_due_ms: loaded.next_due_ms(now),
        };
        let commit = match self.store.commit(&commit).await {
            Err(StoreError::Conflict { .. }) if !verified => return Ok(Outcome::Stale),
            // Too deep or too large to store: the run fails with the reason (committed
            // instead), rather than its record retrying into the DLQ.
            Err(StoreError::TooLarge { reason, .. }) if !was_terminal => {
                match self.fail_unstorable(commit, &reason, now).await {
                    Err(RecordError::Store(StoreError::Conflict { .. })) if !verified => {
                        return Ok(Outcome::Stale)
                    }
                    failed => failed?,
                }
            }
            committed => committed.map(|()| commit)?,
        };
        count_ignored(&activation.ignored);
        release::release(&self.transport, &released).await;
        self.moot.committed(&commit);
        match &commit.lease {
            Some(lease) => {
                let batch = cairn::store::OutboxBatch {
                    key: commit.first_index(),
                    commands: commit.outbox.clone(),
                    parts: 0,
                    sent: 0,
                    lease: Some(lease.clone()),
                };
                send_wide(
                    &self.transport,
                    &self.store,
                    &commit.run,
                    batch,
                    lease.clone(),
                    self.options.timer_chunk_seconds,
                    deadline,
                    self.options.wide,
                )
                .await?;
            }
            None if !commit.outbox.is_empty() => match deferred {
                Some(deferred) => deferred.push(
                    &commit.run,
                    &commit.outbox,
                    self.options.timer_chunk_seconds,
                ),
                None => {
                    send_commands(
                        &self.transport,
                        &commit.run,
                        &commit.outbox,
                        self.options.timer_chunk_seconds,
                    )
                    .await?
                }
            },
            None => {}
        }
        Ok(Outcome::Committed)
    }

    /// Loads a run; a run item lost while its history shows the run going is restored from
    /// the history first (a retired run's leftovers come back as the
    /// [`StoreError::Leftovers`] error).
    async fn load_repairing(&self, run_id: &RunId) -> Result<Option<LoadedRun>, RecordError> {
        match self.store.load(run_id).await {
            Err(StoreError::Leftovers(leftovers)) if !leftovers.retired() => {
                let run = restored_run(run_id, &leftovers);
                tracing::warn!(%run_id, %leftovers, "run item missing: restored from the history (a parent link it had is lost)");
                let commit = Commit {
                    run,
                    expected_version: None,
                    events: Vec::new(),
                    outbox: Vec::new(),
                    lease: None,
                    earlier_due_ms: None,
                };
                match self.store.commit(&commit).await {
                    Ok(()) | Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(self.store.load(run_id).await?)
            }
            other => Ok(other?),
        }
    }

    /// The store refused `refused` (too deep or too large to store): the run fails with the
    /// reason instead (the events that can be stored kept; else none), and that is committed.
    async fn fail_unstorable(
        &self,
        refused: Commit,
        reason: &str,
        now: u64,
    ) -> Result<Commit, RecordError> {
        let run_id = refused.run.run_id.clone();
        tracing::error!(%run_id, %reason, "activation cannot be stored: the run fails");
        crate::metrics::count(crate::metrics::FAILED_RUNS, "unstorable");
        let error = unstorable::error(reason);
        let kept = unstorable::failed_commit(&refused, &error, true, now);
        match self.store.commit(&kept).await {
            Err(StoreError::TooLarge { .. }) => {
                let bare = unstorable::failed_commit(&refused, &error, false, now);
                self.store.commit(&bare).await?;
                Ok(bare)
            }
            other => other.map(|()| kept).map_err(RecordError::from),
        }
    }

    /// Sends again what redelivered records' activations issued, and what older releases
    /// left in legacy outbox items.
    async fn resend(
        &self,
        loaded: &LoadedRun,
        batches: &[u64],
        deadline: Option<std::time::Instant>,
    ) -> Result<(), RecordError> {
        let run = &loaded.run;
        for key in batches {
            let Some(batch) = loaded.batches.iter().find(|b| b.first == *key) else {
                continue;
            };
            if batch.commands.len() >= WIDE_OUTBOX {
                // A wide outbox: only its unsent rest, and only if its sender is gone.
                if let Some(pending) = loaded.outbox.iter().find(|b| b.key == *key) {
                    wide::resume_with(
                        &self.transport,
                        &self.store,
                        run,
                        pending.clone(),
                        self.options.timer_chunk_seconds,
                        deadline,
                        self.options.wide,
                    )
                    .await?;
                }
                continue;
            }
            // What already had its effect (a task answered, a timer fired) was sent: sending
            // it again would only run a step twice. (The record may be a duplicate of the
            // message that recorded the effect, not its own earlier attempt.)
            let commands: Vec<cairn::workflow::Command> = batch
                .commands
                .iter()
                .filter(|c| !had_effect(loaded, c))
                .cloned()
                .collect();
            if commands.is_empty() {
                continue;
            }
            tracing::info!(run_id = %run.run_id, batch = key, commands = commands.len(), "redelivered record: sending its activation's commands again");
            send_commands(
                &self.transport,
                run,
                &commands,
                self.options.timer_chunk_seconds,
            )
            .await?;
        }
        let legacy: Vec<_> = loaded
            .outbox
            .iter()
            .filter(|b| b.lease.is_none())
            .cloned()
            .collect();
        if !legacy.is_empty() {
            send_outbox(
                &self.transport,
                &self.store,
                run,
                legacy,
                self.options.timer_chunk_seconds,
            )
            .await?;
        }
        Ok(())
    }
}

/// How an activation ended.
enum Outcome {
    /// Committed (or, verified, nothing to commit).
    Committed,
    /// Built on a stale copy: the commit lost the history index.
    Stale,
    /// Built on a copy and not committed (nothing to append, or an error): to be redone on
    /// the run as stored.
    Unverified,
}

/// A decoded results-queue record.
struct Received {
    message_id: String,
    message: ResultsMessage,
    /// SQS delivered it before (`ApproximateReceiveCount` > 1).
    redelivered: bool,
}

fn redelivered(record: &SqsMessage) -> bool {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n > 1)
}

/// Whether the history shows `command`'s effect: its task answered, its timer fired.
fn had_effect(loaded: &LoadedRun, command: &cairn::workflow::Command) -> bool {
    use cairn::workflow::Command;
    match command {
        Command::DispatchTask { seq, attempt, .. } => {
            crate::reconciler::answered(loaded, *seq, Some(*attempt))
        }
        Command::StartTimer { timer_id, .. } => loaded.history.iter().any(|e| {
            matches!(&e.kind, EventKind::TimerFired { timer_id: fired, .. } if fired == timer_id)
        }),
        _ => false,
    }
}

/// A run item rebuilt from what its history holds (the parent link is not in the history).
fn restored_run(run_id: &RunId, leftovers: &cairn::store::Leftovers) -> RunRecord {
    let (workflow, input) = leftovers
        .history
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::RunStarted {
                workflow, input, ..
            } => Some((workflow.clone(), input.clone())),
            _ => None,
        })
        .unwrap_or_default();
    let created = leftovers.history.first().map(|e| e.at_ms).unwrap_or(0);
    RunRecord {
        run_id: run_id.clone(),
        workflow,
        status: RunStatus::Running,
        input,
        output: None,
        error: None,
        version: 0,
        history_len: 0,
        created_at_ms: created,
        updated_at_ms: now_ms(),
        parent: None,
        last_error: None,
        outbox_pending: false,
    }
}

/// The run's outcome as its history recorded it (for a run item written from the history).
fn restore_outcome(run: &mut RunRecord, history: &[cairn::workflow::HistoryEvent]) {
    for event in history.iter().rev() {
        match &event.kind {
            EventKind::RunCompleted { output } => {
                run.output = Some(output.clone());
                return;
            }
            EventKind::RunFailed { error } | EventKind::RunCancelled { error } => {
                run.error = Some(error.clone());
                return;
            }
            _ => {}
        }
    }
}

/// The error a run fails with when `appending` events to `len` would pass the history limit;
/// a warning past the threshold.
fn history_limit(run_id: &str, len: u64, appending: u64) -> Option<cairn::contract::StepError> {
    let after = len + appending;
    if after > MAX_HISTORY_EVENTS {
        tracing::error!(%run_id, events = after, limit = MAX_HISTORY_EVENTS, "history limit reached: the run fails");
        return Some(
            cairn::contract::StepError::terminal(format!(
                "history limit reached: {after} events would pass the limit of \
                 {MAX_HISTORY_EVENTS}; split the work with continue_as_new"
            ))
            .with_code(HISTORY_LIMIT_CODE),
        );
    }
    if after * 100 > MAX_HISTORY_EVENTS * HISTORY_WARN_PERCENT {
        tracing::warn!(%run_id, events = after, limit = MAX_HISTORY_EVENTS, "history nears its limit; use continue_as_new");
    }
    None
}

/// Counts what the activation ignored (it logged each with its reason).
fn count_ignored(reasons: &[&'static str]) {
    for reason in reasons {
        crate::metrics::count(crate::metrics::IGNORED, reason);
    }
}

/// The failure of a run's records; a request that timed out (a hang below us) is logged with
/// what hung: the operation, the run and the message ids.
fn failure(run_id: &str, message_ids: &[String], error: RecordError) -> RecordFailure {
    if let Some(infra) = cairn::infra::InfraError::find(&error) {
        if infra.kind == cairn::infra::InfraErrorKind::TimedOut {
            tracing::warn!(
                run_id,
                message_ids = ?message_ids,
                operation = infra.operation,
                error = %infra,
                "AWS request timed out (the service hangs); the record is backed off"
            );
        }
    }
    RecordFailure::from(error)
}

/// Logs and counts a record that cannot be decoded; it is reported for redelivery, so SQS
/// moves it to the DLQ after `maxReceiveCount`.
fn reject(message_id: &str, error: &RecordError) {
    tracing::warn!(message_id, %error, "undecodable record; reported for redelivery (then the DLQ)");
    let reason = match error {
        RecordError::NoBody => "no_body",
        RecordError::Transport(_) => "claim_check",
        _ => "malformed",
    };
    crate::metrics::count(crate::metrics::REJECTED, reason);
}

/// The engine input for a message, and the parent of a starting child run; `None` (logged)
/// for a message no run can take.
fn to_incoming(
    message: ResultsMessage,
    message_id: &str,
) -> Option<(Incoming, Option<cairn::contract::ParentRef>)> {
    Some(match message {
        ResultsMessage::Step(result) => {
            let outcome = match result.status {
                StepStatus::Completed => Ok(result.output.unwrap_or(serde_json::Value::Null)),
                StepStatus::Failed => Err(result.error.unwrap_or_else(|| {
                    cairn::contract::StepError::retryable(
                        "worker reported failure without an error",
                    )
                })),
            };
            (
                Incoming::StepResult {
                    seq: result.seq,
                    attempt: result.attempt,
                    started_at_ms: result.started_at,
                    outcome,
                    events: result.events.unwrap_or_default(),
                },
                None,
            )
        }
        ResultsMessage::Control(control) => match control {
            ControlMessage::StartRun {
                workflow,
                input,
                parent,
                ..
            } => (Incoming::Start { workflow, input }, parent),
            ControlMessage::Signal {
                name,
                payload,
                signal_id,
                ..
            } => {
                let signal_id =
                    signal_id.or_else(|| (!message_id.is_empty()).then(|| message_id.to_owned()));
                (
                    Incoming::Signal {
                        name,
                        payload,
                        signal_id,
                    },
                    None,
                )
            }
            ControlMessage::TimerFired {
                run_id, timer_id, ..
            } => match timer_id.parse() {
                Ok(timer_id) => (Incoming::TimerFired { timer_id }, None),
                Err(error) => {
                    // No timer of any run has such an id: nothing to fire.
                    tracing::info!(%run_id, message_id, %error, "timerFired dropped");
                    return None;
                }
            },
            ControlMessage::CancelRun { reason, .. } => (Incoming::Cancel { reason }, None),
            // Taken out before (`wide::take_resumes`): no run input.
            ControlMessage::ResumeOutbox { .. } => return None,
        },
    })
}
