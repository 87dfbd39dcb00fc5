//! Long waits at O(1) cost: timers due further away than a threshold become one one-time
//! schedule each ([`TimerScheduler`]) instead of a chain of 15-minute SQS delays.
//!
//! [`LongWaitTransport`] wraps the engine's transport and routes by due time alone, so every
//! path that sends a `TimerFired` (a new timer, the hop of a chained one, the reconciler) gets
//! the same rule:
//!
//! - due within the threshold: the inner transport's SQS delay, as before;
//! - due later: a schedule that delivers the same `TimerFired` `lead` seconds before it is due.
//!   The engine receives it early, sees it is not due, and sends the rest as one SQS delay
//!   (≤ lead < threshold, so never scheduled again): the wait ends to the second, although
//!   EventBridge Scheduler is only precise to the minute.
//!
//! A schedule's name is derived from the run, the timer id and the due time, so a retried
//! activation or a re-sent outbox creates it once (the scheduler treats an existing name as
//! created), and a run id reused after its run expired cannot inherit an old schedule.

use std::collections::BTreeMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::{ControlSender, ResultSender, TaskSender, TransportError};
use crate::contract::{ControlMessage, RemoteTask, StepResult};
use crate::infra::{InfraError, InfraErrorKind};

/// Which timers go through a scheduler, and how early it delivers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongWaitPolicy {
    /// A timer due further away than this is scheduled (default 900: shorter ones fit one
    /// SQS delay).
    pub threshold_seconds: u32,
    /// The schedule fires this long before the timer is due, and the engine sends the rest as
    /// one SQS delay, so the timer is exact to the second although EventBridge Scheduler is
    /// only precise to the minute (default 300; below the threshold and at most 900).
    pub lead_seconds: u32,
}

impl Default for LongWaitPolicy {
    fn default() -> Self {
        Self {
            threshold_seconds: 900,
            lead_seconds: 300,
        }
    }
}

impl LongWaitPolicy {
    /// A policy, checked: the lead must fit one SQS delay and stay below the threshold (else
    /// the engine would schedule the last hop again instead of delaying it).
    pub fn new(threshold_seconds: u32, lead_seconds: u32) -> Result<Self, String> {
        if lead_seconds == 0 || lead_seconds > 900 || lead_seconds >= threshold_seconds {
            return Err(format!(
                "the lead ({lead_seconds} s) must be between 1 and 900 s and below the \
                 threshold ({threshold_seconds} s)"
            ));
        }
        Ok(Self {
            threshold_seconds,
            lead_seconds,
        })
    }
}

/// A timer handed to a scheduler: deliver `message` (a `TimerFired`) at `deliver_at_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledTimer {
    /// The schedule's name ([`schedule_name`]).
    pub name: String,
    /// When the scheduler should deliver the message, epoch milliseconds.
    pub deliver_at_ms: u64,
    /// What it delivers.
    pub message: ControlMessage,
}

/// A timer the run no longer waits for (its operation resolved, or the run ended), with what
/// decides whether a schedule may exist for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedTimer {
    /// The run.
    pub run_id: String,
    /// The timer id.
    pub timer_id: String,
    /// When it was started (its `TimerStarted` event), epoch milliseconds.
    pub started_at_ms: u64,
    /// When it is due, epoch milliseconds.
    pub fire_at_ms: u64,
}

/// Creates and deletes one-time schedules (EventBridge Scheduler in AWS).
pub trait TimerScheduler: Send + Sync {
    /// Creates one schedule per timer. A schedule that already exists under the same name
    /// counts as created. A failure names the indexes (into `timers`) not created.
    fn schedule(
        &self,
        timers: &[ScheduledTimer],
    ) -> impl std::future::Future<Output = Result<(), TransportError>> + Send;

    /// Deletes the named schedules; one that does not exist (fired and deleted itself, or
    /// never created) counts as deleted.
    fn delete(
        &self,
        names: &[String],
    ) -> impl std::future::Future<Output = Result<(), TransportError>> + Send;
}

