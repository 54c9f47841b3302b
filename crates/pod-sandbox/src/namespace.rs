//! The controller's own mount namespace.
//!
//! Sandboxed pods take their private roots from slots whose overlay and bind mounts are made
//! once and reused from pod to pod (`direct::Sandboxes`). Making them per pod cost more than the
//! pod: at every pod's exit the kernel tore its overlay down and synced the upper layer's
//! filesystem (`ovl_sync_fs`), and the pod's exit waited for the disk. The reused mounts live in
//! a mount namespace of the controller's own, entered before its first thread: they vanish with
//! the process however it ends (a crash leaves no mounts on the host), and the host's later
//! mounts still show inside (the namespace is the host's slave).

use std::sync::atomic::{AtomicBool, Ordering};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

static ENTERED: AtomicBool = AtomicBool::new(false);

/// Move this process into a mount namespace of its own. Call it before the process starts a
/// thread: `unshare` moves the calling thread only, and the threads it starts afterwards.
pub fn enter_private_mount_namespace() -> nix::Result<()> {
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )?;
    ENTERED.store(true, Ordering::Release);
    Ok(())
}

/// Whether [`enter_private_mount_namespace`] succeeded in this process.
pub fn entered() -> bool {
    ENTERED.load(Ordering::Acquire)
}
