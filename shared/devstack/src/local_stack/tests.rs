#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;
use cairn::queue_name::{dlq_name, results_queue_name, tasks_queue_name, QueueKind};

const GROUPS: [&str; 3] = [
    "notifications.send-email",
    "payments.charge-card",
    "reports.generate",
];

fn declared(params: &TemplateParams) -> TemplateResources {
    TemplateResources::from_template(TEMPLATE_YAML, params).unwrap()
}

#[test]
fn default_params_are_the_templates_defaults() {
    assert_eq!(
        TemplateParams::from_template_defaults(TEMPLATE_YAML).unwrap(),
        TemplateParams::default()
    );
}

#[test]
fn standard_queues_match_queue_name_and_have_dlqs() {
    for prefix in ["durable", "a", "p-32-characters-long-prefix-xxxx"] {
        let found = declared(&TemplateParams::with_prefix(prefix));
        let results = found.results_queue().unwrap();
        assert_eq!(
            results.name,
            results_queue_name(prefix, QueueKind::Standard).unwrap()
        );
        assert_eq!(
            found.dead_letter_of(results).unwrap().name,
            dlq_name(&results.name)
        );
        let tasks = found.tasks_queues();
        assert_eq!(tasks.keys().copied().collect::<Vec<_>>(), GROUPS);
        for (group, queue) in tasks {
            assert_eq!(
                queue.name,
                tasks_queue_name(prefix, group, QueueKind::Standard).unwrap()
            );
            let dlq = found.dead_letter_of(queue).unwrap();
            assert_eq!(dlq.name, dlq_name(&queue.name));
            assert_eq!(dlq.role, QueueRole::DeadLetter);
            assert!(!queue.fifo && !queue.attributes.contains_key("FifoQueue"));
            assert_eq!(queue.redrive.as_ref().unwrap().max_receive_count, 10);
        }
        assert_eq!(found.queues.len(), 8);
        assert!(
            found.timers_queue().is_none(),
            "standard queues delay timers themselves"
        );
        assert!(
            found.peer_results_queue().is_none(),
            "peers answer on a standard results queue"
        );
    }
}

#[test]
fn fifo_parameter_switches_names_and_attributes() {
    let params = TemplateParams {
        fifo: true,
        max_receive_count: 3,
        ..TemplateParams::default()
    };
    let found = declared(&params);
    // FIFO queues have no per-message delay: timers get a standard queue the engine consumes.
    let timers = found.timers_queue().unwrap();
    let timers_dlq = found.dead_letter_of(timers).unwrap();
    assert_eq!(
        (timers.name.as_str(), timers.fifo),
        ("durable-timers", false)
    );
    assert_eq!(timers_dlq.name, dlq_name(&timers.name));
    assert_eq!(
        timers.consumer.as_ref().unwrap().binary.as_deref(),
        Some("engine")
    );
    assert_eq!(timers.redrive.as_ref().unwrap().max_receive_count, 3);
    // Peers send results without a MessageGroupId: they answer on a standard queue the engine
    // consumes.
    let peers = found.peer_results_queue().unwrap();
    let peers_dlq = found.dead_letter_of(peers).unwrap();
    assert_eq!(
        (peers.name.as_str(), peers.fifo),
        ("durable-peer-results", false)
    );
    assert_eq!(peers_dlq.name, dlq_name(&peers.name));
    assert_eq!(
        peers.consumer.as_ref().unwrap().binary.as_deref(),
        Some("engine")
    );
    assert_eq!(found.queues.len(), 12);
    let standard = [&timers.name, &timers_dlq.name, &peers.name, &peers_dlq.name];
    for queue in found.queues.iter().filter(|q| !standard.contains(&&q.name)) {
        assert!(queue.fifo, "{}", queue.name);
        assert!(queue.name.ends_with(".fifo"));
        assert_eq!(queue.attributes["FifoQueue"], "true");
        if queue.role != QueueRole::DeadLetter {
            assert_eq!(queue.attributes["ContentBasedDeduplication"], "true");
            assert_eq!(queue.redrive.as_ref().unwrap().max_receive_count, 3);
            assert_eq!(
                found.dead_letter_of(queue).unwrap().name,
                dlq_name(&queue.name)
            );
        }
    }
    let results = found.results_queue().unwrap();
    assert_eq!(
        results.name,
        results_queue_name("durable", QueueKind::Fifo).unwrap()
    );
    for (group, queue) in found.tasks_queues() {
        assert_eq!(
            queue.name,
            tasks_queue_name("durable", group, QueueKind::Fifo).unwrap()
        );
    }
}

