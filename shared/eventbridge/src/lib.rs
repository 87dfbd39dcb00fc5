//! # cairn-eventbridge — long waits on EventBridge Scheduler
//!
//! [`EventBridgeScheduler`] implements [`TimerScheduler`]: one one-time `at(...)` schedule per
//! long timer, in cairn's schedule group, sending the timer's `TimerFired` to the queue the
//! engine consumes, deleting itself after it ran (`ActionAfterCompletion: DELETE`).
//!
//! Only the engine links this crate (see [`cairn::transport::LongWaitTransport`] for the
//! routing); workers never schedule anything.

pub use aws_sdk_scheduler;

use aws_sdk_scheduler::operation::create_schedule::CreateScheduleError;
use aws_sdk_scheduler::operation::delete_schedule::DeleteScheduleError;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
};
use aws_sdk_scheduler::Client;
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use cairn::contract::encode;
use cairn::infra::{InfraError, InfraErrorKind};
use cairn::transport::{ScheduledTimer, TimerScheduler, TransportError};
use cairn_lambda::sdk_error::infra_error;
use futures::future::join_all;

/// Schedule requests in flight at once (a fan-out of long sleeps creates many).
const CONCURRENCY: usize = 8;

/// Where the schedules live and what they do.
#[derive(Debug, Clone)]
pub struct ScheduleTarget {
    /// The schedule group (`<prefix>-timers`).
    pub group: String,
    /// The role the schedules run as (may only send to `queue_arn`).
    pub role_arn: String,
    /// The queue the engine consumes timers from.
    pub queue_arn: String,
}

/// [`TimerScheduler`] on EventBridge Scheduler.
#[derive(Debug, Clone)]
pub struct EventBridgeScheduler {
    client: Client,
    target: ScheduleTarget,
}

/// `at(yyyy-mm-ddThh:mm:ss)` in UTC for an epoch-millisecond instant (whole seconds, rounded
/// down: the schedule fires early rather than late, and the engine delays the rest).
pub fn at_expression(epoch_ms: u64) -> Result<String, String> {
    let seconds = i64::try_from(epoch_ms / 1000).map_err(|e| e.to_string())?;
    let formatted = DateTime::from_secs(seconds)
        .fmt(Format::DateTime)
        .map_err(|e| e.to_string())?;
    Ok(format!("at({})", formatted.trim_end_matches('Z')))
}

/// The instant of an `at(yyyy-mm-ddThh:mm:ss)` expression read as UTC, epoch milliseconds.
pub fn parse_at_expression(expression: &str) -> Option<u64> {
    let inner = expression.strip_prefix("at(")?.strip_suffix(')')?;
    let parsed = DateTime::from_str(&format!("{inner}Z"), Format::DateTime).ok()?;
    u64::try_from(parsed.to_millis().ok()?).ok()
}

impl EventBridgeScheduler {
    /// Schedules through `client` into `target`.
    pub fn new(client: Client, target: ScheduleTarget) -> Self {
        Self { client, target }
    }

    /// The scheduler a deployment's configuration names, if long waits are configured.
    pub fn from_config(
        sdk: &aws_config::SdkConfig,
        long_waits: Option<&cairn_lambda::config::LongWaitConfig>,
    ) -> Option<Self> {
        long_waits.map(|config| {
            Self::new(
                Client::new(sdk),
                ScheduleTarget {
                    group: config.group.clone(),
                    role_arn: config.role_arn.clone(),
                    queue_arn: config.target_arn.clone(),
                },
            )
        })
    }

    async fn create(&self, timer: &ScheduledTimer) -> Result<(), InfraError> {
        let rejected = |e: String| InfraError::new("CreateSchedule", InfraErrorKind::Rejected, e);
        let target = Target::builder()
            .arn(&self.target.queue_arn)
            .role_arn(&self.target.role_arn)
            .input(encode(&timer.message))
            .build()
            .map_err(|e| rejected(e.to_string()))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| rejected(e.to_string()))?;
        let created = self
            .client
            .create_schedule()
            .name(&timer.name)
            .group_name(&self.target.group)
            .schedule_expression(at_expression(timer.deliver_at_ms).map_err(rejected)?)
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(target)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // The name is the timer: a retried activation or a re-sent outbox finds the
            // schedule it created before.
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(CreateScheduleError::ConflictException(_))
                ) =>
            {
                tracing::debug!(schedule = %timer.name, "schedule exists already");
                Ok(())
            }
            Err(error) => Err(infra_error("CreateSchedule", error)),
        }
    }

    async fn delete_one(&self, name: &str) -> Result<(), InfraError> {
        let deleted = self
            .client
            .delete_schedule()
            .name(name)
            .group_name(&self.target.group)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            // Fired and deleted itself, or never created: nothing is pending.
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(DeleteScheduleError::ResourceNotFoundException(_))
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(infra_error("DeleteSchedule", error)),
        }
    }
}

/// The indexes that failed, and the first reason, as a transport error.
fn failures(results: Vec<Result<(), InfraError>>) -> Result<(), TransportError> {
    let mut failed = Vec::new();
    let mut first = None;
    for (index, result) in results.into_iter().enumerate() {
        if let Err(error) = result {
            failed.push(index);
            first.get_or_insert(error);
        }
    }
    match first {
        None => Ok(()),
        Some(cause) => Err(TransportError::Partial { failed, cause }),
    }
}

impl TimerScheduler for EventBridgeScheduler {
    async fn schedule(&self, timers: &[ScheduledTimer]) -> Result<(), TransportError> {
        let mut results = Vec::with_capacity(timers.len());
        for chunk in timers.chunks(CONCURRENCY) {
            results.extend(join_all(chunk.iter().map(|timer| self.create(timer))).await);
        }
        failures(results)
    }

    async fn delete(&self, names: &[String]) -> Result<(), TransportError> {
        let mut results = Vec::with_capacity(names.len());
        for chunk in names.chunks(CONCURRENCY) {
            results.extend(join_all(chunk.iter().map(|name| self.delete_one(name))).await);
        }
        failures(results)
    }
}

/// The engine Lambda of `cairn_lambda::serve_engine`, with timers due past the threshold
/// routed to EventBridge Scheduler when `CAIRN_SCHEDULE_GROUP` is set (else unchanged).
pub async fn serve_engine(
    workflows: cairn::workflow::Workflows,
) -> Result<(), lambda_runtime::Error> {
    cairn_lambda::serve_engine_with(workflows, |sdk, config, sqs| {
        let long_waits = config.long_waits.as_ref();
        cairn::transport::LongWaitTransport::new(
            sqs,
            EventBridgeScheduler::from_config(sdk, long_waits),
            long_waits.map(|l| l.policy).unwrap_or_default(),
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn at_expressions_are_utc_whole_seconds_and_read_back() {
        // 2026-12-02T08:00:00.999Z
        let ms = 1_796_198_400_999;
        assert_eq!(at_expression(ms).unwrap(), "at(2026-12-02T08:00:00)");
        assert_eq!(
            parse_at_expression("at(2026-12-02T08:00:00)"),
            Some(1_796_198_400_000)
        );
        assert_eq!(parse_at_expression("rate(5 minutes)"), None);
        assert_eq!(parse_at_expression("at(tomorrow)"), None);
    }
}
