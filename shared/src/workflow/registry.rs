//! The registry of workflow functions, by name.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{WorkflowContext, WorkflowError};

/// A workflow run as the engine drives it: JSON in, JSON out.
pub(crate) type WorkflowFuture = Pin<Box<dyn Future<Output = Result<Value, WorkflowError>> + Send>>;
type WorkflowFn = Arc<dyn Fn(WorkflowContext, Value) -> WorkflowFuture + Send + Sync>;

/// The workflows an engine can run, by name. Cheap to clone.
#[derive(Clone, Default)]
pub struct Workflows {
    by_name: BTreeMap<String, WorkflowFn>,
}

impl Workflows {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `f` under `name` (replacing any previous one). The input is deserialized
    /// from the run's JSON input (a mismatch fails the run with code `invalid_input`), the
    /// output serialized into `RunCompleted`.
    pub fn register<I, O, F, Fut>(&mut self, name: &str, f: F) -> &mut Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + 'static,
        F: Fn(WorkflowContext, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, WorkflowError>> + Send + 'static,
    {
        let run: WorkflowFn = Arc::new(move |ctx, input: Value| -> WorkflowFuture {
            match I::deserialize(&input) {
                Ok(input) => {
                    let fut = f(ctx, input);
                    Box::pin(async move {
                        let output = fut.await?;
                        serde_json::to_value(&output).map_err(WorkflowError::from)
                    })
                }
                Err(e) => Box::pin(std::future::ready(Err(WorkflowError::InvalidInput(
                    e.to_string(),
                )))),
            }
        });
        self.by_name.insert(name.to_owned(), run);
        self
    }

    /// Adds every workflow of `other` (replacing same-named ones): one engine hosting the
    /// workflows of several crates.
    pub fn merge(&mut self, other: Workflows) -> &mut Self {
        self.by_name.extend(other.by_name);
        self
    }

    /// Whether `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub(crate) fn start(
        &self,
        name: &str,
        ctx: WorkflowContext,
        input: Value,
    ) -> Option<WorkflowFuture> {
        self.by_name.get(name).map(|f| f(ctx, input))
    }
}

impl fmt::Debug for Workflows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflows")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}
