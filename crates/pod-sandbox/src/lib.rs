//! Pods in an OCI sandbox: each container of a pod runs under a real OCI runtime (Debian's
//! `runc`, or `crun`) with an OCI config made here, never by hand-rolled namespaces.
//!
//! The wrapper (`onyx exec-pod`, host root) builds the pod's root in a mount namespace of its
//! own and hands it to the runtime as the bundle's `root.path`:
//! - the host's system directories (`/usr`, `/etc`, `/opt`, and `/bin`, `/lib*`, `/sbin` as the
//!   host has them) as copy-on-write overlays whose writes land in the pod's directory — the
//!   "image" of a local pod; nothing else of the host (no `/home`, `/root`, `/work`, `/var`,
//!   `/tmp`, no ONYX home), and what the server names as hidden (its config, token and
//!   secrets files) masked where it falls inside those directories;
//! - fresh `/tmp`, `/var/tmp`, `/mnt`, `/root` and the pod's declared volumes;
//! - of ONYX's home only the image stand-ins (`bin/`, read-only) and the pod's script file.
//!
//! Each container then gets, from the runtime: its own pid, mount, ipc and uts namespaces (and
//! the pod's empty network namespace where its namespace is no-egress), a user namespace that
//! maps its root to [`UID_BASE`].. on the host (an unprivileged range: a host file the host's
//! root owns is `nobody`'s inside), the container-default capability set, a seccomp profile
//! refusing what containerd's default profile refuses, runc's masked and read-only paths and a
//! fresh `/proc`.
//!
//! The runtime puts each container in a session of its own, so killing the wrapper's process
//! group would leave it running: the wrapper therefore runs as the init of a pid namespace of
//! its own (`local_executor::run_in_own_pid_namespace`), whose end the kernel turns into a
//! SIGKILL of every process inside, containers included.
//!
//! Also here: the server's own mount namespace ([`namespace`]) and the empty network
//! namespace of no-egress pods ([`network`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

pub mod namespace;
pub mod network;

/// A volume bound into a pod's containers: a host path at a path of the container.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
}

/// What one container of a pod runs: its command line, environment and working directory.
#[derive(Debug, Clone, Copy)]
pub struct Process<'a> {
    pub command: &'a [String],
    pub env: &'a [(String, String)],
    pub working_dir: Option<&'a str>,
}

/// The first executable file called `name` in the `:`-separated directories of `path`.
pub fn which_in(name: &str, path: &str) -> Option<String> {
    path.split(':').filter(|d| !d.is_empty()).find_map(|dir| {
        let p = Path::new(dir).join(name);
        let meta = fs::metadata(&p).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            .then(|| p.to_string_lossy().into_owned())
    })
}

/// The host uid (and gid) a pod's root is mapped to; the pod's uids 0..[`ID_RANGE`] are
/// `UID_BASE..UID_BASE + ID_RANGE` on the host, a range no host account uses.
pub const UID_BASE: u32 = 1_000_000_000;
pub const ID_RANGE: u32 = 65_536;

/// The host's directories a pod sees (copy-on-write), as its image.
const IMAGE_DIRS: &[&str] = &[
    "usr", "etc", "opt", "bin", "sbin", "lib", "lib32", "lib64", "libx32",
];

/// Where the stand-ins and the pod's script are seen inside: ONYX's home reduced to them.
pub const IN_ROOT_HOME: &str = "/.onyx-home";

/// The capabilities a container gets (containerd's and Docker's default set).
const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// System calls containerd's default seccomp profile does not allow a container without
/// extra capabilities (kernel modules, mounts, namespaces, keyrings, clocks, BPF, perf,
/// io_uring, ...): refused with EPERM.
const REFUSED_SYSCALLS: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

/// `clone` flags that make namespaces: refused as containerd's profile refuses them.
const NAMESPACE_CLONE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

