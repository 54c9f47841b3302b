//! Pods that outlive their controller. A pod's directory records whether it started and how
//! it ended, so that a controller restarted after a crash can tell, for every pod it had asked
//! for, whether to start it, wait for it, or collect its result — and never runs one twice.
//!
//! The protocol: the wrapper (`onyx exec-pod DIR`) takes an exclusive `flock` on `DIR/lock`
//! and holds it while it lives; holding it, it creates `DIR/started` (if `started` is already
//! there, the pod ran before: it exits without running anything). Its last act is to write
//! `result.json` atomically. The lock is released by the kernel when the wrapper ends, however
//! it ends.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::{read_outcome, PodOutcome};

/// What a pod's directory says about it.
#[derive(Debug)]
pub enum PodState {
    /// No wrapper ever claimed it: start it.
    NotStarted,
    /// A wrapper holds it: wait for its result.
    Running,
    /// It ended with this result.
    Finished(PodOutcome),
    /// It started but its wrapper ended without a result (killed, or the machine restarted).
    Lost,
}

/// The pod's process group as the host sees it (its leader's pid), when the wrapper runs in a
/// pid namespace of its own, where its own pid is 1 (see `run_in_own_pid_namespace`).
static GROUP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Record the pod's process group as the host sees it, for `started`.
pub fn set_host_group(pid: u32) {
    GROUP.store(pid, std::sync::atomic::Ordering::Relaxed);
}

/// The held claim on a pod; dropping it releases the lock.
pub struct Claim {
    _lock: Flock<File>,
}

/// Claim a pod for running (blocks while another wrapper holds it). `None`: it already ran.
pub fn claim(dir: &Path) -> std::io::Result<Option<Claim>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| std::io::Error::from_raw_os_error(e as i32))?;
    let started = dir.join("started");
    if started.exists() {
        return Ok(None);
    }
    // The group the server kills the pod by: never a pid of the pod's own namespace.
    let group = match GROUP.load(std::sync::atomic::Ordering::Relaxed) {
        0 => std::process::id(),
        g => g,
    };
    fs::write(&started, group.to_string())?;
    Ok(Some(Claim { _lock: lock }))
}

/// Look at a pod without disturbing it.
pub fn probe(dir: &Path) -> PodState {
    if let Some(outcome) = read_outcome(dir) {
        return PodState::Finished(outcome);
    }
    let Ok(file) = OpenOptions::new().read(true).open(dir.join("lock")) else {
        return PodState::NotStarted;
    };
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Err(_) => PodState::Running,
        Ok(_free) => {
            // Free: read the result again, in case the wrapper finished in between.
            if let Some(outcome) = read_outcome(dir) {
                PodState::Finished(outcome)
            } else if dir.join("started").exists() {
                PodState::Lost
            } else {
                PodState::NotStarted
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_claimed_once_and_its_state_follows_the_lock() {
        let dir = std::env::temp_dir().join(format!("onyx-durable-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        assert!(matches!(probe(&dir), PodState::NotStarted));
        let held = claim(&dir).unwrap().expect("first claim runs the pod");
        assert!(matches!(probe(&dir), PodState::Running));
        drop(held);
        // The wrapper ended without writing a result.
        assert!(matches!(probe(&dir), PodState::Lost));
        assert!(claim(&dir).unwrap().is_none(), "a pod never runs twice");
        let done = PodOutcome {
            exit_code: Some(0),
            ..Default::default()
        };
        fs::write(dir.join("result.json"), serde_json::to_vec(&done).unwrap()).unwrap();
        assert!(matches!(probe(&dir), PodState::Finished(o) if o.exit_code == Some(0)));
        fs::remove_dir_all(&dir).unwrap();
    }
}
