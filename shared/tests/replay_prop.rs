//! Property: for random workflows of remote steps, inline steps, sleeps, signal waits and
//! fan-outs, driven live with results arriving in random order and batches (duplicates
//! included), replaying any prefix of the history and then the rest yields the same events and
//! commands as the live run, and as one replay of the whole.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cairn::contract::StepError;
use cairn::workflow::{
    activate, Activation, ActivationRequest, Command, EventKind, HistoryEvent, Incoming,
    RemoteStep, RetryPolicy, RunStatus, WorkflowContext, WorkflowError, Workflows,
};
use futures::future::join_all;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

const NOW: u64 = 1_000_000;
const STEP: RemoteStep<Value, Value> =
    RemoteStep::new("step").with_retry(RetryPolicy::fixed(3, Duration::from_secs(1)));

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Op {
    Remote(u8),
    Inline(u8),
    Sleep(u8),
    Signal(u8),
    FanOut(u8),
    Now,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..4).prop_map(Op::Remote),
        (0u8..4).prop_map(Op::Inline),
        (1u8..100).prop_map(Op::Sleep),
        (0u8..2).prop_map(Op::Signal),
        (1u8..4).prop_map(Op::FanOut),
        Just(Op::Now),
    ]
}

async fn interpret(ctx: WorkflowContext, ops: Vec<Op>) -> Result<Vec<Value>, WorkflowError> {
    let mut out = Vec::new();
    for op in ops {
        let value = match op {
            Op::Remote(i) => ctx
                .remote(&STEP, json!(i))
                .await
                .unwrap_or_else(|e| json!(e.to_string())),
            Op::Inline(i) => {
                ctx.step(
                    "inline",
                    move || async move { Ok::<_, StepError>(json!(i)) },
                )
                .await?
            }
            Op::Sleep(s) => {
                ctx.sleep(Duration::from_secs(u64::from(s))).await?;
                Value::Null
            }
            Op::Signal(i) => ctx.wait_for_signal(&format!("sig-{i}")).await?,
            Op::FanOut(n) => {
                let calls: Vec<_> = (0..n).map(|i| ctx.remote(&STEP, json!(i))).collect();
                let results = join_all(calls).await;
                Value::from(
                    results
                        .into_iter()
                        .map(|r| r.unwrap_or_else(|e| json!(e.to_string())))
                        .collect::<Vec<_>>(),
                )
            }
            Op::Now => Value::from(ctx.now()),
        };
        out.push(value);
    }
    Ok(out)
}

fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.register("interp", interpret);
    w
}

fn run(w: &Workflows, history: &[HistoryEvent], incoming: Vec<Incoming>) -> Activation {
    futures::executor::block_on(activate(
        w,
        ActivationRequest {
            run_id: "prop",
            history,
            incoming,
            now_ms: NOW,
        },
    ))
    .unwrap()
}

/// The live run: returns the batches it received, the history and the commands.
fn live(
    w: &Workflows,
    ops: &[Op],
    seed: u64,
) -> (
    Vec<Vec<Incoming>>,
    Vec<HistoryEvent>,
    Vec<Command>,
    RunStatus,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut history = Vec::new();
    let mut commands = Vec::new();
    let mut batches = Vec::new();
    let start = Incoming::Start {
        workflow: "interp".into(),
        input: serde_json::to_value(ops).unwrap(),
    };
    // Signals may arrive before their wait: they are candidates from the start.
    let mut candidates: Vec<Incoming> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Signal(i) => Some(Incoming::Signal {
                name: format!("sig-{i}"),
                payload: json!(format!("s{i}")),
                signal_id: None,
            }),
            _ => None,
        })
        .collect();
    let mut delivered: Vec<Incoming> = Vec::new();
    let mut next = vec![start];
    let mut status = RunStatus::Running;
    for _ in 0..500 {
        let activation = run(w, &history, next.clone());
        batches.push(next);
        history.extend(activation.appended);
        status = activation.status;
        for command in &activation.commands {
            candidates.push(match command {
                Command::DispatchTask { seq, attempt, .. } => {
                    let outcome = if *attempt < 3 && rng.random_bool(0.3) {
                        Err(StepError::retryable("flaky"))
                    } else {
                        Ok(json!(format!("out-{seq}-{attempt}")))
                    };
                    Incoming::StepResult {
                        started_at_ms: None,
                        seq: *seq,
                        attempt: Some(*attempt),
                        outcome,
                        events: Vec::new(),
                    }
                }
                Command::StartTimer { timer_id, .. } => Incoming::TimerFired {
                    timer_id: *timer_id,
                },
                other => panic!("unexpected command {other:?}"),
            });
        }
        commands.extend(activation.commands);
        if status.is_terminal() || candidates.is_empty() {
            break;
        }
        let take = rng.random_range(1..=candidates.len().min(3));
        next = (0..take)
            .map(|_| candidates.swap_remove(rng.random_range(0..candidates.len())))
            .collect();
        if !delivered.is_empty() && rng.random_bool(0.2) {
            next.push(delivered[rng.random_range(0..delivered.len())].clone()); // redelivery
        }
        delivered.extend(next.iter().cloned());
    }
    (batches, history, commands, status)
}

