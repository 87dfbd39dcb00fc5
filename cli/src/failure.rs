//! Errors as the user sees them: an exit code and a message that says what to do.
//!
//! Commands return `anyhow::Error`. Errors that already know their exit code are a [`Failure`];
//! everything else is classified here from cairn's typed errors: client errors, and the
//! [`InfraError`] in the chain, whose kind (unreachable, no credentials, not found, ...) decides.

use std::fmt;

use cairn::client::ClientError;
use cairn::infra::{InfraError, InfraErrorKind};

/// Exit codes (also listed in `cairn --help`).
pub mod code {
    /// Something failed.
    pub const FAILURE: u8 = 1;
    /// Unknown run, queue or table.
    pub const NOT_FOUND: u8 = 2;
    /// AWS or the local stack cannot be reached, or credentials/region are missing.
    pub const UNREACHABLE: u8 = 3;
    /// `--wait` timed out.
    pub const TIMEOUT: u8 = 4;
    /// `--wait`: the run ended failed or cancelled.
    pub const RUN_UNSUCCESSFUL: u8 = 5;
    /// Bad command line (clap's usage errors).
    pub const USAGE: u8 = 64;
}

/// An error that knows its exit code.
#[derive(Debug)]
pub struct Failure {
    /// Process exit code.
    pub code: u8,
    /// What to print.
    pub message: String,
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// Unknown run, queue or table.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(code::NOT_FOUND, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Where the CLI was talking to, for messages.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// `--endpoint-url`, when set.
    pub endpoint_url: Option<String>,
    /// The region in use, if any.
    pub region: Option<String>,
    /// The table name.
    pub table: String,
}

impl Target {
    /// `http://127.0.0.1:4566 (local stack)` or `AWS region eu-west-1 (https://dynamodb...)`.
    pub fn describe(&self) -> String {
        match (&self.endpoint_url, &self.region) {
            (Some(url), _) => format!("{url} (CAIRN_ENDPOINT_URL / --endpoint-url)"),
            (None, Some(region)) => {
                format!("AWS region {region} (https://dynamodb.{region}.amazonaws.com, https://sqs.{region}.amazonaws.com)")
            }
            (None, None) => "AWS (no region configured)".to_owned(),
        }
    }
}

/// The exit code and full message for an error.
pub fn classify(error: &anyhow::Error, target: &Target) -> (u8, String) {
    if let Some(failure) = error.downcast_ref::<Failure>() {
        return (failure.code, failure.message.clone());
    }
    if let Some(ClientError::NotFound(run_id)) = error.downcast_ref::<ClientError>() {
        return (
            code::NOT_FOUND,
            format!(
                "run {run_id} not found in table {} at {}.\n  A new run appears once the engine has processed its start message; \
                 otherwise check the run id and --table / --prefix.",
                target.table,
                target.describe()
            ),
        );
    }
    if let Some(ClientError::Store(cairn::store::StoreError::Leftovers(leftovers))) =
        error.downcast_ref::<ClientError>()
    {
        // No run, but what an earlier run of this id left: say what it is and how to clear it.
        return (code::NOT_FOUND, leftovers.to_string());
    }
    if let Some(ClientError::InvalidRunId { .. }) = error.downcast_ref::<ClientError>() {
        return (code::USAGE, format!("{error}"));
    }
    if let Some(timeout @ ClientError::Timeout { .. }) = error.downcast_ref::<ClientError>() {
        return (code::TIMEOUT, timeout.to_string());
    }
    let text = format!("{error:#}");
    let Some(infra) = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<InfraError>())
    else {
        return (code::FAILURE, text);
    };
    let detail = format!("{}: {}", infra.operation, infra.message);
    match infra.kind {
        InfraErrorKind::NoCredentials => (
            code::UNREACHABLE,
            format!(
                "no usable AWS credentials for {}.\n  Set AWS_PROFILE (or --profile), or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; \
                 for the local stack set CAIRN_ENDPOINT_URL (or --endpoint-url), e.g. `eval \"$(scripts/local-stack start)\"`.\n  detail: {detail}",
                target.describe()
            ),
        ),
        InfraErrorKind::NoRegion => (
            code::UNREACHABLE,
            format!("no AWS region configured.\n  Set AWS_REGION (or --region), or AWS_PROFILE with a region.\n  detail: {detail}"),
        ),
        InfraErrorKind::Unreachable | InfraErrorKind::TimedOut => (
            code::UNREACHABLE,
            format!(
                "cannot reach {}.\n  Is it running? For the local stack: `eval \"$(scripts/local-stack start)\"` then use the CAIRN_ENDPOINT_URL it prints \
                 (or --endpoint-url). For AWS: unset CAIRN_ENDPOINT_URL and set AWS_REGION and AWS_PROFILE (or --region/--profile).\n  detail: {detail}",
                target.describe()
            ),
        ),
        InfraErrorKind::NotFound if is_queue_operation(infra.operation) => (
            code::NOT_FOUND,
            format!(
                "queue not found at {}.\n  Check --prefix / CAIRN_QUEUE_PREFIX and --results-queue-url / CAIRN_RESULTS_QUEUE_URL.\n  detail: {detail}",
                target.describe()
            ),
        ),
        InfraErrorKind::NotFound => (
            code::NOT_FOUND,
            format!(
                "table {} not found at {}.\n  Set --table / CAIRN_TABLE_NAME (or --prefix / CAIRN_QUEUE_PREFIX, the table defaults to <prefix>-runs).\n  detail: {detail}",
                target.table,
                target.describe()
            ),
        ),
        _ => (code::FAILURE, text),
    }
}

