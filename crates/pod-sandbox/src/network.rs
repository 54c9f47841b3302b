//! A pod without network: a fresh network namespace holding only its own loopback (up), so
//! the pod reaches neither other hosts nor the host's own listening ports. What the spec's
//! `onyx-data` NetworkPolicy forbids (no external traffic), for local pods.
//!
//! Entering it needs CAP_SYS_ADMIN; a pod that must run without network and cannot is not run
//! at all — never run with the network it was meant not to have.

use nix::libc;
use nix::sched::{unshare, CloneFlags};

/// Move this process into a new network namespace and bring its loopback up.
pub fn enter_empty_network() -> Result<(), String> {
    // Not root (a rootless server's HTTP agent): a user namespace of its own gives it the
    // right to make a network namespace.
    crate::enter_rootless().map_err(|e| {
        format!("this pod must run without network (no-egress namespace), and a user namespace to make one in could not be made: {e}")
    })?;
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
        format!("this pod must run without network (no-egress namespace), and a network namespace of its own could not be made: {e}")
    })?;
    loopback_up()
}

fn loopback_up() -> Result<(), String> {
    // SAFETY: a plain socket for the interface ioctls, closed below; `ifreq` is zeroed and
    // its name is a NUL-terminated "lo" within IFNAMSIZ.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!(
                "socket for the loopback: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r != 0 {
            return Err(format!("bringing the pod's loopback up: {err}"));
        }
    }
    Ok(())
}
