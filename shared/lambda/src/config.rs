//! Runtime configuration of the Lambdas and tools, parsed once from the environment.

use std::collections::{BTreeMap, BTreeSet};

pub use cairn::transport::LongWaitPolicy;

// Mirrors `queue_name::DEFAULT_PREFIX`.
const DEFAULT_PREFIX: &str = "durable";

/// A configuration value that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable is set but cannot be parsed.
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Everything the engine, workers, reconciler and tools need to find their resources.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The DynamoDB table (`CAIRN_TABLE_NAME`).
    pub table_name: String,
    /// Queue name prefix (`CAIRN_QUEUE_PREFIX`, default `durable`).
    pub prefix: String,
    /// The results queue URL (`CAIRN_RESULTS_QUEUE_URL`); resolved by name when absent.
    pub results_queue_url: Option<String>,
    /// The results queue's dead-letter queue (`CAIRN_RESULTS_DLQ_URL`), which the reconciler
    /// peeks at; resolved by name when absent.
    pub results_dlq_url: Option<String>,
    /// A standard queue for durable timers (`CAIRN_TIMER_QUEUE_URL`); needed when the results
    /// queue is FIFO, optional otherwise (timers then ride the results queue).
    pub timer_queue_url: Option<String>,
    /// Tasks queue URLs by group (`CAIRN_TASK_QUEUE_URLS`, a JSON object); other groups are
    /// resolved by name.
    pub task_queue_urls: BTreeMap<String, String>,
    /// Step groups whose workers cannot read claim checks (`CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS`,
    /// comma separated): nestjs-durable peers, and cairn workers built without the DynamoDB
    /// client. A task for one of them over the SQS size limit fails its step at once instead.
    /// In dev mode (`scripts/dev`) cairn's worker leaves them to the peers. The old name,
    /// `CAIRN_PEER_GROUPS`, is still read (with a deprecation warning).
    pub groups_without_claim_checks: BTreeSet<String>,
    /// FIFO queues (`CAIRN_FIFO`).
    pub fifo: bool,
    /// How long finished runs are kept before TTL retires them (`CAIRN_RETENTION_DAYS`).
    pub retention_days: u32,
    /// After how long without progress the reconciler re-drives a run (`CAIRN_STALL_SECONDS`).
    pub stall_seconds: u64,
    /// Longest single SQS delay for durable timers; longer timers are chained
    /// (`CAIRN_TIMER_CHUNK_SECONDS`, at most 900).
    pub timer_chunk_seconds: u32,
    /// Local stack endpoint (`CAIRN_ENDPOINT_URL`); never set in AWS.
    pub endpoint_url: Option<String>,
    /// Long waits through EventBridge Scheduler, when `CAIRN_SCHEDULE_GROUP` is set.
    pub long_waits: Option<LongWaitConfig>,
    /// A record that failed transiently stays invisible this long after its first receive,
    /// doubling at every later one up to 12 h (`CAIRN_BACKOFF_BASE_SECONDS`, default 20; see
    /// [`crate::backoff`]).
    pub backoff_base_seconds: u32,
}

/// Where and when long waits become one-time schedules instead of chained SQS delays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongWaitConfig {
    /// The schedule group the engine creates schedules in (`CAIRN_SCHEDULE_GROUP`).
    pub group: String,
    /// The role the schedules run as (`CAIRN_SCHEDULER_ROLE_ARN`).
    pub role_arn: String,
    /// The queue the schedules send to (`CAIRN_SCHEDULER_TARGET_ARN`): the queue the engine
    /// consumes timers from.
    pub target_arn: String,
    /// The policy: which waits are long, and how early their schedule fires.
    pub policy: LongWaitPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            table_name: format!("{DEFAULT_PREFIX}-runs"),
            prefix: DEFAULT_PREFIX.to_owned(),
            results_queue_url: None,
            results_dlq_url: None,
            timer_queue_url: None,
            task_queue_urls: BTreeMap::new(),
            groups_without_claim_checks: BTreeSet::new(),
            fifo: false,
            retention_days: 30,
            stall_seconds: 300,
            timer_chunk_seconds: 900,
            endpoint_url: None,
            long_waits: None,
            backoff_base_seconds: 20,
        }
    }
}

