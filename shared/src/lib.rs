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
//! | [`workflow`] | the workflow API (`WorkflowContext`) and the replay engine |

pub mod aws;
pub mod batch;
pub mod config;
pub mod contract;
pub mod queue_name;
pub mod workflow;
