//! Wide outboxes (a fan-out's thousands of tasks): sent in groups under a lease, with the
//! number sent recorded after each group, and bounded by the Lambda deadline.
//!
//! - Concurrent activations do not send it twice: only the lease holder sends, and the lease
//!   lasts no longer than its holder's invocation, so a dead holder's redelivered record (SQS
//!   brings it back a visibility timeout later, never shorter than the function's timeout)
//!   finds it expired.
//! - A sender that runs out of time (the deadline, or its slice of an invocation) records its
//!   progress, releases the lease and hands the rest on with a `resumeOutbox` control message
//!   to the results queue; its record is acknowledged. So no record's receive count grows with
//!   the width of the fan-out, and the records beside it in the queue get their turn.
//! - A `resumeOutbox` resumes from the recorded progress; one for an outbox already sent, or
//!   held by a live sender, is ignored (logged and counted at INFO).
//! - A sender that dies mid-way (crash, timeout) is resumed where its progress says, by its
//!   redelivered record or, once the lease expired, by the reconciler (`byOutbox` index).

use std::time::{Duration, Instant};

use cairn::contract::{ControlMessage, RunId};
use cairn::store::{CheckpointStore, OutboxBatch, OutboxLease, RunRecord, StoreError};

use super::outbox::send_commands;
use super::{now_ms, EngineTransport, RecordError};

/// The lease of a sender without a deadline (tools, tests): the engine function's timeout.
/// A sender with a deadline holds it to the end of its invocation, which on the engine is
/// shorter than the results queue's visibility timeout (200 s on AWS, 30 s locally), so a
/// dead sender's redelivered record finds it expired.
pub const LEASE_MS: u64 = 30_000;
/// The engine's sending deadline is four batch margins (6 s) before its invocation ends; no
/// sender sends past its deadline plus [`WAVE_OVERRUN`].
const DEADLINE_TO_END_MS: u64 = 6_000;
/// Commands sent at once: five concurrent sends of 10 (one `SendMessageBatch` each for tasks).
const WAVE: usize = 50;
/// Time assumed for a wave before one was timed in this invocation.
const FIRST_WAVE_GUESS: Duration = Duration::from_secs(2);
/// How long past the deadline a running wave may take before it is abandoned (the batch's
/// cut comes 4.5 s after the deadline; handing on needs the rest).
const WAVE_OVERRUN: Duration = Duration::from_secs(2);

/// How a wide outbox is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WideOptions {
    /// Commands sent between two progress records.
    pub group: usize,
    /// At most this long per invocation (past its first group) before the rest is handed on
    /// with a `resumeOutbox`; `None`: until the deadline.
    pub slice: Option<Duration>,
}

impl Default for WideOptions {
    fn default() -> Self {
        Self {
            group: 250,
            slice: Some(Duration::from_secs(15)),
        }
    }
}

/// Until when (epoch ms) a sender stopping at `deadline` holds a wide outbox: the end of its
/// invocation ([`LEASE_MS`] from now without a deadline).
pub fn lease_until(deadline: Option<Instant>) -> u64 {
    let now = now_ms();
    match deadline {
        None => now + LEASE_MS,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            now + left.as_millis() as u64 + DEADLINE_TO_END_MS
        }
    }
}

