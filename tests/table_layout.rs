//! What a run writes to the table, on the local stack, and how runs are listed from it.
//!
//! A run's first activation is its head (`RUN`, the creation lock), later ones one history
//! item each, and nothing is rewritten when it ends: a two-step checkout writes 3 items and
//! 2 index entries (`byWorkflow` on the head, `byDue` for its charge's timeout timer; the
//! email after it is covered by that entry). Only a run that ends other than by completing
//! gets a `byStatus` entry. Listings read status and outcome from the history.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use cairn::store::RunFilter;
use cairn::workflow::RunStatus;
use cairn_tests::TestEnv;
use serde_json::json;

type Item = std::collections::HashMap<String, AttributeValue>;

async fn partition(env: &TestEnv, run_id: &str) -> Vec<Item> {
    env.clients
        .dynamodb
        .query()
        .table_name(&env.resources.table_name)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("RUN#{run_id}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
}

fn sk(item: &Item) -> &str {
    item["sk"].as_s().unwrap()
}

/// The indexes an item has an entry in (by their key attributes).
fn entries(item: &Item) -> Vec<&'static str> {
    [
        ("gsi1pk", "byStatus"),
        ("gsi2pk", "byWorkflow"),
        ("gsi3pk", "byOutbox"),
        ("gsi4pk", "byDue"),
    ]
    .into_iter()
    .filter(|(key, _)| item.contains_key(*key))
    .map(|(_, index)| index)
    .collect()
}

