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
//! | [`fault_proxy`] | an HTTP proxy in front of moto that throttles, hangs or cuts DynamoDB and SQS on demand |
//! | [`schedules`] | the schedule group of long waits, and a loop firing due schedules (moto never does) |

/// The local SQS event source mapping (in `cairn_lambda`, whose entry points poll with it in
/// dev mode).
pub use cairn_lambda::event_source;
pub mod fault_proxy;
pub mod local_runtime;
pub mod local_stack;
pub mod schedules;