/// Sends the unsent rest of `batch` (from `batch.sent`) while holding `lease`, then clears
/// the batch. Losing the lease to another sender stops this one without an error; running
/// out of time hands the rest on (a `resumeOutbox`) without an error.
///
/// Commands go out in waves of 50 (five concurrent sends of 10), the progress recorded
/// after each group. A wave is begun only if the slowest wave so far would end before the
/// deadline, and one still running past it is abandoned (its commands count as unsent, so
/// only they may go out twice), so the invocation's end never cuts a sender mid-way.
#[allow(clippy::too_many_arguments)]
pub async fn send_wide<T: EngineTransport, S: CheckpointStore>(
    transport: &T,
    store: &S,
    run: &RunRecord,
    batch: OutboxBatch,
    mut lease: OutboxLease,
    timer_chunk_seconds: u32,
    deadline: Option<Instant>,
    options: WideOptions,
) -> Result<(), RecordError> {
    let total = batch.commands.len();
    let group = options.group.max(1);
    let mut sent = batch.sent.min(total);
    let mut recorded = sent;
    let started = Instant::now();
    let first = sent;
    let mut slowest: Option<Duration> = None;
    while sent < total {
        let now = Instant::now();
        let no_time = deadline.is_some_and(|d| now + slowest.unwrap_or(FIRST_WAVE_GUESS) >= d);
        let slice_spent = sent >= first + group
            && options
                .slice
                .is_some_and(|slice| now.duration_since(started) >= slice);
        if no_time || slice_spent {
            let why = if no_time { "deadline" } else { "slice" };
            return hand_on(transport, store, run, &batch, &lease, sent, why).await;
        }
        let group_end = (sent / group + 1) * group;
        let end = (sent + WAVE).min(group_end).min(total);
        let wave = futures::future::join_all(
            batch.commands[sent..end]
                .chunks(10)
                .map(|part| send_commands(transport, run, part, timer_chunk_seconds)),
        );
        let results = match deadline {
            None => wave.await,
            Some(d) => match tokio::time::timeout_at((d + WAVE_OVERRUN).into(), wave).await {
                Ok(results) => results,
                Err(_) => {
                    tracing::warn!(run_id = %run.run_id, sent, total, "a wave of a wide outbox outlasted the deadline; its commands count as unsent");
                    return hand_on(transport, store, run, &batch, &lease, sent, "deadline").await;
                }
            },
        };
        if let Some(error) = results.into_iter().find_map(Result::err) {
            // Sent again from the recorded progress by whoever resumes (receivers are
            // idempotent); the lease runs out with this invocation.
            return Err(error);
        }
        let took = now.elapsed();
        slowest = Some(slowest.map_or(took, |s| s.max(took)));
        sent = end;
        if sent == total {
            break;
        }
        if sent < recorded + group {
            continue;
        }
        let next = OutboxLease {
            owner: lease.owner.clone(),
            until_ms: lease_until(deadline),
        };
        match store
            .lease_outbox(&run.run_id, batch.key, &lease, &next, sent)
            .await
        {
            Ok(()) => {
                lease = next;
                recorded = sent;
            }
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

/// Out of time: records the progress, releases the lease and sends a `resumeOutbox` for the
/// rest. If that send fails, the record fails and its redelivery resumes (the lease is free).
async fn hand_on<T: EngineTransport, S: CheckpointStore>(
    transport: &T,
    store: &S,
    run: &RunRecord,
    batch: &OutboxBatch,
    lease: &OutboxLease,
    sent: usize,
    why: &'static str,
) -> Result<(), RecordError> {
    let total = batch.commands.len();
    let released = OutboxLease {
        owner: lease.owner.clone(),
        until_ms: 0,
    };
    match store
        .lease_outbox(&run.run_id, batch.key, lease, &released, sent)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict { .. }) => {
            tracing::info!(run_id = %run.run_id, sent, total, "wide outbox taken over by another sender");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }
    let resume = ControlMessage::ResumeOutbox {
        run_id: run.run_id.clone(),
        index: batch.key,
    };
    transport.send_control(&[(resume, 0)]).await?;
    tracing::info!(run_id = %run.run_id, batch = batch.key, sent, total, why, "wide outbox handed on: a resumeOutbox continues it");
    crate::metrics::count(crate::metrics::WIDE_OUTBOX_HANDED_ON, why);
    Ok(())
}

/// Resumes a wide outbox whose sender is gone (its lease expired); a redelivered record
/// finding it held fails, to come back once the lease expired.
pub async fn resume<T: EngineTransport, S: CheckpointStore>(
    transport: &T,
    store: &S,
    run: &RunRecord,
    pending: OutboxBatch,
    timer_chunk_seconds: u32,
    deadline: Option<Instant>,
) -> Result<(), RecordError> {
    resume_with(
        transport,
        store,
        run,
        pending,
        timer_chunk_seconds,
        deadline,
        WideOptions::default(),
    )
    .await
}

/// [`resume`] with the engine's [`WideOptions`].
pub(crate) async fn resume_with<T: EngineTransport, S: CheckpointStore>(
    transport: &T,
    store: &S,
    run: &RunRecord,
    pending: OutboxBatch,
    timer_chunk_seconds: u32,
    deadline: Option<Instant>,
    options: WideOptions,
) -> Result<(), RecordError> {
    let Some(current) = pending.lease.clone() else {
        return Ok(());
    };
    if current.until_ms > now_ms() {
        // Held, perhaps by a sender that died with this very record: the record comes back
        // and resumes once the lease expired (the reconciler does too).
        tracing::info!(run_id = %run.run_id, batch = pending.key, "wide outbox is leased by another sender; retrying later");
        return Err(RecordError::OutboxUnfinished {
            run_id: run.run_id.to_string(),
            sent: pending.sent,
            total: pending.commands.len(),
        });
    }
    take_and_send(
        transport,
        store,
        run,
        pending,
        current,
        timer_chunk_seconds,
        deadline,
        options,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn take_and_send<T: EngineTransport, S: CheckpointStore>(
    transport: &T,
    store: &S,
    run: &RunRecord,
    pending: OutboxBatch,
    current: OutboxLease,
    timer_chunk_seconds: u32,
    deadline: Option<Instant>,
    options: WideOptions,
) -> Result<(), RecordError> {
    let mine = OutboxLease {
        owner: uuid::Uuid::new_v4().to_string(),
        until_ms: lease_until(deadline),
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
        options,
    )
    .await
}

/// Takes the `resumeOutbox` messages out of `messages` (all of one run): the run and the
/// outbox indexes they name, each with whether a message for it was redelivered.
pub(crate) fn take_resumes(
    messages: &mut Vec<super::Received>,
) -> Option<(RunId, Vec<(u64, bool)>)> {
    let mut run = None;
    let mut indexes: Vec<(u64, bool)> = Vec::new();
    messages.retain(|received| match &received.message {
        cairn::contract::ResultsMessage::Control(ControlMessage::ResumeOutbox {
            run_id,
            index,
        }) => {
            run = Some(run_id.clone());
            match indexes.iter_mut().find(|(i, _)| i == index) {
                Some((_, redelivered)) => *redelivered |= received.redelivered,
                None => indexes.push((*index, received.redelivered)),
            }
            false
        }
        _ => true,
    });
    indexes.sort_unstable();
    run.map(|run| (run, indexes))
}

/// Goes on sending the wide outboxes `indexes` of `run_id` (from `resumeOutbox` messages,
/// with whether one was redelivered), on the run as stored. Stale ones (outbox sent, run
/// gone) are ignored, logged and counted at INFO; so are ones a live sender holds, unless
/// redelivered: the holder may be this very message's earlier attempt (failed or died), so
/// it comes back once the lease expired.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn continue_sending<T: EngineTransport, S: CheckpointStore>(
    transport: &T,
    store: &S,
    run_id: &RunId,
    indexes: &[(u64, bool)],
    timer_chunk_seconds: u32,
    deadline: Option<Instant>,
    options: WideOptions,
) -> Result<(), RecordError> {
    if indexes.is_empty() {
        return Ok(());
    }
    let loaded = match store.load(run_id).await {
        Ok(loaded) => loaded,
        Err(StoreError::Leftovers(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let Some(loaded) = loaded else {
        for (index, _) in indexes {
            ignored(
                run_id,
                *index,
                "resume_unknown_run",
                "resumeOutbox for a run that does not exist; ignored",
            );
        }
        return Ok(());
    };
    for (index, redelivered) in indexes {
        let pending = loaded
            .outbox
            .iter()
            .find(|b| b.key == *index && b.lease.is_some());
        let Some(pending) = pending else {
            ignored(
                run_id,
                *index,
                "resume_sent",
                "resumeOutbox for a wide outbox already sent; ignored",
            );
            continue;
        };
        let Some(current) = pending.lease.clone() else {
            continue;
        };
        if current.until_ms > now_ms() && *redelivered {
            tracing::info!(%run_id, batch = index, "resumeOutbox redelivered while the wide outbox is leased; retrying later");
            return Err(RecordError::OutboxUnfinished {
                run_id: run_id.to_string(),
                sent: pending.sent,
                total: pending.commands.len(),
            });
        }
        if current.until_ms > now_ms() {
            // A live sender holds it (a duplicate continuation, or the reconciler): if it
            // dies, its own record (or the next reconciler pass) resumes.
            ignored(
                run_id,
                *index,
                "resume_leased",
                "resumeOutbox for a wide outbox another sender holds; ignored",
            );
            continue;
        }
        take_and_send(
            transport,
            store,
            &loaded.run,
            pending.clone(),
            current,
            timer_chunk_seconds,
            deadline,
            options,
        )
        .await?;
    }
    Ok(())
}

fn ignored(run_id: &RunId, index: u64, reason: &'static str, message: &str) {
    tracing::info!(%run_id, batch = index, reason, "{message}");
    crate::metrics::count(crate::metrics::IGNORED, reason);
}
