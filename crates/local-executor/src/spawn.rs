//! Starting a pod's process in a private root without copying the controller.
//!
//! The standard library forks whenever a `pre_exec` hook is set, and a fork copies this
//! process's page tables and then every page either side writes before the child execs. Here
//! the child is cloned with `CLONE_VM | CLONE_VFORK` instead, as `posix_spawn` does: it runs on
//! its own stack in our memory while the calling thread waits, makes only system calls on data
//! prepared beforehand (no allocation, no locks), and execs or exits.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::libc;

/// Everything the child needs, made before the clone.
pub struct Plan {
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub stdout: File,
    pub stderr: File,
    /// The mounts the child makes in a mount namespace of its own before it enters `root`;
    /// `None` when `root` is mounted already (a slot of the controller's namespace).
    pub mounts: Option<ChildMounts>,
    pub root: CString,
    /// The working directory inside the root.
    pub workdir: CString,
}

/// A root the child mounts for itself.
pub struct ChildMounts {
    /// Overlay mount options (`lowerdir=/,upperdir=…,workdir=…`).
    pub overlay: CString,
    /// (source, target inside the root, recursive).
    pub binds: Vec<(CString, CString, bool)>,
}

/// What the child reads: raw pointers into a `Plan`, and where it reports a failure.
struct ChildArgs {
    program: *const libc::c_char,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    stdin: libc::c_int,
    stdout: libc::c_int,
    stderr: libc::c_int,
    /// Null when the root is mounted already.
    overlay: *const libc::c_char,
    root: *const libc::c_char,
    binds: Vec<(*const libc::c_char, *const libc::c_char, libc::c_ulong)>,
    workdir: *const libc::c_char,
    /// The step that failed (0: none) and its errno.
    failed_step: AtomicI32,
    errno: AtomicI32,
}

const STEPS: &[&str] = &[
    "",
    "setpgid",
    "dup2",
    "unshare(CLONE_NEWNS)",
    "making / private",
    "overlay mount",
    "bind mount",
    "chroot",
    "chdir",
    "execve",
];

const CHILD_STACK: usize = 256 * 1024;

/// Start the plan's program in its private root; its pid (also its process group).
pub fn spawn_in_private_root(plan: &Plan) -> std::io::Result<i32> {
    let null = File::open("/dev/null")?;
    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let args = ChildArgs {
        program: plan.program.as_ptr(),
        argv: ptrs(&plan.argv),
        envp: ptrs(&plan.envp),
        stdin: null.as_raw_fd(),
        stdout: plan.stdout.as_raw_fd(),
        stderr: plan.stderr.as_raw_fd(),
        overlay: plan
            .mounts
            .as_ref()
            .map_or(std::ptr::null(), |m| m.overlay.as_ptr()),
        root: plan.root.as_ptr(),
        binds: plan
            .mounts
            .iter()
            .flat_map(|m| &m.binds)
            .map(|(s, t, rec)| {
                let flags = if *rec {
                    libc::MS_BIND | libc::MS_REC
                } else {
                    libc::MS_BIND
                };
                (s.as_ptr(), t.as_ptr(), flags)
            })
            .collect(),
        workdir: plan.workdir.as_ptr(),
        failed_step: AtomicI32::new(0),
        errno: AtomicI32::new(0),
    };
    // The child's stack, kept per thread from spawn to spawn (a fresh one per pod faulted in
    // fresh pages each time). With CLONE_VFORK the thread is suspended while the child uses it.
    thread_local! {
        static STACK: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    STACK.with(|stack| {
        let mut stack = stack.borrow_mut();
        if stack.len() < CHILD_STACK {
            stack.resize(CHILD_STACK, 0);
        }
        // The stack grows down from its end, which must be 16-byte aligned.
        let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
        clone_child(&args, top)
    })
}

/// Clone the child onto the stack whose top is `top` and report how its set-up went.
fn clone_child(args: &ChildArgs, top: usize) -> std::io::Result<i32> {
    // SAFETY: with CLONE_VFORK this thread is suspended until the child execs or exits, so
    // `args` and the stack outlive every use the child makes of them; the child only makes
    // system calls (see `child_main`).
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            args as *const ChildArgs as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let step = args.failed_step.load(Ordering::Acquire);
    if step != 0 {
        wait(pid);
        let e = std::io::Error::from_raw_os_error(args.errno.load(Ordering::Acquire));
        return Err(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", STEPS.get(step as usize).unwrap_or(&"?")),
        ));
    }
    Ok(pid)
}

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildArgs` the suspended parent keeps alive; everything below is a
    // system call on memory prepared before the clone.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        let fail = |step: i32| -> ! {
            a.errno.store(*libc::__errno_location(), Ordering::Release);
            a.failed_step.store(step, Ordering::Release);
            libc::_exit(127)
        };
        // The controller ignores SIGPIPE and may block signals; the pod starts with neither.
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::setpgid(0, 0) != 0 {
            fail(1);
        }
        for (from, to) in [(a.stdin, 0), (a.stdout, 1), (a.stderr, 2)] {
            // dup2 onto itself keeps close-on-exec (when ONYX was started without that
            // descriptor): clear it instead.
            let r = if from == to {
                libc::fcntl(to, libc::F_SETFD, 0)
            } else {
                libc::dup2(from, to)
            };
            if r < 0 {
                fail(2);
            }
        }
        if !a.overlay.is_null() {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                fail(3);
            }
            let none_c = std::ptr::null::<libc::c_char>();
            if libc::mount(
                none_c,
                c"/".as_ptr(),
                none_c,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                fail(4);
            }
            if libc::mount(
                c"overlay".as_ptr(),
                a.root,
                c"overlay".as_ptr(),
                0,
                a.overlay as *const libc::c_void,
            ) != 0
            {
                fail(5);
            }
            for (src, dst, flags) in &a.binds {
                if libc::mount(*src, *dst, none_c, *flags, std::ptr::null()) != 0 {
                    fail(6);
                }
            }
        }
        if libc::chroot(a.root) != 0 {
            fail(7);
        }
        if libc::chdir(a.workdir) != 0 {
            fail(8);
        }
        libc::execve(a.program, a.argv.as_ptr(), a.envp.as_ptr());
        fail(9)
    }
}

/// Reap a process: its exit code, or 128 + the signal that ended it.
pub fn wait(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: plain waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return 1;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        1
    }
}
