//! The bad-input corpus (`tests/corpus/`, one file per kind, written by its `generate.py`)
//! against the local stack: every body goes through SQS over HTTP, in batches with good
//! messages, into the engine and worker handlers as real `SqsEvent`s. Each kind must end as
//! its file says: dead-lettered with its reason logged (a batch item failure), ignored with
//! its reason logged and the run unchanged, applied, or answered with a failed result; and
//! the good batch-mates must complete.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use cairn::contract::{
    decode_results_message, encode, ControlMessage, ResultsMessage, StepError, StepResult,
    StepStatus,
};
use cairn::store::{BlobStore, CheckpointStore};
use cairn::workflow::{RemoteStep, RunStatus, WorkflowContext, WorkflowError, Workflows};
use cairn_devstack::event_source::EventSourceMapping;
use cairn_lambda::worker::{SqsWorker, Worker};
use cairn_tests::TestEnv;
use lambda_runtime::LambdaEvent;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The step the target workflow dispatches (its queue is provisioned by the template).
const TARGET_STEP: RemoteStep<Value, Value> = RemoteStep::new("notifications.send-email");
const COUNT: RemoteStep<u64, u64> = RemoteStep::new("corpus.count");

/// Sleeps 3,600 s (seq 1, timer "1"), dispatches a remote step (seq 2), waits for "go" (seq 3).
async fn target(ctx: WorkflowContext, _: Value) -> Result<Value, WorkflowError> {
    let nap = ctx.sleep(Duration::from_secs(3600));
    let out = ctx.remote(&TARGET_STEP, json!({"to": "x"})).await?;
    let signal: Value = ctx.wait_for_signal("go").await?;
    nap.await?;
    Ok(json!({"out": out, "signal": signal}))
}

async fn echo(_ctx: WorkflowContext, input: Value) -> Result<Value, WorkflowError> {
    Ok(input)
}

struct Entry {
    name: String,
    body: String,
    expect: String,
    reason: Option<String>,
    run: Option<String>,
    norun: Option<String>,
}

fn load(dir: &str) -> Vec<Entry> {
    let path = cairn_tests::repo_root().join("tests/corpus").join(dir);
    let mut entries: Vec<Entry> = std::fs::read_dir(&path)
        .unwrap()
        .map(|f| {
            let path = f.unwrap().path();
            let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Entry {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                body: file["body"].as_str().unwrap().to_owned(),
                expect: file["expect"].as_str().unwrap().to_owned(),
                reason: file["reason"].as_str().map(str::to_owned),
                run: None,
                norun: None,
            }
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

/// Everything logged at INFO and above, for checking the reasons.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    fn lines_with(&self, needles: &[&str]) -> bool {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().any(|l| needles.iter().all(|n| l.contains(n)))
    }

    /// The lines that mention `needle`, to show what happened instead.
    fn about(&self, needle: &str) -> String {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
        lines.join("\n    ")
    }
}

fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
        logs
    })
}

fn short() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

