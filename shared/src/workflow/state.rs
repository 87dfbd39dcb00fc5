//! The run state one activation works on: the history indexed by `seq` (built once, O(n)),
//! what the replay has revealed so far, and what it produced.
//!
//! Replay reveals the history's *incoming* events (remote/child results, fired timers,
//! signals, cancel requests) one at a time, in history order, and lets the workflow settle
//! after each; the live engine applies new incoming events exactly the same way. So a replay
//! sees every race (`select`, a signal against its timeout) resolve as it did live. Events the
//! engine itself produced (`TaskScheduled`, `TimerStarted`, inline results, values...) are
//! matched by `seq` instead, and the first op that has no record is new: its events and
//! commands make the activation's output.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use serde_json::Value;

pub(crate) use super::Operation;
use super::{
    Command, EngineError, EventKind, HistoryEvent, RetryPolicy, StepTimeouts, TimerId, ValueKind,
    HISTORY_FORMAT,
};
use crate::contract::StepError;

/// Locks a mutex, ignoring poisoning (a panic in workflow code is reported separately).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The outcome of one attempt of a step.
#[derive(Debug)]
pub(crate) struct AttemptResult {
    pub attempt: u32,
    pub outcome: Result<Value, StepError>,
    /// When the worker started the attempt (its clock), if it said.
    pub started_at_ms: Option<u64>,
    /// Arrived after the engine had failed the attempt on its start-to-close timeout.
    pub late: bool,
    /// Revealed to the workflow yet.
    pub visible: bool,
}

/// A durable timer of an operation (sleep, retry backoff, timeout).
#[derive(Debug)]
pub(crate) struct TimerSlot {
    pub id: TimerId,
    /// A `TimerFired` exists (for dedupe).
    pub fired: bool,
    /// ... and was revealed to the workflow.
    pub visible: bool,
}

/// Everything known about one `seq`.
#[derive(Debug, Default)]
pub(crate) struct OpSlot {
    /// The recorded or produced issuing event's kind.
    pub kind: Option<Operation>,
    /// Whether `kind` came from the recorded history (vs. produced in this activation).
    pub recorded: bool,
    /// Whether the replay has issued this op.
    pub issued: bool,
    /// Highest attempt scheduled/started.
    pub attempts: u32,
    /// When the first attempt was scheduled (engine clock); kept apart from the retries'
    /// times so the common single-attempt step allocates nothing for it.
    pub first_scheduled_at_ms: u64,
    /// When each retry was scheduled, by attempt - 2.
    pub retries_scheduled_at_ms: Vec<u64>,
    /// The retry policy the history recorded for the step (format 2).
    pub policy: Option<RetryPolicy>,
    /// Attempts the engine failed on their timeout timer.
    pub timed_out: Vec<u32>,
    /// The timeouts the latest attempt was scheduled with (format 2 histories from this
    /// release on record them).
    pub timeouts: Option<StepTimeouts>,
    pub results: Vec<AttemptResult>,
    /// The late success (index in `results`) the step completed with.
    pub kept: Option<usize>,
    /// The op's future resolved (the workflow has its outcome).
    pub resolved: bool,
    pub timers: Vec<TimerSlot>,
    pub value: Option<Value>,
    pub child_run_id: Option<String>,
    pub waker: Option<Waker>,
    /// The cancel request was delivered to this op.
    pub cancelled: bool,
}

impl OpSlot {
    fn attempt_started(&mut self, attempt: u32, policy: Option<RetryPolicy>, at_ms: u64) {
        self.attempts = self.attempts.max(attempt);
        if self.policy.is_none() {
            self.policy = policy;
        }
        if attempt <= 1 {
            self.first_scheduled_at_ms = at_ms;
            return;
        }
        let index = usize::try_from(attempt - 2).unwrap_or(usize::MAX);
        if index >= self.retries_scheduled_at_ms.len() && index < 1 << 16 {
            self.retries_scheduled_at_ms.resize(index + 1, at_ms);
        }
        if let Some(at) = self.retries_scheduled_at_ms.get_mut(index) {
            *at = at_ms;
        }
    }

    pub(crate) fn timer(&self, id: TimerId) -> Option<&TimerSlot> {
        self.timers.iter().find(|t| t.id == id)
    }

    /// The first result recorded for `attempt` (for a timed-out attempt: the engine's failure).
    pub(crate) fn result(&self, attempt: u32) -> Option<&AttemptResult> {
        self.results.iter().find(|r| r.attempt == attempt)
    }

    /// The late success the step completed with, once revealed.
    pub(crate) fn kept_result(&self) -> Option<&AttemptResult> {
        self.kept
            .and_then(|index| self.results.get(index))
            .filter(|r| r.visible)
    }