/// The commands the events of a history imply (this generator issues no timeouts or children).
fn commands_of(events: &[HistoryEvent]) -> Vec<Command> {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::TaskScheduled {
                seq,
                name,
                group,
                input,
                attempt,
                ..
            } => Some(Command::DispatchTask {
                seq: *seq,
                name: name.clone(),
                group: group.clone(),
                input: input.clone(),
                attempt: *attempt,
                timeout_ms: None,
                schedule_to_start_ms: None,
                scheduled_at_ms: Some(e.at_ms),
            }),
            EventKind::TimerStarted {
                seq,
                timer_id,
                fire_at_ms,
            } => Some(Command::StartTimer {
                seq: *seq,
                timer_id: *timer_id,
                fire_at_ms: *fire_at_ms,
            }),
            _ => None,
        })
        .collect()
}

/// The incoming items that the events of a history record.
fn incoming_of(events: &[HistoryEvent]) -> Vec<Incoming> {
    let inline: std::collections::HashSet<u64> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::InlineStepStarted { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepCompleted {
                seq,
                attempt,
                output,
                events,
                started_at_ms,
            } if !inline.contains(seq) => Some(Incoming::StepResult {
                started_at_ms: *started_at_ms,
                seq: *seq,
                attempt: Some(*attempt),
                outcome: Ok(output.clone()),
                events: events.clone(),
            }),
            EventKind::StepFailed {
                seq,
                attempt,
                error,
                events,
                started_at_ms,
            } if !inline.contains(seq) => Some(Incoming::StepResult {
                started_at_ms: *started_at_ms,
                seq: *seq,
                attempt: Some(*attempt),
                outcome: Err(error.clone()),
                events: events.clone(),
            }),
            EventKind::TimerFired { timer_id, .. } => Some(Incoming::TimerFired {
                timer_id: *timer_id,
            }),
            EventKind::SignalReceived {
                name,
                payload,
                signal_id,
            } => Some(Incoming::Signal {
                name: name.clone(),
                payload: payload.clone(),
                signal_id: signal_id.clone(),
            }),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn prefix_then_rest_equals_whole(ops in prop::collection::vec(op(), 0..10), seed in any::<u64>(), cut in any::<prop::sample::Index>()) {
        let w = workflows();
        let (batches, history, commands, status) = live(&w, &ops, seed);
        prop_assert_eq!(status, RunStatus::Completed);
        prop_assert_eq!(&commands, &commands_of(&history));

        // One replay of the whole history: nothing new.
        let whole = run(&w, &history, vec![]);
        prop_assert!(whole.appended.is_empty() && whole.commands.is_empty());
        prop_assert_eq!(whole.status, status);

        // All incoming at once, from nothing: the same history and commands.
        let all: Vec<Incoming> = batches.iter().flatten().cloned().collect();
        let once = run(&w, &[], all.clone());
        prop_assert_eq!(&once.appended, &history);
        prop_assert_eq!(&once.commands, &commands);

        // Any split of the incoming stream.
        let k = 1 + cut.index(all.len()); // the first item is the start
        let first = run(&w, &[], all[..k].to_vec());
        let rest = run(&w, &first.appended, all[k..].to_vec());
        let mut joined = first.appended.clone();
        joined.extend(rest.appended.iter().cloned());
        prop_assert_eq!(&joined, &history);
        let mut joined_commands = first.commands.clone();
        joined_commands.extend(rest.commands.iter().cloned());
        prop_assert_eq!(&joined_commands, &commands);

        // Any prefix of the history (even mid-activation), then the rest of its incoming.
        let j = 1 + cut.index(history.len()); // keep RunStarted
        let resumed = run(&w, &history[..j], incoming_of(&history[j..]));
        let mut joined = history[..j].to_vec();
        joined.extend(resumed.appended.iter().cloned());
        prop_assert_eq!(&joined, &history);
        prop_assert_eq!(&resumed.commands, &commands_of(&history[j..]));
    }
}