fn entry(body: &str, name: &str) -> SendMessageBatchRequestEntry {
    SendMessageBatchRequestEntry::builder()
        .id(short())
        .message_body(body)
        .message_attributes(
            "corpus",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(name)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// Sends `bodies` (name, body) to `url`, nine with one good message per batch of ten.
async fn send_all(env: &TestEnv, url: &str, bodies: Vec<(String, String)>) {
    for chunk in bodies.chunks(10) {
        let entries: Vec<_> = chunk.iter().map(|(n, b)| entry(b, n)).collect();
        env.clients
            .sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
}

/// Polls `url` until every named message was handled once; returns, per name, the message id
/// and whether the handler reported it failed, and the names of each batch.
async fn drain<H, Fut>(
    env: &TestEnv,
    url: &str,
    expected: usize,
    handler: H,
) -> (HashMap<String, (String, bool)>, Vec<Vec<String>>)
where
    H: Fn(LambdaEvent<SqsEvent>) -> Fut,
    Fut: std::future::Future<
        Output = Result<aws_lambda_events::event::sqs::SqsBatchResponse, lambda_runtime::Error>,
    >,
{
    let mapping = EventSourceMapping::new(env.clients.sqs.clone(), url, env.mapping())
        .await
        .unwrap();
    let seen: Mutex<HashMap<String, (String, bool)>> = Mutex::new(HashMap::new());
    let batches = Mutex::new(Vec::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen.lock().unwrap().len() < expected && std::time::Instant::now() < deadline {
        mapping
            .poll_once(|event: LambdaEvent<SqsEvent>| {
                let named: Vec<(String, String)> = event
                    .payload
                    .records
                    .iter()
                    .filter_map(|r| {
                        // Messages the engine sends itself (timer hops) carry no name.
                        let name = r.message_attributes.get("corpus")?.string_value.clone()?;
                        Some((name, r.message_id.clone().unwrap()))
                    })
                    .collect();
                let (seen, batches, handler) = (&seen, &batches, &handler);
                async move {
                    let response = handler(event).await?;
                    let failed: HashSet<&str> = response
                        .batch_item_failures
                        .iter()
                        .map(|f| f.item_identifier.as_str())
                        .collect();
                    let mut seen = seen.lock().unwrap();
                    let mut batch = Vec::new();
                    for (name, id) in named {
                        let failed = failed.contains(id.as_str());
                        batch.push(name.clone());
                        seen.entry(name).or_insert((id, failed));
                    }
                    batches.lock().unwrap().push(batch);
                    Ok(response)
                }
            })
            .await
            .unwrap();
    }
    (seen.into_inner().unwrap(), batches.into_inner().unwrap())
}

#[tokio::test]
async fn every_bad_input_kind_ends_as_its_corpus_file_says() {
    let logs = logs();
    let env = TestEnv::new("corpus", false).await;
    let mut workflows = Workflows::new();
    workflows.register("corpus-target", target);
    workflows.register("corpus-echo", echo);
    let engine = env.engine(workflows);
    let store = env.clients.store(&env.config);
    let blobs = env.clients.blobs(&env.config);
    let start = |run: &str, workflow: &str| {
        ResultsMessage::Control(ControlMessage::StartRun {
            run_id: run.parse().unwrap(),
            workflow: workflow.into(),
            input: json!(1),
            parent: None,
        })
    };
    let finished = format!("fin-{}", short());
    engine
        .apply(start(&finished, "corpus-echo"), "setup")
        .await
        .unwrap();

    // --- results queue ---------------------------------------------------------------------
    let mut entries = load("results");
    assert!(entries.len() >= 100, "{} results kinds", entries.len());
    for (i, e) in entries.iter_mut().enumerate() {
        if e.body.contains("$RUN") || e.body.contains("$VICTIM") {
            e.run = Some(format!("c{i}-{}", short()));
        }
        e.norun = Some(format!("none{i}-{}", short()));
    }
    for chunk in entries.chunks(10) {
        futures::future::join_all(chunk.iter().filter_map(|e| e.run.as_ref()).map(|run| {
            let engine = &engine;
            async move { engine.apply(start(run, "corpus-target"), "setup").await }
        }))
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
    }
    let mut before = HashMap::new();
    let mut bodies = Vec::new();
    let mut good = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        let run = e.run.clone().unwrap_or_default();
        let mut body = e.body.replace("$NORUN", e.norun.as_deref().unwrap());
        if body.contains("$VICTIM") {
            let victim = encode(&ControlMessage::CancelRun {
                run_id: run.parse().unwrap(),
                reason: Some("victim".into()),
            });
            let blob = blobs.put(victim.as_bytes()).await.unwrap();
            body = body
                .replace("$VICTIM_BLOB", &blob)
                .replace("$VICTIM_BYTES", &victim.len().to_string())
                .replace(
                    "$VICTIM_SHA",
                    &format!("{:x}", Sha256::digest(victim.as_bytes())),
                );
        }
        e.body = body.replace("$RUN", &run).replace("$FIN", &finished);
        if let Some(run) = &e.run {
            let loaded = store.load(run).await.unwrap().unwrap();
            before.insert(run.clone(), loaded.history.len());
        }
        bodies.push((e.name.clone(), e.body.clone()));
        if i % 9 == 8 {
            // A good batch-mate: a run that completes at once.
            let run = format!("good{i}-{}", short());
            bodies.push((format!("good:{run}"), encode(&start_control(&run))));
            good.push(run);
        }
    }
    let expected = bodies.len();
    send_all(&env, &env.resources.results_queue_url, bodies).await;
    let (seen, batches) = drain(&env, &env.resources.results_queue_url, expected, |event| {
        engine.handle(event)
    })
    .await;
    assert_eq!(seen.len(), expected, "every message was handled");
    let mixed = batches
        .iter()
        .filter(|b| b.iter().any(|n| n.starts_with("good:")) && b.len() > 1)
        .count();
    assert!(mixed > 0, "good messages shared batches with bad ones");

    let mut wrong = Vec::new();
    for e in &entries {
        let (id, failed) = &seen[&e.name];
        let history = match &e.run {
            Some(run) => Some(store.load(run).await.unwrap().unwrap().history.len()),
            None => None,
        };
        let unchanged = match (&e.run, history) {
            (Some(run), Some(len)) => len == before[run],
            _ => true,
        };
        let reason = e.reason.as_deref().unwrap_or("");
        let verdict = match e.expect.as_str() {
            "dlq" => *failed && logs.lines_with(&[id, reason]),
            "ignored" => {
                let who = e.run.as_deref().unwrap_or(e.norun.as_deref().unwrap());
                let who = if e.body.contains(&finished) {
                    finished.as_str()
                } else {
                    who
                };
                !*failed && unchanged && (e.reason.is_none() || logs.lines_with(&[who, reason]))
            }
            "applied" => !*failed && !unchanged,
            other => panic!("{}: unknown expectation {other}", e.name),
        };
        if !verdict {
            wrong.push(format!(
                "{} (expected {} {reason:?}; failed={failed}, history {:?} -> {:?})\n    {}",
                e.name,
                e.expect,
                e.run.as_ref().map(|r| before[r]),
                history,
                logs.about(id) + &logs.about("surrogate")
            ));
        }
    }
    if let Ok(path) = std::env::var("CAIRN_CORPUS_LOG") {
        std::fs::write(path, &*logs.0.lock().unwrap()).unwrap();
    }
    assert!(
        wrong.is_empty(),
        "kinds that ended otherwise:\n{}",
        wrong.join("\n")
    );
    for run in &good {
        let loaded = store.load(run).await.unwrap().unwrap();
        assert_eq!(
            loaded.run.status,
            RunStatus::Completed,
            "good batch-mate {run}"
        );
    }
    // Defect 1: the run that was sent a 126-deep output is not bricked: it reads back and
    // still takes its real result.
    let deep = entries
        .iter()
        .find(|e| e.name == "output-126-deep")
        .unwrap();
    let run = deep.run.clone().unwrap();
    let result = format!(
        r#"{{"runId":"{run}","seq":2,"stepId":"{run}:2","status":"completed","output":1}}"#
    );
    let message = decode_results_message(&result).unwrap();
    engine.apply(message, "after-deep").await.unwrap();
    let loaded = store.load(&run).await.unwrap().unwrap();
    assert!(
        loaded.history[before[&run]..].iter().any(|e| matches!(
            e.kind,
            cairn::workflow::EventKind::StepCompleted { seq: 2, .. }
        )),
        "the real result landed"
    );
    // Defect 4: the forged "due now" did not end the 3,600 s sleep.
    let forged = entries
        .iter()
        .find(|e| e.name == "timer-forged-due")
        .unwrap();
    let loaded = store
        .load(forged.run.as_ref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.run.status, RunStatus::Running);

    // --- tasks queue ----------------------------------------------------------------------
    let mut tasks = load("tasks");
    let mut bodies = Vec::new();
    let mut good_tasks = Vec::new();
    for (i, t) in tasks.iter_mut().enumerate() {
        let run = format!("t{i}-{}", short());
        t.body = t.body.replace("$TRUN", &run);
        t.run = Some(run);
        bodies.push((t.name.clone(), t.body.clone()));
        if i % 9 == 8 {
            let run = format!("goodt{i}-{}", short());
            let task = json!({"runId": run, "seq": 1, "name": "corpus.echo", "stepId": format!("{run}:1"), "group": "corpus.echo", "input": i, "attempt": 1});
            bodies.push((format!("good:{run}"), task.to_string()));
            good_tasks.push(run);
        }
    }
    let worker = Worker::new()
        .handle_json("corpus.echo", |input, _| async move { Ok(input) })
        .handle(&COUNT, |n: u64, _| async move { Ok(n + 1) })
        .handle_json("corpus.fail", |_, _| async move {
            Err::<Value, _>(StepError::terminal("corpus failure"))
        })
        .handle_json("corpus.panic", |_, _| async move {
            if true {
                panic!("corpus panic");
            }
            Ok(Value::Null)
        });
    let transport = env.clients.transport(&env.config);
    let url = env.resources.task_queue_urls["payments.charge-card"].clone();
    let expected = bodies.len();
    send_all(&env, &url, bodies).await;
    let (seen, _) = drain(&env, &url, expected, |event| {
        worker.run(&transport, &blobs, event)
    })
    .await;
    assert_eq!(seen.len(), expected);
    // The results the worker sent, by run.
    let mut results: BTreeMap<String, StepResult> = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Every run that should answer, by id: waiting for a count instead could stop early when
    // a result it did not expect arrives first.
    let wanted: Vec<String> = tasks
        .iter()
        .filter(|t| t.expect != "dlq")
        .filter_map(|t| t.run.clone())
        .chain(good_tasks.iter().cloned())
        .collect();
    let answered = |results: &BTreeMap<String, StepResult>, run: &str| {
        results
            .keys()
            .any(|id| id == run || id.starts_with(&format!("{run}~")))
    };
    while !wanted.iter().all(|run| answered(&results, run)) && std::time::Instant::now() < deadline
    {
        for body in env.receive_bodies(&env.resources.results_queue_url).await {
            if let Ok(ResultsMessage::Step(result)) = decode_results_message(&body) {
                results.insert(result.run_id.to_string(), result);
            }
        }
    }
    let mut wrong = Vec::new();
    for t in &tasks {
        let (id, failed) = &seen[&t.name];
        // Keyed by the run id, which may carry derived suffixes after the entry's own.
        let run = t.run.as_deref().unwrap();
        let result = results
            .iter()
            .find(|(id, _)| id.as_str() == run || id.starts_with(&format!("{run}~")))
            .map(|(_, r)| r);
        let reason = t.reason.as_deref().unwrap_or("");
        let verdict = match t.expect.as_str() {
            "dlq" => *failed && result.is_none() && logs.lines_with(&[id, reason]),
            "failed_result" => {
                !*failed
                    && result.is_some_and(|r| {
                        r.status == StepStatus::Failed
                            && r.error.as_ref().is_some_and(|e| e.message.contains(reason))
                    })
            }
            "completed_result" => {
                !*failed && result.is_some_and(|r| r.status == StepStatus::Completed)
            }
            other => panic!("{}: unknown expectation {other}", t.name),
        };
        if !verdict {
            wrong.push(format!(
                "{} (expected {} {reason:?}; failed={failed}, result {:?})\n    {}",
                t.name,
                t.expect,
                result,
                logs.about(id)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "task kinds that ended otherwise:\n{}",
        wrong.join("\n")
    );
    for run in &good_tasks {
        assert_eq!(
            results[run].status,
            StepStatus::Completed,
            "good batch-mate {run}"
        );
    }
}

fn start_control(run: &str) -> ControlMessage {
    ControlMessage::StartRun {
        run_id: run.parse().unwrap(),
        workflow: "corpus-echo".into(),
        input: json!(run),
        parent: None,
    }
}
