//! SDK errors classified into [`InfraError`]s: the kind decides (backoff, exit codes), the SDK
//! error stays the source, and the message is the readable chain without the SDK's `Debug`
//! dump.

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::endpoint::error::ResolveEndpointError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use cairn::infra::{InfraError, InfraErrorKind};

/// Classifies an SDK error of `operation` (`Query`, `SendMessageBatch`, ...).
pub fn infra_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> InfraError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = kind_of(&err);
    let message = readable(&DisplayErrorContext(&err).to_string());
    InfraError::with_source(operation, kind, message, err)
}

/// The kind of an SDK error, from its variant, its service error code and HTTP status, and the
/// typed errors in its source chain.
pub fn kind_of<E>(err: &SdkError<E, HttpResponse>) -> InfraErrorKind
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if source_chain_has::<CredentialsError>(err) {
        return InfraErrorKind::NoCredentials;
    }
    // Endpoint resolution fails before any request when no region is configured.
    if source_chain_has::<ResolveEndpointError>(err)
        || source_chain_has::<aws_smithy_http::endpoint::ResolveEndpointError>(err)
    {
        return InfraErrorKind::NoRegion;
    }
    match err {
        SdkError::TimeoutError(_) => InfraErrorKind::TimedOut,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => InfraErrorKind::TimedOut,
        SdkError::DispatchFailure(failure) if failure.is_io() => InfraErrorKind::Unreachable,
        SdkError::DispatchFailure(_) => InfraErrorKind::Other,
        // A response arrived but could not be read: the service (or a proxy) misbehaved.
        SdkError::ResponseError(_) => InfraErrorKind::Unavailable,
        SdkError::ServiceError(context) => {
            kind_from_code(context.err().code(), context.raw().status().as_u16())
        }
        _ => InfraErrorKind::Other,
    }
}

/// The kind of a service error code (DynamoDB's and SQS's, query and JSON protocols) and HTTP
/// status. Also used for the per-entry failures of `SendMessageBatch`, which carry a code only
/// (pass status 0).
pub fn kind_from_code(code: Option<&str>, status: u16) -> InfraErrorKind {
    const THROTTLED: &[&str] = &[
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "KmsThrottled",
    ];
    const NOT_FOUND: &[&str] = &[
        "ResourceNotFoundException",
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
        "NonExistentQueue",
    ];
    const NO_CREDENTIALS: &[&str] = &[
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
    ];
    const ACCESS_DENIED: &[&str] = &["AccessDeniedException", "AccessDenied", "KmsAccessDenied"];
    const UNAVAILABLE: &[&str] = &[
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    ];
    let is = |list: &[&str]| code.is_some_and(|c| list.contains(&c));
    if is(THROTTLED) || status == 429 {
        InfraErrorKind::Throttled
    } else if is(NOT_FOUND) {
        InfraErrorKind::NotFound
    } else if is(NO_CREDENTIALS) {
        InfraErrorKind::NoCredentials
    } else if is(ACCESS_DENIED) {
        InfraErrorKind::AccessDenied
    } else if is(UNAVAILABLE) || status >= 500 {
        InfraErrorKind::Unavailable
    } else if (400..500).contains(&status) || code.is_some() {
        InfraErrorKind::Rejected
    } else {
        InfraErrorKind::Other
    }
}

fn source_chain_has<T: std::error::Error + 'static>(
    err: &(dyn std::error::Error + 'static),
) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<T>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// The SDK's `DisplayErrorContext` ends with the error's `Debug` form in parentheses; people
/// need the readable chain before it.
fn readable(text: &str) -> String {
    const DEBUG_MARKERS: [&str; 5] = [
        " (DispatchFailure(",
        " (ServiceError(",
        " (TimeoutError(",
        " (ResponseError(",
        " (ConstructionFailure(",
    ];
    let cut = DEBUG_MARKERS
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .unwrap_or(text.len());
    text.get(..cut).unwrap_or(text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_and_statuses_have_kinds() {
        let kind = |code: &str, status| kind_from_code(Some(code), status);
        assert_eq!(
            kind("ProvisionedThroughputExceededException", 400),
            InfraErrorKind::Throttled
        );
        assert_eq!(kind("RequestThrottled", 0), InfraErrorKind::Throttled);
        assert_eq!(
            kind("ResourceNotFoundException", 400),
            InfraErrorKind::NotFound
        );
        assert_eq!(
            kind("AWS.SimpleQueueService.NonExistentQueue", 400),
            InfraErrorKind::NotFound
        );
        assert_eq!(
            kind("UnrecognizedClientException", 400),
            InfraErrorKind::NoCredentials
        );
        assert_eq!(
            kind("AccessDeniedException", 400),
            InfraErrorKind::AccessDenied
        );
        assert_eq!(kind("ValidationException", 400), InfraErrorKind::Rejected);
        assert_eq!(kind_from_code(None, 503), InfraErrorKind::Unavailable);
        assert_eq!(kind_from_code(None, 429), InfraErrorKind::Throttled);
        assert_eq!(kind_from_code(None, 0), InfraErrorKind::Other);
    }

    #[test]
    fn the_debug_dump_is_cut_from_messages() {
        assert_eq!(
            readable("dispatch failure: io error (DispatchFailure(DispatchFailure { .. }))"),
            "dispatch failure: io error"
        );
    }

    /// A request to a closed port is `Unreachable`, and a client without credentials is
    /// `NoCredentials`: the two failures the CLI explains differently.
    #[tokio::test]
    async fn real_sdk_failures_are_classified() {
        use aws_credential_types::provider::{future, ProvideCredentials};
        use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
        let base = || {
            aws_sdk_sqs::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .http_client(crate::aws::https_client())
                .region(Region::new("us-east-1"))
                .endpoint_url("http://127.0.0.1:9")
        };
        let closed_port = aws_sdk_sqs::Client::from_conf(
            base()
                .credentials_provider(Credentials::new("a", "b", None, None, "test"))
                .build(),
        );
        let err = closed_port
            .list_queues()
            .send()
            .await
            .expect_err("port 9 is closed");
        let err = infra_error("ListQueues", err);
        assert_eq!(err.kind, InfraErrorKind::Unreachable, "{err}");
        assert!(!err.message.contains("DispatchFailure("), "{}", err.message);

        // What the default chain gives when it finds nothing (no env, profile or role).
        #[derive(Debug)]
        struct NoneFound;
        impl ProvideCredentials for NoneFound {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                future::ProvideCredentials::ready(Err(CredentialsError::not_loaded("none found")))
            }
        }
        let no_credentials =
            aws_sdk_sqs::Client::from_conf(base().credentials_provider(NoneFound).build());
        let err = no_credentials
            .list_queues()
            .send()
            .await
            .expect_err("no credentials");
        let err = infra_error("ListQueues", err);
        assert_eq!(err.kind, InfraErrorKind::NoCredentials, "{err}");

        let no_region = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::new()
                .behavior_version(BehaviorVersion::latest())
                .http_client(crate::aws::https_client())
                .credentials_provider(Credentials::new("a", "b", None, None, "test"))
                .build(),
        );
        let err = no_region.list_queues().send().await.expect_err("no region");
        let err = infra_error("ListQueues", err);
        assert_eq!(err.kind, InfraErrorKind::NoRegion, "{err}");
    }
}
