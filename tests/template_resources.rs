//! The local stack's resources are the template's: provision `template.yaml` on moto, read
//! every queue and the table back through the SDK, and compare with what the template declares
//! (and with `cairn::queue_name`, for the tasks queues' `cairn:group` tags).

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PointInTimeRecoveryStatus,
    ScalarAttributeType, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use cairn::queue_name::{tasks_queue_name, QueueKind};
use cairn_devstack::local_stack::{
    provision_from_template, ProvisionError, QueueRole, StackResources, TemplateParams,
    TemplateResources, GROUP_TAG, ROLE_TAG, TEMPLATE_YAML,
};
use cairn_tests::{local_sdk_config, repo_root, unique_prefix};

struct Clients {
    sqs: aws_sdk_sqs::Client,
    dynamo: aws_sdk_dynamodb::Client,
}

async fn clients() -> Clients {
    let sdk = local_sdk_config().await;
    Clients {
        sqs: aws_sdk_sqs::Client::new(&sdk),
        dynamo: aws_sdk_dynamodb::Client::new(&sdk),
    }
}

fn template() -> String {
    let text = std::fs::read_to_string(repo_root().join("template.yaml")).unwrap();
    assert_eq!(text, TEMPLATE_YAML, "the embedded template is stale");
    text
}

/// Every attribute of the queue named `name`, as SQS reports them.
async fn queue_attributes(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
) -> (String, BTreeMap<String, String>) {
    let url = sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let out = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = out
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_owned(), v))
        .collect();
    (url, attributes)
}

async fn queue_tags(sqs: &aws_sdk_sqs::Client, url: &str) -> BTreeMap<String, String> {
    let out = sqs.list_queue_tags().queue_url(url).send().await.unwrap();
    out.tags.unwrap_or_default().into_iter().collect()
}

