//! The engine Lambda's logic: consume the results queue, checkpoint, replay, send.
//!
//! For each record: decode (claim checks resolved) → load the run → activation (replay) →
//! commit events + outbox atomically → send the outbox → clear it. A lost race
//! ([`StoreError::Conflict`]) re-runs the activation on fresh state; anything else fails the
//! record alone, so SQS redelivers it (and dead-letters it after `maxReceiveCount`).

mod outbox;
mod release;

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;

use crate::batch::{batch_response, process_batch, process_units, time_left, BatchOptions, Unit};
use cairn::contract::{
    decode_results_message, ControlMessage, DecodeError, ResultsMessage, RunId, StepStatus,
};
use cairn::store::{BlobStore, CheckpointStore, Commit, RunRecord, StoreError};
use cairn::transport::{resolve_body, ControlSender, ResultSender, TaskSender, TransportError};
use cairn::workflow::{
    activate, ActivationRequest, EngineError, EventKind, Incoming, RunStatus, Workflows,
};

pub use outbox::send_outbox;

/// How often a conflicting activation is re-run before the record is handed back to SQS.
const MAX_CONFLICT_RETRIES: usize = 5;

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
    /// Sending commands failed; they stay in the outbox for redelivery or the reconciler.
    #[error(transparent)]
    Transport(#[from] TransportError),
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
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            fifo: false,
            concurrency: 10,
            timer_chunk_seconds: 900,
        }
    }
}