/// SQS operations; every other operation the CLI makes is DynamoDB's.
fn is_queue_operation(operation: &str) -> bool {
    matches!(
        operation,
        "GetQueueUrl"
            | "GetQueueAttributes"
            | "ListDeadLetterSourceQueues"
            | "CreateQueue"
            | "SendMessage"
            | "SendMessageBatch"
            | "ReceiveMessage"
            | "DeleteMessage"
            | "DeleteMessageBatch"
            | "ChangeMessageVisibility"
            | "ChangeMessageVisibilityBatch"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            endpoint_url: Some("http://127.0.0.1:9".into()),
            region: None,
            table: "durable-runs".into(),
        }
    }

    #[test]
    fn typed_errors_keep_their_codes() {
        let (code, message) = classify(&ClientError::NotFound("r-1".into()).into(), &target());
        assert_eq!(code, code::NOT_FOUND);
        assert!(
            message.contains("r-1") && message.contains("durable-runs"),
            "{message}"
        );
        let (code, _) = classify(&Failure::new(code::TIMEOUT, "slow").into(), &target());
        assert_eq!(code, code::TIMEOUT);
    }

    #[test]
    fn infrastructure_kinds_choose_the_exit_code_and_what_to_set() {
        let infra =
            |operation, kind| anyhow::Error::new(InfraError::new(operation, kind, "detail text"));
        let (code, message) = classify(&infra("Query", InfraErrorKind::Unreachable), &target());
        assert_eq!(code, code::UNREACHABLE);
        assert!(
            message.contains("http://127.0.0.1:9") && message.contains("CAIRN_ENDPOINT_URL"),
            "{message}"
        );
        assert!(message.ends_with("detail: Query: detail text"), "{message}");
        let aws = Target {
            endpoint_url: None,
            region: Some("eu-west-1".into()),
            table: "t".into(),
        };
        let (code, message) = classify(&infra("Query", InfraErrorKind::NoCredentials), &aws);
        assert_eq!(code, code::UNREACHABLE);
        assert!(
            message.contains("eu-west-1") && message.contains("AWS_PROFILE"),
            "{message}"
        );
        let (code, message) = classify(&infra("Query", InfraErrorKind::NotFound), &target());
        assert_eq!(code, code::NOT_FOUND);
        assert!(
            message.starts_with("table durable-runs not found"),
            "{message}"
        );
        let (code, message) = classify(&infra("GetQueueUrl", InfraErrorKind::NotFound), &target());
        assert_eq!(code, code::NOT_FOUND);
        assert!(message.starts_with("queue not found"), "{message}");
        let (code, _) = classify(&infra("Query", InfraErrorKind::Throttled), &target());
        assert_eq!(code, code::FAILURE);
        // Text that merely mentions a timeout is not a failure to reach anything.
        let (code, _) = classify(
            &anyhow::anyhow!("handler timeout: connection refused"),
            &target(),
        );
        assert_eq!(code, code::FAILURE);
    }
}
