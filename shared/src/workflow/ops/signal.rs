//! Signals: `ctx.wait_for_signal(name)`. Signals are buffered per name in arrival order; a
//! wait consumes the oldest unconsumed one, including signals that arrived before the wait.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::workflow::context::{decode, issue_in, OpGuard};
use crate::workflow::state::Operation;
use crate::workflow::{EventKind, TimerId, WorkflowContext, WorkflowError};

impl WorkflowContext {
    /// Waits for the next signal `name` and decodes its payload.
    pub fn wait_for_signal<T: DeserializeOwned>(&self, name: &str) -> SignalWait<T> {
        SignalWait {
            inner: self.start_wait(name, None),
            output: PhantomData,
        }
    }

    /// Waits for the next signal `name` for at most `timeout`: `Ok(None)` when the timeout
    /// fired first.
    pub fn wait_for_signal_timeout<T: DeserializeOwned>(
        &self,
        name: &str,
        timeout: Duration,
    ) -> SignalWaitTimeout<T> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        SignalWaitTimeout {
            inner: self.start_wait(name, Some(timeout_ms)),
            output: PhantomData,
        }
    }

    fn start_wait(&self, name: &str, timeout_ms: Option<u64>) -> Wait {
        let mut wait = Wait {
            guard: OpGuard {
                ctx: self.clone(),
                seq: None,
            },
            name: name.to_owned(),
            early: None,
        };
        let mut state = self.state();
        match issue_in(&mut state, Operation::Signal(name.to_owned()), true) {
            Ok(issued) => {
                wait.guard.seq = Some(issued.seq);
                if issued.new {
                    state.produce(
                        EventKind::SignalWaitStarted {
                            seq: issued.seq,
                            name: name.to_owned(),
                        },
                        None,
                    );
                    if let Some(timeout) = timeout_ms {
                        let fire_at_ms = state.now_ms.saturating_add(timeout);
                        state.start_timer(TimerId::SignalTimeout(issued.seq), fire_at_ms);
                    }
                }
            }
            Err(e) => wait.early = Some(e),
        }
        wait
    }
}

#[derive(Debug)]
struct Wait {
    guard: OpGuard,
    name: String,
    early: Option<WorkflowError>,
}

impl Wait {
    /// `Some(payload)` when a signal was consumed, `None` on timeout.
    fn poll_wait(
        &mut self,
        cx: &Context<'_>,
    ) -> Poll<Result<Option<serde_json::Value>, WorkflowError>> {
        let (seq, mut state) = match self.guard.begin_poll(&mut self.early) {
            Ok(begun) => begun,
            Err(end) => return end,
        };
        if let Some(index) = state
            .signal_queues
            .get_mut(&self.name)
            .and_then(|q| q.pop_front())
        {
            let payload = std::mem::take(&mut state.signals[index].payload);
            return state.resolve(seq, Ok(Some(payload)));
        }
        let timed_out = state
            .slot(seq)
            .and_then(|s| s.timer(TimerId::SignalTimeout(seq)))
            .is_some_and(|t| t.visible);
        if timed_out {
            return state.resolve(seq, Ok(None));
        }
        let waiters = state.signal_waiters.entry(self.name.clone()).or_default();
        if !waiters.contains(&seq) {
            waiters.push(seq);
        }
        state.park(seq, cx)
    }
}

/// The future of [`WorkflowContext::wait_for_signal`].
#[derive(Debug)]
#[must_use = "only awaiting the wait consumes a signal"]
pub struct SignalWait<T> {
    inner: Wait,
    output: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Future for SignalWait<T> {
    type Output = Result<T, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.inner
            .poll_wait(cx)
            .map(|r| r.and_then(|p| decode(&p.unwrap_or_default())))
    }
}

/// The future of [`WorkflowContext::wait_for_signal_timeout`].
#[derive(Debug)]
#[must_use = "only awaiting the wait consumes a signal"]
pub struct SignalWaitTimeout<T> {
    inner: Wait,
    output: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Future for SignalWaitTimeout<T> {
    type Output = Result<Option<T>, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.inner
            .poll_wait(cx)
            .map(|r| r.and_then(|p| p.map(|p| decode(&p)).transpose()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::*;
    use super::*;
    use crate::workflow::{Command, RunStatus, Workflows};
    use serde_json::{json, Value};

    fn workflows() -> Workflows {
        let mut w = Workflows::new();
        w.register("approve", |ctx: WorkflowContext, _: ()| async move {
            let first: String = ctx.wait_for_signal("approval").await?;
            let second: Option<String> = ctx
                .wait_for_signal_timeout("approval", Duration::from_secs(60))
                .await?;
            Ok(json!([first, second]))
        });
        w
    }

    #[test]
    fn buffered_signals_are_consumed_in_order() {
        let w = workflows();
        let mut sim = Sim::new(&w, "r");
        let a = sim.step(vec![
            start("approve", ()),
            signal("approval", "a"),
            signal("approval", "b"),
        ]);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(sim.output(), Some(json!(["a", "b"])));
    }

    #[test]
    fn timeout_wins_when_no_signal() {
        let w = workflows();
        let mut sim = Sim::new(&w, "r");
        sim.step(vec![start("approve", ())]);
        let a = sim.step(vec![signal("other", 1), signal("approval", "yes")]);
        assert!(matches!(
            &a.commands[..],
            [Command::StartTimer {
                timer_id: TimerId::SignalTimeout(2),
                ..
            }]
        ));
        let a = sim.step(vec![fire("2:signal-timeout"), signal("approval", "late")]);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(sim.output(), Some(json!(["yes", Value::Null])));
    }
}
