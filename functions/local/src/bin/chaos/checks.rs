//! The checks after the chaos: runs still going, steps applied twice, handler executions.

use std::collections::HashMap;
use std::path::Path;

use cairn::client::Client;
use cairn::store::CheckpointStore;
use cairn::workflow::EventKind;

/// The ids among `pending` whose run is not finished (a slice of 25 checked per call, so
/// polling stays light on the local stack, which is the bottleneck).
pub(crate) async fn still_running<S: CheckpointStore, T: cairn::transport::ControlSender>(
    client: &Client<S, T>,
    pending: Vec<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, id) in pending.into_iter().enumerate() {
        if i >= 25 {
            out.push(id);
            continue;
        }
        match client.get(&id).await {
            Ok(run) if run.run.status.is_terminal() => {}
            _ => out.push(id),
        }
    }
    // Rotate, so the next call looks at others.
    let n = out.len().min(25);
    out.rotate_left(n);
    out
}

/// Why a history applied something twice, if it did: a step resolved twice, one attempt's
/// result applied twice, or one attempt scheduled twice.
pub(crate) fn double_applied(history: &[cairn::workflow::HistoryEvent]) -> Option<String> {
    let mut completed = HashMap::<u64, usize>::new();
    let mut results = HashMap::<(u64, u32), usize>::new();
    let mut scheduled = HashMap::<(u64, u32), usize>::new();
    for event in history {
        match &event.kind {
            EventKind::StepCompleted { seq, attempt, .. } => {
                *completed.entry(*seq).or_default() += 1;
                *results.entry((*seq, *attempt)).or_default() += 1;
            }
            EventKind::StepFailed { seq, attempt, .. } => {
                *results.entry((*seq, *attempt)).or_default() += 1;
            }
            EventKind::TaskScheduled { seq, attempt, .. } => {
                *scheduled.entry((*seq, *attempt)).or_default() += 1;
            }
            _ => {}
        }
    }
    if let Some((seq, n)) = completed.iter().find(|(_, n)| **n > 1) {
        return Some(format!("seq {seq} completed {n} times"));
    }
    if let Some(((seq, attempt), n)) = results.iter().find(|(_, n)| **n > 1) {
        return Some(format!("seq {seq} attempt {attempt} applied {n} times"));
    }
    if let Some(((seq, attempt), n)) = scheduled.iter().find(|(_, n)| **n > 1) {
        return Some(format!("seq {seq} attempt {attempt} scheduled {n} times"));
    }
    None
}

/// Successful handler executions per step id, from the executions file.
pub(crate) fn count_executions(path: &Path) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines().filter(|l| !l.is_empty()) {
            *counts.entry(line.to_owned()).or_default() += 1;
        }
    }
    counts
}