/// The schedule name of a timer: `cairn-` and 40 hex digits of a SHA-256 of run id, timer id
/// and due time (schedule names allow 64 characters of `[0-9A-Za-z_.-]`; run ids allow more).
pub fn schedule_name(run_id: &str, timer_id: &str, fire_at_ms: u64) -> String {
    let digest = Sha256::digest(format!("{run_id}\n{timer_id}\n{fire_at_ms}").as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("cairn-{hex}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The engine's transport with long waits routed to a [`TimerScheduler`] (none: every timer
/// is chained on the inner transport, as without this wrapper).
#[derive(Debug)]
pub struct LongWaitTransport<T, S> {
    inner: T,
    scheduler: Option<S>,
    policy: LongWaitPolicy,
}

impl<T, S> LongWaitTransport<T, S> {
    /// `inner` for everything but timers due past `policy.threshold_seconds`, which go to
    /// `scheduler` if there is one.
    pub fn new(inner: T, scheduler: Option<S>, policy: LongWaitPolicy) -> Self {
        Self {
            inner,
            scheduler,
            policy,
        }
    }

    /// The scheduler (for tests and tools).
    pub fn scheduler(&self) -> Option<&S> {
        self.scheduler.as_ref()
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// The schedule for `message` if it is a timer due past the threshold at `now_ms`.
    pub fn route(&self, message: &ControlMessage, now_ms: u64) -> Option<ScheduledTimer> {
        self.scheduler.as_ref()?;
        let ControlMessage::TimerFired {
            run_id,
            timer_id,
            fire_at_ms,
        } = message
        else {
            return None;
        };
        let threshold_ms = u64::from(self.policy.threshold_seconds) * 1000;
        (*fire_at_ms > now_ms.saturating_add(threshold_ms)).then(|| ScheduledTimer {
            name: schedule_name(run_id, timer_id, *fire_at_ms),
            deliver_at_ms: fire_at_ms - u64::from(self.policy.lead_seconds) * 1000,
            message: message.clone(),
        })
    }

    /// The schedules that may still be pending for `timers` at `now_ms`: those that were
    /// long when started and have not fired yet.
    pub fn pending_schedules(&self, timers: &[ReleasedTimer], now_ms: u64) -> Vec<String> {
        if self.scheduler.is_none() {
            return Vec::new();
        }
        let threshold_ms = u64::from(self.policy.threshold_seconds) * 1000;
        let lead_ms = u64::from(self.policy.lead_seconds) * 1000;
        timers
            .iter()
            .filter(|t| {
                t.fire_at_ms.saturating_sub(t.started_at_ms) > threshold_ms
                    && t.fire_at_ms.saturating_sub(lead_ms) > now_ms
            })
            .map(|t| schedule_name(&t.run_id, &t.timer_id, t.fire_at_ms))
            .collect()
    }
}

impl<T: TaskSender, S: Send + Sync> TaskSender for LongWaitTransport<T, S> {
    async fn send_tasks(&self, tasks: &[RemoteTask]) -> Result<(), TransportError> {
        self.inner.send_tasks(tasks).await
    }
}

impl<T: ResultSender, S: Send + Sync> ResultSender for LongWaitTransport<T, S> {
    async fn send_results(&self, results: &[StepResult]) -> Result<(), TransportError> {
        self.inner.send_results(results).await
    }
}

/// The infrastructure cause of a failed send.
fn cause_of(error: TransportError) -> InfraError {
    match error {
        TransportError::Partial { cause, .. } | TransportError::NoQueue { cause, .. } => cause,
        TransportError::ClaimCheck(message) | TransportError::Unsupported(message) => {
            InfraError::new("SendControl", InfraErrorKind::Other, message)
        }
    }
}

impl<T: ControlSender, S: TimerScheduler> ControlSender for LongWaitTransport<T, S> {
    async fn send_control(&self, messages: &[(ControlMessage, u32)]) -> Result<(), TransportError> {
        let now = now_ms();
        let (mut scheduled, mut scheduled_at) = (Vec::new(), Vec::new());
        let (mut direct, mut direct_at) = (Vec::new(), Vec::new());
        for (index, (message, delay)) in messages.iter().enumerate() {
            match self.route(message, now) {
                Some(timer) => {
                    scheduled.push(timer);
                    scheduled_at.push(index);
                }
                None => {
                    direct.push((message.clone(), *delay));
                    direct_at.push(index);
                }
            }
        }
        let sent = async {
            if direct.is_empty() {
                Ok(())
            } else {
                self.inner.send_control(&direct).await
            }
        };
        let created = async {
            match &self.scheduler {
                Some(scheduler) if !scheduled.is_empty() => scheduler.schedule(&scheduled).await,
                _ => Ok(()),
            }
        };
        let (sent, created) = futures::join!(sent, created);
        // Failures of either half, as indexes into the caller's slice, and the first cause.
        let mut failed = Vec::new();
        let mut first = None;
        for (result, indexes) in [(sent, &direct_at), (created, &scheduled_at)] {
            if let Err(error) = result {
                failed.extend(
                    error
                        .failed_indexes(indexes.len())
                        .into_iter()
                        .filter_map(|i| indexes.get(i).copied()),
                );
                first.get_or_insert(error);
            }
        }
        match first {
            None => Ok(()),
            Some(error) => {
                failed.sort_unstable();
                Err(TransportError::Partial {
                    failed,
                    cause: cause_of(error),
                })
            }
        }
    }

    async fn release_timers(&self, timers: &[ReleasedTimer]) -> Result<(), TransportError> {
        let names = self.pending_schedules(timers, now_ms());
        match &self.scheduler {
            Some(scheduler) if !names.is_empty() => scheduler.delete(&names).await,
            _ => Ok(()),
        }
    }
}

/// An in-memory [`TimerScheduler`] with EventBridge Scheduler's idempotency rules, for unit
/// tests: what is scheduled now, and how many creates and deletes took effect.
#[derive(Debug, Default)]
pub struct MemoryScheduler {
    /// Pending schedules by name.
    pub schedules: Mutex<BTreeMap<String, ScheduledTimer>>,
    /// Schedules created (a create of an existing name does not count).
    pub created: Mutex<u64>,
    /// Schedules deleted (a delete of a missing name does not count).
    pub deleted: Mutex<u64>,
}

impl MemoryScheduler {
    /// The pending schedules, by name.
    pub fn pending(&self) -> BTreeMap<String, ScheduledTimer> {
        self.schedules.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Removes and returns the schedules due at `now_ms` (what firing them would deliver).
    pub fn take_due(&self, now_ms: u64) -> Vec<ScheduledTimer> {
        let Ok(mut schedules) = self.schedules.lock() else {
            return Vec::new();
        };
        let due: Vec<String> = schedules
            .iter()
            .filter(|(_, t)| t.deliver_at_ms <= now_ms)
            .map(|(name, _)| name.clone())
            .collect();
        due.iter()
            .filter_map(|name| schedules.remove(name))
            .collect()
    }
}

fn poisoned(len: usize) -> TransportError {
    TransportError::Partial {
        failed: (0..len).collect(),
        cause: InfraError::new("Schedule", InfraErrorKind::Other, "poisoned"),
    }
}

impl TimerScheduler for MemoryScheduler {
    async fn schedule(&self, timers: &[ScheduledTimer]) -> Result<(), TransportError> {
        let mut schedules = self.schedules.lock().map_err(|_| poisoned(timers.len()))?;
        let mut created = self.created.lock().map_err(|_| poisoned(timers.len()))?;
        for timer in timers {
            if !schedules.contains_key(&timer.name) {
                schedules.insert(timer.name.clone(), timer.clone());
                *created += 1;
            }
        }
        Ok(())
    }

    async fn delete(&self, names: &[String]) -> Result<(), TransportError> {
        let mut schedules = self.schedules.lock().map_err(|_| poisoned(names.len()))?;
        let mut deleted = self.deleted.lock().map_err(|_| poisoned(names.len()))?;
        for name in names {
            if schedules.remove(name).is_some() {
                *deleted += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::transport::MemoryTransport;

    const DAY_MS: u64 = 86_400_000;

    fn timer(run: &str, id: &str, fire_at_ms: u64) -> ControlMessage {
        ControlMessage::TimerFired {
            run_id: crate::contract::RunId::parse(run).unwrap(),
            timer_id: id.into(),
            fire_at_ms,
        }
    }

    fn transport() -> LongWaitTransport<MemoryTransport, MemoryScheduler> {
        LongWaitTransport::new(
            MemoryTransport::default(),
            Some(MemoryScheduler::default()),
            LongWaitPolicy::default(),
        )
    }

    #[test]
    fn a_lead_at_or_past_the_threshold_is_refused() {
        assert!(LongWaitPolicy::new(900, 300).is_ok());
        assert!(
            LongWaitPolicy::new(5, 5).is_err(),
            "the last hop would be scheduled again"
        );
        assert!(
            LongWaitPolicy::new(3600, 901).is_err(),
            "longer than one SQS delay"
        );
        assert!(LongWaitPolicy::new(900, 0).is_err());
    }

    #[test]
    fn names_are_stable_short_and_valid_for_any_run_id() {
        let long_run = "r".repeat(200) + " ünïcode ~c3";
        let name = schedule_name(&long_run, "7:signal-timeout", 1_000);
        assert_eq!(name, schedule_name(&long_run, "7:signal-timeout", 1_000));
        assert_ne!(name, schedule_name(&long_run, "7:signal-timeout", 1_001));
        assert_ne!(name, schedule_name(&long_run, "8:signal-timeout", 1_000));
        assert!(name.len() <= 64, "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    }

    #[tokio::test]
    async fn a_thirty_day_wait_is_one_schedule_and_a_short_one_stays_on_sqs() {
        let transport = transport();
        let now = now_ms();
        let month = now + 30 * DAY_MS;
        let soon = now + 60_000;
        transport
            .send_control(&[
                (timer("r", "1", month), 900),
                (timer("r", "2", soon), 60),
                (
                    ControlMessage::CancelRun {
                        run_id: crate::contract::RunId::parse("c").unwrap(),
                        reason: None,
                    },
                    0,
                ),
            ])
            .await
            .unwrap();
        let pending = transport.scheduler().unwrap().pending();
        assert_eq!(pending.len(), 1, "{pending:?}");
        let scheduled = pending.values().next().unwrap();
        assert_eq!(scheduled.message, timer("r", "1", month));
        assert_eq!(
            scheduled.deliver_at_ms,
            month - 300_000,
            "fires 5 minutes early"
        );
        let direct = transport.inner().control.lock().unwrap().clone();
        assert_eq!(direct.len(), 2, "{direct:?}");
        assert_eq!(direct[0], (timer("r", "2", soon), 60));
    }

    #[tokio::test]
    async fn without_a_scheduler_every_timer_stays_on_sqs() {
        let transport: LongWaitTransport<_, MemoryScheduler> =
            LongWaitTransport::new(MemoryTransport::default(), None, LongWaitPolicy::default());
        let month = now_ms() + 30 * DAY_MS;
        transport
            .send_control(&[(timer("r", "1", month), 900)])
            .await
            .unwrap();
        assert_eq!(transport.inner().control.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_early_delivery_becomes_one_sqs_delay_not_another_schedule() {
        let transport = transport();
        // What the engine sends when the schedule delivered the timer 5 minutes early.
        let due = now_ms() + 299_000;
        transport
            .send_control(&[(timer("r", "1", due), 299)])
            .await
            .unwrap();
        assert!(transport.scheduler().unwrap().pending().is_empty());
        assert_eq!(transport.inner().control.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_repeated_send_creates_the_schedule_once() {
        let transport = transport();
        let month = now_ms() + 30 * DAY_MS;
        for _ in 0..3 {
            transport
                .send_control(&[(timer("r", "1", month), 900)])
                .await
                .unwrap();
        }
        assert_eq!(*transport.scheduler().unwrap().created.lock().unwrap(), 1);
        assert_eq!(transport.scheduler().unwrap().pending().len(), 1);
    }

    #[tokio::test]
    async fn releasing_deletes_only_schedules_that_can_still_be_pending() {
        let transport = transport();
        let now = now_ms();
        let month = now + 30 * DAY_MS;
        transport
            .send_control(&[(timer("r", "1", month), 900)])
            .await
            .unwrap();
        let released = |id: &str, started_at_ms, fire_at_ms| ReleasedTimer {
            run_id: "r".into(),
            timer_id: id.into(),
            started_at_ms,
            fire_at_ms,
        };
        let timers = [
            released("1", now, month),
            // Short when started: never scheduled.
            released("2", now, now + 600_000),
            // Long, but its schedule has fired already.
            released("3", now - DAY_MS, now + 60_000),
        ];
        assert_eq!(
            transport.pending_schedules(&timers, now),
            vec![schedule_name("r", "1", month)]
        );
        transport.release_timers(&timers).await.unwrap();
        assert!(transport.scheduler().unwrap().pending().is_empty());
        assert_eq!(*transport.scheduler().unwrap().deleted.lock().unwrap(), 1);
    }
}
