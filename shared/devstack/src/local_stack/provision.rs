//! Creating the template's queues and table through the SDK, idempotently: a resource that
//! already exists is converged (queue attributes set again, TTL enabled) or, for a table whose
//! keys differ, reported as drift rather than silently reused.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
    SseSpecification, TableDescription, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::operation::create_queue::CreateQueueError;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::operation::BuildError;

use super::declared::{DeclaredQueue, QueueRole, TemplateResources};
use super::table::{DeclaredTable, KeyAttribute};
use super::{TemplateError, TemplateParams};

/// How long to wait for a new table (and its indexes) to become `ACTIVE`.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);
const TABLE_POLL: Duration = Duration::from_millis(250);

/// The resources [`provision_from_template`] created (or found), as the Lambdas' configuration
/// needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackResources {
    /// The runs table (`CAIRN_TABLE_NAME`).
    pub table_name: String,
    /// The results queue (`CAIRN_RESULTS_QUEUE_URL`).
    pub results_queue_url: String,
    /// The results queue's dead-letter queue.
    pub results_dlq_url: String,
    /// Tasks queue URL by step group (`CAIRN_TASK_QUEUE_URLS`).
    pub task_queue_urls: BTreeMap<String, String>,
    /// Dead-letter queue URL of each tasks queue, by step group.
    pub task_dlq_urls: BTreeMap<String, String>,
    /// The standard timers queue of a FIFO deployment (`CAIRN_TIMER_QUEUE_URL`); `None` for
    /// standard queues, where timers are delayed on the results queue.
    pub timer_queue_url: Option<String>,
    /// The standard queue peer workers answer on in a FIFO deployment
    /// (`CAIRN_PEER_RESULTS_QUEUE_URL`); `None` for standard queues, where they answer on the
    /// results queue.
    pub peer_results_queue_url: Option<String>,
    /// The schedule group of long waits (`CAIRN_SCHEDULE_GROUP`), if the template declares
    /// one; [`crate::schedules::provision_schedule_group`] creates it.
    pub schedule_group: Option<String>,
    /// The queue the long-wait schedules send to (`CAIRN_SCHEDULER_TARGET_ARN`): the timers
    /// queue if there is one, else the results queue.
    pub timer_target_arn: String,
}

/// Provisioning the local stack failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The template cannot be read or resolved.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// An SQS call failed.
    #[error("SQS {operation} for queue {queue} failed: {}", DisplayErrorContext(source.as_ref()))]
    Sqs {
        /// The operation, e.g. `CreateQueue`.
        operation: &'static str,
        /// The queue name.
        queue: String,
        /// The service error.
        #[source]
        source: Box<aws_sdk_sqs::Error>,
    },
    /// A DynamoDB call failed.
    #[error("DynamoDB {operation} for table {table} failed: {}", DisplayErrorContext(source.as_ref()))]
    Dynamo {
        /// The operation, e.g. `CreateTable`.
        operation: &'static str,
        /// The table name.
        table: String,
        /// The service error.
        #[source]
        source: Box<aws_sdk_dynamodb::Error>,
    },
    /// A request could not be built from the template's values.
    #[error("cannot build the request for {resource}: {source}")]
    Build {
        /// The queue or table.
        resource: String,
        /// Why.
        #[source]
        source: BuildError,
    },
    /// A response lacked a field it always carries.
    #[error("{operation} for {resource} returned no {field}")]
    MissingField {
        /// The operation.
        operation: &'static str,
        /// The queue or table.
        resource: String,
        /// The missing field.
        field: &'static str,
    },
    /// The table exists with another key schema or other indexes than the template declares.
    #[error("table {table} exists but differs from the template: {difference}")]
    TableDrift {
        /// The table name.
        table: String,
        /// What differs.
        difference: String,
    },
    /// The table did not become `ACTIVE` in time.
    #[error("table {table} did not become ACTIVE within {seconds} s")]
    TableNotActive {
        /// The table name.
        table: String,
        /// How long we waited.
        seconds: u64,
    },
}

