//! # A basic remote step
//!
//! The step is declared once, as a `const`: the workflow calls it with `ctx.remote`, a worker
//! serves it with `Worker::handle`. In AWS the engine Lambda hosts [`workflows`]
//! (`cairn_lambda::serve_engine(workflows())`) and a worker Lambda on the
//! `<prefix>-tasks-images_2Eresize` queue runs [`worker`] (`cairn_lambda::serve_worker(worker())`);
//! `cairn scaffold step images.resize` adds that queue and function to `template.yaml`.

use cairn::contract::StepError;
use cairn::worker::Worker;
use cairn::workflow::{RemoteStep, WorkflowContext, WorkflowError, Workflows};
use serde::{Deserialize, Serialize};

/// What to resize.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resize {
    /// Source image.
    pub url: String,
    /// Target width, pixels.
    pub width: u32,
}

/// The step: served by the `images.resize` worker.
pub const RESIZE: RemoteStep<Resize, String> = RemoteStep::new("images.resize");

/// The workflow: one remote call, its output returned.
pub async fn thumbnail(ctx: WorkflowContext, url: String) -> Result<String, WorkflowError> {
    ctx.remote(&RESIZE, Resize { url, width: 128 }).await
}

/// The workflows the engine hosts.
pub fn workflows() -> Workflows {
    let mut workflows = Workflows::new();
    workflows.register("thumbnail", thumbnail);
    workflows
}

/// The step handler the worker runs. `task.step_id` is the idempotency key.
pub fn worker() -> Worker {
    Worker::new().handle(&RESIZE, |resize: Resize, _task| async move {
        if resize.url.is_empty() {
            return Err(StepError::terminal("no image url").with_code("bad_input"));
        }
        Ok(format!("{}?w={}", resize.url, resize.width))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use cairn::testing::{TestEnv, TestEnvError};

    use super::*;

    #[tokio::test]
    async fn the_worker_resizes_and_the_workflow_returns_it() {
        let mut env = TestEnv::new(workflows()).worker(worker());
        let out: String = env.execute("thumbnail", "s3://b/cat.png").await.unwrap();
        assert_eq!(out, "s3://b/cat.png?w=128");
        let call = &env.calls_to("images.resize")[0];
        assert_eq!(call.input::<Resize>().unwrap().width, 128);
        assert_eq!(call.task.step_id.as_str(), "run-1:1");
    }

    #[tokio::test]
    async fn a_terminal_step_error_fails_the_run() {
        let mut env = TestEnv::new(workflows()).worker(worker());
        let err = env.execute::<String>("thumbnail", "").await.unwrap_err();
        assert!(matches!(err, TestEnvError::RunFailed { .. }), "{err}");
    }
}