#[test]
fn visibility_timeouts_cover_six_consumer_timeouts() {
    let found = declared(&TemplateParams::default());
    for queue in found
        .queues
        .iter()
        .filter(|q| q.role != QueueRole::DeadLetter)
    {
        let consumer = queue
            .consumer
            .as_ref()
            .unwrap_or_else(|| panic!("{} has no consumer", queue.name));
        assert!(
            queue.visibility_timeout() >= 6 * consumer.timeout_seconds,
            "{}: visibility {} < 6 x {}",
            queue.name,
            queue.visibility_timeout(),
            consumer.timeout_seconds
        );
        assert_eq!(queue.attributes["SqsManagedSseEnabled"], "true");
    }
    let results = found.results_queue().unwrap().consumer.clone().unwrap();
    assert_eq!(
        (results.binary.as_deref(), results.timeout_seconds),
        (Some("engine"), 30)
    );
    for queue in found.tasks_queues().values() {
        assert_eq!(
            queue.consumer.as_ref().unwrap().binary.as_deref(),
            Some("worker")
        );
    }
}

#[test]
fn table_has_keys_indexes_and_ttl() {
    let table = declared(&TemplateParams::with_prefix("x")).table;
    assert_eq!(table.name, "x-runs");
    fn keys(k: &[KeyAttribute]) -> Vec<(&str, &str)> {
        k.iter()
            .map(|k| (k.name.as_str(), k.key_type.as_str()))
            .collect()
    }
    assert_eq!(keys(&table.key_schema), [("pk", "HASH"), ("sk", "RANGE")]);
    let indexes: BTreeMap<_, _> = table
        .global_secondary_indexes
        .iter()
        .map(|i| {
            (
                i.name.as_str(),
                (keys(&i.key_schema), i.projection_type.as_str()),
            )
        })
        .collect();
    assert_eq!(
        indexes["byStatus"],
        (vec![("gsi1pk", "HASH"), ("gsi1sk", "RANGE")], "KEYS_ONLY")
    );
    assert_eq!(
        indexes["byWorkflow"],
        (vec![("gsi2pk", "HASH"), ("gsi2sk", "RANGE")], "KEYS_ONLY")
    );
    assert_eq!(
        indexes["byOutbox"],
        (vec![("gsi3pk", "HASH"), ("gsi3sk", "RANGE")], "KEYS_ONLY")
    );
    assert_eq!(
        indexes["byDue"],
        (vec![("gsi4pk", "HASH"), ("gsi4sk", "RANGE")], "KEYS_ONLY")
    );
    assert_eq!(table.ttl_attribute.as_deref(), Some("expiresAt"));
    assert!(table.point_in_time_recovery && table.sse);
    assert_eq!(table.billing_mode, "PAY_PER_REQUEST");
    assert!(table.attribute_types.values().all(|t| t == "S"));
}

#[test]
fn parameters_are_checked_against_the_template() {
    let bad = |params: TemplateParams| {
        TemplateResources::from_template(TEMPLATE_YAML, &params).unwrap_err()
    };
    let long = TemplateParams::with_prefix("p".repeat(33));
    assert!(matches!(bad(long), TemplateError::Parameter { name, .. } if name == "Prefix"));
    let zero = TemplateParams {
        max_receive_count: 0,
        ..TemplateParams::default()
    };
    assert!(
        matches!(bad(zero), TemplateError::Parameter { name, .. } if name == "MaxReceiveCount")
    );
    let mut unknown = TemplateParams::default();
    unknown
        .overrides
        .insert("NoSuchParameter".into(), "1".into());
    assert!(
        matches!(bad(unknown), TemplateError::Parameter { name, .. } if name == "NoSuchParameter")
    );
    let mut batch = TemplateParams::default();
    batch.overrides.insert("BatchSize".into(), "4".into());
    let found = TemplateResources::from_template(TEMPLATE_YAML, &batch).unwrap();
    assert_eq!(
        found
            .results_queue()
            .unwrap()
            .consumer
            .as_ref()
            .unwrap()
            .batch_size,
        4
    );
}

