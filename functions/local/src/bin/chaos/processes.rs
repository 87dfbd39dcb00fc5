//! The engine and worker processes the orchestrator kills and restarts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use super::workload::random;

/// The engine and worker processes, killed and restarted at will.
pub(crate) struct Processes {
    pub(crate) exe: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) logs: PathBuf,
    pub(crate) children: Vec<(&'static str, usize, Option<Child>)>,
    pub(crate) kills: usize,
}

impl Processes {
    pub(crate) fn spawn(&self, role: &str, index: usize) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{role}-{index}.log")))?;
        Ok(Command::new(&self.exe)
            .arg(role)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?)
    }

    pub(crate) fn start_all(&mut self, engines: usize, workers: usize) -> anyhow::Result<()> {
        for index in 0..engines {
            let child = self.spawn("engine", index)?;
            self.children.push(("engine", index, Some(child)));
        }
        for index in 0..workers {
            let child = self.spawn("worker", index)?;
            self.children.push(("worker", index, Some(child)));
        }
        Ok(())
    }

    /// SIGKILLs one process at random; returns its slot.
    pub(crate) fn kill_one(&mut self) -> Option<usize> {
        let slot = random(self.children.len() as u64) as usize;
        let (role, index, child) = self.children.get_mut(slot)?;
        let mut child = child.take()?;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        self.kills += 1;
        eprintln!("chaos: killed {role}-{index}");
        Some(slot)
    }

    pub(crate) fn restart(&mut self, slot: usize) {
        let (role, index) = (self.children[slot].0, self.children[slot].1);
        match self.spawn(role, index) {
            Ok(child) => self.children[slot].2 = Some(child),
            Err(e) => eprintln!("chaos: restarting {role}-{index} failed: {e}"),
        }
    }

    /// Every slot running again.
    pub(crate) fn restart_dead(&mut self) {
        for slot in 0..self.children.len() {
            let dead = match &mut self.children[slot].2 {
                None => true,
                Some(child) => child.try_wait().ok().flatten().is_some(),
            };
            if dead {
                self.restart(slot);
            }
        }
    }

    pub(crate) fn stop_all(&mut self) {
        for (_, _, child) in &mut self.children {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop_all();
    }
}

pub(crate) fn lock(processes: &Mutex<Processes>) -> std::sync::MutexGuard<'_, Processes> {
    processes
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
