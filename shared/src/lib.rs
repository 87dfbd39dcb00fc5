//! # cairn — durable workflows for Rust on AWS Lambda
//!
//! A workflow is an ordinary `async fn(ctx, input)`; every durable call on `ctx` is
//! checkpointed in DynamoDB and the workflow is resumed by deterministic replay.
//!
//! | module | what it holds |
//! |---|---|
//! | [`contract`] | the wire contract: `RemoteTask`, `StepResult`, control messages |
//! | [`queue_name`] | the `(prefix, group) → SQS queue name` mapping |
//! | [`config`] | runtime configuration from the environment |
//! | [`batch`] | one SQS batch: per-record handling, batch item failures, FIFO rule |
//! | [`aws`] | SDK clients (local-stack aware) and a request counter |
//! | [`workflow`] | write workflows ([`WorkflowContext`](workflow::WorkflowContext): remote and inline steps, timers, signals, children; [`RemoteStep`](workflow::RemoteStep), [`RetryPolicy`](workflow::RetryPolicy)) and the deterministic replay engine ([`activate`](workflow::activate)); with a checkout example |
//! | [`store`] | the checkpoint store port: DynamoDB and in-memory |
//! | [`transport`] | the task/result transport port: SQS (with claim checks) and in-memory |
//! | [`engine`] | the engine Lambda's logic: results queue → replay → checkpoint → send |
//! | [`worker`] | the worker runtime: step handlers behind a tasks queue |
//! | [`client`] | start, signal, cancel and read runs |
//! | [`reconciler`] | re-drives runs stuck with unsent commands |
//! | [`inspect`] | a run as people read it: steps, attempts, timing |
//! | [`event_source`] | a local SQS event source mapping (what Lambda's trigger does) |
//! | [`local_runtime`] | engine and workers behind local mappings, for the local stack |
//! | [`local_stack`] | the local stack's queues and table, created from `template.yaml` |
//! | [`telemetry`] | logging set-up for the binaries |
//! | [`timeline`] | a run as a self-contained HTML timeline (`cairn runs timeline`) |

pub mod aws;
pub mod batch;
pub mod client;
pub mod config;
pub mod contract;
pub mod engine;
pub mod event_source;
pub mod inspect;
pub mod local_runtime;
pub mod local_stack;
mod panic;
pub mod queue_name;
pub mod reconciler;
pub mod store;
pub mod telemetry;
pub mod timeline;
pub mod transport;
pub mod worker;
pub mod workflow;