fn sqs_error(
    operation: &'static str,
    queue: &str,
    source: impl Into<aws_sdk_sqs::Error>,
) -> ProvisionError {
    ProvisionError::Sqs {
        operation,
        queue: queue.to_owned(),
        source: Box::new(source.into()),
    }
}

fn dynamo_error(
    operation: &'static str,
    table: &str,
    source: impl Into<aws_sdk_dynamodb::Error>,
) -> ProvisionError {
    ProvisionError::Dynamo {
        operation,
        table: table.to_owned(),
        source: Box::new(source.into()),
    }
}

fn build_error(resource: &str) -> impl FnOnce(BuildError) -> ProvisionError + '_ {
    move |source| ProvisionError::Build {
        resource: resource.to_owned(),
        source,
    }
}

/// Creates the queues and the table `template_yaml` declares, resolved with `params`, and
/// returns where they are. Idempotent: existing queues get the template's attributes again,
/// an existing table is checked against the template's keys and indexes.
pub async fn provision_from_template(
    template_yaml: &str,
    params: &TemplateParams,
    sqs: &aws_sdk_sqs::Client,
    dynamo: &aws_sdk_dynamodb::Client,
) -> Result<StackResources, ProvisionError> {
    let declared = TemplateResources::from_template(template_yaml, params)?;

    // Dead-letter queues first: a redrive policy names its DLQ by ARN.
    let mut urls: BTreeMap<&str, String> = BTreeMap::new();
    let mut arns: BTreeMap<&str, String> = BTreeMap::new();
    let (plain, redriven): (Vec<&DeclaredQueue>, Vec<&DeclaredQueue>) =
        declared.queues.iter().partition(|q| q.redrive.is_none());
    for queue in plain.into_iter().chain(redriven) {
        let mut attributes = queue.attributes.clone();
        if let Some(redrive) = &queue.redrive {
            let dlq_arn = arns
                .get(redrive.dead_letter_logical_id.as_str())
                .ok_or_else(|| TemplateError::Invalid {
                    path: format!("{}.Properties.RedrivePolicy", queue.logical_id),
                    reason: "the dead-letter queue has a redrive policy itself".to_owned(),
                })?;
            let policy = serde_json::json!({
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": redrive.max_receive_count,
            });
            attributes.insert("RedrivePolicy".to_owned(), policy.to_string());
        }
        let url = ensure_queue(sqs, queue, &attributes).await?;
        let arn = queue_arn(sqs, &queue.name, &url).await?;
        urls.insert(&queue.logical_id, url);
        arns.insert(&queue.logical_id, arn);
    }

    ensure_table(dynamo, &declared.table).await?;

    let url_of = |queue: &DeclaredQueue| {
        urls.get(queue.logical_id.as_str())
            .cloned()
            .unwrap_or_default()
    };
    let dlq_url_of = |queue: &DeclaredQueue| -> Result<String, ProvisionError> {
        declared.dead_letter_of(queue).map(url_of).ok_or_else(|| {
            TemplateError::Missing(format!("RedrivePolicy on queue {}", queue.logical_id)).into()
        })
    };
    let results = declared
        .results_queue()
        .ok_or_else(|| TemplateError::Missing("results queue".to_owned()))?;
    let mut task_queue_urls = BTreeMap::new();
    let mut task_dlq_urls = BTreeMap::new();
    for queue in &declared.queues {
        if let QueueRole::Tasks { group } = &queue.role {
            task_queue_urls.insert(group.clone(), url_of(queue));
            task_dlq_urls.insert(group.clone(), dlq_url_of(queue)?);
        }
    }
    Ok(StackResources {
        table_name: declared.table.name.clone(),
        results_queue_url: url_of(results),
        results_dlq_url: dlq_url_of(results)?,
        task_queue_urls,
        task_dlq_urls,
        timer_queue_url: declared.timers_queue().map(url_of),
        peer_results_queue_url: declared.peer_results_queue().map(url_of),
        schedule_group: declared.schedule_group.clone(),
        timer_target_arn: arns
            .get(
                declared
                    .timers_queue()
                    .unwrap_or(results)
                    .logical_id
                    .as_str(),
            )
            .cloned()
            .unwrap_or_default(),
    })
}

