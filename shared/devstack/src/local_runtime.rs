//! Runs the engine and workers on the local stack, each behind a local event source mapping,
//! as Lambda would in AWS. Used by the main job (`cairn-local`) and the integration tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use tokio::task::JoinHandle;

use crate::event_source::{EventSourceMapping, MappingError, MappingOptions};
use cairn::store::{BlobStore, CheckpointStore};
use cairn::transport::ResultSender;
use cairn_lambda::engine::{Engine, EngineTransport};
use cairn_lambda::worker::{SqsWorker, Worker};

/// The queues to map: results queue → engine, tasks queue per group → worker.
#[derive(Debug, Clone)]
pub struct Queues {
    /// The results queue URL.
    pub results: String,
    /// The standard timers queue beside a FIFO results queue, if any.
    pub timers: Option<String>,
    /// The standard queue peer workers answer on beside a FIFO results queue, if any.
    pub peer_results: Option<String>,
    /// Tasks queue URLs by group.
    pub tasks: BTreeMap<String, String>,
}

impl From<&crate::local_stack::StackResources> for Queues {
    fn from(resources: &crate::local_stack::StackResources) -> Self {
        Self {
            results: resources.results_queue_url.clone(),
            timers: resources.timer_queue_url.clone(),
            peer_results: resources.peer_results_queue_url.clone(),
            tasks: resources.task_queue_urls.clone(),
        }
    }
}

/// Background pollers, one per queue; stopped on drop.
#[derive(Debug, Default)]
pub struct LocalRuntime {
    pollers: Vec<JoinHandle<()>>,
}

/// A Lambda-shaped SQS handler.
pub trait SqsHandler: Send + Sync + 'static {
    /// Handles one batch.
    fn call(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> impl Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>> + Send;
}

impl<F, Fut> SqsHandler for F
where
    F: Fn(LambdaEvent<SqsEvent>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>> + Send,
{
    fn call(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> impl Future<Output = Result<SqsBatchResponse, lambda_runtime::Error>> + Send {
        self(event)
    }
}

impl LocalRuntime {
    /// No pollers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `queue_url` to `handler`: polls until the runtime is dropped.
    pub async fn map<H: SqsHandler>(
        &mut self,
        sqs: &aws_sdk_sqs::Client,
        queue_url: &str,
        options: MappingOptions,
        handler: Arc<H>,
    ) -> Result<(), MappingError> {
        let mapping = EventSourceMapping::new(sqs.clone(), queue_url, options).await?;
        self.pollers.push(tokio::spawn(async move {
            loop {
                let handler = handler.clone();
                match mapping
                    .poll_once(|event| async move { handler.call(event).await })
                    .await
                {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "poll failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }));
        Ok(())
    }

    /// What Lambda does in AWS: `engine` behind the results (timers, peer results) queues, `worker`
    /// behind every tasks queue, sending its results through `results`.
    pub async fn serve<S, T, B, R, W>(
        sqs: &aws_sdk_sqs::Client,
        queues: &Queues,
        options: MappingOptions,
        engine: Arc<Engine<S, T, B>>,
        worker: Arc<Worker>,
        results: Arc<R>,
        blobs: Arc<W>,
    ) -> Result<Self, MappingError>
    where
        S: CheckpointStore + 'static,
        T: EngineTransport + 'static,
        B: BlobStore + 'static,
        R: ResultSender + 'static,
        W: BlobStore + 'static,
    {
        let mut runtime = Self::new();
        let engine_queues = std::iter::once(&queues.results)
            .chain(queues.timers.as_ref())
            .chain(queues.peer_results.as_ref());
        for url in engine_queues {
            let engine = engine.clone();
            let handler = Arc::new(move |event| {
                let engine = engine.clone();
                async move { engine.handle(event).await }
            });
            runtime.map(sqs, url, options.clone(), handler).await?;
        }
        for url in queues.tasks.values() {
            let (worker, results, blobs) = (worker.clone(), results.clone(), blobs.clone());
            let handler = Arc::new(move |event| {
                let (worker, results, blobs) = (worker.clone(), results.clone(), blobs.clone());
                async move { worker.run(results.as_ref(), blobs.as_ref(), event).await }
            });
            runtime.map(sqs, url, options.clone(), handler).await?;
        }
        Ok(runtime)
    }

    /// Fires the due schedules of `firing`'s group every `tick`, until the runtime is dropped
    /// (what EventBridge Scheduler does in AWS).
    pub fn fire_schedules(&mut self, firing: crate::schedules::ScheduleFiring, tick: Duration) {
        self.pollers.push(tokio::spawn(firing.run(tick)));
    }

    /// Stops every poller.
    pub fn stop(&mut self) {
        for poller in self.pollers.drain(..) {
            poller.abort();
        }
    }
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        self.stop();
    }
}
