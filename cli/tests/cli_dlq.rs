//! `cairn dlq list` and `cairn dlq redrive`, the real binary against the local stack: messages
//! put into a dead-letter queue by hand are listed, then moved back to their source queue.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use cairn_tests::TestEnv;
use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_peeks_and_redrive_moves_every_message_back() {
    // No engine: what lands in the results queue stays there for the assertions.
    let env = TestEnv::new("cli-dlq", false).await;
    let sqs = &env.clients.sqs;
    let dlq = &env.resources.results_dlq_url;
    for i in 0..25 {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(format!("v{i}"))
            .build()
            .unwrap();
        sqs.send_message()
            .queue_url(dlq)
            .message_body(json!({ "runId": format!("r-{i}"), "seq": i }).to_string())
            .message_attributes("cairn-test", attribute)
            .send()
            .await
            .unwrap();
    }

    let listed = cairn(&env, &["dlq", "list", "results", "--limit", "5", "--json"]).await;
    assert_code(&listed, 0);
    let listed = json_of(&listed);
    assert_eq!(listed["queueUrl"], dlq.as_str());
    assert_eq!(listed["messages"].as_array().unwrap().len(), 5);
    assert_eq!(listed["approximateMessages"], 25);
    let text = cairn(
        &env,
        &[
            "dlq",
            "list",
            &format!("{}-results-dlq", env.config.prefix),
            "--limit",
            "2",
        ],
    )
    .await;
    assert_code(&text, 0);
    assert!(
        stdout(&text).contains("about 25 message(s)") && stdout(&text).contains("\"runId\""),
        "{}",
        stdout(&text)
    );

    // `cairn dlq list results | head -5` (issue 11): a reader that stops early ends the
    // command quietly, not with "failed printing to stdout: Broken pipe".
    for args in [&["dlq", "list", "results"][..], &["runs", "list"]] {
        let closed = cairn_stdout_closed(&env, args).await;
        assert_code(&closed, 0);
        assert_eq!(stderr(&closed), "", "{args:?}");
    }

    let out = cairn(&env, &["dlq", "redrive", "results", "--json"]).await;
    assert_code(&out, 0);
    let moved = json_of(&out);
    assert_eq!(
        (moved["moved"].clone(), moved["to"].clone()),
        (json!(25), json!(env.resources.results_queue_url))
    );

    let mut bodies = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let got = sqs
            .receive_message()
            .queue_url(&env.resources.results_queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        for m in got.messages() {
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            let attribute = m.message_attributes().unwrap()["cairn-test"]
                .string_value()
                .unwrap()
                .to_owned();
            bodies.insert(body["seq"].as_u64().unwrap(), attribute);
        }
        if bodies.len() == 25 {
            break;
        }
    }
    assert_eq!(
        bodies.len(),
        25,
        "every message is back in the results queue"
    );
    assert!(
        bodies
            .iter()
            .all(|(seq, attribute)| *attribute == format!("v{seq}")),
        "attributes travel along"
    );
    let left = sqs
        .receive_message()
        .queue_url(dlq)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(left.messages().is_empty(), "the DLQ is empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_redrive_keeps_group_ids_and_is_not_swallowed_by_deduplication() {
    let env = TestEnv::new("cli-dlq-fifo", true).await;
    let sqs = &env.clients.sqs;
    let group = "payments.charge-card";
    let (source, dlq) = (
        &env.resources.task_queue_urls[group],
        &env.resources.task_dlq_urls[group],
    );
    // The original of message 0 went through the source queue a moment ago (and failed): real
    // SQS remembers its dedup id for 5 minutes even after the delete, so a copy with the same
    // id would be accepted and dropped. (moto forgets it on delete, so the test checks the ids.)
    sqs.send_message()
        .queue_url(source)
        .message_body(json!({ "n": 0 }).to_string())
        .message_group_id("run-a")
        .message_deduplication_id("dedup-0")
        .send()
        .await
        .unwrap();
    let original = drain(&env, source, 1).await;
    assert_eq!(original.len(), 1);
    for (i, message_group) in ["run-a", "run-a", "run-b"].iter().enumerate() {
        sqs.send_message()
            .queue_url(dlq)
            .message_body(json!({ "n": i }).to_string())
            .message_group_id(*message_group)
            .message_deduplication_id(format!("dedup-{i}"))
            .send()
            .await
            .unwrap();
    }
    let out = cairn(&env, &["dlq", "redrive", group]).await;
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("moved 3 message(s)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("3 FIFO message(s) were first sent less than 5 minutes ago"),
        "{}",
        stderr(&out)
    );

    let mut seen = drain(&env, source, 3).await;
    seen.sort();
    let groups: Vec<(u64, &str)> = seen.iter().map(|(n, g, _)| (*n, g.as_str())).collect();
    assert_eq!(
        groups,
        [(0, "run-a"), (1, "run-a"), (2, "run-b")],
        "every message is back, in its group"
    );
    assert!(
        seen.iter()
            .all(|(_, _, dedup)| dedup.starts_with("redrive-")),
        "{seen:?}"
    );
}

/// Receives (and deletes) up to `n` messages: (body `n`, group id, dedup id).
async fn drain(env: &TestEnv, url: &str, n: usize) -> Vec<(u64, String, String)> {
    let sqs = &env.clients.sqs;
    let mut seen = Vec::new();
    for _ in 0..10 {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        for m in got.messages() {
            let attrs = m.attributes().unwrap();
            let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
            seen.push((
                body["n"].as_u64().unwrap(),
                attrs[&MessageSystemAttributeName::MessageGroupId].clone(),
                attrs[&MessageSystemAttributeName::MessageDeduplicationId].clone(),
            ));
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        if seen.len() >= n {
            break;
        }
    }
    seen
}