/// The OCI runtime to run pods with: `$ONYX_OCI_RUNTIME`, else `runc`, else `crun`.
pub fn runtime() -> Option<PathBuf> {
    if let Some(r) = std::env::var_os("ONYX_OCI_RUNTIME") {
        return Some(PathBuf::from(r));
    }
    ["runc", "crun"].iter().find_map(|name| {
        which_in(
            name,
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .map(PathBuf::from)
    })
}

/// Why pods cannot be sandboxed here, or `None` when they can.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some(match ROOTLESS_REFUSED.get() {
            Some(why) => format!(
                "the server is not root and a user namespace for a rootless sandbox was refused ({why}); ONYX_NO_SANDBOX=1 runs pods as the server's own processes, for trusted workflows only"
            ),
            None => "the wrapper is not root and did not enter a user namespace".into(),
        });
    }
    if runtime().is_none() {
        return Some(
            "no OCI runtime: install Debian's runc (apt-get install runc) or crun, or name one in ONYX_OCI_RUNTIME"
                .into(),
        );
    }
    None
}

static ROOTLESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static ROOTLESS_REFUSED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Where the server is not root, the wrapper's first act: make this process the root of a
/// user namespace of its own, mapping that root to the server's uid and gid (the only host ids
/// an unprivileged process may map), with a mount namespace it owns. The pod's root is then
/// built and its containers run as for a root server, except that the runtime makes no user
/// namespace of its own: inside, root is the server's user on the host — rootless containers,
/// as Podman and rootless runc make them. Call it before the process starts a thread
/// (`unshare(CLONE_NEWUSER)` refuses a threaded process). Does nothing as root.
pub fn enter_rootless() -> Result<(), String> {
    use nix::sched::{unshare, CloneFlags};
    use nix::unistd::{Gid, Uid};
    if Uid::effective().is_root() {
        return Ok(());
    }
    let (uid, gid) = (Uid::effective(), Gid::effective());
    let entered = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("unshare(CLONE_NEWUSER): {e}"))
        .and_then(|()| {
            // `setgroups` denied first: an unprivileged process may write a gid map only then.
            fs::write("/proc/self/setgroups", "deny")
                .and_then(|()| fs::write("/proc/self/uid_map", format!("0 {uid} 1")))
                .and_then(|()| fs::write("/proc/self/gid_map", format!("0 {gid} 1")))
                .map_err(|e| format!("mapping the server's user in its user namespace: {e}"))
        });
    match entered {
        Ok(()) => {
            ROOTLESS.store(true, std::sync::atomic::Ordering::Release);
            Ok(())
        }
        Err(why) => {
            let _ = ROOTLESS_REFUSED.set(why.clone());
            Err(why)
        }
    }
}

/// Whether this process entered the user namespace of [`enter_rootless`].
pub fn rootless() -> bool {
    ROOTLESS.load(std::sync::atomic::Ordering::Acquire)
}

/// Whether pods run without a sandbox because the operator said so (`ONYX_NO_SANDBOX`):
/// only for trusted workflows on a machine of one user.
pub fn disabled() -> bool {
    std::env::var_os("ONYX_NO_SANDBOX").is_some()
}

/// A path inside a root, from a path as a container names it: absolute or relative to `/`,
/// with no `..` and no empty or `.` parts once normalised. `None` when it would leave the root.
pub fn inside(root: &Path, container_path: &str) -> Option<PathBuf> {
    let rel = confined_relative(container_path)?;
    Some(root.join(rel))
}

/// A container path as a relative path with only normal components; `None` when it has `..`.
pub fn confined_relative(container_path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in container_path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => out.push(p),
        }
    }
    Some(out)
}

/// Whether `name` can be one part of a path: not empty, `.` or `..`, and made of letters,
/// digits, `-`, `_` and `.` only (Kubernetes' names and keys are).
pub fn is_path_part(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What a pod's root is made of.
#[derive(Clone, Copy)]
pub struct PodRoot<'a> {
    /// The pod's directory: the root, its layers and the runtime's files go there.
    pub dir: &'a Path,
    /// ONYX's home (the stand-ins under `bin/`, the script under the pod's directory).
    pub home: &'a Path,
    pub pod: &'a str,
    /// Volumes bound at their targets.
    pub volumes: &'a [Mount],
    pub script: Option<&'a Path>,
    /// Host paths masked where the image directories show them.
    pub hidden: &'a [PathBuf],
    /// The pod holds GPUs: `/dev/nvidia*` are its devices.
    pub gpus: bool,
    /// No user namespace: the pod's root is the host's.
    pub host_users: bool,
}

