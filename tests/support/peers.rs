//! The published nestjs-durable packages as processes: the Python and Node workers of
//! `examples/`, and nestjs-durable's own engine (`examples/node-worker/engine.mjs`).
//!
//! They are installed by `scripts/peers` (which `scripts/test` runs). A missing or different
//! install is a test failure, never a skip: these tests are the proof that the contract holds
//! with the real packages.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{endpoint, repo_root};

/// Pinned versions (scripts/requirements-peers.txt, examples/node-worker/package-lock.json).
const PYTHON_PACKAGE: &str = "durable_worker-0.26.1.dist-info";
const NODE_PACKAGES: [(&str, &str); 2] = [
    ("@dudousxd/nestjs-durable-core", "0.62.0"),
    ("@dudousxd/nestjs-durable-transport-sqs", "0.2.0"),
];

/// A nestjs-durable worker implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// PyPI `durable-worker[sqs]`.
    Python,
    /// npm `@dudousxd/nestjs-durable-transport-sqs`.
    Node,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Python => "python",
            Self::Node => "node",
        })
    }
}

fn not_installed(what: &str) -> ! {
    panic!("{what} is not installed: run scripts/peers (scripts/test does)")
}

fn python() -> PathBuf {
    let venv = repo_root().join(".venv/peers");
    let python = venv.join("bin/python");
    let installed = std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|lib| {
            lib.path()
                .join("site-packages")
                .join(PYTHON_PACKAGE)
                .is_dir()
        });
    if !python.is_file() || !installed {
        not_installed("durable-worker[sqs] 0.26.1 in .venv/peers");
    }
    python
}

fn node_dir() -> PathBuf {
    let dir = repo_root().join("examples/node-worker");
    for (package, version) in NODE_PACKAGES {
        let manifest = dir.join("node_modules").join(package).join("package.json");
        let found = std::fs::read_to_string(&manifest)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|json| json["version"].as_str().map(str::to_owned));
        if found.as_deref() != Some(version) {
            not_installed(&format!("{package} {version} in examples/node-worker"));
        }
    }
    dir
}

/// The environment every peer process gets: the local stack, dummy credentials.
fn command(program: impl Into<PathBuf>) -> Command {
    let mut command = Command::new(program.into());
    command
        .env("CAIRN_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .stdin(Stdio::null());
    command
}

/// A running peer process, killed on drop.
pub struct PeerProcess {
    child: Child,
    what: String,
}

impl PeerProcess {
    /// Panics if the process has exited (a peer that died is a failure, not a quiet hang).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited: {status}", self.what);
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// Starts the example worker serving `group` from `task_queue_urls`, answering on
    /// `results_url` (both from `cairn queues`).
    pub fn spawn_worker(
        self,
        group: &str,
        task_queue_urls: &BTreeMap<String, String>,
        results_url: &str,
    ) -> PeerProcess {
        let mut command = match self {
            Self::Python => {
                let mut c = command(python());
                c.arg(repo_root().join("examples/python-worker/worker.py"));
                c
            }
            Self::Node => {
                let mut c = command("node");
                c.current_dir(node_dir()).arg("worker.mjs");
                c
            }
        };
        let child = command
            .env("PEER_GROUP", group)
            .env(
                "CAIRN_TASK_QUEUE_URLS",
                serde_json::to_string(task_queue_urls).unwrap(),
            )
            .env("PEER_RESULTS_QUEUE_URL", results_url)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the {self} peer: {e}"));
        PeerProcess {
            child,
            what: format!("the {self} peer worker"),
        }
    }
}

/// Runs nestjs-durable's engine (`examples/node-worker/engine.mjs`): one run of its `checkout`
/// workflow per entry of `runs` (run id -> input), dispatched over its SqsTransport to
/// `task_queue_urls`, results read from `results_url`. Returns what it printed: each run with
/// its step checkpoints, by run id.
pub async fn run_nestjs_engine(
    runs: &Value,
    task_queue_urls: &BTreeMap<String, String>,
    results_url: &str,
) -> BTreeMap<String, Value> {
    let mut command = command("node");
    command
        .current_dir(node_dir())
        .arg("engine.mjs")
        .arg(runs.to_string())
        .env(
            "CAIRN_TASK_QUEUE_URLS",
            serde_json::to_string(task_queue_urls).unwrap(),
        )
        .env("CAIRN_RESULTS_QUEUE_URL", results_url)
        .stdout(Stdio::piped());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("start node engine.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "engine.mjs failed ({}): {stdout}",
        output.status
    );
    let line = stdout.lines().last().unwrap_or_default();
    let report: Vec<Value> =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("engine.mjs printed {stdout:?}: {e}"));
    report
        .into_iter()
        .map(|run| (run["runId"].as_str().unwrap_or_default().to_owned(), run))
        .collect()
}
