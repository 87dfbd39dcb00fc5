//! [`TestEnv`]: workflows in process on a virtual clock, remote steps served by handlers or mocks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

mod drive;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::contract::{RemoteTask, RunId, StepError, StepStatus};
use crate::worker::{TaskContext, Worker};
use crate::workflow::{
    activate, ActivationRequest, Command, EngineError, EventKind, HistoryEvent, Incoming,
    RunStatus, TimerId, Workflows,
};

/// Where the virtual clock starts: 2026-01-01T00:00:00Z, epoch ms.
pub const DEFAULT_START_MS: u64 = 1_767_225_600_000;

/// How many timers one [`TestEnv::run_to_end`] may fire before giving up (a workflow that
/// sleeps in an endless loop would otherwise never return).
pub const MAX_TIMER_FIRINGS: usize = 100_000;

/// Why a [`TestEnv`] call could not do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TestEnvError {
    /// An activation failed the way it would fail in the engine Lambda (non-determinism,
    /// a panic in workflow code, an unknown workflow...).
    #[error("activation of run {run_id} failed: {error}")]
    Engine {
        /// The run.
        run_id: String,
        /// The engine's error.
        error: EngineError,
    },
    /// No run with this id was started in this environment.
    #[error("no run {0} in this test environment")]
    UnknownRun(String),
    /// A run with this id already exists.
    #[error("run {0} already exists in this test environment")]
    DuplicateRun(String),
    /// The id is not one a caller may choose (see `cairn::contract::RunId::caller`).
    #[error(transparent)]
    InvalidRunId(#[from] crate::contract::InvalidId),
    /// The run cannot progress: it waits for something only the test can send (a signal),
    /// and no timer is left to skip to.
    #[error("run {run_id} is blocked ({waiting}) and no timer is left to fire")]
    Blocked {
        /// The run.
        run_id: String,
        /// What it waits for, as far as the history tells.
        waiting: String,
    },
    /// More than [`MAX_TIMER_FIRINGS`] timers fired without the run finishing.
    #[error("run {0} did not finish after {MAX_TIMER_FIRINGS} timers")]
    NeverEnds(String),
    /// The run ended failed or cancelled.
    #[error("run {run_id} ended {status}: {error}")]
    RunFailed {
        /// The run (the last of its continue-as-new chain).
        run_id: String,
        /// `failed` or `cancelled`.
        status: RunStatus,
        /// Why.
        error: Box<StepError>,
    },
    /// The output does not deserialize into the requested type.
    #[error("output of run {run_id} does not match the requested type: {message}")]
    Output {
        /// The run.
        run_id: String,
        /// The serde error.
        message: String,
    },
    /// Saving a history failed.
    #[error("writing {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        message: String,
    },
}

/// One call of a remote step, as a worker would have received it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCall {
    /// The task exactly as it would travel on the tasks queue.
    pub task: RemoteTask,
    /// Virtual time of the call, epoch ms.
    pub at_ms: u64,
    /// What the handler answered.
    pub outcome: Result<Value, StepError>,
}

impl StepCall {
    /// The step's input, deserialized.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.task.input)
    }
}

/// One run in the environment.
#[derive(Debug, Default)]
struct EnvRun {
    history: Vec<HistoryEvent>,
    status: Option<RunStatus>,
    /// Parent run and the `seq` of its child call.
    parent: Option<(RunId, u64)>,
    /// The next run of its continue-as-new chain.
    continued_as: Option<RunId>,
    /// Items not yet applied.
    inbox: Vec<Incoming>,
}

/// Something due at a virtual time: a durable timer, or an injected signal or cancellation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at_ms: u64,
    /// Insertion order: things due at the same time happen in the order they were set.
    order: u64,
    run_id: RunId,
    what: DueKind,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum DueKind {
    Timer(TimerId),
    /// A task reaching its worker after its queue wait (key in `TestEnv::queued`).
    Task(u64),
    Signal(String, String),
    Cancel(Option<String>),
}

