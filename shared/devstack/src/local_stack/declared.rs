//! What the template declares: queues (names, attributes, redrive, consumers) and the table
//! (keys, indexes, TTL), resolved for one set of parameter values. Pure: no AWS calls.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::intrinsics::{
    get_att_target, invalid, parse_template, scalar_string, scalar_u32, Evaluator, TemplateError,
};
use super::table::{declared_table, DeclaredTable};
use super::TemplateParams;

/// Tag that says what a queue is for (`results`, `tasks`, `timers`, `peer-results` or `dlq`).
pub const ROLE_TAG: &str = "cairn:role";
/// Tag of a tasks queue naming its step group (e.g. `payments.charge-card`).
pub const GROUP_TAG: &str = "cairn:group";

/// Lambda's default timeout, for a function that sets none.
const DEFAULT_FUNCTION_TIMEOUT: u32 = 3;

/// `AWS::SQS::Queue` properties that are SQS queue attributes of the same name.
const QUEUE_ATTRIBUTES: &[&str] = &[
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
];

/// Everything the template declares that the local stack creates.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateResources {
    /// The runs table.
    pub table: DeclaredTable,
    /// Every queue, in template order.
    pub queues: Vec<DeclaredQueue>,
    /// The EventBridge Scheduler group of long waits (`AWS::Scheduler::ScheduleGroup`), if any.
    pub schedule_group: Option<String>,
}

/// What a queue is for, from its `cairn:role` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRole {
    /// The results queue (consumed by the engine).
    Results,
    /// A tasks queue of one step group (from its `cairn:group` tag).
    Tasks {
        /// The step group, e.g. `payments.charge-card`.
        group: String,
    },
    /// The standard queue for durable timers beside FIFO results queues (consumed by the
    /// engine; FIFO queues have no per-message delay).
    Timers,
    /// The standard queue nestjs-durable peer workers answer on beside FIFO results queues
    /// (consumed by the engine; peers send results without a `MessageGroupId`).
    PeerResults,
    /// A dead-letter queue.
    DeadLetter,
}

/// One `AWS::SQS::Queue`.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredQueue {
    /// The logical id in the template.
    pub logical_id: String,
    /// The queue name (`QueueName`).
    pub name: String,
    /// What the queue is for.
    pub role: QueueRole,
    /// A FIFO queue.
    pub fifo: bool,
    /// SQS attributes by SQS attribute name (`VisibilityTimeout` → `"200"`), redrive excluded.
    pub attributes: BTreeMap<String, String>,
    /// Where failing messages go.
    pub redrive: Option<Redrive>,
    /// The queue's tags.
    pub tags: BTreeMap<String, String>,
    /// The function whose SQS event source consumes the queue.
    pub consumer: Option<Consumer>,
}

impl DeclaredQueue {
    /// The visibility timeout in seconds (SQS's default of 30 when the template sets none).
    pub fn visibility_timeout(&self) -> u32 {
        self.attributes
            .get("VisibilityTimeout")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30)
    }
}

/// A queue's `RedrivePolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// Logical id of the dead-letter queue.
    pub dead_letter_logical_id: String,
    /// Receives before a message moves to the dead-letter queue.
    pub max_receive_count: u32,
}

/// A function consuming a queue through an SQS event source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// The function's logical id.
    pub function_logical_id: String,
    /// The cargo binary it runs (`Metadata.BuildProperties.Binary`).
    pub binary: Option<String>,
    /// The function timeout in seconds.
    pub timeout_seconds: u32,
    /// Messages per invocation (`BatchSize`, default 10).
    pub batch_size: u32,
}

