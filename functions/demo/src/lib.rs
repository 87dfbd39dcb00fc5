//! Demo workflows.
