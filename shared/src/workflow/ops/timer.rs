//! Durable timers: `ctx.sleep` / `ctx.sleep_until`. The timer id of a sleep is its `seq`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::workflow::context::OpGuard;
use crate::workflow::state::Operation;
use crate::workflow::{TimerId, WorkflowContext, WorkflowError};

impl WorkflowContext {
    /// Sleeps durably for `duration` (any length: the run is unloaded meanwhile). Resolves
    /// with `Err(Cancelled)` if the run is cancelled first.
    pub fn sleep(&self, duration: Duration) -> Sleep {
        let delay = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        self.start_sleep(move |now| now.saturating_add(delay))
    }

    /// Sleeps durably until `at_ms` (epoch milliseconds).
    pub fn sleep_until(&self, at_ms: u64) -> Sleep {
        self.start_sleep(move |_| at_ms)
    }

    fn start_sleep(&self, fire_at: impl FnOnce(u64) -> u64) -> Sleep {
        let mut guard = OpGuard {
            ctx: self.clone(),
            seq: None,
        };
        let mut early = None;
        let mut state = self.state();
        match super::super::context::issue_in(&mut state, Operation::Timer, true) {
            Ok(issued) => {
                guard.seq = Some(issued.seq);
                if issued.new {
                    let fire_at_ms = fire_at(state.now_ms);
                    state.start_timer(TimerId::Sleep(issued.seq), fire_at_ms);
                }
            }
            Err(e) => early = Some(e),
        }
        drop(state);
        Sleep { guard, early }
    }
}

/// The future of a durable sleep.
#[derive(Debug)]
#[must_use = "the timer is started when created, but only awaiting it waits"]
pub struct Sleep {
    guard: OpGuard,
    early: Option<WorkflowError>,
}

impl Future for Sleep {
    type Output = Result<(), WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (seq, mut state) = match this.guard.begin_poll(&mut this.early) {
            Ok(begun) => begun,
            Err(end) => return end,
        };
        let fired = state
            .slot(seq)
            .and_then(|s| s.timer(TimerId::Sleep(seq)))
            .is_some_and(|t| t.visible);
        if fired {
            state.resolve(seq, Ok(()))
        } else {
            state.park(seq, cx)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::*;
    use super::*;
    use crate::workflow::{Command, Incoming, RunStatus, Workflows};

    fn workflows() -> Workflows {
        let mut w = Workflows::new();
        w.register("nap", |ctx: WorkflowContext, _: ()| async move {
            ctx.sleep(Duration::from_secs(3600)).await?;
            ctx.sleep_until(10).await?;
            Ok("rested")
        });
        w
    }

    #[test]
    fn sleeps_until_fired_once() {
        let w = workflows();
        let mut sim = Sim::new(&w, "r");
        let a = sim.step(vec![start("nap", ())]);
        assert_eq!(
            a.commands,
            vec![Command::StartTimer {
                seq: 1,
                timer_id: TimerId::Sleep(1),
                fire_at_ms: 3_601_000
            }]
        );
        let a = sim.step(vec![fire("1"), fire("1")]);
        assert_eq!(
            a.appended.len(),
            2,
            "one TimerFired + the next TimerStarted: {:?}",
            a.appended
        );
        assert_eq!(
            a.commands,
            vec![Command::StartTimer {
                seq: 2,
                timer_id: TimerId::Sleep(2),
                fire_at_ms: 10
            }]
        );
        let a = sim.step(vec![fire("99"), fire("2")]);
        assert_eq!(a.status, RunStatus::Completed);
    }

    #[test]
    fn cancel_interrupts_sleep_and_late_fire_is_ignored() {
        let w = workflows();
        let mut sim = Sim::new(&w, "r");
        sim.step(vec![start("nap", ())]);
        let a = sim.step(vec![Incoming::Cancel {
            reason: Some("stop".into()),
        }]);
        assert_eq!(a.status, RunStatus::Cancelled);
        assert_eq!(sim.failure().unwrap().code.as_deref(), Some("cancelled"));
        let a = sim.step(vec![fire("1")]);
        assert!(a.appended.is_empty() && a.commands.is_empty());
        assert_eq!(a.status, RunStatus::Cancelled);
    }
}