/// Creates the queue, or converges an existing one to `attributes` and the template's tags.
async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    queue: &DeclaredQueue,
    attributes: &BTreeMap<String, String>,
) -> Result<String, ProvisionError> {
    let attrs: HashMap<QueueAttributeName, String> = attributes
        .iter()
        .map(|(k, v)| (QueueAttributeName::from(k.as_str()), v.clone()))
        .collect();
    let tags: HashMap<String, String> = queue.tags.clone().into_iter().collect();
    let created = sqs
        .create_queue()
        .queue_name(&queue.name)
        .set_attributes(Some(attrs.clone()))
        .set_tags(Some(tags.clone()))
        .send()
        .await;
    match created {
        Ok(out) => out.queue_url.ok_or_else(|| ProvisionError::MissingField {
            operation: "CreateQueue",
            resource: queue.name.clone(),
            field: "QueueUrl",
        }),
        Err(err) => match err.into_service_error() {
            // Same name, different attributes (a previous template): converge it. FifoQueue
            // cannot change and is implied by the `.fifo` name, so it is left out.
            CreateQueueError::QueueNameExists(_) => {
                let url = sqs
                    .get_queue_url()
                    .queue_name(&queue.name)
                    .send()
                    .await
                    .map_err(|e| sqs_error("GetQueueUrl", &queue.name, e.into_service_error()))?
                    .queue_url
                    .ok_or_else(|| ProvisionError::MissingField {
                        operation: "GetQueueUrl",
                        resource: queue.name.clone(),
                        field: "QueueUrl",
                    })?;
                let mutable = attrs
                    .into_iter()
                    .filter(|(k, _)| *k != QueueAttributeName::FifoQueue);
                sqs.set_queue_attributes()
                    .queue_url(&url)
                    .set_attributes(Some(mutable.collect()))
                    .send()
                    .await
                    .map_err(|e| {
                        sqs_error("SetQueueAttributes", &queue.name, e.into_service_error())
                    })?;
                sqs.tag_queue()
                    .queue_url(&url)
                    .set_tags(Some(tags))
                    .send()
                    .await
                    .map_err(|e| sqs_error("TagQueue", &queue.name, e.into_service_error()))?;
                Ok(url)
            }
            other => Err(sqs_error("CreateQueue", &queue.name, other)),
        },
    }
}

async fn queue_arn(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    url: &str,
) -> Result<String, ProvisionError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sqs_error("GetQueueAttributes", name, e.into_service_error()))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| ProvisionError::MissingField {
            operation: "GetQueueAttributes",
            resource: name.to_owned(),
            field: "QueueArn",
        })
}

fn key_elements(
    keys: &[KeyAttribute],
    table: &str,
) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(build_error(table))
        })
        .collect()
}

