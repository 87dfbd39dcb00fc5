//! The local EventBridge Scheduler: moto stores schedules (create, get, list, delete, name
//! conflicts) but never fires them, so the local stack fires the due ones itself.
//!
//! [`ScheduleFiring`] runs beside the local event source mappings. Each pass lists the
//! schedules of cairn's group, reads each new one once (`GetSchedule`: its `at(...)` time and
//! its target), and when an `at(...)` time has come sends the target's `Input` verbatim to the
//! target queue, as EventBridge Scheduler does, then deletes the schedule if its
//! `ActionAfterCompletion` is `DELETE` (or remembers it fired, if not). Recurring schedules
//! (`rate`, `cron`) and other targets than SQS are not cairn's and are skipped with a log line.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_scheduler::error::DisplayErrorContext;
use aws_sdk_scheduler::operation::create_schedule_group::CreateScheduleGroupError;
use aws_sdk_scheduler::operation::delete_schedule::DeleteScheduleError;
use aws_sdk_scheduler::operation::get_schedule::GetScheduleError;
use aws_sdk_scheduler::types::ActionAfterCompletion;
use cairn_eventbridge::{parse_at_expression, ScheduleTarget};

use crate::local_stack::StackResources;

/// The role ARN the local schedules name (moto does not check roles).
const LOCAL_ROLE: &str = "arn:aws:iam::123456789012:role/cairn-local-scheduler";

/// A scheduler call of the local stack failed.
#[derive(Debug, thiserror::Error)]
#[error("local scheduler: {operation} {name}: {message}")]
pub struct ScheduleError {
    /// The operation.
    pub operation: &'static str,
    /// The schedule, group or queue.
    pub name: String,
    /// What the service said.
    pub message: String,
}