impl TemplateResources {
    /// Reads what `template_yaml` declares, with `params` for its parameters.
    pub fn from_template(
        template_yaml: &str,
        params: &TemplateParams,
    ) -> Result<Self, TemplateError> {
        let template = parse_template(template_yaml)?;
        let empty = Map::new();
        let conditions = template
            .get("Conditions")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let eval = Evaluator::new(params.values(&template)?, conditions);
        let resources = template
            .get("Resources")
            .and_then(Value::as_object)
            .ok_or_else(|| TemplateError::Missing("Resources section".to_owned()))?;
        let consumers = consumers(&template, resources, &eval)?;

        let mut table = None;
        let mut queues = Vec::new();
        let mut schedule_group = None;
        for (id, resource) in resources {
            if !active(id, resource, &eval)? {
                continue;
            }
            match resource.get("Type").and_then(Value::as_str) {
                Some("AWS::SQS::Queue") => {
                    queues.push(queue(id, resource, &eval, consumers.get(id).cloned())?);
                }
                Some("AWS::DynamoDB::Table") => {
                    if table.is_some() {
                        return Err(invalid(id, "the local stack expects one table"));
                    }
                    table = Some(declared_table(id, resource, &eval)?);
                }
                Some("AWS::Scheduler::ScheduleGroup") => {
                    if schedule_group.is_some() {
                        return Err(invalid(id, "the local stack expects one schedule group"));
                    }
                    let path = format!("{id}.Properties.Name");
                    let name = properties(id, resource)?
                        .get("Name")
                        .ok_or_else(|| TemplateError::Missing(path.clone()))?;
                    schedule_group = Some(scalar_string(&eval.eval_present(name, &path)?, &path)?);
                }
                _ => {}
            }
        }
        let table =
            table.ok_or_else(|| TemplateError::Missing("AWS::DynamoDB::Table".to_owned()))?;
        let found = Self {
            table,
            queues,
            schedule_group,
        };
        found.check_references()?;
        Ok(found)
    }

    /// The queue with `logical_id`.
    pub fn queue(&self, logical_id: &str) -> Option<&DeclaredQueue> {
        self.queues.iter().find(|q| q.logical_id == logical_id)
    }

    /// The dead-letter queue of `queue`, if it has one.
    pub fn dead_letter_of(&self, queue: &DeclaredQueue) -> Option<&DeclaredQueue> {
        queue
            .redrive
            .as_ref()
            .and_then(|r| self.queue(&r.dead_letter_logical_id))
    }

    /// The results queue.
    pub fn results_queue(&self) -> Option<&DeclaredQueue> {
        self.queues.iter().find(|q| q.role == QueueRole::Results)
    }

    /// The timers queue, when these parameters declare one (FIFO deployments).
    pub fn timers_queue(&self) -> Option<&DeclaredQueue> {
        self.queues.iter().find(|q| q.role == QueueRole::Timers)
    }

    /// The peer results queue, when these parameters declare one (FIFO deployments).
    pub fn peer_results_queue(&self) -> Option<&DeclaredQueue> {
        self.queues
            .iter()
            .find(|q| q.role == QueueRole::PeerResults)
    }

    /// The tasks queues by step group.
    pub fn tasks_queues(&self) -> BTreeMap<&str, &DeclaredQueue> {
        self.queues
            .iter()
            .filter_map(|q| match &q.role {
                QueueRole::Tasks { group } => Some((group.as_str(), q)),
                _ => None,
            })
            .collect()
    }

