//! One activation of a run: tried on the warm copy without reading (the conditional write
//! is the check), else on the run as stored; its commit, and the sends that follow.

use super::repair::restore_outcome;
use super::*;

impl<S: CheckpointStore, T: EngineTransport, B: BlobStore> Engine<S, T, B> {
    /// When each timer named by a `timerFired` among `messages` is due, as the run's history
    /// recorded it (timers it never started are absent). Loads the run only if there is one.
    pub(super) async fn recorded_fire_times(
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
    pub(super) async fn activate_once(
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
