//! Why a record was not applied ([`RecordError`]), and how that is reported: a batch item
//! failure per record, logged once.

use super::*;

/// Why one results-queue record was not processed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record has no body.
    #[error("record has no body")]
    NoBody,
    /// The body is not a valid results-queue message.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// A result or signal for a run that does not exist.
    #[error("run {0} does not exist")]
    UnknownRun(String),
    /// Replay failed (non-determinism, unknown workflow, ...).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The store failed, or conflicts persisted past the retries.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sending commands failed; the record comes back and sends them again.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A wide outbox was not fully sent before the deadline (progress recorded; the
    /// redelivered record resumes it).
    #[error("run {run_id}: {sent} of {total} commands sent before the deadline")]
    OutboxUnfinished {
        /// The run.
        run_id: String,
        /// Commands sent so far.
        sent: usize,
        /// Commands in the outbox.
        total: usize,
    },
}

impl RecordError {
    /// Whether the record may succeed later as it is: the store or the transport failed
    /// transiently, races were lost too often, or a wide outbox ran out of time. Such a
    /// record is backed off instead of burning its receives at the queue's pace.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(StoreError::Conflict { .. }) | Self::OutboxUnfinished { .. } => true,
            Self::Store(e) => e.is_transient(),
            Self::Transport(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<RecordError> for RecordFailure {
    fn from(error: RecordError) -> Self {
        Self {
            transient: error.is_transient(),
            reason: error.to_string(),
        }
    }
}

/// The failure of a run's records; a request that timed out (a hang below us) is logged with
/// what hung: the operation, the run and the message ids.
pub(super) fn failure(run_id: &str, message_ids: &[String], error: RecordError) -> RecordFailure {
    if let Some(infra) = cairn::infra::InfraError::find(&error) {
        if infra.kind == cairn::infra::InfraErrorKind::TimedOut {
            tracing::warn!(
                run_id,
                message_ids = ?message_ids,
                operation = infra.operation,
                error = %infra,
                "AWS request timed out (the service hangs); the record is backed off"
            );
        }
    }
    RecordFailure::from(error)
}

/// Logs and counts a record that cannot be decoded; it is reported for redelivery, so SQS
/// moves it to the DLQ after `maxReceiveCount`.
pub(super) fn reject(message_id: &str, error: &RecordError) {
    tracing::warn!(message_id, %error, "undecodable record; reported for redelivery (then the DLQ)");
    let reason = match error {
        RecordError::NoBody => "no_body",
        RecordError::Transport(_) => "claim_check",
        _ => "malformed",
    };
    crate::metrics::count(crate::metrics::REJECTED, reason);
}
