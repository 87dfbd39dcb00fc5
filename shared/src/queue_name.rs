//! Queue names (placeholder, filled in by the contract work).
