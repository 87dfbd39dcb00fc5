//! [`WorkflowContext`]: the handle a workflow makes its durable calls on, and the bookkeeping
//! every operation shares (numbering, replay checks, cancellation, wakers).

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::state::{lock, Operation, State};
use super::{Command, EngineError, EventKind, TimerId, WorkflowError};

/// The workflow's handle on its run. Every durable call gets the next `seq`; replay hands back
/// the recorded result of that `seq` at once.
///
/// Cheap to clone (`Arc` inside), `Send + Sync`: it may be moved into the futures of a
/// fan-out. The durable operations are in [`ops`](super::ops)-level `impl` blocks:
/// [`remote`](Self::remote), [`step`](Self::step), [`sleep`](Self::sleep),
/// [`wait_for_signal`](Self::wait_for_signal), [`now`](Self::now), [`child`](Self::child),
/// [`patched`](Self::patched), [`continue_as_new`](Self::continue_as_new).
#[derive(Clone)]
pub struct WorkflowContext {
    pub(crate) shared: Arc<Mutex<State>>,
}

impl std::fmt::Debug for WorkflowContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.shared);
        f.debug_struct("WorkflowContext")
            .field("run_id", &state.run_id)
            .field("next_seq", &state.next_seq)
            .finish()
    }
}

/// The seq an operation got, and whether it has a record (replay) or is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Issued {
    pub seq: u64,
    pub new: bool,
}

impl WorkflowContext {
    pub(crate) fn new(shared: Arc<Mutex<State>>) -> Self {
        Self { shared }
    }

    /// This run's id.
    pub fn run_id(&self) -> String {
        lock(&self.shared).run_id.clone()
    }

    /// The registered name of the running workflow.
    pub fn workflow_name(&self) -> String {
        lock(&self.shared).workflow.clone().unwrap_or_default()
    }

    /// Whether a cancel request has reached the workflow (it is also delivered as
    /// [`WorkflowError::Cancelled`] at the next await).
    pub fn is_cancel_requested(&self) -> bool {
        lock(&self.shared).cancel.revealed
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// Numbers a new operation and checks it against the record at that `seq`.
    ///
    /// `awaited` ops take a pending cancellation (returned as the error) and are tracked as
    /// open until their future resolves or is dropped.
    pub(crate) fn issue(&self, kind: Operation, awaited: bool) -> Result<Issued, WorkflowError> {
        let mut state = self.state();
        issue_in(&mut state, kind, awaited)
    }
}

pub(crate) fn issue_in(
    state: &mut State,
    kind: Operation,
    awaited: bool,
) -> Result<Issued, WorkflowError> {
    if awaited && state.cancel.pending_delivery {
        state.cancel.pending_delivery = false;
        return Err(WorkflowError::Cancelled {
            reason: state.cancel.reason.clone(),
        });
    }
    let seq = state.next_seq;
    state.next_seq += 1;
    let slot = state.slot_mut(seq);
    slot.issued = true;
    let recorded = slot.kind.clone();
    let new = match recorded {
        Some(recorded) if recorded != kind => {
            state.fail(EngineError::NonDeterminism {
                seq,
                recorded,
                actual: super::CodeAction::Issued(kind),
            });
            false
        }
        Some(_) => false,
        None => {
            slot.kind = Some(kind);
            true
        }
    };
    if awaited {
        state.open.insert(seq);
    }
    Ok(Issued { seq, new })
}

impl State {
    /// Produces an event and its command, unless the activation already failed.
    pub(crate) fn produce(&mut self, event: EventKind, command: Option<Command>) {
        if self.fatal.is_some() {
            return;
        }
        self.append(event);
        if let Some(command) = command {
            self.commands.push(command);
        }
    }

    /// Starts a durable timer: records `TimerStarted` and sends `StartTimer` (the one place
    /// that pairs them).
    pub(crate) fn start_timer(&mut self, timer_id: TimerId, fire_at_ms: u64) {
        let seq = timer_id.seq();
        self.produce(
            EventKind::TimerStarted {
                seq,
                timer_id,
                fire_at_ms,
            },
            Some(Command::StartTimer {
                seq,
                timer_id,
                fire_at_ms,
            }),
        );
    }

    /// Common start of an op future's poll: blocked for good after a fatal error, the
    /// cancellation error once delivered.
    pub(crate) fn poll_prelude<T>(&mut self, seq: u64) -> Option<Poll<Result<T, WorkflowError>>> {
        if self.fatal.is_some() {
            return Some(Poll::Pending);
        }
        if self.slot(seq).is_some_and(|s| s.cancelled) {
            self.open.remove(&seq);
            return Some(Poll::Ready(Err(WorkflowError::Cancelled {
                reason: self.cancel.reason.clone(),
            })));
        }
        None
    }

    /// Parks the op's waker until something about `seq` is revealed.
    pub(crate) fn park<T>(&mut self, seq: u64, cx: &Context<'_>) -> Poll<T> {
        let slot = self.slot_mut(seq);
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The op resolved: no longer open.
    pub(crate) fn resolve<T>(&mut self, seq: u64, value: T) -> Poll<T> {
        self.open.remove(&seq);
        if let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.ops.get_mut(i)) {
            slot.waker = None;
            slot.resolved = true;
        }
        Poll::Ready(value)
    }
}

/// Keeps an op in the open set while its future lives.
#[derive(Debug)]
pub(crate) struct OpGuard {
    pub ctx: WorkflowContext,
    pub seq: Option<u64>,
}

/// The locked run state.
pub(crate) type StateGuard<'a> = std::sync::MutexGuard<'a, State>;
/// What an operation future's poll returns.
pub(crate) type OpPoll<T> = Poll<Result<T, WorkflowError>>;

impl OpGuard {
    /// The common start of an operation future's poll: an error found when the operation was
    /// issued, an operation never numbered (pending forever), a fatal engine state, or a
    /// cancellation end the poll (`Err`); otherwise the op's `seq` and the locked state.
    pub(crate) fn begin_poll<T>(
        &self,
        early: &mut Option<WorkflowError>,
    ) -> Result<(u64, StateGuard<'_>), OpPoll<T>> {
        if let Some(error) = early.take() {
            return Err(Poll::Ready(Err(error)));
        }
        let Some(seq) = self.seq else {
            return Err(Poll::Pending);
        };
        let mut state = self.ctx.state();
        if let Some(end) = state.poll_prelude(seq) {
            return Err(end);
        }
        Ok((seq, state))
    }
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        if let Some(seq) = self.seq {
            self.ctx.state().open.remove(&seq);
        }
    }
}

/// Deserializes a recorded JSON value into the caller's type.
pub(crate) fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, WorkflowError> {
    T::deserialize(value).map_err(WorkflowError::from)
}

/// Serializes a value for the history.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Value, WorkflowError> {
    serde_json::to_value(value).map_err(WorkflowError::from)
}
