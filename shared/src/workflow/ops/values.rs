//! Recorded values: `ctx.now()`, `ctx.random()`, `ctx.uuid()` (one `ValueRecorded` each,
//! identical on replay), versioning markers (`ctx.patched`) and `ctx.continue_as_new`.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::Value;

use crate::workflow::context::{encode, issue_in};
use crate::workflow::state::{Operation, State};
use crate::workflow::{EventKind, ValueKind, WorkflowContext, WorkflowError};

impl WorkflowContext {
    fn record_value(&self, kind: ValueKind, make: impl FnOnce(&State, u64) -> Value) -> Value {
        let mut state = self.state();
        // Not awaited: never takes a pending cancellation, so this cannot fail.
        let Ok(issued) = issue_in(&mut state, Operation::Value(kind.clone()), false) else {
            return Value::Null;
        };
        if issued.new {
            let value = make(&state, issued.seq);
            state.produce(
                EventKind::ValueRecorded {
                    seq: issued.seq,
                    kind,
                    value: value.clone(),
                },
                None,
            );
            value
        } else {
            state
                .slot(issued.seq)
                .and_then(|s| s.value.clone())
                .unwrap_or_default()
        }
    }

    /// The current time, epoch milliseconds: the activation's clock the first time, the
    /// recorded value on replay.
    pub fn now(&self) -> u64 {
        self.record_value(ValueKind::Now, |state, _| Value::from(state.now_ms))
            .as_u64()
            .unwrap_or_default()
    }

    /// A random `u64` (ChaCha8 seeded from the run id and `seq`), recorded.
    pub fn random(&self) -> u64 {
        self.record_value(ValueKind::Random, |state, seq| {
            Value::from(ChaCha8Rng::seed_from_u64(state.seed(seq)).next_u64())
        })
        .as_u64()
        .unwrap_or_default()
    }

    /// A random (v4) UUID, recorded.
    pub fn uuid(&self) -> uuid::Uuid {
        let value = self.record_value(ValueKind::Uuid, |state, seq| {
            let mut bytes = [0u8; 16];
            ChaCha8Rng::seed_from_u64(state.seed(seq)).fill_bytes(&mut bytes);
            Value::from(
                uuid::Builder::from_random_bytes(bytes)
                    .into_uuid()
                    .to_string(),
            )
        });
        value
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    }

    /// Versioning: `true` when this run takes the code path of change `change_id`.
    ///
    /// A run that recorded the marker, or reaches this call past everything its history
    /// recorded (new code, new ground), gets `true` (and the marker is recorded); a run
    /// replaying history recorded by older code gets `false`. Takes no `seq`, so adding it
    /// does not shift the operations of running workflows.
    ///
    /// ```no_run
    /// # async fn wf(ctx: cairn::workflow::WorkflowContext) -> Result<(), cairn::workflow::WorkflowError> {
    /// if ctx.patched("send-sms") {
    ///     // new code
    /// }
    /// # Ok(()) }
    /// ```
    pub fn patched(&self, change_id: &str) -> bool {
        let mut state = self.state();
        if state.patches.contains(change_id) {
            return true;
        }
        if state.next_seq <= state.max_recorded_seq {
            return false;
        }
        state.produce(
            EventKind::PatchMarked {
                change_id: change_id.to_owned(),
            },
            None,
        );
        state.patches.insert(change_id.to_owned());
        true
    }

    /// The error to return to continue as a new run of this workflow with `input` (the new
    /// run starts with an empty history): `return Err(ctx.continue_as_new(&next));`.
    pub fn continue_as_new<T: Serialize>(&self, input: &T) -> WorkflowError {
        match encode(input) {
            Ok(input) => WorkflowError::ContinueAsNew(input),
            Err(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::test_support::*;
    use super::*;
    use crate::workflow::{Command, RunStatus, Workflows};
    use serde_json::json;
    use std::time::Duration;

    fn workflows() -> Workflows {
        let mut w = Workflows::new();
        w.register("vals", |ctx: WorkflowContext, _: ()| async move {
            let now = ctx.now();
            let r = ctx.random();
            let id = ctx.uuid();
            ctx.sleep(Duration::from_secs(1)).await?;
            let patched = ctx.patched("v2");
            Ok(json!([now, r, id, patched]))
        });
        w.register("loop", |ctx: WorkflowContext, n: u32| async move {
            if n < 3 {
                return Err(ctx.continue_as_new(&(n + 1)));
            }
            Ok(n)
        });
        w
    }

    #[test]
    fn values_are_identical_on_replay() {
        let w = workflows();
        let mut sim = Sim::new(&w, "run-v");
        let a = sim.step(vec![start("vals", ())]);
        assert_eq!(a.appended.len(), 5, "{:?}", a.appended);
        sim.now_ms = 99_999;
        sim.step(vec![fire("4")]);
        let out = sim.output().unwrap();
        assert_eq!(out[0], json!(1_000), "now is the first activation's clock");
        assert_eq!(out[3], json!(true), "new ground: patched");
        let uuid: uuid::Uuid = out[2].as_str().unwrap().parse().unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        // Another run draws other values.
        let mut other = Sim::new(&w, "run-w");
        other.step(vec![start("vals", ())]);
        other.step(vec![fire("4")]);
        assert_ne!(other.output().unwrap()[1], out[1]);
    }

    #[test]
    fn patched_is_false_on_old_history() {
        let mut old = Workflows::new();
        old.register("p", |ctx: WorkflowContext, _: ()| async move {
            ctx.sleep(Duration::from_secs(1)).await?;
            ctx.sleep(Duration::from_secs(1)).await?;
            Ok(false)
        });
        let mut new = Workflows::new();
        new.register("p", |ctx: WorkflowContext, _: ()| async move {
            let p = ctx.patched("x");
            ctx.sleep(Duration::from_secs(1)).await?;
            ctx.sleep(Duration::from_secs(1)).await?;
            Ok(p)
        });
        let mut sim = Sim::new(&old, "r");
        sim.step(vec![start("p", ())]);
        sim.step(vec![fire("1")]);
        sim.workflows = &new;
        let a = sim.step(vec![fire("2")]);
        assert_eq!(a.status, RunStatus::Completed);
        assert_eq!(sim.output(), Some(json!(false)));
    }

    #[test]
    fn continue_as_new_hands_over_input() {
        let w = workflows();
        let mut sim = Sim::new(&w, "r");
        let a = sim.step(vec![start("loop", 1)]);
        assert_eq!(a.status, RunStatus::ContinuedAsNew);
        assert_eq!(
            a.commands,
            vec![Command::ContinueAsNew {
                workflow: "loop".into(),
                input: json!(2)
            }]
        );
    }
}
