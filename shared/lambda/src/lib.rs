//! # cairn-lambda — cairn on AWS: DynamoDB, SQS and the Lambda handlers
//!
//! The core crate `cairn` defines workflows, the replay engine and the ports; this crate
//! implements the ports on AWS and holds the logic of the three Lambda functions. Their
//! `main.rs` files are wiring only.
//!
//! A function's `main` is one call: [`serve_engine`]`(workflows)`, [`serve_worker`]`(worker)`
//! or [`serve_reconciler`]`()`, configured from the environment the template sets.
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | runtime configuration from the environment |
//! | [`aws`] | SDK clients (local-stack aware) and a request counter |
//! | [`dynamo`] | the checkpoint store and claim-check blobs on DynamoDB |
//! | [`sqs`] | the task/result/control transport on SQS (with claim checks) |
//! | [`sdk_error`] | SDK errors classified into typed `cairn::infra::InfraError`s |
//! | [`queues`] | the deployment's queue map, for pointing peer workers at it |
//! | [`backoff`] | failed records after a batch: transient ones backed off (`ChangeMessageVisibility`), the last receive before the DLQ logged |
//! | [`batch`] | one SQS batch: per-record handling, batch item failures, FIFO rule |
//! | [`event_source`] | a local SQS event source mapping (what Lambda's trigger does), for dev mode and tests |
//! | [`engine`] | the engine Lambda's logic: results queue → replay → checkpoint → send |
//! | [`worker`] | the worker Lambda: a core `Worker`'s step handlers behind a tasks queue |
//! | [`metrics`] | counters of ignored and rejected messages (CloudWatch EMF lines) |
//! | [`dead_letters`] | the reconciler's look at the results DLQ: what running runs await goes back |
//! | [`reconciler`] | re-drives runs stuck with unsent commands or lost timers |
//! | [`telemetry`] | logging set-up for the binaries |

pub mod aws;
pub mod backoff;
pub mod batch;
pub mod config;
pub mod dead_letters;
#[cfg(feature = "dynamodb")]
pub mod dynamo;
pub mod engine;
pub mod event_source;
pub mod metrics;
pub mod queues;
pub mod reconciler;
pub mod sdk_error;
mod serve;
pub mod sqs;
pub mod telemetry;
pub mod worker;

#[cfg(feature = "dynamodb")]
pub use serve::{serve_engine, serve_engine_configured, serve_engine_with, serve_reconciler};
pub use serve::{serve_worker, serve_worker_configured};
