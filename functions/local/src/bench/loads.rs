//! The benchmark's two big loads: a fan-out (its task sends counted per step, the results
//! DLQ, the checkouts started beside it) and one long run (DynamoDB requests and bytes read
//! per activation, early against late).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_sqs::types::QueueAttributeName;
use cairn::workflow::RunStatus;
use serde_json::json;

use super::{Bench, Measured};
use crate::meter::Totals;

impl Bench {
    /// A fan-out of `n` remote steps, with 5 checkouts started beside it; the measure and the
    /// fan-out's task sends.
    pub(super) async fn fan_out(&self, n: usize) -> anyhow::Result<(Measured, u32)> {
        let run_id = format!("fan{n}-{}", self.tag);
        let m = self
            .measure("fan-out", n as f64, || async {
                let id = self
                    .client
                    .start("fan-out", json!(n), Some(run_id.clone()))
                    .await?;
                // Runs started beside the fan-out must not be delayed past their timeouts
                // (the charge step's is 30 s): they complete and none of their steps timed
                // out. (Their receipt email, which has no timeout, waits in the email queue
                // behind the fan-out's tasks, so they end with it on the local stack.)
                let beside = self.checkouts_within(5, "beside", Duration::from_secs(1800));
                let fan = self.wait_wide(&id, Duration::from_secs(1800));
                let (beside, fan) = tokio::join!(beside, fan);
                let beside = beside.context("runs started beside the fan-out")?;
                let mut timed_out = 0;
                for id in &beside {
                    timed_out += self
                        .client
                        .get(id)
                        .await?
                        .history
                        .iter()
                        .filter(|e| matches!(&e.kind, cairn::workflow::EventKind::StepFailed { error, .. } if error.code.as_deref() == Some(cairn::contract::ErrorCode::Timeout.as_str())))
                        .count();
                }
                println!(
                    "  beside the fan-out: {} checkouts completed, {timed_out} step attempts timed out",
                    beside.len()
                );
                let fan = fan?;
                if fan.status != RunStatus::Completed {
                    bail!("fan-out ended {}", fan.status);
                }
                Ok(())
            })
            .await?;
        let prefix = format!("{run_id}:");
        let sends: Vec<u32> = m
            .totals
            .task_sends
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, n)| *n)
            .collect();
        let total: u32 = sends.iter().sum();
        let dlq = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.resources.results_dlq_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await?
            .attributes
            .unwrap_or_default()
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .cloned()
            .unwrap_or_default();
        println!(
            "  fan-out tasks: {total} sends for {} distinct steps (max {} per step); results DLQ holds {dlq}",
            sends.len(),
            sends.iter().max().copied().unwrap_or(0)
        );
        Ok((m, total))
    }

    /// One run of `n` remote steps in sequence; its flatness printed.
    pub(super) async fn long_run(&self, n: u64) -> anyhow::Result<Measured> {
        let run_id = format!("long{n}-{}", self.tag);
        let prefix = format!("{run_id}:");
        let samples = Arc::new(std::sync::Mutex::new(Vec::<(u64, Totals)>::new()));
        let m = self
            .measure("long run", n as f64, || async {
                let id = self
                    .client
                    .start("sequence", json!(n), Some(run_id.clone()))
                    .await?;
                let deadline = Instant::now() + Duration::from_secs(7200);
                loop {
                    let totals = self.meter.totals();
                    let steps = totals
                        .task_sends
                        .keys()
                        .filter(|k| k.starts_with(&prefix))
                        .count() as u64;
                    if let Ok(mut s) = samples.lock() {
                        s.push((steps, totals));
                    }
                    if steps >= n {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("long run stuck at {steps} steps");
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                let run = self.client.wait(&id, Duration::from_secs(600)).await?;
                if run.status != RunStatus::Completed {
                    bail!("long run ended {}", run.status);
                }
                Ok(())
            })
            .await?;
        let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
        let window = (n / 20).max(10);
        let rate = |from: u64, to: u64| -> Option<(f64, f64, f64)> {
            let a = samples.iter().find(|(s, _)| *s >= from)?;
            let b = samples.iter().find(|(s, _)| *s >= to)?;
            let steps = (b.0 - a.0).max(1) as f64;
            let d = b.1.since(&a.1);
            Some((
                d.dynamodb_requests() as f64 / steps,
                d.bytes_read as f64 / steps,
                d.rru / steps,
            ))
        };
        let early = rate(window.min(100), window.min(100) + window);
        let late = rate(n - window, n);
        if let (Some(e), Some(l)) = (early, late) {
            println!(
                "  flatness (window {window} steps): DynamoDB requests/step {:.2} early vs {:.2} late; bytes read/step {:.0} vs {:.0}; RRU/step {:.2} vs {:.2}",
                e.0, l.0, e.1, l.1, e.2, l.2
            );
        }
        Ok(m)
    }
}
