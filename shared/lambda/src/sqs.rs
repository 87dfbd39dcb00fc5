//! [`SqsTransport`]: tasks and results over SQS, standard or FIFO, with claim checks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use sha2::{Digest, Sha256};

use cairn::contract::{encode, ControlMessage, RemoteTask, StepResult};
use cairn::infra::{InfraError, InfraErrorKind};
use cairn::queue_name::{results_queue_name, tasks_queue_name, QueueKind};
use cairn::store::BlobStore;
use cairn::transport::{offload, ControlSender, ResultSender, TaskSender, TransportError};

use crate::sdk_error::{infra_error, kind_from_code};

/// No queue for `what`, because no valid SQS name can be made for it (prefix or group).
fn no_valid_name(
    what: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> TransportError {
    TransportError::NoQueue {
        what: what.to_owned(),
        cause: InfraError::with_source(
            "GetQueueUrl",
            InfraErrorKind::Rejected,
            error.to_string(),
            error,
        ),
    }
}

/// The messages of one send call that did not go out, and why the first of them failed.
#[derive(Default)]
struct Unsent {
    indexes: Vec<usize>,
    first_cause: Option<InfraError>,
}

impl Unsent {
    fn add(
        &mut self,
        indexes: impl IntoIterator<Item = usize>,
        cause: impl FnOnce() -> InfraError,
    ) {
        let before = self.indexes.len();
        self.indexes.extend(indexes);
        if self.first_cause.is_none() && self.indexes.len() > before {
            self.first_cause = Some(cause());
        }
    }

    fn into_result(mut self) -> Result<(), TransportError> {
        match self.first_cause {
            None => Ok(()),
            Some(cause) => {
                self.indexes.sort_unstable();
                Err(TransportError::Partial {
                    failed: self.indexes,
                    cause,
                })
            }
        }
    }
}

/// SQS accepts at most 10 entries and 256 KiB per `SendMessageBatch`.
const MAX_BATCH_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Where the transport finds its queues.
#[derive(Debug, Clone, Default)]
pub struct SqsTransportConfig {
    /// Queue name prefix (default `durable`).
    pub prefix: String,
    /// FIFO queues (`.fifo` names, group and dedup ids).
    pub fifo: bool,
    /// The results queue; resolved by name when `None`.
    pub results_queue_url: Option<String>,
    /// Tasks queues by group; other groups are resolved by name.
    pub task_queue_urls: BTreeMap<String, String>,
    /// A standard queue for delayed control messages (durable timers), required with FIFO
    /// results queues, which have no per-message delay. The engine consumes it too.
    pub timer_queue_url: Option<String>,
    /// Create by-name queues that do not exist (development convenience).
    pub auto_create: bool,
    /// Groups served by workers that cannot read claim checks (nestjs-durable peers, lean cairn
    /// workers): a task for one of them over the size limit is answered with a failed result
    /// instead.
    pub groups_without_claim_checks: std::collections::BTreeSet<String>,
}

impl SqsTransportConfig {
    /// The transport settings of a runtime [`Config`](crate::config::Config).
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            prefix: config.prefix.clone(),
            fifo: config.fifo,
            results_queue_url: config.results_queue_url.clone(),
            timer_queue_url: config.timer_queue_url.clone(),
            task_queue_urls: config.task_queue_urls.clone(),
            auto_create: false,
            groups_without_claim_checks: config.groups_without_claim_checks.clone(),
        }
    }
}

/// Sends tasks, results and control messages over SQS.
#[derive(Debug)]
pub struct SqsTransport<B> {
    client: Client,
    blobs: B,
    config: SqsTransportConfig,
    resolved: Mutex<HashMap<String, String>>,
}

struct Outgoing {
    body: String,
    group_id: Option<String>,
    dedup_id: Option<String>,
    delay_seconds: u32,
}

/// Messages for one queue (or why its URL is unknown), with their indexes in the caller's slice.
type QueueBatch = (Result<String, TransportError>, Vec<(usize, Outgoing)>);

/// FIFO dedup ids allow 128 characters; longer ones are hashed.
fn dedup_id(raw: String) -> String {
    if raw.len() <= 128 && raw.chars().all(|c| c.is_ascii_graphic()) {
        raw
    } else {
        format!("{:x}", Sha256::digest(raw.as_bytes()))
    }
}

