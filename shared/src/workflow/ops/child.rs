//! Child workflows: `ctx.child(workflow, input)` starts a child run and resolves with its
//! outcome, which comes back as an ordinary step result for the parent's `seq`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::workflow::context::{decode, encode, issue_in, OpGuard};
use crate::workflow::state::Operation;
use crate::workflow::{Command, EventKind, WorkflowContext, WorkflowError};

/// The run id of the child started at `seq` of `parent_run_id`: `<parent>~c<seq>`.
///
/// `~` is reserved for ids cairn derives (children here, `<run>~<n>` for continue-as-new):
/// [`Client::start`](crate::client::Client::start) refuses it in the ids people choose, so a
/// derived id never collides with a user's.
pub fn child_run_id(parent_run_id: &str, seq: u64) -> String {
    format!("{parent_run_id}~c{seq}")
}

impl WorkflowContext {
    /// Starts a child run now and returns its handle: await it for the outcome, or drop it to
    /// let the child run on its own (fire-and-forget). Same as [`child`](Self::child).
    pub fn start_child<I: Serialize, O: DeserializeOwned>(
        &self,
        workflow: &str,
        input: &I,
    ) -> ChildCall<O> {
        self.child(workflow, input)
    }

    /// Starts the child workflow `workflow` with `input` (at once) and returns a future of its
    /// output. A failed child resolves with [`WorkflowError::StepFailed`]; cancelling this run
    /// cancels its unfinished children.
    pub fn child<I: Serialize, O: DeserializeOwned>(
        &self,
        workflow: &str,
        input: &I,
    ) -> ChildCall<O> {
        let mut call = ChildCall {
            guard: OpGuard {
                ctx: self.clone(),
                seq: None,
            },
            early: None,
            output: PhantomData,
        };
        let input = match encode(input) {
            Ok(input) => input,
            Err(e) => {
                call.early = Some(e);
                return call;
            }
        };
        let mut state = self.state();
        match issue_in(&mut state, Operation::Child(workflow.to_owned()), true) {
            Ok(issued) => {
                call.guard.seq = Some(issued.seq);
                if issued.new {
                    let run_id = child_run_id(&state.run_id, issued.seq);
                    state.produce(
                        EventKind::ChildStarted {
                            seq: issued.seq,
                            workflow: workflow.to_owned(),
                            run_id: run_id.clone(),
                            input: input.clone(),
                        },
                        Some(Command::StartChild {
                            seq: issued.seq,
                            workflow: workflow.to_owned(),
                            run_id,
                            input,
                        }),
                    );
                }
            }
            Err(e) => call.early = Some(e),
        }
        drop(state);
        call
    }
}

/// The future of a child run's outcome.
#[derive(Debug)]
#[must_use = "the child is started when called, but its outcome arrives only when awaited"]
pub struct ChildCall<O> {
    guard: OpGuard,
    early: Option<WorkflowError>,
    output: PhantomData<fn() -> O>,
}

impl<O> ChildCall<O> {
    /// The child's run id (`None` if it could not be started).
    pub fn run_id(&self) -> Option<String> {
        let seq = self.guard.seq?;
        self.guard
            .ctx
            .state()
            .slot(seq)
            .and_then(|s| s.child_run_id.clone())
    }
}

impl<O: DeserializeOwned> Future for ChildCall<O> {
    type Output = Result<O, WorkflowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (seq, mut state) = match this.guard.begin_poll(&mut this.early) {
            Ok(begun) => begun,
            Err(end) => return end,
        };
        let outcome = state
            .slot(seq)
            .and_then(|s| s.result(1))
            .filter(|r| r.visible)
            .map(|r| r.outcome.clone());
        match outcome {
            Some(Ok(output)) => state.resolve(seq, decode(&output)),
            Some(Err(error)) => {
                state.resolve(seq, Err(WorkflowError::StepFailed { error, attempts: 1 }))
            }
            None => state.park(seq, cx),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::*;
    use super::*;
    use crate::workflow::{Incoming, RunStatus, Workflows};
    use serde_json::json;

    fn workflows() -> Workflows {
        let mut w = Workflows::new();
        w.register("parent", |ctx: WorkflowContext, n: u32| async move {
            let doubled: u32 = ctx.child("kid", &n).await?;
            Ok(doubled + 1)
        });
        w.register("kid", |ctx: WorkflowContext, n: u32| async move {
            ctx.sleep(std::time::Duration::from_secs(1)).await?;
            Ok(n * 2)
        });
        w
    }

    #[test]
    fn parent_starts_child_and_gets_its_output() {
        let w = workflows();
        let mut sim = Sim::new(&w, "p");
        let a = sim.step(vec![start("parent", 4)]);
        assert_eq!(
            a.commands,
            vec![Command::StartChild {
                seq: 1,
                workflow: "kid".into(),
                run_id: "p~c1".into(),
                input: json!(4)
            }]
        );
        let a = sim.step(vec![ok(1, 8)]);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(sim.output(), Some(json!(9)));
    }

    #[test]
    fn cancelling_parent_cancels_child() {
        let w = workflows();
        let mut sim = Sim::new(&w, "p");
        sim.step(vec![start("parent", 4)]);
        let a = sim.step(vec![Incoming::Cancel { reason: None }]);
        assert_eq!(a.status, RunStatus::Cancelled);
        assert!(a.commands.contains(&Command::CancelChild {
            run_id: "p~c1".into()
        }));
    }
}