/// [`TestEnv`]: runs workflows in process, on a virtual clock, with remote steps served by
/// handlers or mocks.
///
/// The environment plays every part the deployed system plays, the same way: each activation
/// is the engine's [`activate`], each `DispatchTask` command goes to the step's handler (a
/// [`Worker`], as a worker Lambda would run it), each result, child outcome, signal and
/// cancellation comes back as the engine's [`Incoming`] items, and child runs and
/// continue-as-new chains are runs of their own. Only time is different: durable timers are
/// kept in a queue and the clock jumps to the next one when nothing else is left to do, so a
/// 30-day sleep takes microseconds.
///
/// ```
/// use std::time::Duration;
/// use cairn::contract::StepError;
/// use cairn::testing::TestEnv;
/// use cairn::workflow::{RemoteStep, WorkflowContext, WorkflowError, Workflows};
///
/// const RESIZE: RemoteStep<String, String> = RemoteStep::new("images.resize");
///
/// async fn thumbnail(ctx: WorkflowContext, url: String) -> Result<String, WorkflowError> {
///     ctx.sleep(Duration::from_secs(30 * 24 * 3600)).await?; // thirty days
///     ctx.remote(&RESIZE, url).await
/// }
///
/// # futures::executor::block_on(async {
/// let mut workflows = Workflows::new();
/// workflows.register("thumbnail", thumbnail);
/// let mut env = TestEnv::new(workflows)
///     .mock(&RESIZE, |url: String| Ok::<_, StepError>(format!("{url}?w=128")));
/// let out: String = env.execute("thumbnail", "s3://a.png").await.unwrap();
/// assert_eq!(out, "s3://a.png?w=128");
/// assert_eq!(env.elapsed(), Duration::from_secs(30 * 24 * 3600));
/// assert_eq!(env.calls_to("images.resize").len(), 1);
/// # });
/// ```
///
/// Signals and cancellation are injected either now ([`TestEnv::signal`], [`TestEnv::cancel`])
/// or at a chosen virtual time ([`TestEnv::signal_after`], [`TestEnv::cancel_after`]), and
/// [`TestEnv::advance`] moves the clock by a given amount, firing what falls due on the way.
/// The final history is saved with [`TestEnv::save_history`] for replay tests (load it with
/// [`load_history`](super::load_history), check it with [`replay`](super::replay)).
#[derive(Debug)]
pub struct TestEnv {
    workflows: Workflows,
    worker: Worker,
    runs: BTreeMap<RunId, EnvRun>,
    due: BTreeSet<Due>,
    tasks: VecDeque<RemoteTask>,
    /// Tasks still waiting in their queue ([`TestEnv::task_queue_wait`]), by due key.
    queued: BTreeMap<u64, RemoteTask>,
    queue_wait_ms: u64,
    calls: Vec<StepCall>,
    start_ms: u64,
    now_ms: u64,
    order: u64,
    next_id: u64,
}

impl TestEnv {
    /// An environment hosting `workflows`, with no step handlers (a remote step without a
    /// handler fails terminally with code `unknown_step`, as on a worker without it), the
    /// clock at [`DEFAULT_START_MS`].
    pub fn new(workflows: Workflows) -> Self {
        Self {
            workflows,
            worker: Worker::new(),
            runs: BTreeMap::new(),
            due: BTreeSet::new(),
            tasks: VecDeque::new(),
            queued: BTreeMap::new(),
            queue_wait_ms: 0,
            calls: Vec::new(),
            start_ms: DEFAULT_START_MS,
            now_ms: DEFAULT_START_MS,
            order: 0,
            next_id: 0,
        }
    }

    /// Serves remote steps with `worker`'s handlers (the ones the worker Lambdas run).
    /// Handlers and mocks added afterwards replace the worker's for their step.
    pub fn worker(mut self, worker: Worker) -> Self {
        self.worker = worker;
        self
    }

