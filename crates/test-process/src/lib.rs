//! What the test helpers that start real servers (`test-postgres`, `test-kubernetes`) share:
//! a child process that dies with the test process, a free loopback port, and the removal of
//! directories that test processes no longer alive left behind.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Start `cmd`, which dies with this process (parent-death signal); its process id. The
/// signal fires when the *thread* that forked exits, so a thread that lives as long as the
/// process starts it and waits on it.
pub fn spawn_tied(mut cmd: Command, what: &str) -> Result<u32, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: the closure only calls prctl, which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = cmd.spawn();
        let _ = tx.send(child.as_ref().map(|c| c.id()).map_err(|e| e.to_string()));
        if let Ok(mut c) = child {
            let _ = c.wait();
        }
        loop {
            std::thread::park();
        }
    });
    rx.recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("starting {what}: {e}"))
}

/// A loopback port free at the time of asking.
pub fn free_port() -> Result<u16, String> {
    let l =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Remove the directories `<prefix><pid>` in `tmp` whose test process is gone.
pub fn remove_stale(tmp: &Path, prefix: &str) {
    for e in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