/// A pod's root and how to run its containers in it.
pub struct Sandbox {
    /// The pod's root, where the wrapper stages inputs and reads outputs.
    pub root: PathBuf,
    /// The same root where the runtime finds it: a path every user may traverse (the
    /// runtime mounts it as the pod's mapped root, which may not enter ONYX's private home).
    runtime_root: PathBuf,
    runtime: PathBuf,
    bundles: PathBuf,
    state: PathBuf,
    id: String,
    hostname: String,
    masked: Vec<String>,
    devices: Vec<PathBuf>,
    /// The runtime makes no user namespace: the pod's root is the host's (`host_users`), or
    /// the server's user where the wrapper runs rootless (its own user namespace maps them).
    host_users: bool,
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn nix_err(what: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Give `path` to the pod's root (`owner`: the mapped uid, or the host's root), not following
/// links.
fn give_to(owner: u32, path: &Path) -> Result<(), String> {
    std::os::unix::fs::lchown(path, Some(owner), Some(owner)).map_err(io(path.display()))
}

fn give_tree_to(owner: u32, path: &Path) -> Result<(), String> {
    give_to(owner, path)?;
    let meta = fs::symlink_metadata(path).map_err(io(path.display()))?;
    if meta.is_dir() {
        for e in fs::read_dir(path).map_err(io(path.display()))? {
            let e = e.map_err(io(path.display()))?;
            give_tree_to(owner, &e.path())?;
        }
    }
    Ok(())
}

impl Sandbox {
    /// Build the pod's root (see [`PodRoot`]) in a new mount namespace of this process (the
    /// wrapper's).
    pub fn prepare(p: &PodRoot) -> Result<Sandbox, String> {
        let PodRoot {
            dir,
            home,
            pod,
            volumes,
            script,
            hidden,
            gpus,
            host_users,
        } = *p;
        use nix::mount::{mount, MsFlags};
        use nix::sched::{unshare, CloneFlags};
        let runtime = runtime().ok_or_else(|| unavailable().unwrap_or_default())?;
        unshare(CloneFlags::CLONE_NEWNS).map_err(nix_err("a mount namespace for the pod"))?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(nix_err("making / private"))?;
        // Rootless, the pod's root is the wrapper's own user namespace's: its only uid is 0.
        let host_users = host_users || rootless();
        let owner = if host_users { 0 } else { UID_BASE };
        let give = |p: &Path| give_to(owner, p);
        let root = dir.join("root");
        let layers = dir.join("ovl");
        fs::create_dir_all(&root).map_err(io(root.display()))?;
        give(&root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).map_err(io("root"))?;
        for d in IMAGE_DIRS {
            let host = Path::new("/").join(d);
            let Ok(meta) = fs::symlink_metadata(&host) else {
                continue;
            };
            let at = root.join(d);
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&host).map_err(io(host.display()))?;
                if fs::symlink_metadata(&at).is_err() {
                    std::os::unix::fs::symlink(&target, &at).map_err(io(at.display()))?;
                }
                continue;
            }
            if !meta.is_dir() {
                continue;
            }
            let upper = layers.join(d).join("upper");
            let work = layers.join(d).join("work");
            for x in [&upper, &work, &at] {
                fs::create_dir_all(x).map_err(io(x.display()))?;
            }
            // `volatile`: the layer is thrown away with the pod, so its teardown need not
            // sync the disk (which made every pod's end wait for it).
            let opts = |volatile: bool| {
                format!(
                    "lowerdir={},upperdir={},workdir={}{}",
                    host.display(),
                    upper.display(),
                    work.display(),
                    if volatile { ",volatile" } else { "" }
                )
            };
            mount(
                Some("overlay"),
                &at,
                Some("overlay"),
                MsFlags::MS_NOSUID,
                Some(opts(true).as_str()),
            )
            .or_else(|_| {
                mount(
                    Some("overlay"),
                    &at,
                    Some("overlay"),
                    MsFlags::MS_NOSUID,
                    Some(opts(false).as_str()),
                )
            })
            .map_err(nix_err(format!("the pod's /{d}")))?;
        }
        // Scratch directories of the pod's own, and the usual mount points.
        for (d, mode) in [
            ("tmp", 0o1777),
            ("var/tmp", 0o1777),
            ("mnt", 0o755),
            ("root", 0o700),
            ("home", 0o755),
            ("proc", 0o555),
            ("sys", 0o555),
            ("dev", 0o755),
            ("run", 0o755),
        ] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io(p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io(p.display()))?;
            give(&p)?;
        }
        give(&root.join("var"))?;
        // Masks over what the server keeps secret, where the image directories show it.
        let mut masked = Vec::new();
        for h in hidden {
            let Ok(rel) = h.strip_prefix("/") else {
                continue;
            };
            if IMAGE_DIRS.iter().any(|d| rel.starts_with(d)) {
                masked.push(h.display().to_string());
            }
        }
        // The image stand-ins and the script, read-only, where the spec's commands name them.
        let in_home = root.join(IN_ROOT_HOME.trim_start_matches('/'));
        let stand_ins = home.join("bin");
        if stand_ins.is_dir() {
            let at = in_home.join("bin");
            fs::create_dir_all(&at).map_err(io(at.display()))?;
            bind(&stand_ins, &at, true)?;
        }
        if let Some(script) = script {
            if let Ok(rel) = script.strip_prefix(home) {
                let at = in_home.join(rel);
                if let Some(p) = at.parent() {
                    fs::create_dir_all(p).map_err(io(p.display()))?;
                }
                fs::write(&at, "").map_err(io(at.display()))?;
                bind(script, &at, true)?;
            }
        }
        for m in volumes {
            let at = inside(&root, &m.target).ok_or_else(|| {
                format!(
                    "volumeMount mountPath {:?} leaves the container's root",
                    m.target
                )
            })?;
            if at == root {
                return Err("a volumeMount's mountPath cannot be /".into());
            }
            fs::create_dir_all(&at).map_err(io(&m.target))?;
            if m.source.starts_with(home) {
                // The pod's own volumes (emptyDir, claims, configMaps): its root may write them.
                give_tree_to(owner, &m.source)?;
            }
            bind(&m.source, &at, false)?;
        }
        let mut devices = Vec::new();
        if gpus {
            if let Ok(entries) = fs::read_dir("/dev") {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with("nvidia") {
                        devices.push(e.path());
                    }
                }
            }
            devices.sort();
        }
        // Rootless, the pod's root is the home's owner: it may enter the home (and may not
        // make `/run/onyx-pods`).
        let runtime_root = if rootless() {
            root.clone()
        } else {
            expose(&root)?
        };
        let bundles = dir.join("bundles");
        let state = dir.join("runtime-state");
        for d in [&bundles, &state] {
            fs::create_dir_all(d).map_err(io(d.display()))?;
        }
        // Container ids: unique on the host (the pod directory's inode), short.
        use std::os::unix::fs::MetadataExt;
        let ino = fs::metadata(dir).map(|m| m.ino()).unwrap_or_default();
        let hostname: String = pod.chars().take(63).collect();
        Ok(Sandbox {
            root,
            runtime_root,
            runtime,
            bundles,
            state,
            id: format!("onyx-{ino:x}-{}", std::process::id()),
            hostname,
            masked,
            devices,
            host_users,
        })
    }

    /// Give a tree (a staged input) to the pod's root, not following links.
    pub fn give_tree(&self, path: &Path) -> Result<(), String> {
        give_tree_to(if self.host_users { 0 } else { UID_BASE }, path)
    }

    /// The command that runs container `c` (the `n`th of the pod) to its end, its stdio
    /// being the command's.
    pub fn command(&self, c: &Process<'_>, n: usize) -> Result<Command, String> {
        let bundle = self.bundles.join(n.to_string());
        fs::create_dir_all(&bundle).map_err(io(bundle.display()))?;
        let cwd = c.working_dir.unwrap_or("/").to_string();
        let cwd_at = inside(&self.root, &cwd)
            .ok_or_else(|| format!("workingDir {cwd:?} leaves the container's root"))?;
        if !cwd_at.exists() {
            fs::create_dir_all(&cwd_at).map_err(io(&cwd))?;
            self.give_tree(&cwd_at)?;
        }
        let config = self.config(c, &cwd);
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&config).map_err(|e| e.to_string())?,
        )
        .map_err(io("config.json"))?;
        let id = format!("{}-{n}", self.id);
        let mut cmd = Command::new(&self.runtime);
        cmd.arg("--root").arg(&self.state);
        if self.runtime.file_name().is_some_and(|f| f == "crun") {
            cmd.arg("--cgroup-manager=disabled");
        }
        cmd.arg("run")
            .arg("--bundle")
            .arg(&bundle)
            .arg(&id)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        Ok(cmd)
    }

    /// The OCI runtime config of one container.
    pub fn config(&self, c: &Process<'_>, cwd: &str) -> Value {
        let mut env: Vec<String> = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games".into(),
            "HOME=/root".into(),
            format!("HOSTNAME={}", self.hostname),
        ];
        for (k, v) in c.env {
            env.retain(|e| !e.starts_with(&format!("{k}=")));
            env.push(format!("{k}={v}"));
        }
        let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
        // Without a network namespace of its own the container shares the wrapper's: the
        // host's, or the pod's empty one when the namespace is no-egress.
        let mut namespaces = vec![
            json!({"type": "pid"}),
            json!({"type": "ipc"}),
            json!({"type": "uts"}),
            json!({"type": "mount"}),
        ];
        if !self.host_users {
            namespaces.push(json!({"type": "user"}));
        }
        let mappings = if self.host_users {
            json!([])
        } else {
            json!([{"containerID": 0, "hostID": UID_BASE, "size": ID_RANGE}])
        };
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc",
                   "options": ["nosuid", "noexec", "nodev"]}),
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                   "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                   "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
            json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                   "options": ["nosuid", "noexec", "nodev"]}),
            // sysfs needs a network namespace of the user namespace's own: the host's, bound
            // read-only, as rootless runtimes do.
            json!({"destination": "/sys", "type": "bind", "source": "/sys",
                   "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
        ];
        for f in ["/etc/resolv.conf", "/etc/hosts"] {
            if Path::new(f).exists() {
                mounts.push(json!({"destination": f, "type": "bind", "source": f,
                                   "options": ["bind", "ro", "nosuid", "nodev", "noexec"]}));
            }
        }
        let devices: Vec<Value> = self
            .devices
            .iter()
            .filter_map(|d| {
                use std::os::unix::fs::{FileTypeExt, MetadataExt};
                let m = fs::metadata(d).ok()?;
                if !m.file_type().is_char_device() {
                    return None;
                }
                let rdev = m.rdev();
                Some(json!({
                    "path": d, "type": "c",
                    "major": nix::sys::stat::major(rdev), "minor": nix::sys::stat::minor(rdev),
                    "fileMode": 0o666, "uid": 0, "gid": 0
                }))
            })
            .collect();
        let mut masked: Vec<String> = [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        masked.extend(self.masked.iter().cloned());
        let mut syscalls = vec![json!({
            "names": REFUSED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": 1
        })];
        for flag in NAMESPACE_CLONE_FLAGS {
            syscalls.push(json!({
                "names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]
            }));
        }
        // glibc falls back to clone when clone3 is missing, whose flags are filtered above.
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
        namespaces.sort_by_key(|n| n["type"].as_str().map(str::to_string));
        json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": c.command,
                "env": env,
                "cwd": cwd,
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps,
                },
                "noNewPrivileges": false,
            },
            "root": {"path": self.runtime_root, "readonly": false},
            "hostname": self.hostname,
            "mounts": mounts,
            "linux": {
                "uidMappings": mappings,
                "gidMappings": mappings,
                "namespaces": namespaces,
                "devices": devices,
                "maskedPaths": masked,
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
                "seccomp": {
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
                    "syscalls": syscalls,
                },
            },
        })
    }

    /// After the last container: make ONYX's home reachable again (at a name the pod could
    /// not know, so no link it left leads there) and enter the pod's root, so output paths
    /// and the links in them resolve inside it. Returns the home's path inside.
    pub fn enter_for_outputs(&self, home: &Path) -> Result<PathBuf, String> {
        let name = format!(".onyx-home-{:032x}", rand::random::<u128>());
        let at = self.root.join(&name);
        fs::create_dir_all(&at).map_err(io(at.display()))?;
        bind(home, &at, false)?;
        nix::unistd::chroot(&self.root).map_err(nix_err("chroot"))?;
        std::env::set_current_dir("/").map_err(io("chdir"))?;
        Ok(Path::new("/").join(name))
    }
}

