//! Runs the store cannot take as they are: a run item of an older release lost mid-run
//! (restored from its history), and an activation too deep or too large to store (the run
//! fails with the reason instead).

use super::*;

impl<S: CheckpointStore, T: EngineTransport, B: BlobStore> Engine<S, T, B> {
    /// Loads a run; a run item lost while its history shows the run going is restored from
    /// the history first (a retired run's leftovers come back as the
    /// [`StoreError::Leftovers`] error).
    pub(super) async fn load_repairing(
        &self,
        run_id: &RunId,
    ) -> Result<Option<LoadedRun>, RecordError> {
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
    pub(super) async fn fail_unstorable(
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
pub(super) fn restore_outcome(run: &mut RunRecord, history: &[cairn::workflow::HistoryEvent]) {
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
