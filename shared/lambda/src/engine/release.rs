//! Timers the run stopped waiting for: a signal beat its timeout, a sleep lost a race, the run
//! was cancelled or finished. A scheduled long wait would otherwise fire days later only to be
//! dropped, and its schedule would count against the account's schedule quota until then.

use cairn::transport::{ControlSender, ReleasedTimer};
use cairn::workflow::{Command, EventKind, HistoryEvent, TimerId};

/// Drops the `StartTimer` commands of timers released in the activation that started them:
/// nothing will wait for them, so nothing is scheduled or sent.
pub(crate) fn drop_released_starts(commands: &mut Vec<Command>, released: &[TimerId]) {
    commands.retain(|command| {
        !matches!(command, Command::StartTimer { timer_id, .. } if released.contains(timer_id))
    });
}

/// The released timers that earlier activations started (and may have scheduled).
pub(crate) fn started_before(
    run_id: &str,
    history: &[HistoryEvent],
    released: &[TimerId],
) -> Vec<ReleasedTimer> {
    history
        .iter()
        .filter_map(|event| match &event.kind {
            EventKind::TimerStarted {
                timer_id,
                fire_at_ms,
                ..
            } if released.contains(timer_id) => Some(ReleasedTimer {
                run_id: run_id.to_owned(),
                timer_id: timer_id.to_string(),
                started_at_ms: event.at_ms,
                fire_at_ms: *fire_at_ms,
            }),
            _ => None,
        })
        .collect()
}

/// Withdraws released timers after the commit that released them. Best effort: a timer that
/// stays pending still fires, and the engine drops it then.
pub(crate) async fn release<T: ControlSender>(transport: &T, timers: &[ReleasedTimer]) {
    if timers.is_empty() {
        return;
    }
    if let Err(error) = transport.release_timers(timers).await {
        let run_id = timers.first().map(|t| t.run_id.as_str()).unwrap_or("");
        tracing::info!(
            %run_id,
            %error,
            timers = timers.len(),
            "could not withdraw released timers: they will fire and be dropped"
        );
        crate::metrics::count(crate::metrics::IGNORED, "release_timers_failed");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_timers_started_earlier_are_withdrawn_and_new_ones_are_not_sent() {
        let started = |at_ms, id: &str, fire_at_ms| {
            HistoryEvent::new(
                at_ms,
                EventKind::TimerStarted {
                    seq: 1,
                    timer_id: id.parse().unwrap(),
                    fire_at_ms,
                },
            )
        };
        let history = vec![started(10, "1:signal-timeout", 99), started(11, "2", 50)];
        let released = vec![TimerId::SignalTimeout(1), TimerId::Sleep(3)];
        assert_eq!(
            started_before("r", &history, &released),
            vec![ReleasedTimer {
                run_id: "r".into(),
                timer_id: "1:signal-timeout".into(),
                started_at_ms: 10,
                fire_at_ms: 99,
            }]
        );
        let start = |id: &str| Command::StartTimer {
            seq: 3,
            timer_id: id.parse().unwrap(),
            fire_at_ms: 5,
        };
        let mut commands = vec![start("3"), start("4")];
        drop_released_starts(&mut commands, &released);
        assert_eq!(commands, vec![start("4")]);
    }
}
