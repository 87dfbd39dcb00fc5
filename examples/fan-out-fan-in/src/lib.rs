//! # Fan-out / fan-in
//!
//! Operations are issued when their futures are created, so collecting the calls first and
//! awaiting them together (`futures::future::join_all`) dispatches every task in one
//! activation; workers run them in parallel, and the engine applies the results of a batch
//! in one activation.

use cairn::worker::Worker;
use cairn::workflow::{RemoteStep, WorkflowContext, WorkflowError, Workflows};

/// Count the words of one page.
pub const COUNT_WORDS: RemoteStep<String, u64> = RemoteStep::new("text.count-words");

/// Counts the words of every page, in parallel, and sums them.
pub async fn word_count(ctx: WorkflowContext, pages: Vec<String>) -> Result<u64, WorkflowError> {
    let calls: Vec<_> = pages
        .into_iter()
        .map(|page| ctx.remote(&COUNT_WORDS, page))
        .collect();
    let mut total = 0;
    for count in futures::future::join_all(calls).await {
        total += count?;
    }
    Ok(total)
}

/// The workflows the engine hosts.
pub fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows.register("word-count", word_count);
    workflows
}

/// The handlers.
pub fn worker() -> Worker {
    Worker::new().handle(&COUNT_WORDS, |page: String, _| async move {
        Ok(page.split_whitespace().count() as u64)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use cairn::testing::TestEnv;

    use super::*;

    #[tokio::test]
    async fn every_page_is_dispatched_at_once_and_the_counts_summed() {
        let mut env = TestEnv::new(workflows()).worker(worker());
        let pages: Vec<String> = (1..=20).map(|n| "word ".repeat(n)).collect();
        let total: u64 = env.execute("word-count", &pages).await.unwrap();
        assert_eq!(total, (1..=20).sum::<u64>());
        let seqs: Vec<u64> = env.calls().iter().map(|c| c.task.seq).collect();
        assert_eq!(
            seqs,
            (1..=20).collect::<Vec<_>>(),
            "one dispatch per page, in order"
        );
        let history = env.history("run-1").unwrap();
        let scheduled_before_any_result = history
            .iter()
            .take_while(|e| !matches!(e.kind, cairn::workflow::EventKind::StepCompleted { .. }))
            .filter(|e| matches!(e.kind, cairn::workflow::EventKind::TaskScheduled { .. }))
            .count();
        assert_eq!(scheduled_before_any_result, 20);
    }
}
