//! # cairn — durable workflows for Rust on AWS Lambda
//!
//! A workflow is an ordinary `async fn(ctx, input)`; every durable call on `ctx` is
//! checkpointed and the workflow is resumed by deterministic replay.
//!
//! This crate is the core: what a workflow author and a step author need, and the ports the
//! runtime plugs into. It has no AWS SDK. The crates beside it:
//!
//! | crate | what it holds |
//! |---|---|
//! | `cairn` (this one) | contract, replay engine, ports and their in-memory twins, client |
//! | `cairn-lambda` | the AWS adapters (DynamoDB store, SQS transport) and the Lambda handlers: engine, worker, reconciler |
//! | `cairn-devstack` | the local stack from `template.yaml`, the local event source mapping and runtime (dev and tests only) |
//! | `cairn-inspect` | a run as people read it: step table and HTML timeline (used by the CLI) |
//!
//! | module | what it holds |
//! |---|---|
//! | [`contract`] | the wire contract: `RemoteTask`, `StepResult`, control messages |
//! | [`queue_name`] | the `(prefix, group) → SQS queue name` mapping |
//! | [`workflow`] | write workflows ([`WorkflowContext`](workflow::WorkflowContext): remote and inline steps, timers, signals, children; [`RemoteStep`](workflow::RemoteStep), [`RetryPolicy`](workflow::RetryPolicy)) and the deterministic replay engine ([`activate`](workflow::activate)); with a checkout example |
//! | [`store`] | the checkpoint store port, with its in-memory twin |
//! | [`transport`] | the task/result transport port, claim checks, and the in-memory twin |
//! | [`client`] | start, signal, cancel and read runs |
//! | [`clock`] | the wall clock (never read by workflow code) |
//! | [`worker`] | step handlers: the [`Worker`](worker::Worker) that serves remote steps |
//! | [`testing`] | [`TestEnv`](testing::TestEnv): workflows in process on a virtual clock, steps mocked, histories saved for replay tests |
//! | [`infra`] | infrastructure failures typed by kind (throttled, unreachable, not found, ...) |
//! | [`mod@panic`] | the text of a caught panic |

pub mod client;
pub mod clock;
pub mod contract;
pub mod infra;
pub mod panic;
pub mod queue_name;
pub mod store;
/// Workflow tests: [`TestEnv`](testing::TestEnv) (in process, time-skipping) and history helpers.
pub use workflow::testing;
pub mod transport;
pub mod worker;
pub mod workflow;