    fn check_references(&self) -> Result<(), TemplateError> {
        if self.results_queue().is_none() {
            return Err(TemplateError::Missing(format!(
                "queue tagged {ROLE_TAG}=results"
            )));
        }
        for q in &self.queues {
            if let Some(r) = &q.redrive {
                if self.queue(&r.dead_letter_logical_id).is_none() {
                    let path = format!("{}.Properties.RedrivePolicy", q.logical_id);
                    return Err(invalid(&path, "deadLetterTargetArn names no queue"));
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn properties<'r>(
    id: &str,
    resource: &'r Value,
) -> Result<&'r Map<String, Value>, TemplateError> {
    resource
        .get("Properties")
        .and_then(Value::as_object)
        .ok_or_else(|| TemplateError::Missing(format!("Properties of {id}")))
}

fn queue(
    id: &str,
    resource: &Value,
    eval: &Evaluator<'_>,
    consumer: Option<Consumer>,
) -> Result<DeclaredQueue, TemplateError> {
    let props = properties(id, resource)?;
    let mut name = None;
    let mut attributes = BTreeMap::new();
    let mut redrive = None;
    let mut tags = BTreeMap::new();
    for (key, raw) in props {
        let path = format!("{id}.Properties.{key}");
        match key.as_str() {
            "QueueName" => name = Some(scalar_string(&eval.eval_present(raw, &path)?, &path)?),
            "RedrivePolicy" => redrive = Some(redrive_policy(raw, eval, &path)?),
            "Tags" => tags = tag_list(&eval.eval_present(raw, &path)?, &path)?,
            attr if QUEUE_ATTRIBUTES.contains(&attr) => {
                if let Some(v) = eval.eval(raw, &path)? {
                    attributes.insert(attr.to_owned(), scalar_string(&v, &path)?);
                }
            }
            other => {
                return Err(invalid(
                    &path,
                    format!("property {other} is not supported locally"),
                ))
            }
        }
    }
    let name = name.ok_or_else(|| TemplateError::Missing(format!("QueueName of {id}")))?;
    let fifo = attributes.get("FifoQueue").is_some_and(|v| v == "true");
    if fifo != name.ends_with(".fifo") {
        return Err(invalid(
            id,
            format!("FifoQueue={fifo} but the name is {name}"),
        ));
    }
    let role = match tags.get(ROLE_TAG).map(String::as_str) {
        Some("results") => QueueRole::Results,
        Some("dlq") => QueueRole::DeadLetter,
        Some("timers") => QueueRole::Timers,
        Some("peer-results") => QueueRole::PeerResults,
        Some("tasks") => QueueRole::Tasks {
            group: tags
                .get(GROUP_TAG)
                .cloned()
                .ok_or_else(|| invalid(id, format!("a tasks queue needs a {GROUP_TAG} tag")))?,
        },
        other => {
            return Err(invalid(
                id,
                format!(
                    "tag {ROLE_TAG} must be results|tasks|timers|peer-results|dlq, is {other:?}"
                ),
            ))
        }
    };
    Ok(DeclaredQueue {
        logical_id: id.to_owned(),
        name,
        role,
        fifo,
        attributes,
        redrive,
        tags,
        consumer,
    })
}

fn redrive_policy(raw: &Value, eval: &Evaluator<'_>, path: &str) -> Result<Redrive, TemplateError> {
    let target = raw
        .get("deadLetterTargetArn")
        .ok_or_else(|| invalid(path, "no deadLetterTargetArn"))?;
    let dead_letter_logical_id = get_att_target(target, "Arn")
        .ok_or_else(|| invalid(path, "deadLetterTargetArn must be !GetAtt <Queue>.Arn"))?
        .to_owned();
    let count = raw
        .get("maxReceiveCount")
        .ok_or_else(|| invalid(path, "no maxReceiveCount"))?;
    let max_receive_count = scalar_u32(&eval.eval_present(count, path)?, path)?;
    Ok(Redrive {
        dead_letter_logical_id,
        max_receive_count,
    })
}

fn tag_list(value: &Value, path: &str) -> Result<BTreeMap<String, String>, TemplateError> {
    let items = value
        .as_array()
        .ok_or_else(|| invalid(path, "Tags is a list of {Key, Value}"))?;
    items
        .iter()
        .map(|tag| match (tag.get("Key"), tag.get("Value")) {
            (Some(k), Some(v)) => Ok((scalar_string(k, path)?, scalar_string(v, path)?)),
            _ => Err(invalid(path, "a tag needs Key and Value")),
        })
        .collect()
}

/// Whether the resource exists for these parameters (its `Condition`, if any, holds).
fn active(id: &str, resource: &Value, eval: &Evaluator<'_>) -> Result<bool, TemplateError> {
    match resource.get("Condition") {
        None => Ok(true),
        Some(Value::String(name)) => eval.condition(name, &format!("{id}.Condition"), 0),
        Some(other) => Err(invalid(
            id,
            format!("Condition must name a condition, is {other}"),
        )),
    }
}

/// Queue logical id → the function consuming it: SAM `Events` of type `SQS`, and plain
/// `AWS::Lambda::EventSourceMapping`s (`FunctionName: !Ref <Function>`).
fn consumers(
    template: &Value,
    resources: &Map<String, Value>,
    eval: &Evaluator<'_>,
) -> Result<BTreeMap<String, Consumer>, TemplateError> {
    let global_timeout = match template.pointer("/Globals/Function/Timeout") {
        Some(v) => scalar_u32(
            &eval.eval_present(v, "Globals.Function.Timeout")?,
            "Globals.Function.Timeout",
        )?,
        None => DEFAULT_FUNCTION_TIMEOUT,
    };
    let batch_size = |v: Option<&Value>, path: &str| match v {
        Some(v) => scalar_u32(&eval.eval_present(v, path)?, path),
        None => Ok(10),
    };
    // (queue, function, batch size, where it was declared)
    let mut mappings: Vec<(String, String, u32, String)> = Vec::new();
    let mut functions: BTreeMap<&str, (Option<String>, u32)> = BTreeMap::new();
    for (id, resource) in resources {
        if !active(id, resource, eval)? {
            continue;
        }
        match resource.get("Type").and_then(Value::as_str) {
            Some("AWS::Serverless::Function") => {
                let props = properties(id, resource)?;
                let timeout_seconds = match props.get("Timeout") {
                    Some(v) => {
                        let path = format!("{id}.Properties.Timeout");
                        scalar_u32(&eval.eval_present(v, &path)?, &path)?
                    }
                    None => global_timeout,
                };
                let binary = resource
                    .pointer("/Metadata/BuildProperties/Binary")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                functions.insert(id, (binary, timeout_seconds));
                let events = props.get("Events").and_then(Value::as_object);
                for (event_id, event) in events.into_iter().flatten() {
                    if event.get("Type").and_then(Value::as_str) != Some("SQS") {
                        continue;
                    }
                    let path = format!("{id}.Properties.Events.{event_id}.Properties");
                    let queue = event
                        .pointer("/Properties/Queue")
                        .and_then(|q| get_att_target(q, "Arn"))
                        .ok_or_else(|| invalid(&path, "Queue must be !GetAtt <Queue>.Arn"))?;
                    let size = batch_size(event.pointer("/Properties/BatchSize"), &path)?;
                    mappings.push((queue.to_owned(), id.clone(), size, path));
                }
            }
            Some("AWS::Lambda::EventSourceMapping") => {
                let path = format!("{id}.Properties");
                let props = properties(id, resource)?;
                let queue = props
                    .get("EventSourceArn")
                    .and_then(|q| get_att_target(q, "Arn"))
                    .ok_or_else(|| invalid(&path, "EventSourceArn must be !GetAtt <Queue>.Arn"))?;
                let function = props
                    .get("FunctionName")
                    .and_then(|f| f.get("Ref"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&path, "FunctionName must be !Ref <Function>"))?;
                let size = batch_size(props.get("BatchSize"), &path)?;
                mappings.push((queue.to_owned(), function.to_owned(), size, path));
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for (queue, function, batch_size, path) in mappings {
        let (binary, timeout_seconds) = functions
            .get(function.as_str())
            .cloned()
            .ok_or_else(|| invalid(&path, format!("no function {function}")))?;
        let consumer = Consumer {
            function_logical_id: function,
            binary,
            timeout_seconds,
            batch_size,
        };
        if out.insert(queue.clone(), consumer).is_some() {
            return Err(invalid(&path, format!("queue {queue} has two consumers")));
        }
    }
    Ok(out)
}
