//! `onyx exec-pod` as the init of a pid namespace of its own: every process of the pod, the
//! containers the OCI runtime put in sessions of their own included, dies with it.

/// Run `f` as the init of a new pid namespace (in a child; this process waits for it and
/// returns its exit code), so that every process the pod starts — containers the runtime put
/// in sessions of their own included — dies with it. Call it before any thread starts.
pub fn run_in_own_pid_namespace(f: impl FnOnce() -> i32) -> i32 {
    use nix::sched::{unshare, CloneFlags};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    if unshare(CloneFlags::CLONE_NEWPID).is_err() {
        return f();
    }
    // This process leads the pod's process group; inside the new namespace the child's own
    // pid is 1, which must never be taken for the group to kill.
    crate::durable::set_host_group(std::process::id());
    // SAFETY: called before the process starts any thread (see `onyx exec-pod`).
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // Die with the parent: the controller kills the pod by its process group, but a
            // signal to the parent alone must end the pod too.
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            // The runtime finds its children under /proc by the pids it sees: this
            // namespace's, so /proc must be this namespace's too.
            if let Err(e) = own_proc() {
                eprintln!("onyx exec-pod: a /proc of the pod's pid namespace: {e}");
                std::process::exit(1)
            }
            let code = f();
            std::process::exit(code)
        }
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return 1,
            }
        },
        Err(_) => f(),
    }
}

/// Mount a /proc of this process's pid namespace, in a mount namespace of its own.
fn own_proc() -> nix::Result<()> {
    use nix::mount::{mount, MsFlags};
    pod_sandbox::namespace::enter_private_mount_namespace()?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV,
        None::<&str>,
    )
}
