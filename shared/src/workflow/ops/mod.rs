//! The durable operations, one module per kind. Each adds methods to
//! [`WorkflowContext`](super::WorkflowContext) and has its own tests.

pub(crate) mod attempts;
pub mod child;
pub mod inline;
pub mod remote;
pub mod signal;
pub mod timer;
pub mod values;

#[cfg(test)]
pub(crate) mod test_support;
