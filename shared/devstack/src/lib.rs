//! # cairn-devstack — the local stack, for development and tests only
//!
//! No AWS account is needed to run cairn: moto stands in for SQS and DynamoDB, and this crate
//! brings what moto lacks. It is never linked into a Lambda.
//!
//! | module | what it holds |
//! |---|---|
//! | [`local_stack`] | the local stack's queues and table, created from `template.yaml` |
//! | [`event_source`] | a local SQS event source mapping (what Lambda's trigger does) |
//! | [`local_runtime`] | engine and workers behind local mappings |

pub mod event_source;
pub mod local_runtime;
pub mod local_stack;
