//! Activation cost vs history length: replays a recorded history of about 100, 1,000 and
//! 10,000 events and prints the time and the heap allocations of one activation.
//!
//! `cargo bench -p cairn --bench activation`

use std::alloc::System;
use std::time::{Duration, Instant};

use cairn::contract::StepError;
use cairn::workflow::{
    activate, Activation, ActivationRequest, HistoryEvent, Incoming, RemoteStep, TimerId,
    WorkflowContext, WorkflowError, Workflows,
};
use futures::future::join_all;
use serde_json::{json, Value};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CHARGE: RemoteStep<Value, Value> = RemoteStep::new("payments.charge-card");

/// One cycle: a fan-out of 4 remote steps, a remote step, an inline step, a sleep
/// (7 operations, 14 events).
async fn bench_workflow(ctx: WorkflowContext, cycles: u64) -> Result<u64, WorkflowError> {
    let mut total = 0;
    for cycle in 0..cycles {
        let calls: Vec<_> = (0..4)
            .map(|i| ctx.remote(&CHARGE, json!({ "cycle": cycle, "i": i })))
            .collect();
        for result in join_all(calls).await {
            total += result?.as_u64().unwrap_or_default();
        }
        total += ctx
            .remote(&CHARGE, json!({ "cycle": cycle }))
            .await?
            .as_u64()
            .unwrap_or_default();
        total += ctx
            .step("inline", move || async move { Ok::<_, StepError>(cycle) })
            .await?;
        ctx.sleep(Duration::from_secs(60)).await?;
    }
    Ok(total)
}

/// One fan-out of `width` remote steps awaited together, then a sleep (2 events per step).
async fn wide_workflow(ctx: WorkflowContext, width: u64) -> Result<u64, WorkflowError> {
    let calls: Vec<_> = (0..width).map(|i| ctx.remote(&CHARGE, json!(i))).collect();
    let mut total = 0;
    for result in join_all(calls).await {
        total += result?.as_u64().unwrap_or_default();
    }
    ctx.sleep(Duration::from_secs(60)).await?;
    Ok(total)
}

fn workflows() -> Workflows {
    let mut w = Workflows::new();
    w.register("bench", bench_workflow);
    w.register("wide", wide_workflow);
    w
}

/// The history of a fan-out of `width` whose results arrive in reverse order.
fn record_wide(w: &Workflows, width: u64) -> Vec<HistoryEvent> {
    let mut incoming = vec![Incoming::Start {
        workflow: "wide".into(),
        input: json!(width),
    }];
    incoming.extend(
        (1..=width)
            .rev()
            .map(|seq| Incoming::completed(seq, json!(1))),
    );
    run(w, &[], incoming).appended
}

fn run(w: &Workflows, history: &[HistoryEvent], incoming: Vec<Incoming>) -> Activation {
    let req = ActivationRequest {
        run_id: "bench-run",
        history,
        incoming,
        now_ms: 1_700_000_000_000,
    };
    match futures::executor::block_on(activate(w, req)) {
        Ok(activation) => activation,
        Err(e) => panic!("activation failed: {e}"),
    }
}

/// Records the history of `cycles` cycles in one activation (results predicted by seq;
/// fan-out results arrive in reverse order), stopping before the last sleep fires so the run
/// is still running.
fn record(w: &Workflows, cycles: u64) -> Vec<HistoryEvent> {
    let mut incoming = vec![Incoming::Start {
        workflow: "bench".into(),
        input: json!(cycles),
    }];
    let mut seq = 0;
    for cycle in 0..cycles {
        for i in (1..=4).rev() {
            incoming.push(Incoming::completed(seq + i, json!(1)));
        }
        incoming.push(Incoming::completed(seq + 5, json!(1)));
        // seq + 6: inline step (no incoming)
        if cycle + 1 < cycles {
            incoming.push(Incoming::TimerFired {
                timer_id: TimerId::Sleep(seq + 7),
            });
        }
        seq += 7;
    }
    run(w, &[], incoming).appended
}

fn measure(w: &Workflows, history: &[HistoryEvent]) -> (Duration, stats_alloc::Stats) {
    let _ = run(w, history, vec![]); // warm-up
    let iterations = (200_000 / history.len().max(1)).clamp(5, 500);
    let mut best = Duration::MAX;
    let mut stats = None;
    for _ in 0..iterations {
        let region = Region::new(GLOBAL);
        let started = Instant::now();
        let activation = run(w, history, vec![]);
        let elapsed = started.elapsed();
        let change = region.change();
        assert!(activation.commands.is_empty() && activation.appended.is_empty());
        drop(activation);
        best = best.min(elapsed);
        stats.get_or_insert(change);
    }
    (best, stats.unwrap_or_default())
}

fn main() {
    let w = workflows();
    println!("activation (replay of the whole history, no new events), best of N runs");
    println!("sequential cycles: fan-out of 4, remote step, inline step, sleep");
    header();
    for target in [100u64, 1_000, 10_000] {
        row(&w, &record(&w, target / 14));
    }
    println!("one wide fan-out (join_all), results in reverse order");
    header();
    for target in [100u64, 1_000, 10_000] {
        row(&w, &record_wide(&w, target / 2));
    }
}

fn header() {
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>12} {:>14}",
        "events", "time", "ns/event", "allocs", "allocs/event", "bytes alloc'd"
    );
}

fn row(w: &Workflows, history: &[HistoryEvent]) {
    {
        let (time, stats) = measure(w, history);
        let n = history.len() as f64;
        println!(
            "{:>8} {:>12.3?} {:>12.0} {:>12} {:>12.1} {:>14}",
            history.len(),
            time,
            time.as_nanos() as f64 / n,
            stats.allocations + stats.reallocations,
            (stats.allocations + stats.reallocations) as f64 / n,
            stats.bytes_allocated
        );
    }
}
