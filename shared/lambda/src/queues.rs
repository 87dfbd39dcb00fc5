//! The deployment's queue map, for pointing peer workers at it: which tasks queue serves each
//! step group, and which queue peers answer on.
//!
//! nestjs-durable's workers find their queue by name, `<prefix>-tasks-<step name>`, which SQS
//! does not accept for names like `payments.charge-card`; cairn escapes the group into a valid
//! name (`cairn::queue_name`), so a peer joins through the URL instead. The map is read from
//! SQS, not computed: every queue the template creates carries a `cairn:role` tag, and tasks
//! queues a `cairn:group` tag, so the map shows what is deployed. Explicit URLs from the
//! configuration (`CAIRN_TASK_QUEUE_URLS`) take precedence.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::Client;
use cairn::queue_name::{peer_results_queue_name, results_queue_name, QueueKind};
use serde::Serialize;

use crate::config::Config;

/// Tag naming what a queue is for (`results`, `tasks`, `timers`, `peer-results`, `dlq`).
const ROLE_TAG: &str = "cairn:role";
/// Tag naming a tasks queue's step group.
const GROUP_TAG: &str = "cairn:group";

/// Where a deployment's peers find their queues (`cairn queues`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueMap {
    /// FIFO deployment.
    pub fifo: bool,
    /// The engine's results queue.
    pub results_queue_url: String,
    /// Where peer workers send their results: the results queue, or in a FIFO deployment the
    /// standard `<prefix>-peer-results` queue (peers send no `MessageGroupId`).
    pub peer_results_queue_url: String,
    /// Tasks queue URL by step group: the shape of `CAIRN_TASK_QUEUE_URLS`.
    pub task_queue_urls: BTreeMap<String, String>,
    /// Groups whose workers cannot read claim checks (`CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS`).
    pub groups_without_claim_checks: BTreeSet<String>,
}

/// The queue map could not be read.
#[derive(Debug, thiserror::Error)]
pub enum QueueMapError {
    /// An SQS call failed.
    #[error("SQS {operation} failed: {message}")]
    Sqs {
        /// The operation.
        operation: &'static str,
        /// What SQS said.
        message: String,
    },
    /// The prefix is not a valid queue name prefix.
    #[error(transparent)]
    Name(#[from] cairn::queue_name::QueueNameError),
    /// The deployment's results queue does not exist.
    #[error("no results queue {0}: is the stack deployed with this prefix?")]
    NoResultsQueue(String),
    /// A FIFO deployment without the standard queue peers must answer on.
    #[error("FIFO deployment without {0}: peers cannot answer on a FIFO queue (deploy the current template)")]
    NoPeerResultsQueue(String),
}

fn sqs_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    e: aws_sdk_sqs::error::SdkError<E, R>,
) -> QueueMapError {
    QueueMapError::Sqs {
        operation,
        message: DisplayErrorContext(&e).to_string(),
    }
}

fn name_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Reads the queue map of the deployment `config` describes.
pub async fn queue_map(sqs: &Client, config: &Config) -> Result<QueueMap, QueueMapError> {
    let kind = if config.fifo {
        QueueKind::Fifo
    } else {
        QueueKind::Standard
    };
    let prefix = &config.prefix;
    let results_name = match &config.results_queue_url {
        Some(url) => name_of(url).to_owned(),
        None => results_queue_name(prefix, kind)?,
    };
    let peer_results_name = peer_results_queue_name(prefix)?;
    let tasks_head = format!("{prefix}-tasks-");

    let mut urls = Vec::new();
    let mut next_token = None;
    loop {
        let out = sqs
            .list_queues()
            .queue_name_prefix(format!("{prefix}-"))
            .max_results(1000)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| sqs_error("ListQueues", e))?;
        urls.extend(out.queue_urls.unwrap_or_default());
        next_token = out.next_token;
        if next_token.is_none() {
            break;
        }
    }

    let mut by_name: HashMap<String, String> = HashMap::new();
    let mut task_queue_urls = BTreeMap::new();
    for url in urls {
        let name = name_of(&url).to_owned();
        if name.starts_with(&tasks_head) {
            let tags = sqs
                .list_queue_tags()
                .queue_url(&url)
                .send()
                .await
                .map_err(|e| sqs_error("ListQueueTags", e))?
                .tags
                .unwrap_or_default();
            if let (Some("tasks"), Some(group)) =
                (tags.get(ROLE_TAG).map(String::as_str), tags.get(GROUP_TAG))
            {
                task_queue_urls.insert(group.clone(), url.clone());
            }
        }
        by_name.insert(name, url);
    }
    // Explicit configuration wins over what the tags say.
    task_queue_urls.extend(config.task_queue_urls.clone());

    let results_queue_url = match &config.results_queue_url {
        Some(url) => url.clone(),
        None => by_name
            .get(&results_name)
            .cloned()
            .ok_or(QueueMapError::NoResultsQueue(results_name))?,
    };
    let peer_results_queue_url = if config.fifo {
        by_name
            .get(&peer_results_name)
            .cloned()
            .ok_or(QueueMapError::NoPeerResultsQueue(peer_results_name))?
    } else {
        results_queue_url.clone()
    };
    Ok(QueueMap {
        fifo: config.fifo,
        results_queue_url,
        peer_results_queue_url,
        task_queue_urls,
        groups_without_claim_checks: config.groups_without_claim_checks.clone(),
    })
}