/// Creates the template's schedule group (idempotent) and says where long waits go, or `None`
/// when the template declares no group.
pub async fn provision_schedule_group(
    scheduler: &aws_sdk_scheduler::Client,
    resources: &StackResources,
) -> Result<Option<ScheduleTarget>, ScheduleError> {
    let Some(group) = &resources.schedule_group else {
        return Ok(None);
    };
    match scheduler.create_schedule_group().name(group).send().await {
        Ok(_) => {}
        Err(error) => match error.into_service_error() {
            CreateScheduleGroupError::ConflictException(_) => {}
            other => {
                return Err(ScheduleError {
                    operation: "CreateScheduleGroup",
                    name: group.clone(),
                    message: DisplayErrorContext(&other).to_string(),
                })
            }
        },
    }
    Ok(Some(ScheduleTarget {
        group: group.clone(),
        role_arn: LOCAL_ROLE.to_owned(),
        queue_arn: resources.timer_target_arn.clone(),
    }))
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FiringOutcome {
    /// Schedules in the group.
    pub listed: usize,
    /// Schedules whose time had come and whose input was sent.
    pub fired: usize,
}

/// One schedule as read once with `GetSchedule`.
#[derive(Debug, Clone)]
struct Known {
    due_ms: Option<u64>,
    queue_arn: String,
    input: String,
    delete_after: bool,
}

/// Fires the due one-time schedules of one group.
#[derive(Debug, Clone)]
pub struct ScheduleFiring {
    scheduler: aws_sdk_scheduler::Client,
    sqs: aws_sdk_sqs::Client,
    group: String,
    fired: Arc<AtomicU64>,
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ScheduleFiring {
    /// Fires the schedules of `group`, sending with `sqs`.
    pub fn new(
        scheduler: aws_sdk_scheduler::Client,
        sqs: aws_sdk_sqs::Client,
        group: impl Into<String>,
    ) -> Self {
        Self {
            scheduler,
            sqs,
            group: group.into(),
            fired: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Schedule invocations so far (what EventBridge Scheduler bills).
    pub fn invocations(&self) -> u64 {
        self.fired.load(Ordering::SeqCst)
    }

    /// Runs passes every `tick` until the task is dropped or aborted.
    pub async fn run(self, tick: Duration) {
        let mut known = BTreeMap::new();
        let mut done = BTreeSet::new();
        let mut queues = BTreeMap::new();
        loop {
            if let Err(error) = self
                .pass(now_ms(), &mut known, &mut done, &mut queues)
                .await
            {
                tracing::warn!(%error, "local scheduler pass failed; retrying");
            }
            tokio::time::sleep(tick).await;
        }
    }

    /// One pass at `now` (fresh caches).
    pub async fn fire_due(&self, now: u64) -> Result<FiringOutcome, ScheduleError> {
        self.pass(
            now,
            &mut BTreeMap::new(),
            &mut BTreeSet::new(),
            &mut BTreeMap::new(),
        )
        .await
    }

    async fn pass(
        &self,
        now: u64,
        known: &mut BTreeMap<String, Known>,
        done: &mut BTreeSet<String>,
        queues: &mut BTreeMap<String, String>,
    ) -> Result<FiringOutcome, ScheduleError> {
        let err = |operation, name: &str, message: String| ScheduleError {
            operation,
            name: name.to_owned(),
            message,
        };
        let mut names = Vec::new();
        let mut pages = self
            .scheduler
            .list_schedules()
            .group_name(&self.group)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                err(
                    "ListSchedules",
                    &self.group,
                    DisplayErrorContext(&e).to_string(),
                )
            })?;
            names.extend(page.schedules.into_iter().filter_map(|s| s.name));
        }
        let listed: BTreeSet<&String> = names.iter().collect();
        known.retain(|name, _| listed.contains(name));
        done.retain(|name| listed.contains(name));
        let mut outcome = FiringOutcome {
            listed: names.len(),
            fired: 0,
        };
        for name in &names {
            if done.contains(name) {
                continue;
            }
            if !known.contains_key(name) {
                match self.read(name).await {
                    Ok(Some(schedule)) => {
                        known.insert(name.clone(), schedule);
                    }
                    // Deleted between the list and the read.
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read a local schedule");
                        continue;
                    }
                }
            }
            let Some(schedule) = known.get(name).cloned() else {
                continue;
            };
            let Some(due) = schedule.due_ms else {
                continue;
            };
            if due > now {
                continue;
            }
            let url = match queues.get(&schedule.queue_arn) {
                Some(url) => url.clone(),
                None => {
                    let url = self.queue_url(&schedule.queue_arn).await?;
                    queues.insert(schedule.queue_arn.clone(), url.clone());
                    url
                }
            };
            self.sqs
                .send_message()
                .queue_url(&url)
                .message_body(&schedule.input)
                .send()
                .await
                .map_err(|e| err("SendMessage", name, DisplayErrorContext(&e).to_string()))?;
            self.fired.fetch_add(1, Ordering::SeqCst);
            outcome.fired += 1;
            tracing::debug!(schedule = %name, "fired a local schedule");
            if schedule.delete_after {
                match self
                    .scheduler
                    .delete_schedule()
                    .group_name(&self.group)
                    .name(name)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) => match e.into_service_error() {
                        DeleteScheduleError::ResourceNotFoundException(_) => {}
                        other => {
                            return Err(err(
                                "DeleteSchedule",
                                name,
                                DisplayErrorContext(&other).to_string(),
                            ))
                        }
                    },
                }
                known.remove(name);
            } else {
                done.insert(name.clone());
            }
        }
        Ok(outcome)
    }

    /// The schedule's time and target, or `None` if it is gone.
    async fn read(&self, name: &str) -> Result<Option<Known>, ScheduleError> {
        let out = match self
            .scheduler
            .get_schedule()
            .group_name(&self.group)
            .name(name)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => match e.into_service_error() {
                GetScheduleError::ResourceNotFoundException(_) => return Ok(None),
                other => {
                    return Err(ScheduleError {
                        operation: "GetSchedule",
                        name: name.to_owned(),
                        message: DisplayErrorContext(&other).to_string(),
                    })
                }
            },
        };
        let expression = out.schedule_expression.unwrap_or_default();
        let zone = out.schedule_expression_timezone.unwrap_or_default();
        let due_ms = match parse_at_expression(&expression) {
            Some(due) if zone.is_empty() || zone == "UTC" => Some(due),
            _ => {
                tracing::info!(schedule = %name, %expression, %zone, "not a UTC at(...) schedule: the local stack does not fire it");
                None
            }
        };
        let target = out.target;
        let queue_arn = target.as_ref().map(|t| t.arn.clone()).unwrap_or_default();
        let due_ms = due_ms.filter(|_| {
            let sqs = queue_arn.starts_with("arn:aws:sqs:");
            if !sqs {
                tracing::info!(schedule = %name, target = %queue_arn, "not an SQS target: the local stack does not fire it");
            }
            sqs
        });
        Ok(Some(Known {
            due_ms,
            queue_arn,
            input: target.and_then(|t| t.input).unwrap_or_default(),
            delete_after: out.action_after_completion == Some(ActionAfterCompletion::Delete),
        }))
    }

    /// The URL of the queue `arn:aws:sqs:<region>:<account>:<name>`.
    async fn queue_url(&self, arn: &str) -> Result<String, ScheduleError> {
        let parts: Vec<&str> = arn.split(':').collect();
        let (Some(account), Some(name)) = (parts.get(4), parts.get(5)) else {
            return Err(ScheduleError {
                operation: "GetQueueUrl",
                name: arn.to_owned(),
                message: "not a queue ARN".to_owned(),
            });
        };
        let out = self
            .sqs
            .get_queue_url()
            .queue_name(*name)
            .queue_owner_aws_account_id(*account)
            .send()
            .await
            .map_err(|e| ScheduleError {
                operation: "GetQueueUrl",
                name: arn.to_owned(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
        out.queue_url.ok_or_else(|| ScheduleError {
            operation: "GetQueueUrl",
            name: arn.to_owned(),
            message: "no URL in the answer".to_owned(),
        })
    }
}
