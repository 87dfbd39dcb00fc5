//! The fault proxy in front of the local stack answers as the real services do on a bad day:
//! DynamoDB's own throttling errors, hangs, resets, SQS cut, and duplicated sends.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use cairn::infra::InfraErrorKind;
use cairn_devstack::fault_proxy::{Fault, FaultProxy, Faults};
use cairn_lambda::aws::sdk_config;
use cairn_lambda::sdk_error::kind_of;
use cairn_tests::{endpoint, TestEnv};

/// SDK clients through `proxy`, one attempt per call, short timeouts (the test's pace).
async fn clients(proxy: &FaultProxy) -> (aws_sdk_dynamodb::Client, aws_sdk_sqs::Client) {
    let sdk = sdk_config(Some(&proxy.endpoint()))
        .await
        .into_builder()
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(2))
                .build(),
        )
        .build();
    (
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    )
}

#[tokio::test]
async fn the_proxy_throttles_hangs_resets_and_duplicates_on_demand() {
    let env = TestEnv::new("fault_proxy", false).await;
    let proxy = FaultProxy::start(&endpoint()).await.unwrap();
    let (dynamodb, sqs) = clients(&proxy).await;
    let table = env.resources.table_name.clone();
    let describe = || dynamodb.describe_table().table_name(&table).send();

    describe().await.unwrap();

    proxy.set_dynamodb(Fault::Throttle);
    let mut codes = Vec::new();
    for _ in 0..2 {
        let err = describe().await.unwrap_err();
        assert_eq!(kind_of(&err), InfraErrorKind::Throttled, "{err:?}");
        assert_eq!(err.raw_response().unwrap().status().as_u16(), 400);
        codes.push(err.into_service_error().meta().code().unwrap().to_owned());
    }
    codes.sort();
    assert_eq!(
        codes,
        [
            "ProvisionedThroughputExceededException",
            "ThrottlingException"
        ]
    );
    // SQS is untouched meanwhile.
    sqs.get_queue_attributes()
        .queue_url(&env.resources.results_queue_url)
        .send()
        .await
        .unwrap();

    proxy.set_dynamodb(Fault::Hang);
    let started = Instant::now();
    let err = describe().await.unwrap_err();
    assert_eq!(kind_of(&err), InfraErrorKind::TimedOut, "{err:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));

    proxy.set_dynamodb(Fault::Reset);
    let err = describe().await.unwrap_err();
    assert!(kind_of(&err).is_transient(), "{err:?}");

    proxy.set_dynamodb(Fault::Ok);
    proxy.set_sqs(Fault::Reset);
    let err = sqs
        .get_queue_attributes()
        .queue_url(&env.resources.results_queue_url)
        .send()
        .await
        .unwrap_err();
    assert!(kind_of(&err).is_transient(), "{err:?}");
    describe().await.unwrap();

    // Duplicated sends: one SendMessage, two messages.
    proxy.set(Faults {
        duplicate_sends_to: Some("-results".into()),
        ..Faults::default()
    });
    sqs.send_message()
        .queue_url(&env.resources.results_queue_url)
        .message_body("{}")
        .send()
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        bodies.extend(env.receive_bodies(&env.resources.results_queue_url).await);
        if bodies.len() >= 2 {
            break;
        }
    }
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let counts = proxy.counts();
    assert_eq!(counts.get("dynamodb throttle"), Some(&2), "{counts:?}");
    assert_eq!(counts.get("duplicated"), Some(&1), "{counts:?}");
}