/// Where the wrapper shows the pod's root to the runtime: a tmpfs of this mount namespace at
/// `/run/onyx-pods` (only this pod's wrapper and its children see it), holding the root bound
/// with everything mounted under it.
fn expose(root: &Path) -> Result<PathBuf, String> {
    use nix::mount::{mount, MsFlags};
    let base = Path::new("/run/onyx-pods");
    fs::create_dir_all(base).map_err(io(base.display()))?;
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).map_err(io(base.display()))?;
    mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=755,size=64k"),
    )
    .map_err(nix_err(format!("tmpfs at {}", base.display())))?;
    let at = base.join("root");
    fs::create_dir_all(&at).map_err(io(at.display()))?;
    mount(
        Some(root),
        &at,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(nix_err(format!("bind the pod's root at {}", at.display())))?;
    Ok(at)
}

fn bind(source: &Path, target: &Path, read_only: bool) -> Result<(), String> {
    use nix::mount::{mount, MsFlags};
    let what = format!("bind {} at {}", source.display(), target.display());
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(nix_err(&what))?;
    if read_only {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(nix_err(&what))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_stay_inside_the_root() {
        let root = Path::new("/r");
        assert_eq!(inside(root, "/tmp/x"), Some(PathBuf::from("/r/tmp/x")));
        assert_eq!(inside(root, "tmp//./x/"), Some(PathBuf::from("/r/tmp/x")));
        assert_eq!(inside(root, "/tmp/../../etc/shadow"), None);
        assert_eq!(inside(root, ".."), None);
        assert_eq!(inside(root, "/"), Some(PathBuf::from("/r")));
    }

    #[test]
    fn the_config_maps_root_away_and_refuses_namespaces() {
        let s = Sandbox {
            root: "/r".into(),
            runtime_root: "/run/onyx-pods/root".into(),
            runtime: "runc".into(),
            bundles: "/b".into(),
            state: "/s".into(),
            id: "x".into(),
            hostname: "pod".into(),
            masked: vec!["/etc/onyx/token".into()],
            devices: vec![],
            host_users: false,
        };
        let command = vec!["sh".to_string()];
        let env = vec![("PATH".to_string(), "/x".to_string())];
        let c = Process {
            command: &command,
            env: &env,
            working_dir: None,
        };
        let cfg = s.config(&c, "/");
        assert_eq!(cfg["linux"]["uidMappings"][0]["hostID"], UID_BASE);
        let ns: Vec<&str> = cfg["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["ipc", "mount", "pid", "user", "uts"]);
        let caps = cfg["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert!(!caps
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN" || c == "CAP_SYS_PTRACE"));
        assert!(cfg["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "/etc/onyx/token"));
        let env = cfg["process"]["env"].as_array().unwrap();
        assert_eq!(
            env.iter()
                .filter(|e| e.as_str().unwrap().starts_with("PATH="))
                .count(),
            1
        );
        assert!(env.iter().any(|e| e == "PATH=/x"));
    }
}