    /// When `attempt` was scheduled, if recorded.
    pub(crate) fn scheduled_at(&self, attempt: u32) -> Option<u64> {
        match attempt {
            0 => None,
            1 => Some(self.first_scheduled_at_ms),
            _ => {
                let index = usize::try_from(attempt - 2).ok()?;
                self.retries_scheduled_at_ms.get(index).copied()
            }
        }
    }
}

/// An incoming event to reveal, in history order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Gate {
    Result { seq: u64, index: usize },
    Timer { seq: u64, index: usize },
    Signal(usize),
    Cancel,
}

/// A received signal.
#[derive(Debug)]
pub(crate) struct SignalSlot {
    pub name: String,
    pub payload: Value,
}

/// Cancellation progress.
#[derive(Debug, Default)]
pub(crate) struct CancelState {
    /// A `CancelRequested` exists.
    pub requested: bool,
    pub reason: Option<String>,
    /// Revealed to the workflow.
    pub revealed: bool,
    /// Revealed, but no op was open: the next op issued gets it.
    pub pending_delivery: bool,
}

/// How the history says the run ended.
#[derive(Debug, Clone)]
pub(crate) enum Terminal {
    Completed,
    Failed,
    Cancelled,
    ContinuedAsNew,
}

/// The state shared between the engine and the workflow's [`WorkflowContext`](super::WorkflowContext).
#[derive(Debug, Default)]
pub(crate) struct State {
    pub run_id: String,
    pub now_ms: u64,
    /// The history format of the run (`RunStarted.format`).
    pub format: u32,
    pub workflow: Option<String>,
    pub input: Value,
    /// Indexed by `seq` (seqs are dense from 1; slot 0 unused).
    pub ops: Vec<OpSlot>,
    /// Timer id -> (seq, index in that slot's timers).
    pub timer_ids: HashMap<TimerId, (u64, usize)>,
    pub signals: Vec<SignalSlot>,
    /// Ids of the signals received so far (dedupe of redelivered signals).
    pub signal_ids: std::collections::HashSet<String>,
    /// Revealed, not yet consumed signals, per name.
    pub signal_queues: HashMap<String, VecDeque<usize>>,
    /// Waits blocked on a signal name.
    pub signal_waiters: HashMap<String, Vec<u64>>,
    pub patches: HashSet<String>,
    pub cancel: CancelState,
    pub terminal: Option<Terminal>,
    /// Next seq the replay will hand out.
    pub next_seq: u64,
    /// Highest seq with a recorded issuing event.
    pub max_recorded_seq: u64,
    /// Issued ops whose futures are alive and unresolved (cancel is delivered to them).
    pub open: BTreeSet<u64>,
    /// Incoming events still to reveal.
    pub gates: VecDeque<(Gate, bool)>,
    /// True while indexing the recorded history (vs. appending new events).
    pub indexing_recorded: bool,
    pub appended: Vec<HistoryEvent>,
    pub commands: Vec<Command>,
    pub fatal: Option<EngineError>,
    pub inline_in_flight: usize,
}

impl State {
    /// Ids of the timers started and not fired.
    pub(crate) fn unfired_timers(&self) -> BTreeSet<TimerId> {
        self.ops
            .iter()
            .flat_map(|slot| slot.timers.iter())
            .filter(|t| !t.fired)
            .map(|t| t.id)
            .collect()
    }

    /// Ids of the unfired timers whose op the workflow still awaits.
    pub(crate) fn waiting_timers(&self) -> BTreeSet<TimerId> {
        self.open
            .iter()
            .filter_map(|&seq| self.slot(seq))
            .flat_map(|slot| slot.timers.iter())
            .filter(|t| !t.fired)
            .map(|t| t.id)
            .collect()
    }

    pub(crate) fn new(run_id: &str, now_ms: u64) -> Self {
        Self {
            run_id: run_id.to_owned(),
            now_ms,
            format: HISTORY_FORMAT,
            next_seq: 1,
            ..Self::default()
        }
    }

    /// The slot of `seq`, created if needed.
    pub(crate) fn slot_mut(&mut self, seq: u64) -> &mut OpSlot {
        let index = usize::try_from(seq).unwrap_or(usize::MAX);
        if index >= self.ops.len() {
            self.ops.resize_with(index + 1, OpSlot::default);
        }
        &mut self.ops[index]
    }

    /// The slot of `seq`, if anything is known about it.
    pub(crate) fn slot(&self, seq: u64) -> Option<&OpSlot> {
        usize::try_from(seq).ok().and_then(|i| self.ops.get(i))
    }

