//! The workflow API and the deterministic replay engine (pure: no AWS here).
//!
//! A workflow is an `async fn(WorkflowContext, Input) -> Result<Output, WorkflowError>`.
//! Every durable call on the [`WorkflowContext`] gets a sequence number `seq`; the engine
//! checkpoints what happened to it in the run's [history](HistoryEvent) and, at each
//! [activation](activate), replays the workflow from the top against that history: recorded
//! results come back at once, and the first call without a record becomes a new
//! [`Command`] (dispatch a task, start a timer, start a child run...).
//!
//! | durable call | what it records | module |
//! |---|---|---|
//! | [`ctx.remote(&STEP, input)`](WorkflowContext::remote) | `TaskScheduled`, then the worker's `StepCompleted`/`StepFailed` | [`ops::remote`] |
//! | [`ctx.step(name, \|\| async {..})`](WorkflowContext::step) | `InlineStepStarted`, `StepCompleted`/`StepFailed` (the engine runs it) | [`ops::inline`] |
//! | [`ctx.sleep(d)`](WorkflowContext::sleep), [`ctx.sleep_until(t)`](WorkflowContext::sleep_until) | `TimerStarted`, `TimerFired` | [`ops::timer`] |
//! | [`ctx.wait_for_signal(name)`](WorkflowContext::wait_for_signal) (+ [`_timeout`](WorkflowContext::wait_for_signal_timeout)) | `SignalWaitStarted`; signals are buffered as `SignalReceived` | [`ops::signal`] |
//! | [`ctx.now()`](WorkflowContext::now), [`random()`](WorkflowContext::random), [`uuid()`](WorkflowContext::uuid) | `ValueRecorded` | [`ops::values`] |
//! | [`ctx.patched(id)`](WorkflowContext::patched), [`continue_as_new`](WorkflowContext::continue_as_new) | `PatchMarked`; `ContinuedAsNew` | [`ops::values`] |
//! | [`ctx.child(workflow, input)`](WorkflowContext::child) | `ChildStarted`, then the child's outcome as a step result | [`ops::child`] |
//!
//! - **Retries** ([`RetryPolicy`]): max attempts, fixed/exponential backoff, max delay,
//!   deterministic jitter; retryable vs terminal errors ([`StepError::retryable`](crate::contract::StepError)).
//!   A backoff is a durable timer ([`TimerId::Retry`]); a start-to-close timeout too
//!   ([`TimerId::Timeout`]). The policy is recorded with a step's first attempt, and its later
//!   attempts follow the recorded one. An exhausted or terminal step returns
//!   [`WorkflowError::StepFailed`]: catch it and compensate with ordinary steps.
//! - **Fan-out**: futures are issued when created, so `futures::future::join_all` /
//!   `select` over several calls dispatches all of them in one activation.
//! - **Cancellation**: [`Incoming::Cancel`] reaches the workflow as
//!   [`WorkflowError::Cancelled`] at its pending awaits (or its next one). Returning it ends the
//!   run as [`RunStatus::Cancelled`] (recorded as `RunCancelled`).
//! - **Non-determinism is loud**: an operation that differs from the one recorded at its
//!   `seq` (kind or name), or a recorded one the code no longer reaches, fails the activation
//!   with [`EngineError::NonDeterminism`] naming the seq, the record and the code's call.
//! - **Idempotent**: a redelivered result, a result for an attempt not dispatched, a timer that
//!   already fired, a second start or cancel are dropped without events or commands. A result
//!   for an attempt that already timed out is kept as a `LateResult` (see
//!   [`WorkflowContext::late_result`]); a late success wins while the step is undecided.
//!
//! # Example: a checkout workflow
//!
//! ```no_run
//! use std::time::Duration;
//! use cairn::contract::StepError;
//! use cairn::workflow::{
//!     activate, ActivationRequest, Incoming, RemoteStep, RetryPolicy, WorkflowContext,
//!     WorkflowError, Workflows,
//! };
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Order { id: String, cents: u64, email: String }
//! #[derive(Serialize, Deserialize)]
//! struct Charge { order_id: String, cents: u64 }
//! #[derive(Serialize, Deserialize)]
//! struct Receipt { charge_id: String }
//! #[derive(Deserialize)]
//! struct Approval { approved: bool }
//!
//! /// Served by a worker listening on the `payments.charge-card` queue.
//! pub const CHARGE_CARD: RemoteStep<Charge, Receipt> = RemoteStep::new("payments.charge-card")
//!     .with_retry(RetryPolicy::exponential(5, Duration::from_secs(1), 2.0, Duration::from_secs(60)))
//!     .with_timeout(Duration::from_secs(30));
//!
//! async fn checkout(ctx: WorkflowContext, order: Order) -> Result<Receipt, WorkflowError> {
//!     let approval: Approval = ctx.wait_for_signal("approval").await?;
//!     if !approval.approved {
//!         return Err(WorkflowError::failed("order rejected"));
//!     }
//!     let charge = Charge { order_id: order.id.clone(), cents: order.cents };
//!     let receipt = ctx.remote(&CHARGE_CARD, charge).await?;
//!     let email = order.email.clone();
//!     ctx.step("send-email", move || {
//!         let email = email.clone();
//!         async move {
//!             // real I/O goes here; the result is checkpointed
//!             let _ = email;
//!             Ok::<_, StepError>(())
//!         }
//!     })
//!     .await?;
//!     ctx.sleep(Duration::from_secs(3600)).await?;
//!     Ok(receipt)
//! }
//!
//! # async fn engine() -> Result<(), cairn::workflow::EngineError> {
//! let mut workflows = Workflows::new();
//! workflows.register("checkout", checkout);
//! let input = serde_json::json!({"id": "o-1", "cents": 1299, "email": "a@example.com"});
//! let activation = activate(&workflows, ActivationRequest {
//!     run_id: "run-1",
//!     history: &[],
//!     incoming: vec![Incoming::Start { workflow: "checkout".into(), input }],
//!     now_ms: 1_700_000_000_000,
//! })
//! .await?;
//! // persist activation.appended, then send activation.commands
//! # Ok(()) }
//! ```

mod activation;
mod command;
mod context;
mod error;
mod history;
mod incoming;
mod operation;
pub mod ops;
mod registry;
mod retry;
mod state;
mod status;
pub mod testing;
mod timeouts;
mod timer_id;

pub use activation::{activate, Activation, ActivationRequest, Phase};
pub use command::{Command, RunOutcome};
pub use context::WorkflowContext;
pub use error::{EngineError, WorkflowError, CANCELLED_CODE, TIMEOUT_CODE};
pub use history::{EventKind, HistoryEvent, ValueKind, HISTORY_FORMAT};
pub use incoming::Incoming;
pub use operation::{CodeAction, Operation};
pub use ops::child::{child_run_id, ChildCall};
pub use ops::remote::{RemoteCall, RemoteStep};
pub use ops::signal::{SignalWait, SignalWaitTimeout};
pub use ops::timer::Sleep;
pub use registry::Workflows;
pub use retry::{Backoff, RetryPolicy};
pub use status::{ParseRunStatusError, RunStatus};
pub use timeouts::{StepTimeouts, QUEUE_WAIT_ALLOWANCE_MS};
pub use timer_id::{ParseTimerIdError, TimerId};
