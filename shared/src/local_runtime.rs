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

/// The queues to map: results queue → engine, tasks queue per group → worker.
#[derive(Debug, Clone)]
pub struct Queues {
    /// The results queue URL.
    pub results: String,
    /// Tasks queue URLs by group.
    pub tasks: BTreeMap<String, String>,
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
