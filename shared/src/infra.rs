//! Infrastructure failures: what went wrong below cairn (the store's or the transport's
//! backend), typed by kind so callers decide by kind, never by the text.
//!
//! The AWS adapters (`cairn-lambda`) classify SDK errors into an [`InfraError`] that keeps the
//! SDK error as its `source`; the engine backs off on [transient](InfraErrorKind::is_transient)
//! kinds, and the CLI maps kinds to exit codes.

use std::fmt;

/// What kind of infrastructure failure this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InfraErrorKind {
    /// The service asked us to slow down (throttling, throughput or request limits).
    Throttled,
    /// The endpoint could not be reached (connection refused or reset, DNS, TLS).
    Unreachable,
    /// A request or one of its attempts ran past its timeout.
    TimedOut,
    /// The service answered with a server-side error (HTTP 5xx).
    Unavailable,
    /// The table or queue does not exist.
    NotFound,
    /// No credentials could be loaded, or the service does not accept them.
    NoCredentials,
    /// The credentials are valid but not allowed to do this.
    AccessDenied,
    /// No region is configured (so no endpoint can be resolved).
    NoRegion,
    /// The service rejected the request itself (validation, limits); repeating it won't help.
    Rejected,
    /// Anything else.
    Other,
}

impl InfraErrorKind {
    /// Whether the same request may succeed later without any change (back off and retry).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::Throttled | Self::Unreachable | Self::TimedOut | Self::Unavailable
        )
    }

    /// A short name for logs and metrics (`throttled`, `unreachable`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::Unreachable => "unreachable",
            Self::TimedOut => "timed out",
            Self::Unavailable => "unavailable",
            Self::NotFound => "not found",
            Self::NoCredentials => "no credentials",
            Self::AccessDenied => "access denied",
            Self::NoRegion => "no region",
            Self::Rejected => "rejected",
            Self::Other => "failed",
        }
    }
}

impl fmt::Display for InfraErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error a backend returned for one operation: its kind, a readable message, and the
/// original error (the SDK's) as the source.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {kind}: {message}")]
pub struct InfraError {
    /// The API call (`Query`, `SendMessageBatch`, ...).
    pub operation: &'static str,
    /// What kind of failure.
    pub kind: InfraErrorKind,
    /// The readable error chain, without the SDK's `Debug` dump.
    pub message: String,
    /// The original error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl InfraError {
    /// A failure without an underlying error value (e.g. a poisoned lock in an in-memory twin).
    pub fn new(operation: &'static str, kind: InfraErrorKind, message: impl Into<String>) -> Self {
        Self {
            operation,
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same, keeping `source` as the cause.
    pub fn with_source(
        operation: &'static str,
        kind: InfraErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            operation,
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// See [`InfraErrorKind::is_transient`].
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The first [`InfraError`] in `error`'s source chain (itself included).
    pub fn find<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e InfraError> {
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<InfraError>() {
                return Some(found);
            }
            current = e.source();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] InfraError);

    #[test]
    fn transient_kinds_are_the_ones_worth_waiting_for() {
        assert!(InfraErrorKind::Throttled.is_transient());
        assert!(InfraErrorKind::Unreachable.is_transient());
        assert!(!InfraErrorKind::NotFound.is_transient());
        assert!(!InfraErrorKind::NoCredentials.is_transient());
    }

    #[test]
    fn find_walks_the_source_chain() {
        let outer = Outer(InfraError::new(
            "Query",
            InfraErrorKind::Throttled,
            "slow down",
        ));
        let found = InfraError::find(&outer).map(|e| (e.operation, e.kind));
        assert_eq!(found, Some(("Query", InfraErrorKind::Throttled)));
        assert_eq!(
            outer.0.to_string(),
            "Query throttled: slow down",
            "operation, kind and message read as one line"
        );
    }
}