/// Provisions, then checks every declared queue and the table against what AWS (moto) reports.
async fn provision_and_compare(params: &TemplateParams) -> StackResources {
    let c = clients().await;
    let template = template();
    let declared = TemplateResources::from_template(&template, params).unwrap();
    let resources = provision_from_template(&template, params, &c.sqs, &c.dynamo)
        .await
        .unwrap();
    let kind = if params.fifo {
        QueueKind::Fifo
    } else {
        QueueKind::Standard
    };

    let mut arns = BTreeMap::new();
    let mut actual = BTreeMap::new();
    for queue in &declared.queues {
        let (url, attributes) = queue_attributes(&c.sqs, &queue.name).await;
        arns.insert(queue.logical_id.clone(), attributes["QueueArn"].clone());
        actual.insert(queue.logical_id.clone(), (url, attributes));
    }
    for queue in &declared.queues {
        let (url, attributes) = &actual[&queue.logical_id];
        assert!(
            url.ends_with(&format!("/{}", queue.name)),
            "{url} is not {}",
            queue.name
        );
        for (name, value) in &queue.attributes {
            assert_eq!(
                attributes.get(name),
                Some(value),
                "{}: attribute {name}",
                queue.name
            );
        }
        assert_eq!(
            attributes.contains_key("FifoQueue"),
            queue.fifo,
            "{}",
            queue.name
        );
        // Every queue follows the Fifo parameter except the timers and peer results queues
        // and their DLQs.
        let timers_ids: Vec<&str> = declared
            .timers_queue()
            .into_iter()
            .chain(declared.peer_results_queue())
            .flat_map(|t| [Some(t), declared.dead_letter_of(t)])
            .flatten()
            .map(|q| q.logical_id.as_str())
            .collect();
        let follows_parameter = !timers_ids.contains(&queue.logical_id.as_str());
        assert_eq!(
            queue.fifo,
            params.fifo && follows_parameter,
            "{}",
            queue.name
        );
        match &queue.redrive {
            Some(redrive) => {
                let policy: serde_json::Value =
                    serde_json::from_str(&attributes["RedrivePolicy"]).unwrap();
                assert_eq!(
                    policy["deadLetterTargetArn"],
                    arns[&redrive.dead_letter_logical_id].as_str()
                );
                let count = &policy["maxReceiveCount"];
                let count = count
                    .as_u64()
                    .or_else(|| count.as_str()?.parse().ok())
                    .unwrap();
                assert_eq!(count, u64::from(params.max_receive_count), "{}", queue.name);
                assert_eq!(redrive.max_receive_count, params.max_receive_count);
            }
            None => {
                assert_eq!(
                    queue.role,
                    QueueRole::DeadLetter,
                    "{} has no DLQ",
                    queue.name
                );
                assert!(!attributes.contains_key("RedrivePolicy"), "{}", queue.name);
            }
        }
        // Tags map the queue back to its group; its name is the queue_name mapping's.
        let tags = queue_tags(&c.sqs, url).await;
        assert_eq!(tags, queue.tags, "{}", queue.name);
        if tags.get(ROLE_TAG).map(String::as_str) == Some("tasks") {
            let group = &tags[GROUP_TAG];
            assert_eq!(
                queue.name,
                tasks_queue_name(&params.prefix, group, kind).unwrap()
            );
            assert_eq!(resources.task_queue_urls[group], *url);
            let dlq = declared.dead_letter_of(queue).unwrap();
            assert_eq!(resources.task_dlq_urls[group], actual[&dlq.logical_id].0);
        }
    }
    let results = declared.results_queue().unwrap();
    assert_eq!(resources.results_queue_url, actual[&results.logical_id].0);
    assert_eq!(
        resources.results_dlq_url,
        actual[&declared.dead_letter_of(results).unwrap().logical_id].0
    );
    // FIFO deployments delay timers on a standard queue the engine consumes.
    let timers = declared.timers_queue();
    assert_eq!(timers.is_some(), params.fifo);
    assert_eq!(
        resources.timer_queue_url,
        timers.map(|t| actual[&t.logical_id].0.clone())
    );
    // ... and give peers (no MessageGroupId) a standard queue to answer on.
    let peers = declared.peer_results_queue();
    assert_eq!(peers.is_some(), params.fifo);
    assert_eq!(
        resources.peer_results_queue_url,
        peers.map(|q| actual[&q.logical_id].0.clone())
    );
    let groups: Vec<&str> = resources
        .task_queue_urls
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        groups,
        [
            "notifications.send-email",
            "payments.charge-card",
            "reports.generate"
        ]
    );

    // The table: keys, attribute types, both GSIs, TTL, point-in-time recovery.
    let table = &declared.table;
    assert_eq!(resources.table_name, table.name);
    assert_eq!(table.name, format!("{}-runs", params.prefix));
    let described = c
        .dynamo
        .describe_table()
        .table_name(&table.name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys = |k: &[KeySchemaElement]| -> Vec<(String, String)> {
        k.iter()
            .map(|k| {
                (
                    k.attribute_name().to_owned(),
                    k.key_type().as_str().to_owned(),
                )
            })
            .collect()
    };
    let declared_keys = |k: &[cairn_devstack::local_stack::KeyAttribute]| -> Vec<(String, String)> {
        k.iter()
            .map(|k| (k.name.clone(), k.key_type.clone()))
            .collect()
    };
    assert_eq!(
        keys(described.key_schema()),
        declared_keys(&table.key_schema)
    );
    assert_eq!(
        keys(described.key_schema()),
        [("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
    );
    let types: BTreeMap<String, String> = described
        .attribute_definitions()
        .iter()
        .map(|a: &AttributeDefinition| {
            (
                a.attribute_name().to_owned(),
                a.attribute_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(types, table.attribute_types);
    let indexes: BTreeMap<String, (Vec<(String, String)>, String)> = described
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            let projection = i
                .projection()
                .and_then(|p| p.projection_type())
                .map(|p| p.as_str().to_owned());
            (
                i.index_name().unwrap().to_owned(),
                (keys(i.key_schema()), projection.unwrap_or_default()),
            )
        })
        .collect();
    let declared_indexes: BTreeMap<String, (Vec<(String, String)>, String)> = table
        .global_secondary_indexes
        .iter()
        .map(|i| {
            (
                i.name.clone(),
                (declared_keys(&i.key_schema), i.projection_type.clone()),
            )
        })
        .collect();
    assert_eq!(indexes, declared_indexes);
    assert_eq!(
        indexes.keys().map(String::as_str).collect::<Vec<_>>(),
        ["byDue", "byOutbox", "byStatus", "byWorkflow"]
    );
    let billing = described
        .billing_mode_summary()
        .and_then(|b| b.billing_mode())
        .cloned();
    assert_eq!(billing, Some(BillingMode::PayPerRequest));

    let ttl = c
        .dynamo
        .describe_time_to_live()
        .table_name(&table.name)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description().unwrap();
    assert_eq!(ttl.attribute_name(), Some("expiresAt"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
    let backups = c
        .dynamo
        .describe_continuous_backups()
        .table_name(&table.name)
        .send()
        .await
        .unwrap();
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .cloned();
    assert_eq!(pitr, Some(PointInTimeRecoveryStatus::Enabled));
    resources
}

#[tokio::test]
async fn standard_stack_matches_the_template_and_reprovisions_idempotently() {
    let params = TemplateParams {
        max_receive_count: 4,
        ..TemplateParams::with_prefix(unique_prefix("tpl_std"))
    };
    let first = provision_and_compare(&params).await;
    // Existing resources are fine: same URLs, same attributes, no error.
    let again = provision_and_compare(&params).await;
    assert_eq!(first, again);
}

#[tokio::test]
async fn fifo_stack_matches_the_template() {
    let params = TemplateParams {
        fifo: true,
        ..TemplateParams::with_prefix(unique_prefix("tpl_fifo"))
    };
    let resources = provision_and_compare(&params).await;
    assert!(resources.results_queue_url.ends_with("-results.fifo"));
    assert!(resources
        .task_dlq_urls
        .values()
        .all(|u| u.ends_with("-dlq.fifo")));
}

#[tokio::test]
async fn changed_queue_attributes_are_converged() {
    let c = clients().await;
    let params = TemplateParams::with_prefix(unique_prefix("tpl_conv"));
    provision_from_template(&template(), &params, &c.sqs, &c.dynamo)
        .await
        .unwrap();
    // Someone (an older template) left the results queue with another visibility timeout and
    // redrive threshold: provisioning again restores the template's values.
    let results = TemplateResources::from_template(&template(), &params)
        .unwrap()
        .results_queue()
        .unwrap()
        .clone();
    let (url, _) = queue_attributes(&c.sqs, &results.name).await;
    c.sqs
        .set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::VisibilityTimeout, "7")
        .send()
        .await
        .unwrap();
    let bumped = TemplateParams {
        max_receive_count: 9,
        ..params.clone()
    };
    provision_from_template(&template(), &bumped, &c.sqs, &c.dynamo)
        .await
        .unwrap();
    let (_, attributes) = queue_attributes(&c.sqs, &results.name).await;
    assert_eq!(
        attributes["VisibilityTimeout"],
        results.attributes["VisibilityTimeout"]
    );
    let policy: serde_json::Value = serde_json::from_str(&attributes["RedrivePolicy"]).unwrap();
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "9");
}

#[tokio::test]
async fn an_existing_table_with_other_keys_is_reported_as_drift() {
    let c = clients().await;
    let params = TemplateParams::with_prefix(unique_prefix("tpl_drift"));
    let name = format!("{}-runs", params.prefix);
    c.dynamo
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let err = provision_from_template(&template(), &params, &c.sqs, &c.dynamo)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProvisionError::TableDrift { table, .. } if *table == name),
        "{err}"
    );
}