const MINI: &str = r#"
Parameters:
  Prefix: { Type: String, Default: demo }
  Fifo: { Type: String, Default: "false", AllowedValues: ["true", "false"] }
  MaxReceiveCount: { Type: Number, Default: 2 }
  RetentionDays: { Type: Number, Default: 1 }
Conditions:
  IsFifo: !Equals [!Ref Fifo, "true"]
  NotFifo: !Not [!Condition IsFifo]
  Both: !And [!Condition NotFifo, !Or [!Equals [a, a], !Condition IsFifo]]
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Join ["-", [!Ref Prefix, runs]]
      AttributeDefinitions: [{ AttributeName: pk, AttributeType: S }]
      KeySchema: [{ AttributeName: pk, KeyType: HASH }]
  Dlq:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub ["${P}-r-dlq${!x}", { P: !Ref Prefix }]
      Tags: [{ Key: "cairn:role", Value: dlq }]
  Results:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: { "Fn::Sub": "${Prefix}-${AWS::Region}" }
      VisibilityTimeout: !If [Both, 60, !Ref AWS::NoValue]
      DelaySeconds: !If [IsFifo, 5, !Ref AWS::NoValue]
      RedrivePolicy:
        deadLetterTargetArn: { "Fn::GetAtt": [Dlq, Arn] }
        maxReceiveCount: !Ref MaxReceiveCount
      Tags: [{ Key: "cairn:role", Value: results }]
"#;

#[test]
fn short_and_long_intrinsic_forms_resolve() {
    let found =
        TemplateResources::from_template(MINI, &TemplateParams::with_prefix("demo")).unwrap();
    assert_eq!(found.table.name, "demo-runs");
    assert_eq!(found.queue("Dlq").unwrap().name, "demo-r-dlq${x}");
    let results = found.results_queue().unwrap();
    assert_eq!(results.name, "demo-us-east-1");
    assert_eq!(
        results.attributes,
        BTreeMap::from([("VisibilityTimeout".to_owned(), "60".to_owned())])
    );
    assert_eq!(
        results.redrive,
        Some(Redrive {
            dead_letter_logical_id: "Dlq".into(),
            max_receive_count: 10
        })
    );
    assert_eq!(found.table.ttl_attribute, None);
    assert!(results.consumer.is_none());
}

#[test]
fn unsupported_constructs_fail_loudly() {
    let with = |from: &str, to: &str| {
        let template = MINI.replace(from, to);
        TemplateResources::from_template(&template, &TemplateParams::with_prefix("demo"))
            .unwrap_err()
    };
    let err = with(
        "VisibilityTimeout: !If [Both, 60, !Ref AWS::NoValue]",
        "VisibilityTimeout: !Ref Table",
    );
    assert!(matches!(err, TemplateError::Unsupported { .. }), "{err}");
    let err = with("DelaySeconds:", "Policy: {}\n      DelaySeconds:");
    assert!(matches!(err, TemplateError::Invalid { .. }), "{err}");
    let err = with(
        "{ \"Fn::GetAtt\": [Dlq, Arn] }",
        "arn:aws:sqs:us-east-1:1:x",
    );
    assert!(err.to_string().contains("deadLetterTargetArn"), "{err}");
    let err = with(
        "{ Key: \"cairn:role\", Value: results }",
        "{ Key: \"cairn:role\", Value: tasks }",
    );
    assert!(err.to_string().contains("cairn:group"), "{err}");
    assert!(matches!(
        with("Resources:", "Resources: ["),
        TemplateError::Yaml(_)
    ));
}

