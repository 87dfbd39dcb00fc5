//! The local stack from Rust: resources from the template over HTTP (moto), a `RemoteTask`
//! through a real queue, and a lost conditional write surfacing as a typed `Conflict`.

#![allow(clippy::unwrap_used)]

use aws_sdk_sqs::types::QueueAttributeName;
use cairn::contract::{decode_task, encode, RemoteTask};
use cairn::store::{CheckpointStore, Commit, RunRecord, StoreError};
use cairn::workflow::{EventKind, HistoryEvent, RunStatus};
use cairn_tests::TestEnv;
use serde_json::json;

#[tokio::test]
async fn a_remote_task_travels_through_a_queue_with_a_dlq() {
    let env = TestEnv::new("basics-queue", false).await;
    let url = &env.resources.task_queue_urls["payments.charge-card"];
    let attrs = env
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .unwrap();
    let redrive = &attrs.attributes.unwrap()[&QueueAttributeName::RedrivePolicy];
    assert!(
        redrive.contains("-dlq"),
        "tasks queue redrives to its DLQ: {redrive}"
    );

    let task = RemoteTask::new(
        &"run-1".parse().unwrap(),
        3,
        "payments.charge-card",
        "payments.charge-card",
        json!({"orderId": "o-1", "amountCents": 1250}),
        1,
    );
    env.clients
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(encode(&task))
        .send()
        .await
        .unwrap();
    let received = env
        .clients
        .sqs
        .receive_message()
        .queue_url(url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let body = received.messages.unwrap().remove(0).body.unwrap();
    assert_eq!(decode_task(&body).unwrap(), task);
    assert_eq!(task.step_id, "run-1:3");
}

fn started(run_id: &str) -> Commit {
    let run = RunRecord {
        run_id: run_id.parse().unwrap(),
        workflow: "checkout".into(),
        status: RunStatus::Running,
        input: json!({}),
        output: None,
        error: None,
        version: 1,
        history_len: 1,
        created_at_ms: 1,
        updated_at_ms: 1,
        parent: None,
        last_error: None,
        outbox_pending: false,
    };
    let event = HistoryEvent::new(
        1,
        EventKind::RunStarted {
            format: cairn::workflow::HISTORY_FORMAT,
            workflow: "checkout".into(),
            input: json!({}),
        },
    );
    Commit {
        run,
        expected_version: None,
        events: vec![event],
        outbox: vec![],
        lease: None,
        earlier_due_ms: None,
    }
}

#[tokio::test]
async fn a_lost_conditional_write_is_a_typed_conflict() {
    let env = TestEnv::new("basics-conflict", false).await;
    let store = env.clients.store(&env.config);
    store.commit(&started("r-1")).await.unwrap();

    // Creating the same run again (another start, at another time) loses the
    // `attribute_not_exists` condition; the same write again is found in place (a retry of a
    // write whose answer was lost) and counts as committed.
    store.commit(&started("r-1")).await.unwrap();
    let mut again = started("r-1");
    again.events[0].at_ms = 5;
    let err = store.commit(&again).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { ref run_id, expected: None } if run_id == "r-1"),
        "{err:?}"
    );

    // Two activations that both read version 1: the second loses.
    let mut next = started("r-1");
    next.expected_version = Some(1);
    next.run.version = 2;
    next.run.history_len = 2;
    next.events = vec![HistoryEvent::new(
        2,
        EventKind::SignalReceived {
            name: "a".into(),
            payload: json!(1),
            signal_id: None,
        },
    )];
    store.commit(&next).await.unwrap();
    // The other activation recorded something else (the same write again would be found in
    // place and count as committed: a retry of a write whose answer was lost).
    let mut other = next.clone();
    other.events[0].at_ms = 3;
    let err = store.commit(&other).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());

    let loaded = store.load("r-1").await.unwrap().unwrap();
    assert_eq!(loaded.run.version, 2);
    assert_eq!(
        loaded.history.len(),
        2,
        "the losing write left nothing behind"
    );
}

/// A value nested `levels` deep (built past serde_json's default limit on purpose).
fn nested(levels: usize) -> serde_json::Value {
    use serde::Deserialize;
    let text = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    let mut de = serde_json::Deserializer::from_str(&text);
    de.disable_recursion_limit();
    serde_json::Value::deserialize(&mut de).unwrap()
}

#[tokio::test]
async fn nothing_is_written_that_cannot_be_read_back_and_old_deep_items_still_read() {
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;

    let env = TestEnv::new("basics-deep", false).await;
    let store = env.clients.store(&env.config);
    store.commit(&started("r-deep")).await.unwrap();
    // A history item as an engine before the depth checks wrote it: a signal payload nested
    // 126 levels, 128 with its event and batch, past what serde_json reads by default (it
    // used to brick the run: "recursion limit exceeded").
    let old = json!([{"atMs": 2, "type": "signalReceived", "name": "a", "payload": nested(126)}]);
    env.clients
        .dynamodb
        .put_item()
        .table_name(&env.config.table_name)
        .item("pk", AttributeValue::S("RUN#r-deep".into()))
        .item("sk", AttributeValue::S("EVT#0000000001#000".into()))
        .item("data", AttributeValue::B(Blob::new(old.to_string())))
        .send()
        .await
        .unwrap();
    env.clients
        .dynamodb
        .update_item()
        .table_name(&env.config.table_name)
        .key("pk", AttributeValue::S("RUN#r-deep".into()))
        .key("sk", AttributeValue::S("RUN".into()))
        .update_expression("SET historyLen = :n")
        .expression_attribute_values(":n", AttributeValue::N("2".into()))
        .send()
        .await
        .unwrap();
    let loaded = store.load("r-deep").await.unwrap().unwrap();
    assert_eq!(loaded.history.len(), 2, "the old deep item reads");

    // The same depth written now is refused before anything is stored.
    let mut next = started("r-deep");
    next.expected_version = Some(1);
    next.run.version = 2;
    next.run.history_len = 3;
    next.events = vec![HistoryEvent::new(
        3,
        EventKind::SignalReceived {
            name: "b".into(),
            payload: nested(126),
            signal_id: None,
        },
    )];
    let err = store.commit(&next).await.unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("read back"), "{err}");
    let loaded = store.load("r-deep").await.unwrap().unwrap();
    assert_eq!(
        loaded.history.len(),
        2,
        "nothing of the refused write was stored"
    );
}
