//! How the environment plays the deployed system's parts: the due queue, activations, the
//! commands they issue (tasks to handlers, timers, children, reports) and the answers.

use super::*;

impl TestEnv {
    pub(super) fn key(&self, run_id: &str) -> Result<RunId, TestEnvError> {
        self.runs
            .get_key_value(run_id)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| TestEnvError::UnknownRun(run_id.to_owned()))
    }

    pub(super) fn run_mut(&mut self, run_id: &str) -> Result<&mut EnvRun, TestEnvError> {
        self.runs
            .get_mut(run_id)
            .ok_or_else(|| TestEnvError::UnknownRun(run_id.to_owned()))
    }

    pub(super) fn add_run(
        &mut self,
        run_id: RunId,
        workflow: &str,
        input: Value,
        parent: Option<(RunId, u64)>,
    ) {
        let run = self.runs.entry(run_id).or_default();
        run.parent = parent;
        run.inbox.push(Incoming::Start {
            workflow: workflow.to_owned(),
            input,
        });
    }

    pub(super) fn schedule(&mut self, at_ms: u64, run_id: &RunId, what: DueKind) {
        self.order += 1;
        self.due.insert(Due {
            at_ms,
            order: self.order,
            run_id: run_id.clone(),
            what,
        });
    }

    pub(super) fn last_of_chain(&self, run_id: &str) -> Result<String, TestEnvError> {
        let mut id = run_id.to_owned();
        loop {
            let run = self
                .runs
                .get(id.as_str())
                .ok_or_else(|| TestEnvError::UnknownRun(id.clone()))?;
            match &run.continued_as {
                Some(next) => id = next.to_string(),
                None => return Ok(id),
            }
        }
    }

    pub(super) fn output<O: DeserializeOwned>(&self, run_id: &str) -> Result<O, TestEnvError> {
        let run = &self.runs[run_id];
        let status = run.status.unwrap_or(RunStatus::Running);
        for event in run.history.iter().rev() {
            match &event.kind {
                EventKind::RunCompleted { output } => {
                    return O::deserialize(output).map_err(|e| TestEnvError::Output {
                        run_id: run_id.to_owned(),
                        message: e.to_string(),
                    })
                }
                EventKind::RunFailed { error } | EventKind::RunCancelled { error } => {
                    return Err(TestEnvError::RunFailed {
                        run_id: run_id.to_owned(),
                        status,
                        error: Box::new(error.clone()),
                    })
                }
                _ => {}
            }
        }
        Err(TestEnvError::Blocked {
            run_id: run_id.to_owned(),
            waiting: waiting_for(&run.history),
        })
    }

    /// Jumps the clock to `due` (never backwards) and delivers it.
    pub(super) fn fire(&mut self, due: Due) {
        self.now_ms = self.now_ms.max(due.at_ms);
        if let DueKind::Task(key) = due.what {
            self.tasks.extend(self.queued.remove(&key));
            return;
        }
        let Some(run) = self.runs.get_mut(due.run_id.as_str()) else {
            return;
        };
        run.inbox.push(match due.what {
            DueKind::Task(_) => return,
            DueKind::Timer(timer_id) => Incoming::TimerFired { timer_id },
            DueKind::Signal(name, payload) => Incoming::Signal {
                name,
                payload: serde_json::from_str(&payload).unwrap_or_default(),
                signal_id: None,
            },
            DueKind::Cancel(reason) => Incoming::Cancel { reason },
        });
    }

    /// Applies every pending item and answers every dispatched task, without moving the
    /// clock, until nothing is left but timers and injections in the future.
    pub(super) async fn settle(&mut self) -> Result<(), TestEnvError> {
        loop {
            // Timers due now (zero-length sleeps, zero backoff) fire without skipping time.
            while self.due.first().is_some_and(|d| d.at_ms <= self.now_ms) {
                if let Some(due) = self.due.pop_first() {
                    self.fire(due);
                }
            }
            let next = self
                .runs
                .iter()
                .find(|(_, r)| !r.inbox.is_empty())
                .map(|(id, _)| id.clone());
            if let Some(run_id) = next {
                self.activate(&run_id).await?;
                continue;
            }
            let Some(task) = self.tasks.pop_front() else {
                return Ok(());
            };
            self.answer(task).await;
        }
    }

    /// One activation of `run_id` with its inbox, then its commands carried out.
    pub(super) async fn activate(&mut self, run_id: &RunId) -> Result<(), TestEnvError> {
        let Some(run) = self.runs.get_mut(run_id) else {
            return Ok(());
        };
        let incoming = std::mem::take(&mut run.inbox);
        let req = ActivationRequest {
            run_id: run_id.as_str(),
            history: &run.history,
            incoming,
            now_ms: self.now_ms,
        };
        let activation = match activate(&self.workflows, req).await {
            Ok(activation) => activation,
            Err(EngineError::UnknownWorkflow(workflow)) if run.parent.is_some() => {
                // As the engine does: the parent's child call fails instead of waiting forever.
                let error =
                    StepError::terminal(format!("no workflow named {workflow:?} is registered"))
                        .with_code(crate::contract::ErrorCode::UnknownWorkflow);
                let parent = run.parent.clone();
                run.status = Some(RunStatus::Failed);
                self.report(parent, Err(error));
                return Ok(());
            }
            Err(error) => {
                return Err(TestEnvError::Engine {
                    run_id: run_id.to_string(),
                    error,
                })
            }
        };
        let mut activation = activation;
        fail_if_unstorable(&mut activation, self.now_ms);
        run.history.extend(activation.appended);
        run.status = Some(activation.status);
        let parent = run.parent.clone();
        for command in activation.commands {
            self.carry_out(run_id, parent.clone(), command);
        }
        if activation.status.is_terminal() && activation.status != RunStatus::ContinuedAsNew {
            let outcome = match self.runs[run_id].history.last().map(|e| &e.kind) {
                Some(EventKind::RunCompleted { output }) => Ok(output.clone()),
                Some(EventKind::RunFailed { error } | EventKind::RunCancelled { error }) => {
                    Err(error.clone())
                }
                _ => Err(StepError::terminal(format!(
                    "child run ended {}",
                    activation.status
                ))),
            };
            self.report(parent, outcome);
        }
        Ok(())
    }

    /// What the engine's outbox would send, delivered in process.
    pub(super) fn carry_out(
        &mut self,
        run_id: &RunId,
        parent: Option<(RunId, u64)>,
        command: Command,
    ) {
        match command {
            Command::DispatchTask { .. } => {
                let workflow = self.workflow_of(run_id);
                if let Some(task) = command.remote_task(run_id, workflow.as_deref(), self.now_ms) {
                    self.deliver_task(task);
                }
            }
            Command::StartTimer {
                timer_id,
                fire_at_ms,
                ..
            } => self.schedule(fire_at_ms, run_id, DueKind::Timer(timer_id)),
            Command::StartChild {
                seq,
                workflow,
                run_id: child,
                input,
            } => {
                // The activation derived the id (`<run>~c<seq>`): it parses.
                if let Ok(child) = RunId::parse(child) {
                    if !self.runs.contains_key(&child) {
                        self.add_run(child, &workflow, input, Some((run_id.clone(), seq)));
                    }
                }
            }
            Command::CancelChild { run_id: child } => {
                if let Some(child) = self.runs.get_mut(child.as_str()) {
                    child.inbox.push(Incoming::Cancel {
                        reason: Some(format!("parent {run_id} cancelled")),
                    });
                }
            }
            // The environment reports a finished child itself (see `activate`), as the
            // engine Lambda does from the run record.
            Command::ReportToParent { .. } => {}
            Command::ContinueAsNew { workflow, input } => {
                let next = run_id.next_in_chain();
                if let Some(run) = self.runs.get_mut(run_id) {
                    run.continued_as = Some(next.clone());
                }
                self.add_run(next, &workflow, input, parent);
            }
        }
    }

    pub(super) fn workflow_of(&self, run_id: &RunId) -> Option<String> {
        self.runs[run_id]
            .history
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::RunStarted { workflow, .. } => Some(workflow.clone()),
                _ => None,
            })
    }

    pub(super) fn report(
        &mut self,
        parent: Option<(RunId, u64)>,
        outcome: Result<Value, StepError>,
    ) {
        let Some((parent_id, seq)) = parent else {
            return;
        };
        if let Some(parent) = self.runs.get_mut(&parent_id) {
            parent.inbox.push(Incoming::StepResult {
                seq,
                attempt: None,
                outcome,
                started_at_ms: None,
                events: Vec::new(),
            });
        }
    }

    /// Puts a dispatched task in its queue: at once, or after the queue wait.
    pub(super) fn deliver_task(&mut self, task: RemoteTask) {
        if self.queue_wait_ms == 0 {
            self.tasks.push_back(task);
            return;
        }
        self.order += 1;
        let key = self.order;
        let run_id = task.run_id.clone();
        self.queued.insert(key, task);
        let at_ms = self.now_ms.saturating_add(self.queue_wait_ms);
        self.schedule(at_ms, &run_id, DueKind::Task(key));
    }

    /// Runs the task's handler (started now, by the virtual clock) and queues its result for
    /// the run.
    pub(super) async fn answer(&mut self, task: RemoteTask) {
        let mut result = self.worker.run_task_at(&task, self.now_ms, false, 1).await;
        let events = result.events.take().unwrap_or_default();
        let outcome = match result.status {
            StepStatus::Completed => Ok(result.output.unwrap_or_default()),
            StepStatus::Failed => Err(result
                .error
                .unwrap_or_else(|| StepError::terminal("failed without an error"))),
        };
        if let Some(run) = self.runs.get_mut(task.run_id.as_str()) {
            run.inbox.push(Incoming::StepResult {
                seq: task.seq,
                attempt: Some(task.attempt),
                outcome: outcome.clone(),
                started_at_ms: result.started_at,
                events,
            });
        }
        self.calls.push(StepCall {
            task,
            at_ms: self.now_ms,
            outcome,
        });
    }
}

/// As the engine does when the store refuses an activation: a run that recorded something
/// too deep to store keeps the events before it and fails (code `unstorable`), sending
/// nothing.
fn fail_if_unstorable(activation: &mut crate::workflow::Activation, now_ms: u64) {
    let Some((at, reason)) = activation
        .appended
        .iter()
        .enumerate()
        .find_map(|(i, e)| crate::store::unstorable_event(e).map(|reason| (i, reason)))
    else {
        return;
    };
    activation.appended.truncate(at);
    activation.appended.retain(|e| !e.kind.ends_run());
    let error = crate::store::unstorable_error(&reason);
    activation
        .appended
        .push(HistoryEvent::new(now_ms, EventKind::RunFailed { error }));
    activation.commands.clear();
    activation.status = RunStatus::Failed;
}