/// The IAM promises of the deploy: a function receives only from the queues its event sources
/// consume, a worker sends only to the results queue, and only the engine writes DynamoDB
/// items other than claim-check blobs (`BLOB#` keys) without a condition.
#[test]
fn roles_are_least_privilege() {
    use serde_json::Value;
    use std::collections::BTreeSet;

    let template = intrinsics::parse_template(TEMPLATE_YAML).unwrap();
    let resources = template["Resources"].as_object().unwrap();
    // `!If [IsFifo, x, !Ref AWS::NoValue]` grants x in FIFO deployments: check the superset.
    fn then_branch(v: &Value) -> Option<Value> {
        match v.get("Fn::If").and_then(Value::as_array) {
            Some(args) => args.get(1).and_then(then_branch),
            None => Some(v.clone()),
        }
    }
    let list = |v: &Value| -> Vec<Value> {
        let items = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
        items.iter().filter_map(then_branch).collect()
    };
    let targets = |resource: &Value| -> BTreeSet<String> {
        list(resource)
            .iter()
            .map(|r| match intrinsics::get_att_target(r, "Arn") {
                Some(id) => id.to_owned(),
                None => r.to_string(),
            })
            .collect()
    };
    let mut functions = 0;
    for (id, function) in resources {
        if function["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        functions += 1;
        let binary = function["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap();
        let role = intrinsics::get_att_target(&function["Properties"]["Role"], "Arn").unwrap();
        let statements: Vec<Value> = list(&resources[role]["Properties"]["Policies"])
            .iter()
            .flat_map(|p| list(&p["PolicyDocument"]["Statement"]))
            .collect();
        let consumed: BTreeSet<String> = function["Properties"]["Events"]
            .as_object()
            .unwrap()
            .values()
            .filter(|e| e["Type"] == "SQS")
            .map(|e| {
                intrinsics::get_att_target(&e["Properties"]["Queue"], "Arn")
                    .unwrap()
                    .to_owned()
            })
            .chain(
                resources
                    .values()
                    .filter(|r| r["Type"] == "AWS::Lambda::EventSourceMapping")
                    .filter(|r| r["Properties"]["FunctionName"]["Ref"] == id.as_str())
                    .map(|r| {
                        intrinsics::get_att_target(&r["Properties"]["EventSourceArn"], "Arn")
                            .unwrap()
                            .to_owned()
                    }),
            )
            .collect();
        let (mut receive_from, mut send_to) = (BTreeSet::new(), BTreeSet::new());
        for statement in &statements {
            assert_eq!(statement["Effect"], "Allow");
            let actions: Vec<String> = list(&statement["Action"])
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            let has = |a: &str| actions.iter().any(|x| x == a);
            assert!(
                actions.iter().all(|a| !a.contains('*')),
                "{id}: wildcard action in {actions:?}"
            );
            if statement["Resource"] == "*" {
                assert!(
                    actions.iter().all(|a| a.starts_with("xray:")),
                    "{id}: {actions:?} on *"
                );
            }
            if has("sqs:ReceiveMessage") {
                receive_from.extend(targets(&statement["Resource"]));
            }
            if has("sqs:SendMessage") {
                send_to.extend(targets(&statement["Resource"]));
            }
            let writes = [
                "dynamodb:PutItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:ConditionCheckItem",
            ];
            if writes.iter().any(|w| has(w)) && binary != "engine" {
                let leading =
                    &statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
                // Workers write claim-check blobs only; the reconciler also its pass's mark.
                let allowed = if binary == "reconciler" {
                    serde_json::json!(["BLOB#*", "RECONCILER"])
                } else {
                    serde_json::json!(["BLOB#*"])
                };
                assert_eq!(
                    leading, &allowed,
                    "{id}: {actions:?} without the BLOB# condition"
                );
            }
        }
        // The reconciler peeks at the results DLQ (what running runs await goes back).
        let mut consumed = consumed;
        if binary == "reconciler" {
            consumed.insert("ResultsDlq".to_owned());
        }
        assert_eq!(
            receive_from, consumed,
            "{id} may receive from other queues than it consumes"
        );
        if binary == "worker" {
            assert_eq!(send_to, BTreeSet::from(["ResultsQueue".to_owned()]), "{id}");
        }
    }
    assert_eq!(functions, 5);
}