/// Creates the table (or checks the existing one), waits until it is active, then enables TTL
/// and point-in-time recovery as declared.
async fn ensure_table(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &DeclaredTable,
) -> Result<(), ProvisionError> {
    let name = table.name.as_str();
    let mut definitions = Vec::new();
    for (attribute, kind) in &table.attribute_types {
        definitions.push(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::from(kind.as_str()))
                .build()
                .map_err(build_error(name))?,
        );
    }
    let mut indexes = Vec::new();
    for index in &table.global_secondary_indexes {
        indexes.push(
            GlobalSecondaryIndex::builder()
                .index_name(&index.name)
                .set_key_schema(Some(key_elements(&index.key_schema, name)?))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(index.projection_type.as_str()))
                        .build(),
                )
                .build()
                .map_err(build_error(name))?,
        );
    }
    let created = dynamo
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(table.billing_mode.as_str()))
        .set_attribute_definitions(Some(definitions))
        .set_key_schema(Some(key_elements(&table.key_schema, name)?))
        .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
        .sse_specification(SseSpecification::builder().enabled(table.sse).build())
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(err) => match err.into_service_error() {
            CreateTableError::ResourceInUseException(_) => {}
            other => return Err(dynamo_error("CreateTable", name, other)),
        },
    }
    let description = wait_active(dynamo, name).await?;
    check_drift(table, &description)?;

    if let Some(attribute) = &table.ttl_attribute {
        let current = dynamo
            .describe_time_to_live()
            .table_name(name)
            .send()
            .await
            .map_err(|e| dynamo_error("DescribeTimeToLive", name, e.into_service_error()))?;
        let ttl = current.time_to_live_description();
        let enabled = ttl.and_then(|d| d.time_to_live_status()) == Some(&TimeToLiveStatus::Enabled);
        if !enabled || ttl.and_then(|d| d.attribute_name()) != Some(attribute.as_str()) {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(attribute)
                .enabled(true)
                .build()
                .map_err(build_error(name))?;
            dynamo
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| dynamo_error("UpdateTimeToLive", name, e.into_service_error()))?;
        }
    }
    if table.point_in_time_recovery {
        let spec = PointInTimeRecoverySpecification::builder()
            .point_in_time_recovery_enabled(true)
            .build()
            .map_err(build_error(name))?;
        dynamo
            .update_continuous_backups()
            .table_name(name)
            .point_in_time_recovery_specification(spec)
            .send()
            .await
            .map_err(|e| dynamo_error("UpdateContinuousBackups", name, e.into_service_error()))?;
    }
    Ok(())
}

async fn wait_active(
    dynamo: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<TableDescription, ProvisionError> {
    let deadline = tokio::time::Instant::now() + TABLE_ACTIVE_TIMEOUT;
    loop {
        let described = dynamo
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| dynamo_error("DescribeTable", name, e.into_service_error()))?;
        let table = described
            .table
            .ok_or_else(|| ProvisionError::MissingField {
                operation: "DescribeTable",
                resource: name.to_owned(),
                field: "Table",
            })?;
        let indexes_active = table
            .global_secondary_indexes()
            .iter()
            .all(|i| i.index_status().is_none_or(|s| *s == IndexStatus::Active));
        if table.table_status() == Some(&TableStatus::Active) && indexes_active {
            return Ok(table);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ProvisionError::TableNotActive {
                table: name.to_owned(),
                seconds: TABLE_ACTIVE_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(TABLE_POLL).await;
    }
}

fn keys_of(elements: &[KeySchemaElement]) -> Vec<(String, String)> {
    elements
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect()
}

/// An existing table must have the declared keys and indexes: reusing one that does not would
/// make every later query fail in a less obvious place.
fn check_drift(table: &DeclaredTable, actual: &TableDescription) -> Result<(), ProvisionError> {
    let declared_keys = |keys: &[KeyAttribute]| -> Vec<(String, String)> {
        keys.iter()
            .map(|k| (k.name.clone(), k.key_type.clone()))
            .collect()
    };
    let drift = |difference: String| ProvisionError::TableDrift {
        table: table.name.clone(),
        difference,
    };
    if keys_of(actual.key_schema()) != declared_keys(&table.key_schema) {
        return Err(drift(format!(
            "key schema {:?}, template declares {:?}",
            keys_of(actual.key_schema()),
            declared_keys(&table.key_schema)
        )));
    }
    for index in &table.global_secondary_indexes {
        let found = actual
            .global_secondary_indexes()
            .iter()
            .find(|i| i.index_name() == Some(index.name.as_str()));
        match found {
            None => return Err(drift(format!("no global secondary index {}", index.name))),
            Some(i) if keys_of(i.key_schema()) != declared_keys(&index.key_schema) => {
                return Err(drift(format!(
                    "index {} has key schema {:?}",
                    index.name,
                    keys_of(i.key_schema())
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