use cairn::clock::now_ms;

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
        }
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
        let options = BatchOptions {
            fifo: self.options.fifo,
            concurrency: self.options.concurrency,
            time_left: time_left(&event.context),
            ..BatchOptions::default()
        };
        if options.fifo {
            // FIFO: the queue already orders each run's messages (group = run id); keep that
            // order record by record.
            return Ok(process_batch(event.payload, options, |record| async move {
                let message = match self.decode_record(&record).await {
                    Ok(message) => message,
                    Err(error) => {
                        reject(record.message_id.as_deref().unwrap_or_default(), &error);
                        return Err(error.to_string());
                    }
                };
                let message_id = record.message_id.clone().unwrap_or_default();
                self.apply(message, &message_id)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await);
        }
        // Standard queue: all messages of one run in the batch go into one activation, so
        // a fan-in of many results costs one commit and never races itself.
        let records = event.payload.records;
        let decoded = futures::future::join_all(records.iter().map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            (id, self.decode_record(record).await)
        }))
        .await;
        let mut units: Vec<Unit<Vec<(String, ResultsMessage)>>> = Vec::new();
        let mut by_run: HashMap<RunId, usize> = HashMap::new();
        for (id, message) in decoded {
            match message {
                Err(error) => reject(&id, &error),
                Ok(message) => {
                    let index = *by_run
                        .entry(message.run_id().to_owned())
                        .or_insert_with(|| {
                            units.push(Unit {
                                ids: Vec::new(),
                                item: Vec::new(),
                            });
                            units.len() - 1
                        });
                    units[index].ids.push(id.clone());
                    units[index].item.push((id, message));
                }
            }
        }
        let confirmed = process_units(units, options, |messages| async move {
            self.apply_all(messages).await.map_err(|e| e.to_string())
        })
        .await;
        Ok(batch_response(&records, &confirmed, false))
    }

    async fn decode_record(&self, record: &SqsMessage) -> Result<ResultsMessage, RecordError> {
        let body = record.body.as_deref().ok_or(RecordError::NoBody)?;
        let body = resolve_body(body, &self.blobs).await?;
        Ok(decode_results_message(&body)?)
    }

    /// Processes one record end to end.
    pub async fn process_record(&self, record: &SqsMessage) -> Result<(), RecordError> {
        let message = self.decode_record(record).await?;
        let message_id = record.message_id.clone().unwrap_or_default();
        self.apply(message, &message_id).await
    }

    /// Applies one decoded message to its run.
    pub async fn apply(
        &self,
        message: ResultsMessage,
        message_id: &str,
    ) -> Result<(), RecordError> {
        self.apply_all(vec![(message_id.to_owned(), message)]).await
    }

    /// Applies decoded messages of one run (with their SQS message ids) in one activation.
    async fn apply_all(&self, messages: Vec<(String, ResultsMessage)>) -> Result<(), RecordError> {
        let Some(run_id) = messages.first().map(|(_, m)| m.run_id().to_owned()) else {
            return Ok(());
        };
        let now = now_ms();
        let mut incoming = Vec::new();
        let mut parent = None;
        let mut hops = Vec::new();
        let fire_times = self.recorded_fire_times(&run_id, &messages).await?;
        for (message_id, message) in messages {
            match message {
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
                    incoming.push(item);
                }
                message => {
                    let Some((item, start_parent)) = to_incoming(message, &message_id) else {
                        continue;
                    };
                    parent = parent.or(start_parent);
                    incoming.push(item);
                }
            }
        }
        if !hops.is_empty() {
            self.transport.send_control(&hops).await?;
        }
        if incoming.is_empty() {
            return Ok(());
        }
        Incoming::results_first(&mut incoming);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.activate_once(&run_id, &incoming, parent.clone()).await {
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
        messages: &[(String, ResultsMessage)],
    ) -> Result<HashMap<String, u64>, RecordError> {
        let fires_timer = |m: &ResultsMessage| {
            matches!(
                m,
                ResultsMessage::Control(ControlMessage::TimerFired { .. })
            )
        };
        if !messages.iter().any(|(_, m)| fires_timer(m)) {
            return Ok(HashMap::new());
        }
        let Some(loaded) = self.store.load(run_id).await? else {
            return Ok(HashMap::new());
        };
        Ok(loaded
            .history
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::TimerStarted {
                    timer_id,
                    fire_at_ms,
                    ..
                } => Some((timer_id.to_string(), *fire_at_ms)),
                _ => None,
            })
            .collect())
    }

    async fn activate_once(
        &self,
        run_id: &RunId,
        incoming: &[Incoming],
        parent: Option<cairn::contract::ParentRef>,
    ) -> Result<(), RecordError> {
        let loaded = self.store.load(run_id).await?;
        let now = now_ms();
        let start = incoming
            .iter()
            .find(|i| matches!(i, Incoming::Start { .. }));
        let (run, history, pending) = match loaded {
            Some(loaded) => (loaded.run, loaded.history, loaded.outbox),
            None => match start {
                Some(Incoming::Start { workflow, input }) => {
                    let run = RunRecord {
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
                    };
                    (run, Vec::new(), Vec::new())
                }
                _ => return Err(RecordError::UnknownRun(run_id.to_string())),
            },
        };
        let is_new = run.version == 0 && history.is_empty();
        let request = ActivationRequest {
            run_id,
            history: &history,
            incoming: incoming.to_vec(),
            now_ms: now,
        };
        let activation = activate(&self.workflows, request).await?;
        if activation.appended.is_empty() {
            count_ignored(&activation.ignored);
            // Duplicate or no-op: nothing to write, but repair an outbox a crash left behind.
            if !pending.is_empty() {
                send_outbox(
                    &self.transport,
                    &self.store,
                    &run,
                    pending,
                    self.options.timer_chunk_seconds,
                )
                .await?;
            }
            return Ok(());
        }
        let was_terminal = run.status.is_terminal();
        let mut next = run.clone();
        next.version = run.version + 1;
        next.history_len = run.history_len + activation.appended.len() as u64;
        next.updated_at_ms = now;
        next.status = activation.status;
        next.last_error = None;
        for event in &activation.appended {
            match &event.kind {
                EventKind::RunCompleted { output } => next.output = Some(output.clone()),
                EventKind::RunFailed { error } | EventKind::RunCancelled { error } => {
                    next.error = Some(error.clone())
                }
                _ => {}
            }
        }
        let mut commands = activation.commands;
        release::drop_released_starts(&mut commands, &activation.released_timers);
        let released = release::started_before(run_id, &history, &activation.released_timers);
        if !was_terminal && next.status.is_terminal() {
            outbox::ensure_parent_report(&next, &mut commands);
        }
        next.outbox_pending = !pending.is_empty() || !commands.is_empty();
        let commit = Commit {
            run: next,
            expected_version: if is_new { None } else { Some(run.version) },
            events: activation.appended,
            outbox: commands,
        };
        self.store.commit(&commit).await?;
        count_ignored(&activation.ignored);
        release::release(&self.transport, &released).await;
        if !was_terminal && commit.run.status.is_terminal() {
            // Best effort: a run that keeps its chunks past the TTL costs storage, not
            // correctness, so a failure here must not fail the record.
            if let Err(error) = self.store.retire(run_id).await {
                tracing::warn!(%run_id, %error, "could not stamp the TTL on the run's history");
            }
        }
        let mut batches = pending;
        if !commit.outbox.is_empty() {
            batches.push(cairn::store::OutboxBatch::new(
                commit.first_index(),
                commit.outbox.clone(),
            ));
        }
        if !batches.is_empty() {
            send_outbox(
                &self.transport,
                &self.store,
                &commit.run,
                batches,
                self.options.timer_chunk_seconds,
            )
            .await?;
        }
        Ok(())
    }
}

/// Counts what the activation ignored (it logged each with its reason).
fn count_ignored(reasons: &[&'static str]) {
    for reason in reasons {
        crate::metrics::count(crate::metrics::IGNORED, reason);
    }
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
        },
    })
}
