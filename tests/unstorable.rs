//! A workflow that records something the store cannot hold (nested past its 100-level write
//! limit) fails its run with the reason (code `unstorable`, shown by `cairn runs show`),
//! instead of its record retrying into the DLQ; its batch-mates are unaffected.

#![allow(clippy::unwrap_used)]

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use cairn::contract::{encode, ControlMessage, StepError};
use cairn::store::CheckpointStore;
use cairn::workflow::{EventKind, RunStatus, WorkflowContext, WorkflowError, Workflows};
use cairn_tests::TestEnv;
use lambda_runtime::{Context, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};

/// `levels` nested arrays, built in code (no decoder ever sees it).
fn deep(levels: usize) -> Value {
    let text = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    let mut de = serde_json::Deserializer::from_str(&text);
    de.disable_recursion_limit();
    Value::deserialize(&mut de).unwrap()
}

fn workflows() -> Workflows {
    let mut w = Workflows::new();
    // Its own output is too deep.
    w.register(
        "deep-output",
        |_ctx: WorkflowContext, _: Value| async move { Ok::<_, WorkflowError>(deep(120)) },
    );
    // An inline step records a too-deep result after a value that can be stored.
    w.register("deep-step", |ctx: WorkflowContext, _: Value| async move {
        let id = ctx.uuid();
        let wrapped: Value = ctx
            .step("wrap", || async { Ok::<_, StepError>(deep(120)) })
            .await?;
        Ok(json!({"id": id.to_string(), "wrapped": wrapped}))
    });
    w.register("fine", |_ctx: WorkflowContext, input: Value| async move {
        Ok::<_, WorkflowError>(input)
    });
    w
}

fn start(run_id: &str, workflow: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(format!("m-{run_id}"));
    m.body = Some(encode(&ControlMessage::StartRun {
        run_id: run_id.parse().unwrap(),
        workflow: workflow.into(),
        input: json!({"n": 1}),
        parent: None,
    }));
    m.event_source = Some("aws:sqs".into());
    m
}

#[tokio::test]
async fn a_run_that_records_something_too_deep_fails_with_the_reason_and_its_batch_goes_on() {
    let env = TestEnv::new("unstorable", false).await;
    let engine = env.engine(workflows());
    let mut event = SqsEvent::default();
    event.records = vec![
        start("r-deep-output", "deep-output"),
        start("r-fine", "fine"),
        start("r-deep-step", "deep-step"),
    ];
    let response = engine
        .handle(LambdaEvent::new(event, Context::default()))
        .await
        .unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "no record goes back to the queue (then the DLQ): {:?}",
        response.batch_item_failures
    );
    assert!(cairn_lambda::metrics::counted(cairn_lambda::metrics::FAILED_RUNS, "unstorable") >= 2);
    let fine = engine.store().load("r-fine").await.unwrap().unwrap();
    assert_eq!(fine.run.status, RunStatus::Completed);
    assert_eq!(fine.run.output, Some(json!({"n": 1})));
    for run_id in ["r-deep-output", "r-deep-step"] {
        let loaded = engine.store().load(run_id).await.unwrap().unwrap();
        assert_eq!(loaded.run.status, RunStatus::Failed, "{run_id}");
        let error = loaded.run.error.clone().unwrap();
        assert_eq!(error.code.as_deref(), Some("unstorable"), "{error:?}");
        assert!(error.message.contains("100"), "names the limit: {error:?}");
        // What `cairn runs show` prints.
        let text = cairn_inspect::render_text(&loaded);
        assert!(text.contains("unstorable"), "{text}");
        assert!(matches!(
            loaded.history.last().map(|e| &e.kind),
            Some(EventKind::RunFailed { .. })
        ));
    }
    // The events before the one that could not be stored are kept.
    let step = engine.store().load("r-deep-step").await.unwrap().unwrap();
    assert!(step
        .history
        .iter()
        .any(|e| matches!(e.kind, EventKind::ValueRecorded { .. })));
}
