//! Wide outboxes (a fan-out's thousands of tasks): sent in groups under a lease, with the
//! number sent recorded after each group, and bounded by the Lambda deadline.
//!
//! - Concurrent activations do not send it twice: only the lease holder sends.
//! - A sender that dies mid-way (crash, timeout) is resumed where its progress says, by the
//!   redelivered record or, once the lease expired, by the reconciler (`byOutbox` index).
//! - A sender that runs out of time records its progress, releases the lease and fails its
//!   record, so the redelivery resumes at once.

use std::time::Instant;

use cairn::store::{CheckpointStore, OutboxBatch, OutboxLease, RunRecord, StoreError};

use super::outbox::send_commands;
use super::{now_ms, EngineTransport, RecordError};

/// How long a sender holds a wide outbox without recording progress.
pub const LEASE_MS: u64 = 60_000;
/// Commands sent between two progress records.
const GROUP: usize = 250;
/// ... as this many concurrent sends.
const PARALLEL: usize = 5;

/// Sends the unsent rest of `batch` (from `batch.sent`) while holding `lease`, then clears
/// the batch. Losing the lease to another sender stops this one without an error.
pub async fn send_wide<T: EngineTransport, S: CheckpointStore>(
    transport: &T,
    store: &S,
    run: &RunRecord,
    batch: OutboxBatch,
    mut lease: OutboxLease,
    timer_chunk_seconds: u32,
    deadline: Option<Instant>,
) -> Result<(), RecordError> {
    let total = batch.commands.len();
    let mut sent = batch.sent.min(total);
    while sent < total {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // Out of time: keep the progress, let the redelivery take over at once.
            let released = OutboxLease {
                owner: lease.owner.clone(),
                until_ms: 0,
            };
            store
                .lease_outbox(&run.run_id, batch.key, &lease, &released, sent)
                .await?;
            tracing::warn!(run_id = %run.run_id, sent, total, "wide outbox not finished before the deadline; the record comes back to resume it");
            return Err(RecordError::OutboxUnfinished {
                run_id: run.run_id.to_string(),
                sent,
                total,
            });
        }
        let end = (sent + GROUP).min(total);
        let group = &batch.commands[sent..end];
        let size = group.len().div_ceil(PARALLEL).max(1);
        let results = futures::future::join_all(
            group
                .chunks(size)
                .map(|part| send_commands(transport, run, part, timer_chunk_seconds)),
        )
        .await;
        if let Some(error) = results.into_iter().find_map(Result::err) {
            // The group is sent again by whoever resumes (its receivers are idempotent).
            return Err(error);
        }
        sent = end;
        if sent == total {
            break;
        }
        let next = OutboxLease {
            owner: lease.owner.clone(),
            until_ms: now_ms() + LEASE_MS,
        };
        match store
            .lease_outbox(&run.run_id, batch.key, &lease, &next, sent)
            .await
        {
            Ok(()) => lease = next,
            Err(StoreError::Conflict { .. }) => {
                tracing::info!(run_id = %run.run_id, sent, total, "wide outbox taken over by another sender");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    let done = OutboxBatch {
        lease: Some(lease),
        parts: 0,
        ..batch
    };
    store.clear_outbox(&run.run_id, &[done]).await?;
    tracing::info!(run_id = %run.run_id, total, "wide outbox sent");
    Ok(())
}

/// Resumes a wide outbox whose sender is gone (its lease expired); leaves it alone while the
/// lease is held.
pub async fn resume<T: EngineTransport, S: CheckpointStore>(
    transport: &T,
    store: &S,
    run: &RunRecord,
    pending: OutboxBatch,
    timer_chunk_seconds: u32,
    deadline: Option<Instant>,
) -> Result<(), RecordError> {
    let Some(current) = pending.lease.clone() else {
        return Ok(());
    };
    let now = now_ms();
    if current.until_ms > now {
        // Held, perhaps by a sender that died with this very record: the record comes back
        // and resumes once the lease expired (the reconciler does too).
        tracing::info!(run_id = %run.run_id, batch = pending.key, "wide outbox is leased by another sender; retrying later");
        return Err(RecordError::OutboxUnfinished {
            run_id: run.run_id.to_string(),
            sent: pending.sent,
            total: pending.commands.len(),
        });
    }
    let mine = OutboxLease {
        owner: uuid::Uuid::new_v4().to_string(),
        until_ms: now + LEASE_MS,
    };
    match store
        .lease_outbox(&run.run_id, pending.key, &current, &mine, pending.sent)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(run_id = %run.run_id, batch = pending.key, sent = pending.sent, total = pending.commands.len(), "resuming a wide outbox");
    send_wide(
        transport,
        store,
        run,
        pending,
        mine,
        timer_chunk_seconds,
        deadline,
    )
    .await
}