fn checkout(order: &str, card: &str) -> serde_json::Value {
    json!({"orderId": order, "amountCents": 1200, "card": card, "email": "a@example.com"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_writes_its_head_and_one_item_per_activation_and_is_listed_from_its_history() {
    let env = TestEnv::new("layout", false).await;
    let _runtime = env
        .run(env.engine(cairn_demo::workflows()), cairn_demo::worker())
        .await;
    let client = env.client();
    let wait = Duration::from_secs(60);
    client
        .start("checkout", checkout("o-ok", "tok_visa"), Some("ok".into()))
        .await
        .unwrap();
    client
        .start(
            "checkout",
            checkout("o-no", "tok_declined"),
            Some("declined".into()),
        )
        .await
        .unwrap();
    client
        .start("timer", json!(600), Some("sleeping".into()))
        .await
        .unwrap();
    assert_eq!(
        client.wait("ok", wait).await.unwrap().status,
        RunStatus::Completed
    );
    assert_eq!(
        client.wait("declined", wait).await.unwrap().status,
        RunStatus::Failed
    );

    // The charges' timeout backstops were not sent (the reconciler fires them from `byDue`):
    // the sleep's message is the only delayed one.
    let timers = env
        .resources
        .timer_queue_url
        .as_deref()
        .unwrap_or(&env.resources.results_queue_url);
    let attributes = env
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(timers)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let count = |name: QueueAttributeName| -> u32 {
        attributes
            .get(&name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        1,
        "{attributes:?}"
    );

    // The completed checkout: head + one item per later activation, written once each.
    let items = partition(&env, "ok").await;
    let layout: Vec<(&str, Vec<&str>)> = items
        .iter()
        .map(|i| (sk(i).get(..4).unwrap_or("RUN"), entries(i)))
        .collect();
    assert_eq!(
        layout,
        vec![
            ("EVT#", vec![]),
            ("EVT#", vec![]),
            ("RUN", vec!["byWorkflow", "byDue"]),
        ],
        "{items:?}"
    );
    let head = items.iter().find(|i| sk(i) == "RUN").unwrap();
    assert!(
        head.contains_key("data"),
        "the head holds the first activation"
    );
    assert!(
        !head.contains_key("status"),
        "nothing on the head changes with the run"
    );
    let created = head["createdAt"].as_n().unwrap();
    for item in items.iter().filter(|i| sk(i) != "RUN") {
        assert_eq!(item["born"].as_n().unwrap(), created, "{item:?}");
    }
    // The failed one: its last item carries the status entry.
    let items = partition(&env, "declined").await;
    let last = items.iter().rfind(|i| sk(i) != "RUN").unwrap();
    assert!(entries(last).contains(&"byStatus"), "{items:?}");
    assert!(last["gsi1pk"].as_s().unwrap().starts_with("STATUS#failed#"));

    // Listings: status and outcome come from the history.
    let client = &client;
    let list = |status: Option<RunStatus>, workflow: Option<&str>| {
        let filter = RunFilter {
            status,
            workflow: workflow.map(str::to_owned),
            since_ms: None,
            limit: 100,
            cursor: None,
        };
        async move {
            let mut ids: Vec<String> = client
                .list(&filter)
                .await
                .unwrap()
                .runs
                .iter()
                .map(|r| r.run_id.to_string())
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(list(Some(RunStatus::Completed), None).await, ["ok"]);
    assert_eq!(list(Some(RunStatus::Failed), None).await, ["declined"]);
    assert_eq!(list(Some(RunStatus::Running), None).await, ["sleeping"]);
    assert_eq!(
        list(None, Some("checkout")).await,
        ["declined", "ok"],
        "by workflow"
    );
    assert_eq!(
        list(Some(RunStatus::Failed), Some("checkout")).await,
        ["declined"]
    );
    let all = client
        .list(&RunFilter {
            status: None,
            workflow: None,
            since_ms: None,
            limit: 100,
            cursor: None,
        })
        .await
        .unwrap();
    let ok = all.runs.iter().find(|r| r.run_id.as_str() == "ok").unwrap();
    assert_eq!(ok.status, RunStatus::Completed);
    assert!(
        ok.output.is_some(),
        "the output, from the last history item"
    );
    let declined = all
        .runs
        .iter()
        .find(|r| r.run_id.as_str() == "declined")
        .unwrap();
    assert!(declined.error.is_some(), "the error, from the history");
}

/// A run an older release started (a full run item with its status and index keys, its first
/// activation at `EVT#0`, no `born`) goes on under this release: loaded, continued and ended,
/// its run item left as it was (the history says how it ended), and listed by that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_an_older_release_started_goes_on_and_ends() {
    let env = TestEnv::new("layout-old", false).await;
    let table = &env.resources.table_name;
    let db = &env.clients.dynamodb;
    let client = env.client();
    let runtime = env
        .run(env.engine(cairn_demo::workflows()), cairn_demo::worker())
        .await;
    client
        .start("timer", json!(3), Some("old".into()))
        .await
        .unwrap();
    // Rewrite it the way the older release laid it out, before its timer fires.
    let head = loop {
        if let Some(head) = partition(&env, "old")
            .await
            .into_iter()
            .find(|i| sk(i) == "RUN")
        {
            break head;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(runtime);
    let created = head["createdAt"].as_n().unwrap().to_owned();
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: &str| AttributeValue::N(v.to_owned());
    let first = Item::from([
        ("pk".to_owned(), s("RUN#old")),
        ("sk".to_owned(), s("EVT#0000000000#000")),
        ("data".to_owned(), head["data"].clone()),
        ("expiresAt".to_owned(), head["expiresAt"].clone()),
    ]);
    let run_item = Item::from([
        ("pk".to_owned(), s("RUN#old")),
        ("sk".to_owned(), s("RUN")),
        ("runId".to_owned(), s("old")),
        ("workflow".to_owned(), s("timer")),
        ("status".to_owned(), s("running")),
        ("version".to_owned(), n("1")),
        ("historyLen".to_owned(), n("2")),
        ("createdAt".to_owned(), n(&created)),
        ("updatedAt".to_owned(), n(&created)),
        ("input".to_owned(), s("3")),
        ("gsi1pk".to_owned(), s("STATUS#running#0")),
        ("gsi1sk".to_owned(), s(&format!("{created:0>13}#old"))),
        ("gsi2pk".to_owned(), s("WF#timer#0")),
        ("gsi2sk".to_owned(), s(&format!("{created:0>13}#old"))),
        ("expiresAt".to_owned(), head["expiresAt"].clone()),
    ]);
    for item in [first, run_item] {
        db.put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    // A new engine (nothing cached) takes the timer when it fires.
    let _runtime = env
        .run(env.engine(cairn_demo::workflows()), cairn_demo::worker())
        .await;
    let run = client.wait("old", Duration::from_secs(60)).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert!(run.output.unwrap()["sleptMs"].as_u64().unwrap() >= 3_000);
    let items = partition(&env, "old").await;
    let sks: Vec<&str> = items.iter().map(sk).collect();
    assert_eq!(
        sks.len(),
        3,
        "EVT#0, the next activation and the run item: {sks:?}"
    );
    let run_item = items.iter().find(|i| sk(i) == "RUN").unwrap();
    assert_eq!(
        run_item["status"].as_s().unwrap(),
        "running",
        "not rewritten"
    );
    let listed = |status| {
        let client = &client;
        async move {
            client
                .list(&RunFilter {
                    status: Some(status),
                    workflow: Some("timer".into()),
                    since_ms: None,
                    limit: 100,
                    cursor: None,
                })
                .await
                .unwrap()
                .runs
                .len()
        }
    };
    assert_eq!(listed(RunStatus::Completed).await, 1);
    assert_eq!(listed(RunStatus::Running).await, 0);
}