    /// Indexes one recorded event.
    pub(crate) fn index_recorded(
        &mut self,
        event: &HistoryEvent,
        limit: u64,
    ) -> Result<(), EngineError> {
        if let Some(seq) = event.kind.seq() {
            if seq == 0 || seq > limit {
                return Err(EngineError::InvalidInput(format!(
                    "history event with seq {seq} out of range"
                )));
            }
        }
        self.indexing_recorded = true;
        self.index(&event.kind, event.at_ms, false);
        self.indexing_recorded = false;
        Ok(())
    }

    /// Appends a new event (output of this activation) and indexes it. `gated` events are
    /// queued for reveal; the caller reveals them.
    pub(crate) fn append(&mut self, kind: EventKind) {
        self.index(&kind, self.now_ms, true);
        self.appended.push(HistoryEvent::new(self.now_ms, kind));
    }

    /// Records what an event tells; queues incoming events for reveal.
    fn index(&mut self, kind: &EventKind, at_ms: u64, new: bool) {
        let recorded = self.indexing_recorded;
        match kind {
            EventKind::RunStarted {
                workflow,
                input,
                format,
            } => {
                self.workflow = Some(workflow.clone());
                self.input = input.clone();
                self.format = *format;
            }
            EventKind::TaskScheduled {
                seq,
                name,
                attempt,
                retry,
                timeouts,
                ..
            } => {
                self.issue_record(*seq, Operation::Remote(name.clone()), recorded);
                let slot = self.slot_mut(*seq);
                slot.attempt_started(*attempt, *retry, at_ms);
                slot.timeouts = *timeouts;
            }
            EventKind::InlineStepStarted {
                seq,
                name,
                attempt,
                retry,
            } => {
                self.issue_record(*seq, Operation::Inline(name.clone()), recorded);
                self.slot_mut(*seq).attempt_started(*attempt, *retry, at_ms);
            }
            EventKind::StepCompleted {
                seq,
                attempt,
                output,
                started_at_ms,
                ..
            } => {
                let outcome = Ok(output.clone());
                self.index_result(*seq, *attempt, outcome, *started_at_ms, false, new);
            }
            EventKind::StepFailed {
                seq,
                attempt,
                error,
                started_at_ms,
                ..
            } => {
                let outcome = Err(error.clone());
                self.index_result(*seq, *attempt, outcome, *started_at_ms, false, new);
            }
            EventKind::LateResult {
                seq,
                attempt,
                output,
                error,
                started_at_ms,
                kept,
                ..
            } => {
                let outcome = match error {
                    Some(error) => Err(error.clone()),
                    None => Ok(output.clone().unwrap_or_default()),
                };
                let index = self.index_result(*seq, *attempt, outcome, *started_at_ms, true, new);
                if *kept {
                    self.slot_mut(*seq).kept = Some(index);
                }
            }
            EventKind::TimerStarted { seq, timer_id, .. } => {
                if matches!(timer_id, TimerId::Sleep(_)) {
                    self.issue_record(*seq, Operation::Timer, recorded);
                }
                let slot = self.slot_mut(*seq);
                slot.timers.push(TimerSlot {
                    id: *timer_id,
                    fired: false,
                    visible: false,
                });
                let index = slot.timers.len() - 1;
                self.timer_ids.insert(*timer_id, (*seq, index));
            }
            EventKind::TimerFired { timer_id, .. } => {
                if let Some(&(seq, index)) = self.timer_ids.get(timer_id) {
                    let slot = self.slot_mut(seq);
                    slot.timers[index].fired = true;
                    if let TimerId::Timeout { attempt, .. } = *timer_id {
                        // The engine fails the attempt right after (see `apply_incoming`).
                        if slot.result(attempt).is_none() && slot.kept.is_none() {
                            slot.timed_out.push(attempt);
                        }
                    }
                    self.gates.push_back((Gate::Timer { seq, index }, new));
                }
            }
            EventKind::SignalWaitStarted { seq, name } => {
                self.issue_record(*seq, Operation::Signal(name.clone()), recorded);
            }
            EventKind::SignalReceived {
                name,
                payload,
                signal_id,
            } => {
                if let Some(id) = signal_id {
                    self.signal_ids.insert(id.clone());
                }
                self.signals.push(SignalSlot {
                    name: name.clone(),
                    payload: payload.clone(),
                });
                self.gates
                    .push_back((Gate::Signal(self.signals.len() - 1), new));
            }
            EventKind::ValueRecorded { seq, kind, value } => {
                if let ValueKind::Patched(change) = kind {
                    self.patches.insert(change.clone());
                } else {
                    self.issue_record(*seq, Operation::Value(kind.clone()), recorded);
                    self.slot_mut(*seq).value = Some(value.clone());
                }
            }
            EventKind::PatchMarked { change_id } => {
                self.patches.insert(change_id.clone());
            }
            EventKind::ChildStarted {
                seq,
                workflow,
                run_id,
                ..
            } => {
                self.issue_record(*seq, Operation::Child(workflow.clone()), recorded);
                let slot = self.slot_mut(*seq);
                slot.child_run_id = Some(run_id.clone());
                slot.attempts = slot.attempts.max(1);
            }
            EventKind::CancelRequested { reason } => {
                if !self.cancel.requested {
                    self.cancel.requested = true;
                    self.cancel.reason = reason.clone();
                    self.gates.push_back((Gate::Cancel, new));
                }
            }
            EventKind::RunCompleted { .. } => self.terminal = Some(Terminal::Completed),
            // Format 1 ended a cancelled run with `RunFailed` and code `cancelled` (no
            // `RunCancelled` yet): only there does the code say how the run ended.
            EventKind::RunFailed { error }
                if self.format < 2 && error.has_code(crate::contract::ErrorCode::Cancelled) =>
            {
                self.terminal = Some(Terminal::Cancelled)
            }
            EventKind::RunFailed { .. } => self.terminal = Some(Terminal::Failed),
            EventKind::RunCancelled { .. } => self.terminal = Some(Terminal::Cancelled),
            EventKind::ContinuedAsNew { .. } => self.terminal = Some(Terminal::ContinuedAsNew),
        }
    }