    /// Serves `step` with an async handler, as [`Worker::handle`] does.
    pub fn handle<I, O, F, Fut>(mut self, step: &crate::workflow::RemoteStep<I, O>, f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, StepError>> + Send + 'static,
    {
        self.worker = self.worker.handle(step, f);
        self
    }

    /// Serves `step` with a plain function of its input: the quickest mock.
    pub fn mock<I, O, F>(self, step: &crate::workflow::RemoteStep<I, O>, f: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I) -> Result<O, StepError> + Send + Sync + 'static,
    {
        self.handle(step, move |input, _task| std::future::ready(f(input)))
    }

    /// Replaces the hosted workflows, as a deploy does: runs in flight continue under the new
    /// code at their next activation (test a [`patched`](crate::workflow::WorkflowContext::patched)
    /// change this way).
    pub fn deploy(&mut self, workflows: Workflows) {
        self.workflows = workflows;
    }

    /// Every task waits `wait` (virtual time) in its queue before a handler starts it, as
    /// under a tasks-queue backlog: a step's schedule-to-start timeout refuses attempts that
    /// waited longer, and its start-to-close timeout does not count the wait. (Handlers run
    /// to their end: a virtual clock cannot time them.)
    pub fn task_queue_wait(mut self, wait: Duration) -> Self {
        self.queue_wait_ms = duration_ms(wait);
        self
    }

    /// Starts the clock at `start_ms` (epoch ms). Call before starting runs.
    pub fn start_at(mut self, start_ms: u64) -> Self {
        self.start_ms = start_ms;
        self.now_ms = start_ms;
        self
    }

    /// The virtual clock, epoch ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Virtual time passed since the environment was created.
    pub fn elapsed(&self) -> Duration {
        Duration::from_millis(self.now_ms - self.start_ms)
    }

    /// Starts `workflow` with `input` as a new run (`run-1`, `run-2`, ...) and runs it until
    /// it waits for time or for the outside. Returns the run id.
    pub async fn start(
        &mut self,
        workflow: &str,
        input: impl Serialize,
    ) -> Result<String, TestEnvError> {
        self.next_id += 1;
        let run_id = format!("run-{}", self.next_id);
        self.start_with_id(&run_id, workflow, input).await?;
        Ok(run_id)
    }

    /// Starts `workflow` as run `run_id` and runs it until it waits for time or the outside.
    pub async fn start_with_id(
        &mut self,
        run_id: &str,
        workflow: &str,
        input: impl Serialize,
    ) -> Result<(), TestEnvError> {
        let id = RunId::caller(run_id)?;
        if self.runs.contains_key(run_id) {
            return Err(TestEnvError::DuplicateRun(run_id.to_owned()));
        }
        let input = serde_json::to_value(input).map_err(|e| TestEnvError::Output {
            run_id: run_id.to_owned(),
            message: format!("input does not serialize: {e}"),
        })?;
        self.add_run(id, workflow, input, None);
        self.settle().await
    }

    /// Starts `workflow` and runs it to its end, skipping time; returns its output.
    pub async fn execute<O: DeserializeOwned>(
        &mut self,
        workflow: &str,
        input: impl Serialize,
    ) -> Result<O, TestEnvError> {
        let run_id = self.start(workflow, input).await?;
        self.run_to_end(&run_id).await
    }

    /// Runs until `run_id` (or the last run of its continue-as-new chain) finishes, firing
    /// timers and injected signals in time order, and returns its output. A run that failed
    /// or was cancelled is [`TestEnvError::RunFailed`]; one that waits for a signal nobody
    /// scheduled is [`TestEnvError::Blocked`].
    pub async fn run_to_end<O: DeserializeOwned>(
        &mut self,
        run_id: &str,
    ) -> Result<O, TestEnvError> {
        self.settle().await?;
        let mut fired = 0;
        loop {
            let last = self.last_of_chain(run_id)?;
            if self.runs[last.as_str()]
                .status
                .is_some_and(RunStatus::is_terminal)
            {
                return self.output(&last);
            }
            let Some(due) = self.due.pop_first() else {
                return Err(TestEnvError::Blocked {
                    waiting: waiting_for(&self.runs[last.as_str()].history),
                    run_id: last,
                });
            };
            fired += 1;
            if fired > MAX_TIMER_FIRINGS {
                return Err(TestEnvError::NeverEnds(last));
            }
            self.fire(due);
            self.settle().await?;
        }
    }

    /// Moves the clock forward by `by`, firing the timers and injected items that fall due on
    /// the way, in time order.
    pub async fn advance(&mut self, by: Duration) -> Result<(), TestEnvError> {
        let until = self.now_ms.saturating_add(duration_ms(by));
        self.settle().await?;
        while self.due.first().is_some_and(|d| d.at_ms <= until) {
            if let Some(due) = self.due.pop_first() {
                self.fire(due);
                self.settle().await?;
            }
        }
        self.now_ms = self.now_ms.max(until);
        Ok(())
    }

    /// Sends signal `name` to `run_id` now and runs until it waits again.
    pub async fn signal(
        &mut self,
        run_id: &str,
        name: &str,
        payload: impl Serialize,
    ) -> Result<(), TestEnvError> {
        let run = self.run_mut(run_id)?;
        run.inbox.push(Incoming::Signal {
            name: name.to_owned(),
            payload: serde_json::to_value(payload).unwrap_or_default(),
            signal_id: None,
        });
        self.settle().await
    }

    /// Cancels `run_id` now and runs until it waits again (or ends).
    pub async fn cancel(&mut self, run_id: &str, reason: Option<&str>) -> Result<(), TestEnvError> {
        let run = self.run_mut(run_id)?;
        run.inbox.push(Incoming::Cancel {
            reason: reason.map(str::to_owned),
        });
        self.settle().await
    }

    /// Schedules signal `name` for `run_id`, `after` from now in virtual time.
    pub fn signal_after(
        &mut self,
        run_id: &str,
        after: Duration,
        name: &str,
        payload: impl Serialize,
    ) -> Result<(), TestEnvError> {
        let run_id = self.key(run_id)?;
        let payload = serde_json::to_string(&payload).unwrap_or_else(|_| "null".into());
        let at_ms = self.now_ms.saturating_add(duration_ms(after));
        self.schedule(at_ms, &run_id, DueKind::Signal(name.to_owned(), payload));
        Ok(())
    }

    /// Schedules a cancellation of `run_id`, `after` from now in virtual time.
    pub fn cancel_after(
        &mut self,
        run_id: &str,
        after: Duration,
        reason: Option<&str>,
    ) -> Result<(), TestEnvError> {
        let run_id = self.key(run_id)?;
        let at_ms = self.now_ms.saturating_add(duration_ms(after));
        self.schedule(at_ms, &run_id, DueKind::Cancel(reason.map(str::to_owned)));
        Ok(())
    }

    /// The run's status (`None` before its first activation).
    pub fn status(&self, run_id: &str) -> Option<RunStatus> {
        self.runs.get(run_id).and_then(|r| r.status)
    }

    /// The run's history so far.
    pub fn history(&self, run_id: &str) -> Option<&[HistoryEvent]> {
        self.runs.get(run_id).map(|r| r.history.as_slice())
    }

    /// The ids of every run (children and continue-as-new runs included), sorted.
    pub fn run_ids(&self) -> impl Iterator<Item = &str> {
        self.runs.keys().map(RunId::as_str)
    }

    /// Every remote step call so far, in call order.
    pub fn calls(&self) -> &[StepCall] {
        &self.calls
    }

    /// The calls of step `name`, in call order.
    pub fn calls_to(&self, name: &str) -> Vec<&StepCall> {
        self.calls.iter().filter(|c| c.task.name == name).collect()
    }

    /// Writes the run's history as pretty JSON (the format of `tests/histories/*.json`, read
    /// back by [`load_history`](super::load_history)).
    pub fn save_history(&self, run_id: &str, path: impl AsRef<Path>) -> Result<(), TestEnvError> {
        let path = path.as_ref();
        let history = self
            .history(run_id)
            .ok_or_else(|| TestEnvError::UnknownRun(run_id.to_owned()))?;
        let io = |message: String| TestEnvError::Io {
            path: path.display().to_string(),
            message,
        };
        let json = serde_json::to_string_pretty(history).map_err(|e| io(e.to_string()))?;
        std::fs::write(path, json + "\n").map_err(|e| io(e.to_string()))
    }
}

/// What a blocked run waits for, read from its history: the signals waited for and not yet
/// received (best effort: for the error message only).
fn waiting_for(history: &[HistoryEvent]) -> String {
    let mut waits: Vec<&str> = Vec::new();
    let mut received: Vec<&str> = Vec::new();
    for event in history {
        match &event.kind {
            EventKind::SignalWaitStarted { name, .. } => waits.push(name),
            EventKind::SignalReceived { name, .. } => received.push(name),
            _ => {}
        }
    }
    for name in received {
        if let Some(i) = waits.iter().position(|w| *w == name) {
            waits.remove(i);
        }
    }
    if waits.is_empty() {
        "nothing the test environment can deliver".to_owned()
    } else {
        format!("waiting for signal(s) {}", waits.join(", "))
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