impl<B: BlobStore> SqsTransport<B> {
    /// A transport on `client`; large bodies go to `blobs`.
    pub fn new(client: Client, blobs: B, config: SqsTransportConfig) -> Self {
        Self {
            client,
            blobs,
            config,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    fn kind(&self) -> QueueKind {
        if self.config.fifo {
            QueueKind::Fifo
        } else {
            QueueKind::Standard
        }
    }

    /// The URL of the tasks queue of `group`.
    pub async fn tasks_queue_url(&self, group: &str) -> Result<String, TransportError> {
        if let Some(url) = self.config.task_queue_urls.get(group) {
            return Ok(url.clone());
        }
        let name = tasks_queue_name(&self.config.prefix, group, self.kind())
            .map_err(|e| no_valid_name(group, e))?;
        self.resolve(&name).await
    }

    /// The URL of the results queue.
    pub async fn results_queue_url(&self) -> Result<String, TransportError> {
        if let Some(url) = &self.config.results_queue_url {
            return Ok(url.clone());
        }
        let name = results_queue_name(&self.config.prefix, self.kind())
            .map_err(|e| no_valid_name("results", e))?;
        self.resolve(&name).await
    }

    /// The URL of the standard queue peers answer on in a FIFO deployment.
    pub async fn peer_results_queue_url(&self) -> Result<String, TransportError> {
        let name = cairn::queue_name::peer_results_queue_name(&self.config.prefix)
            .map_err(|e| no_valid_name("peer results", e))?;
        self.resolve(&name).await
    }

    /// The URL of the queue named `name` (looked up once).
    pub async fn queue_url(&self, name: &str) -> Result<String, TransportError> {
        self.resolve(name).await
    }

    async fn resolve(&self, name: &str) -> Result<String, TransportError> {
        if let Some(url) = self.resolved.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(url);
        }
        let url = match self.client.get_queue_url().queue_name(name).send().await {
            Ok(out) => out.queue_url.ok_or_else(|| TransportError::NoQueue {
                what: name.to_owned(),
                cause: InfraError::new("GetQueueUrl", InfraErrorKind::Other, "no URL returned"),
            })?,
            Err(err)
                if self.config.auto_create
                    && matches!(
                        err.as_service_error(),
                        Some(GetQueueUrlError::QueueDoesNotExist(_))
                    ) =>
            {
                let mut create = self.client.create_queue().queue_name(name);
                if self.config.fifo {
                    create = create.attributes(QueueAttributeName::FifoQueue, "true");
                }
                let out = create.send().await.map_err(|e| TransportError::NoQueue {
                    what: name.to_owned(),
                    cause: infra_error("CreateQueue", e),
                })?;
                out.queue_url.ok_or_else(|| TransportError::NoQueue {
                    what: name.to_owned(),
                    cause: InfraError::new("CreateQueue", InfraErrorKind::Other, "no URL returned"),
                })?
            }
            Err(err) => {
                return Err(TransportError::NoQueue {
                    what: name.to_owned(),
                    cause: infra_error("GetQueueUrl", err),
                })
            }
        };
        if let Ok(mut map) = self.resolved.lock() {
            map.insert(name.to_owned(), url.clone());
        }
        Ok(url)
    }

    /// Sends `messages` to `url` in batches; adds the indexes that failed to `failed`.
    async fn send_to(&self, url: &str, messages: Vec<(usize, Outgoing)>, failed: &mut Unsent) {
        let mut batch: Vec<(usize, Outgoing)> = Vec::new();
        let mut batch_bytes = 0;
        let mut batches = Vec::new();
        for (index, mut message) in messages {
            match offload(std::mem::take(&mut message.body), &self.blobs).await {
                Ok(body) => message.body = body,
                Err(e) => {
                    failed.add([index], || {
                        InfraError::with_source(
                            "claim check",
                            InfraErrorKind::Other,
                            e.to_string(),
                            e,
                        )
                    });
                    continue;
                }
            }
            if batch.len() == MAX_BATCH_ENTRIES
                || batch_bytes + message.body.len() > MAX_BATCH_BYTES
            {
                batches.push(std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            batch_bytes += message.body.len();
            batch.push((index, message));
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        for batch in batches {
            let ids: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
            let entries: Result<Vec<_>, _> = batch
                .into_iter()
                .map(|(index, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(m.body)
                        .set_message_group_id(m.group_id)
                        .set_message_deduplication_id(m.dedup_id)
                        .set_delay_seconds((m.delay_seconds > 0).then_some(m.delay_seconds as i32))
                        .build()
                })
                .collect();
            let entries = match entries {
                Ok(entries) => entries,
                Err(e) => {
                    failed.add(ids, || {
                        InfraError::with_source(
                            "SendMessageBatch",
                            InfraErrorKind::Rejected,
                            e.to_string(),
                            e,
                        )
                    });
                    continue;
                }
            };
            match self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    for entry in &out.failed {
                        let Ok(index) = entry.id.parse::<usize>() else {
                            continue;
                        };
                        failed.add([index], || {
                            InfraError::new(
                                "SendMessageBatch",
                                kind_from_code(Some(&entry.code), 0),
                                format!("{}: {}", entry.code, entry.message().unwrap_or_default()),
                            )
                        });
                    }
                }
                Err(e) => failed.add(ids, || infra_error("SendMessageBatch", e)),
            }
        }
    }

    async fn send_all(&self, by_queue: Vec<QueueBatch>) -> Result<(), TransportError> {
        let mut failed = Unsent::default();
        for (url, messages) in by_queue {
            match url {
                Ok(url) => self.send_to(&url, messages, &mut failed).await,
                Err(e) => failed.add(messages.iter().map(|(i, _)| *i), || match e {
                    TransportError::NoQueue { cause, .. } => cause,
                    other => InfraError::with_source(
                        "GetQueueUrl",
                        InfraErrorKind::Other,
                        other.to_string(),
                        other,
                    ),
                }),
            }
        }
        failed.into_result()
    }

    fn fifo_ids(
        &self,
        group: impl FnOnce() -> String,
        dedup: impl FnOnce() -> String,
    ) -> (Option<String>, Option<String>) {
        if self.config.fifo {
            (Some(dedup_id(group())), Some(dedup_id(dedup())))
        } else {
            (None, None)
        }
    }
}

impl<B: BlobStore> TaskSender for SqsTransport<B> {
    async fn send_tasks(&self, tasks: &[RemoteTask]) -> Result<(), TransportError> {
        let mut groups: BTreeMap<&str, Vec<(usize, Outgoing)>> = BTreeMap::new();
        // Tasks too large for workers without claim checks, answered in their place.
        let mut refused: Vec<(usize, StepResult)> = Vec::new();
        for (index, task) in tasks.iter().enumerate() {
            if self
                .config
                .groups_without_claim_checks
                .contains(&task.group)
            {
                if let Some(result) = cairn::transport::refuse_oversize_task(task) {
                    tracing::warn!(
                        step_id = %task.step_id,
                        group = %task.group,
                        "task too large for its group, whose workers cannot read claim checks: the step fails instead"
                    );
                    refused.push((index, result));
                    continue;
                }
            }
            // FIFO: one message group per partition (or per run when unpartitioned), so a
            // partition's tasks stay ordered while others proceed.
            let (group_id, dedup) = self.fifo_ids(
                || match task.group.split_once('@') {
                    Some((_, partition)) => partition.to_owned(),
                    None => task.run_id.to_string(),
                },
                || format!("{}:{}", task.step_id, task.attempt),
            );
            let message = Outgoing {
                body: encode(task),
                group_id,
                dedup_id: dedup,
                delay_seconds: 0,
            };
            groups
                .entry(task.group.as_str())
                .or_default()
                .push((index, message));
        }
        let mut by_queue = Vec::new();
        for (group, messages) in groups {
            by_queue.push((self.tasks_queue_url(group).await, messages));
        }
        let sent = self.send_all(by_queue).await;
        if refused.is_empty() {
            return sent;
        }
        let results: Vec<StepResult> = refused.iter().map(|(_, r)| r.clone()).collect();
        let Err(err) = self.send_results(&results).await else {
            return sent;
        };
        // Report the refused tasks whose answer was not sent, with the tasks not sent.
        let mut failed: Vec<usize> = sent
            .as_ref()
            .err()
            .map(|e| e.failed_indexes(tasks.len()))
            .unwrap_or_default();
        failed.extend(
            err.failed_indexes(results.len())
                .into_iter()
                .filter_map(|i| refused.get(i).map(|(index, _)| *index)),
        );
        failed.sort_unstable();
        let cause = match err {
            TransportError::Partial { cause, .. } | TransportError::NoQueue { cause, .. } => cause,
            other => InfraError::with_source(
                "SendMessageBatch",
                InfraErrorKind::Other,
                other.to_string(),
                other,
            ),
        };
        Err(TransportError::Partial { failed, cause })
    }
}

impl<B: BlobStore> ResultSender for SqsTransport<B> {
    async fn send_results(&self, results: &[StepResult]) -> Result<(), TransportError> {
        let messages = results
            .iter()
            .enumerate()
            .map(|(index, result)| {
                let (group_id, dedup) = self.fifo_ids(
                    || result.run_id.to_string(),
                    || format!("{}:{}", result.step_id, result.attempt.unwrap_or(0)),
                );
                (
                    index,
                    Outgoing {
                        body: encode(result),
                        group_id,
                        dedup_id: dedup,
                        delay_seconds: 0,
                    },
                )
            })
            .collect();
        self.send_all(vec![(self.results_queue_url().await, messages)])
            .await
    }
}

impl<B: BlobStore> ControlSender for SqsTransport<B> {
    async fn send_control(&self, messages: &[(ControlMessage, u32)]) -> Result<(), TransportError> {
        let (delayed, immediate): (Vec<_>, Vec<_>) = messages
            .iter()
            .enumerate()
            .partition(|(_, (_, delay))| *delay > 0);
        let mut batches = Vec::new();
        if !delayed.is_empty() {
            match &self.config.timer_queue_url {
                // A standard queue beside a FIFO results queue: FIFO queues have no
                // per-message delay.
                Some(url) => {
                    let outgoing = delayed
                        .into_iter()
                        .map(|(index, (message, delay))| {
                            let body = encode(message);
                            let delay_seconds = (*delay).min(900);
                            (
                                index,
                                Outgoing {
                                    body,
                                    group_id: None,
                                    dedup_id: None,
                                    delay_seconds,
                                },
                            )
                        })
                        .collect();
                    batches.push((Ok(url.clone()), outgoing));
                }
                None if self.config.fifo => {
                    return Err(TransportError::Unsupported(
                        "durable timers need per-message delays, which FIFO queues do not have: \
                         set a standard timer queue (CAIRN_TIMER_QUEUE_URL)"
                            .into(),
                    ))
                }
                None => batches.push((Ok(String::new()), self.control_messages(delayed))),
            }
        }
        if !immediate.is_empty() {
            batches.push((Ok(String::new()), self.control_messages(immediate)));
        }
        // Empty URL: the results queue (resolved once, only if needed).
        let mut resolved = Vec::new();
        for (url, outgoing) in batches {
            let url = match url {
                Ok(url) if url.is_empty() => self.results_queue_url().await,
                other => other,
            };
            resolved.push((url, outgoing));
        }
        self.send_all(resolved).await
    }
}

impl<B: BlobStore> SqsTransport<B> {
    /// Results-queue messages for control messages, with FIFO group and dedup ids.
    fn control_messages(
        &self,
        messages: Vec<(usize, &(ControlMessage, u32))>,
    ) -> Vec<(usize, Outgoing)> {
        messages
            .into_iter()
            .map(|(index, (message, delay))| {
                let (group_id, dedup) = self.fifo_ids(
                    || message.run_id().to_string(),
                    || match message {
                        ControlMessage::StartRun { run_id, .. } => format!("start:{run_id}"),
                        ControlMessage::CancelRun { run_id, .. } => format!("cancel:{run_id}"),
                        ControlMessage::TimerFired {
                            run_id,
                            timer_id,
                            fire_at_ms,
                        } => {
                            format!("timer:{run_id}:{timer_id}:{fire_at_ms}")
                        }
                        ControlMessage::Signal {
                            signal_id: Some(id),
                            run_id,
                            ..
                        } => format!("signal:{run_id}:{id}"),
                        // Each continuation is a new one (progress moved since the last).
                        ControlMessage::Signal { .. } | ControlMessage::ResumeOutbox { .. } => {
                            uuid::Uuid::new_v4().to_string()
                        }
                    },
                );
                (
                    index,
                    Outgoing {
                        body: encode(message),
                        group_id,
                        dedup_id: dedup,
                        delay_seconds: (*delay).min(900),
                    },
                )
            })
            .collect()
    }
}