    fn issue_record(&mut self, seq: u64, kind: Operation, recorded: bool) {
        if recorded {
            self.max_recorded_seq = self.max_recorded_seq.max(seq);
        }
        let slot = self.slot_mut(seq);
        if slot.kind.is_none() {
            slot.kind = Some(kind);
            slot.recorded = recorded;
        }
    }

    /// Records a result; returns its index in the slot's results.
    fn index_result(
        &mut self,
        seq: u64,
        attempt: u32,
        outcome: Result<Value, StepError>,
        started_at_ms: Option<u64>,
        late: bool,
        new: bool,
    ) -> usize {
        let slot = self.slot_mut(seq);
        // Inline results are produced by the replay itself: visible at once. Remote and child
        // results are incoming: revealed in history order.
        let inline = matches!(slot.kind, Some(Operation::Inline(_)));
        slot.results.push(AttemptResult {
            attempt,
            outcome,
            started_at_ms,
            late,
            visible: inline,
        });
        let index = slot.results.len() - 1;
        if !inline {
            self.gates.push_back((Gate::Result { seq, index }, new));
        }
        index
    }

    /// Reveals the next queued incoming event to the workflow; wakes whoever waits on it.
    /// Returns false when there is none.
    pub(crate) fn reveal_next(&mut self) -> bool {
        let Some((gate, new)) = self.gates.pop_front() else {
            return false;
        };
        match gate {
            Gate::Result { seq, index } => {
                let slot = self.slot_mut(seq);
                slot.results[index].visible = true;
                wake(slot);
            }
            Gate::Timer { seq, index } => {
                let slot = self.slot_mut(seq);
                slot.timers[index].visible = true;
                wake(slot);
            }
            Gate::Signal(index) => {
                let name = self.signals[index].name.clone();
                self.signal_queues
                    .entry(name.clone())
                    .or_default()
                    .push_back(index);
                for seq in self.signal_waiters.remove(&name).unwrap_or_default() {
                    wake(self.slot_mut(seq));
                }
            }
            Gate::Cancel => self.deliver_cancel(new),
        }
        true
    }

    /// Delivers the cancel request to every open op, or to the next op issued if none is open.
    fn deliver_cancel(&mut self, new: bool) {
        self.cancel.revealed = true;
        if self.open.is_empty() {
            self.cancel.pending_delivery = true;
            return;
        }
        let open: Vec<u64> = self.open.iter().copied().collect();
        for seq in open {
            let slot = self.slot_mut(seq);
            slot.cancelled = true;
            let child = slot.child_run_id.clone();
            wake(slot);
            if let (Some(run_id), true) = (child, new) {
                self.commands.push(Command::CancelChild { run_id });
            }
        }
    }

    /// Records a fatal error (the first one wins).
    pub(crate) fn fail(&mut self, error: EngineError) {
        if self.fatal.is_none() {
            self.fatal = Some(error);
        }
    }

    /// A deterministic seed for `seq` in this run.
    pub(crate) fn seed(&self, seq: u64) -> u64 {
        super::retry::seed_of(&self.run_id, seq)
    }
}

fn wake(slot: &mut OpSlot) {
    if let Some(waker) = slot.waker.take() {
        waker.wake();
    }
}