impl Config {
    /// The backoff of transiently failed records.
    pub fn backoff_policy(&self) -> crate::backoff::BackoffPolicy {
        crate::backoff::BackoffPolicy {
            base_seconds: self.backoff_base_seconds.max(1),
            ..Default::default()
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (testable without touching the process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let prefix = get("CAIRN_QUEUE_PREFIX").unwrap_or(defaults.prefix);
        let table_name = get("CAIRN_TABLE_NAME").unwrap_or_else(|| format!("{prefix}-runs"));
        let task_queue_urls = match get("CAIRN_TASK_QUEUE_URLS") {
            None => BTreeMap::new(),
            Some(raw) => serde_json::from_str(&raw).map_err(|e| ConfigError::Invalid {
                name: "CAIRN_TASK_QUEUE_URLS",
                reason: format!("expected a JSON object of group to queue URL: {e}"),
            })?,
        };
        let timer_chunk_seconds = parse(
            &get,
            "CAIRN_TIMER_CHUNK_SECONDS",
            defaults.timer_chunk_seconds,
        )?;
        if timer_chunk_seconds == 0 || timer_chunk_seconds > 900 {
            return Err(ConfigError::Invalid {
                name: "CAIRN_TIMER_CHUNK_SECONDS",
                reason: "must be between 1 and 900 (the SQS maximum delay)".into(),
            });
        }
        let long_waits = match get("CAIRN_SCHEDULE_GROUP") {
            None => None,
            Some(group) => {
                let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
                let policy = LongWaitPolicy::default();
                Some(LongWaitConfig {
                    group,
                    role_arn: required("CAIRN_SCHEDULER_ROLE_ARN")?,
                    target_arn: required("CAIRN_SCHEDULER_TARGET_ARN")?,
                    policy: LongWaitPolicy::new(
                        parse(
                            &get,
                            "CAIRN_SCHEDULER_THRESHOLD_SECONDS",
                            policy.threshold_seconds,
                        )?,
                        parse(&get, "CAIRN_SCHEDULER_LEAD_SECONDS", policy.lead_seconds)?,
                    )
                    .map_err(|reason| ConfigError::Invalid {
                        name: "CAIRN_SCHEDULER_LEAD_SECONDS",
                        reason,
                    })?,
                })
            }
        };
        Ok(Self {
            table_name,
            prefix,
            results_queue_url: get("CAIRN_RESULTS_QUEUE_URL"),
            results_dlq_url: get("CAIRN_RESULTS_DLQ_URL"),
            timer_queue_url: get("CAIRN_TIMER_QUEUE_URL"),
            task_queue_urls,
            groups_without_claim_checks: groups_without_claim_checks(&get),
            fifo: parse(&get, "CAIRN_FIFO", defaults.fifo)?,
            retention_days: parse(&get, "CAIRN_RETENTION_DAYS", defaults.retention_days)?,
            stall_seconds: parse(&get, "CAIRN_STALL_SECONDS", defaults.stall_seconds)?,
            timer_chunk_seconds,
            endpoint_url: get("CAIRN_ENDPOINT_URL"),
            long_waits,
            backoff_base_seconds: parse(
                &get,
                "CAIRN_BACKOFF_BASE_SECONDS",
                defaults.backoff_base_seconds,
            )?,
        })
    }
}

/// `CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS`, with the groups of its deprecated name
/// `CAIRN_PEER_GROUPS` added (it meant the same: peers were the only such workers).
fn groups_without_claim_checks(get: &impl Fn(&str) -> Option<String>) -> BTreeSet<String> {
    let list = |raw: String| -> Vec<String> {
        raw.split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let deprecated = get("CAIRN_PEER_GROUPS").map(list).unwrap_or_default();
    if !deprecated.is_empty() {
        tracing::warn!(
            "CAIRN_PEER_GROUPS is deprecated: name these groups in CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS"
        );
    }
    get("CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS")
        .map(list)
        .unwrap_or_default()
        .into_iter()
        .chain(deprecated)
        .collect()
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid {
                name,
                reason: format!("{raw:?}: {e}"),
            }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_follow_the_prefix() {
        let config = Config::from_lookup(lookup(&[("CAIRN_QUEUE_PREFIX", "shop")])).unwrap();
        assert_eq!(config.table_name, "shop-runs");
        assert!(!config.fifo);
        assert_eq!(config.timer_chunk_seconds, 900);
    }

    #[test]
    fn task_queue_urls_parse_as_a_json_object() {
        let config = Config::from_lookup(lookup(&[(
            "CAIRN_TASK_QUEUE_URLS",
            r#"{"payments.charge-card":"https://sqs/1/q"}"#,
        )]))
        .unwrap();
        assert_eq!(
            config.task_queue_urls["payments.charge-card"],
            "https://sqs/1/q"
        );
    }

    #[test]
    fn groups_without_claim_checks_are_a_comma_separated_list() {
        let config = Config::from_lookup(lookup(&[(
            "CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS",
            " payments.charge-card, reports.generate@eu ,",
        )]))
        .unwrap();
        assert_eq!(
            config
                .groups_without_claim_checks
                .iter()
                .collect::<Vec<_>>(),
            ["payments.charge-card", "reports.generate@eu"]
        );
        assert!(Config::from_lookup(lookup(&[]))
            .unwrap()
            .groups_without_claim_checks
            .is_empty());
        // The deprecated name still counts, its groups added.
        let both = Config::from_lookup(lookup(&[
            ("CAIRN_PEER_GROUPS", "peer.only"),
            ("CAIRN_GROUPS_WITHOUT_CLAIM_CHECKS", "lean.worker"),
        ]))
        .unwrap()
        .groups_without_claim_checks;
        assert_eq!(both.len(), 2);
        assert!(both.contains("peer.only") && both.contains("lean.worker"));
    }

    #[test]
    fn long_waits_need_a_group_a_role_and_a_target() {
        assert_eq!(Config::from_lookup(lookup(&[])).unwrap().long_waits, None);
        let err = Config::from_lookup(lookup(&[("CAIRN_SCHEDULE_GROUP", "g")])).unwrap_err();
        assert!(
            err.to_string().contains("CAIRN_SCHEDULER_ROLE_ARN"),
            "{err}"
        );
        let config = Config::from_lookup(lookup(&[
            ("CAIRN_SCHEDULE_GROUP", "durable-timers"),
            ("CAIRN_SCHEDULER_ROLE_ARN", "arn:aws:iam::1:role/r"),
            (
                "CAIRN_SCHEDULER_TARGET_ARN",
                "arn:aws:sqs:us-east-1:1:durable-results",
            ),
            ("CAIRN_SCHEDULER_THRESHOLD_SECONDS", "5"),
            ("CAIRN_SCHEDULER_LEAD_SECONDS", "2"),
        ]))
        .unwrap();
        let long_waits = config.long_waits.unwrap();
        assert_eq!(long_waits.group, "durable-timers");
        assert_eq!(long_waits.policy, LongWaitPolicy::new(5, 2).unwrap());
    }

    #[test]
    fn a_lead_at_or_past_the_threshold_names_the_variable() {
        let err = Config::from_lookup(lookup(&[
            ("CAIRN_SCHEDULE_GROUP", "g"),
            ("CAIRN_SCHEDULER_ROLE_ARN", "r"),
            ("CAIRN_SCHEDULER_TARGET_ARN", "t"),
            ("CAIRN_SCHEDULER_THRESHOLD_SECONDS", "5"),
            ("CAIRN_SCHEDULER_LEAD_SECONDS", "5"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("CAIRN_SCHEDULER_LEAD_SECONDS"),
            "{err}"
        );
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let err = Config::from_lookup(lookup(&[("CAIRN_FIFO", "yes please")])).unwrap_err();
        assert!(err.to_string().contains("CAIRN_FIFO"), "{err}");
        let err = Config::from_lookup(lookup(&[("CAIRN_TIMER_CHUNK_SECONDS", "901")])).unwrap_err();
        assert!(err.to_string().contains("900"), "{err}");
    }
}
