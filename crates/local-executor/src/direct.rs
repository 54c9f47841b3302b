//! Direct pods: a single-container pod started straight from the controller, without the
//! `onyx exec-pod` wrapper. The pod's private root is set up in the child between fork and
//! exec; inputs are staged into the root's writable layer before the start and outputs read
//! from it after the exit. It saves a process exec and a second process per pod.
//!
//! Only pods whose outputs all live in a directory that belongs to the pod alone (its /tmp,
//! /var/tmp, /mnt or a volume) run this way, because after the exit the merged view of the
//! overlay is gone: a file the pod left untouched under /etc, say, is only in the host's copy.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::pod::{PodOutcome, PodSpec};
use crate::spawn;

/// Directories a pod gets fresh and empty, with where they live on the host.
const FRESH: &[&str] = &["/tmp", "/var/tmp", "/mnt"];
const IN_ROOT_HOME: &str = "/.onyx-home";
const MAX_CAPTURE: usize = 256 * 1024 + 1;

/// Whether a prepared pod can run directly.
pub fn eligible(spec: &PodSpec) -> bool {
    if !spec.init.is_empty() || !spec.sidecars.is_empty() || spec.main.len() != 1 {
        return false;
    }
    if std::env::var_os("ONYX_NO_DIRECT").is_some() {
        return false;
    }
    // Sandboxed pods (rootless too) run in the OCI sandbox, through the wrapper.
    if !pod_sandbox::disabled() {
        return false;
    }
    let c = &spec.main[0];
    let owned =
        |p: &str| FRESH.iter().any(|f| under(p, f)) || c.mounts.iter().any(|m| under(p, &m.target));
    // Secrets are resolved by the wrapper only.
    spec.output_parameters.iter().all(|(_, p)| owned(p))
        && spec.output_artifacts.iter().all(|a| owned(&a.path))
        && spec.secret_volumes.is_empty()
        && c.secret_env.is_empty()
        && spec.output_artifacts.iter().all(|a| a.s3.is_none())
        && spec
            .inputs
            .iter()
            .all(|a| !matches!(a.source, crate::pod::InputSource::S3 { .. }))
}

fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// Private roots reused from pod to pod. A slot is an overlay's writable layer (`upper`) with
/// the fresh directories made opaque, its work directory and a mount point (`root`); making and
/// deleting those dozen inodes per pod on ext4 cost more than the pod itself (ext4 scans past
/// recently deleted inodes to allocate new ones).
///
/// When the controller lives in a mount namespace of its own ([`crate::namespace`]), a slot's
/// overlay and its binds (`/proc`, `/dev`, `/sys`, ONYX's home, `/etc/resolv.conf`, ...) are
/// mounted once, when the slot is made, and a pod only chroots into it. Otherwise each pod mounts
/// them in a namespace of its own and they go with it.
///
/// A finished pod's slot is emptied of what the pod wrote and handed to the next pod. A mounted
/// slot is emptied through its merged view (the overlay's layers must not change under it) and
/// only where the pod wrote paths the host does not have: a pod that changed a host file (a
/// copy-up or a whiteout in the upper layer) or left a mount of its own in its root (the
/// root's mount count differs from the slot's) gets its slot unmounted and deleted, so the
/// next pod never sees another pod's files or mounts.
pub struct Sandboxes {
    base: PathBuf,
    home: PathBuf,
    /// Slots stay mounted in the controller's namespace from pod to pod.
    mounted: bool,
    free: std::sync::Mutex<Vec<Slot>>,
    made: std::sync::atomic::AtomicUsize,
}

impl Drop for Sandboxes {
    /// Every slot is back (pods hold the pool until they give theirs back): remove them all.
    fn drop(&mut self) {
        for slot in self.free.get_mut().map(std::mem::take).unwrap_or_default() {
            self.discard(&slot.dir);
        }
        let _ = fs::remove_dir(&self.base);
    }
}

/// A slot's folder, and how many mounts its root has when no pod is in it (a mounted slot's
/// overlay and binds with their submounts; 0 for a slot each pod mounts itself).
struct Slot {
    dir: PathBuf,
    mounts: usize,
    /// The namespace's mount table, open: `poll` on it says whether any mount changed in the
    /// namespace since the slot last looked, so the table is read only then (reading it per
    /// pod cost more than the rest of the slot's upkeep).
    mount_events: Option<fs::File>,
}

/// What a slot's writable layer holds between pods (paths relative to it).
const SKELETON: &[&str] = &["tmp", "var", "var/tmp", "mnt", ".onyx-home"];

/// Host paths bound into every private root (recursive binds: their submounts come along).
const SYSTEM_DIRS: &[&str] = &["/proc", "/dev", "/sys"];
/// Host files bound into every private root, when the host has them.
const HOST_FILES: &[&str] = &["/etc/resolv.conf", "/etc/hosts", "/etc/hostname"];

/// The binds every private root gets: (host source, target under `root`, recursive).
fn system_binds(home: &Path, root: &Path) -> Vec<(PathBuf, PathBuf, bool)> {
    let mut binds: Vec<(PathBuf, PathBuf, bool)> = SYSTEM_DIRS
        .iter()
        .map(|d| (PathBuf::from(d), root.join(&d[1..]), true))
        .collect();
    // Not recursive: the slots' own roots are mounts under the home.
    binds.push((home.to_path_buf(), root.join(&IN_ROOT_HOME[1..]), false));
    for f in HOST_FILES {
        if Path::new(f).exists() {
            binds.push((PathBuf::from(f), root.join(&f[1..]), false));
        }
    }
    binds
}

fn bind(source: &Path, target: &Path, recursive: bool) -> std::io::Result<()> {
    use nix::mount::MsFlags;
    let flags = if recursive {
        MsFlags::MS_BIND | MsFlags::MS_REC
    } else {
        MsFlags::MS_BIND
    };
    nix::mount::mount(Some(source), target, None::<&str>, flags, None::<&str>)
        .map_err(|e| std::io::Error::other(format!("bind {}: {e}", source.display())))
}

fn overlay_options(slot: &Path) -> String {
    format!(
        "lowerdir=/,upperdir={},workdir={}",
        slot.join("upper").display(),
        slot.join("work").display()
    )
}

impl Sandboxes {
    /// Slots live under `home/sandboxes/<pid>-<n>`, one folder per pool (a process may run
    /// several workflows, each with its pool); those of processes that are gone are removed.
    pub fn new(home: &Path) -> Sandboxes {
        static POOLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let root = home.join("sandboxes");
        if let Ok(entries) = fs::read_dir(&root) {
            for e in entries.flatten() {
                let alive = e
                    .file_name()
                    .to_str()
                    .and_then(|n| n.split('-').next()?.parse::<i32>().ok())
                    .is_some_and(|pid| {
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                    });
                if !alive {
                    // Its mounts went with its namespace; removed slot by slot all the same,
                    // never across a mount point.
                    for slot in fs::read_dir(e.path()).into_iter().flatten().flatten() {
                        remove_slot_dirs(&slot.path());
                    }
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
        Sandboxes {
            base: root.join(format!(
                "{}-{}",
                std::process::id(),
                POOLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )),
            home: home.to_path_buf(),
            mounted: pod_sandbox::namespace::entered(),
            free: std::sync::Mutex::new(Vec::new()),
            made: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn take(&self) -> std::io::Result<Slot> {
        if let Some(slot) = self.free.lock().expect("sandboxes").pop() {
            return Ok(slot);
        }
        let k = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.base.join(k.to_string());
        match self.make(&dir) {
            Ok((mounts, mount_events)) => Ok(Slot {
                dir,
                mounts,
                mount_events,
            }),
            Err(e) => {
                self.discard(&dir);
                Err(e)
            }
        }
    }

    /// Make a slot's folders (and mount it, in the controller's namespace); its mount count
    /// and the mount table to watch.
    fn make(&self, slot: &Path) -> std::io::Result<(usize, Option<fs::File>)> {
        let upper = slot.join("upper");
        for d in [&upper, &slot.join("work"), &slot.join("root")] {
            fs::create_dir_all(d)?;
        }
        // Fresh directories are opaque directories of the writable layer: they hide the host's
        // content without a scratch directory and a bind mount each.
        for target in FRESH {
            let d = upper.join(target.trim_start_matches('/'));
            fs::create_dir_all(&d)?;
            xattr::set(&d, "trusted.overlay.opaque", b"y")?;
        }
        fs::create_dir_all(upper.join(IN_ROOT_HOME.trim_start_matches('/')))?;
        Self::reset_modes(&upper)?;
        if self.mounted {
            let root = slot.join("root");
            nix::mount::mount(
                Some("overlay"),
                &root,
                Some("overlay"),
                nix::mount::MsFlags::empty(),
                Some(overlay_options(slot).as_str()),
            )
            .map_err(|e| std::io::Error::other(format!("overlay root: {e}")))?;
            for (source, target, recursive) in system_binds(&self.home, &root) {
                bind(&source, &target, recursive)?;
            }
            let events = fs::File::open("/proc/self/mountinfo")?;
            return Ok((mounts_under(&root)?, Some(events)));
        }
        Ok((0, None))
    }

    fn reset_modes(dir: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        for (d, mode) in [("tmp", 0o1777), ("var/tmp", 0o1777), ("mnt", 0o755)] {
            fs::set_permissions(dir.join(d), fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }

    /// Give a slot back once its pod has exited (after `pod_binds`, the mounts made for the
    /// pod's volumes, are undone): whatever the pod wrote goes, the skeleton stays.
    fn give_back(&self, slot: Slot, pod_binds: &[PathBuf]) {
        for target in pod_binds.iter().rev() {
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
        }
        let emptied = if self.mounted {
            Self::empty_mounted(&slot)
        } else {
            let upper = slot.dir.join("upper");
            Self::empty_to_skeleton(&upper, Path::new("")).and_then(|()| Self::reset_modes(&upper))
        };
        if emptied.is_ok() {
            self.free.lock().expect("sandboxes").push(slot);
        } else {
            self.discard(&slot.dir);
        }
    }

    /// Unmount a slot (if mounted) and delete it, never across a mount point: a slot that
    /// cannot be unmounted is left where it is.
    fn discard(&self, slot: &Path) {
        if self.mounted {
            match nix::mount::umount2(&slot.join("root"), nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
                Err(_) => return,
            }
        }
        remove_slot_dirs(slot);
    }

    fn empty_to_skeleton(dir: &Path, rel: &Path) -> std::io::Result<()> {
        for e in fs::read_dir(dir.join(rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            let keep = r.to_str().is_some_and(|r| SKELETON.contains(&r));
            let ty = e.file_type()?;
            if keep && ty.is_dir() {
                Self::empty_to_skeleton(dir, &r)?;
            } else if keep {
                // A skeleton directory the pod replaced (removed, or a whiteout): not reusable.
                return Err(std::io::Error::other("skeleton changed"));
            } else if ty.is_dir() {
                fs::remove_dir_all(e.path())?;
            } else {
                fs::remove_file(e.path())?;
            }
        }
        Ok(())
    }

    /// Empty a mounted slot through its merged view, or fail when it cannot be reused.
    fn empty_mounted(slot: &Slot) -> std::io::Result<()> {
        let root = slot.dir.join("root");
        // A mount the pod made anywhere in its root (its fresh /tmp, a host path) would stay
        // for the next pods; only the slot's own may be there.
        if mounts_changed(slot.mount_events.as_ref()) && mounts_under(&root)? != slot.mounts {
            return Err(std::io::Error::other("the pod left a mount in its root"));
        }
        let mut doomed = Vec::new();
        Self::pod_writes(&slot.dir.join("upper"), Path::new(""), &mut doomed)?;
        for rel in doomed {
            remove_within_mount(&root.join(rel))?;
        }
        Self::reset_modes(&root)
    }

    /// What a pod wrote into the upper layer `upper` under `rel` that can be deleted through
    /// the merged view without touching the host's layer: everything in a fresh directory (they
    /// are opaque), and paths the host does not have. Anything else (a host file or directory
    /// copied up, a whiteout, a skeleton directory replaced) is an error: the slot goes.
    fn pod_writes(upper: &Path, rel: &Path, doomed: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let fresh = FRESH.iter().any(|f| Path::new(&f[1..]) == rel);
        for e in fs::read_dir(upper.join(rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            if fresh {
                doomed.push(r);
                continue;
            }
            let skeleton = r.to_str().is_some_and(|r| SKELETON.contains(&r));
            if skeleton && e.file_type()?.is_dir() {
                Self::pod_writes(upper, &r, doomed)?;
            } else if !skeleton
                && fs::symlink_metadata(Path::new("/").join(&r)).is_err()
                && !is_whiteout(&e)?
            {
                doomed.push(r);
            } else {
                return Err(std::io::Error::other(format!(
                    "the pod changed the host's /{}",
                    r.display()
                )));
            }
        }
        Ok(())
    }
}

/// An overlay whiteout: a character device 0:0 in the upper layer.
fn is_whiteout(e: &fs::DirEntry) -> std::io::Result<bool> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    Ok(e.file_type()?.is_char_device() && e.metadata()?.rdev() == 0)
}

/// Delete a file or a directory tree, failing (with what is left in place) at a mount point:
/// deleting through a mount would delete what it shows. (The slot's mount count rules out a
/// pod's mounts already; this keeps a deletion safe should that count ever be wrong.) The
/// slot is then discarded, which detaches every mount under it.
fn remove_within_mount(path: &Path) -> std::io::Result<()> {
    if is_mount_root(path)? {
        return Err(std::io::Error::other(format!(
            "{} is a mount point",
            path.display()
        )));
    }
    if fs::symlink_metadata(path)?.is_dir() {
        for e in fs::read_dir(path)? {
            remove_within_mount(&e?.path())?;
        }
        fs::remove_dir(path)
    } else {
        fs::remove_file(path)
    }
}

/// Whether `path` (not followed) is the root of a mount, from `statx`'s
/// `STATX_ATTR_MOUNT_ROOT` (Linux 5.8); an older kernel that cannot say counts as yes.
fn is_mount_root(path: &Path) -> std::io::Result<bool> {
    use nix::libc;
    let c = cstr(path)?;
    // SAFETY: `statx` is plain old data, for which all-zero bytes are a valid value.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path that outlives the call, and statx writes only
    // into `st`, the buffer of the type it declares.
    let r = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            0,
            &mut st,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let known = st.stx_attributes_mask & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0;
    Ok(!known || st.stx_attributes & libc::STATX_ATTR_MOUNT_ROOT as u64 != 0)
}

/// Whether a mount changed in this process's namespace since `table` (an open
/// `/proc/self/mountinfo`) was last asked; yes when it cannot tell.
fn mounts_changed(table: Option<&fs::File>) -> bool {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let Some(table) = table else {
        return true;
    };
    let mut p = libc::pollfd {
        fd: table.as_raw_fd(),
        events: libc::POLLPRI,
        revents: 0,
    };
    // SAFETY: poll on one descriptor we own, no waiting.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    // Nothing to report is 0 (the table is always readable, but only POLLPRI was asked for).
    r < 0 || p.revents & (libc::POLLERR | libc::POLLPRI) != 0
}

/// How many mounts of this process's namespace are at or under `root`, from
/// `/proc/self/mountinfo` (whose mount points escape space, tab, newline and backslash as
/// `\ooo`).
fn mounts_under(root: &Path) -> std::io::Result<usize> {
    let table = fs::read("/proc/self/mountinfo")?;
    let mut prefix = Vec::new();
    for b in root.as_os_str().as_encoded_bytes() {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            prefix.extend(format!("\\{b:03o}").into_bytes());
        } else {
            prefix.push(*b);
        }
    }
    Ok(table
        .split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .filter(|point| {
            point
                .strip_prefix(prefix.as_slice())
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'/')
        })
        .count())
}

/// Delete a slot's folders, not crossing into its root (only an empty root is removed).
fn remove_slot_dirs(slot: &Path) {
    let _ = fs::remove_dir_all(slot.join("upper"));
    let _ = fs::remove_dir_all(slot.join("work"));
    let _ = fs::remove_dir(slot.join("root"));
    let _ = fs::remove_dir(slot);
}

/// Where a container path is on the host.
struct Layout {
    isolated: bool,
    /// Where the rest of the root is: a mounted slot's merged view, or the writable layer of a
    /// slot the pod mounts itself.
    view: PathBuf,
    mounts: Vec<(String, PathBuf)>,
}

impl Layout {
    fn host_path(&self, path: &str) -> PathBuf {
        if !self.isolated {
            return PathBuf::from(path);
        }
        let mut best: Option<(&str, PathBuf)> = None;
        for (target, source) in &self.mounts {
            if under(path, target) && best.as_ref().is_none_or(|(t, _)| target.len() > t.len()) {
                best = Some((target, source.clone()));
            }
        }
        match best {
            Some((target, source)) => {
                source.join(path[target.trim_end_matches('/').len()..].trim_start_matches('/'))
            }
            None => self.view.join(path.trim_start_matches('/')),
        }
    }
}

/// Why a direct start did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// An input artifact could not be staged: the pod fails, as it would in the wrapper.
    #[error("{0}")]
    Input(String),
    /// The container's command does not exist.
    #[error("container main: command '{0}' not found")]
    CommandNotFound(String),
    /// The private root could not be set up this way: use the wrapper instead.
    #[error("direct start: {0}")]
    Setup(#[from] std::io::Error),
}

impl From<std::ffi::NulError> for DirectError {
    fn from(e: std::ffi::NulError) -> Self {
        DirectError::Setup(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    }
}

pub struct DirectPod {
    proc: Proc,
    layout: Layout,
    spec: PodSpec,
    /// The private root's slot, given back when the pod is finished.
    slot: Option<HeldSlot>,
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

/// Stage the inputs and start the pod's only container, in a private root from `sandboxes`
/// when this process may make one (root, and `ONYX_NO_SANDBOX` unset).
pub fn start(
    spec: &PodSpec,
    dir: &Path,
    sandboxes: &std::sync::Arc<Sandboxes>,
) -> Result<DirectPod, DirectError> {
    let mut c = spec.main[0].clone();
    for (_, v) in c.env.iter_mut() {
        if v == crate::pod::NAMESPACE_PLACEHOLDER {
            *v = spec.namespace.clone();
        }
    }
    let isolated =
        nix::unistd::Uid::effective().is_root() && std::env::var_os("ONYX_NO_SANDBOX").is_none();
    let mounts: Vec<(String, PathBuf)> = c
        .mounts
        .iter()
        .map(|m| (m.target.clone(), m.source.clone()))
        .collect();
    // From here on a failure gives the slot back.
    let mut held = SlotGuard(if isolated {
        Some(HeldSlot {
            slot: sandboxes.take()?,
            pod_binds: Vec::new(),
            pool: sandboxes.clone(),
        })
    } else {
        None
    });
    let slot_dir = held
        .0
        .as_ref()
        .map(|h| h.slot.dir.clone())
        .unwrap_or_default();
    let root = slot_dir.join("root");
    let premounted = isolated && sandboxes.mounted;
    let layout = Layout {
        isolated,
        view: if premounted {
            root.clone()
        } else {
            slot_dir.join("upper")
        },
        mounts,
    };
    if isolated {
        for (target, source) in &layout.mounts {
            fs::create_dir_all(source)?;
            // The mount point, made where the merged root will have it.
            let point = layout.view.join(target.trim_start_matches('/'));
            fs::create_dir_all(&point)?;
            if premounted {
                bind(source, &point, false)?;
                if let Some(h) = held.0.as_mut() {
                    h.pod_binds.push(root.join(target.trim_start_matches('/')));
                }
            }
        }
    }
    // The argosay image has its program at /argosay; scripts name it there.
    if isolated {
        crate::images::plant_image_files(&layout.view, [c.image.as_str()], IN_ROOT_HOME)?;
    }
    // Inputs go straight to where the pod will see them.
    crate::wrapper::stage_inputs(spec, &dir.join("scratch"), |p| layout.host_path(p))
        .map_err(DirectError::Input)?;
    let workdir = c.working_dir.clone().unwrap_or_else(|| {
        if isolated {
            "/".into()
        } else {
            dir.join("work").display().to_string()
        }
    });
    if isolated {
        fs::create_dir_all(layout.view.join(workdir.trim_start_matches('/')))?;
    } else {
        fs::create_dir_all(&workdir)?;
    }
    // stdout and stderr go straight to files (no pipes, no reader threads); the result is
    // read back from the stdout file after the exit. Unless it is, both streams share one log,
    // as a container's do in `kubectl logs`: a file less to make per pod.
    let stdout_file = fs::File::create(dir.join("main.log"))?;
    let stderr_file = if spec.capture_result {
        fs::File::create(dir.join("main.err.log"))?
    } else {
        stdout_file.try_clone()?
    };
    let Some((prog, args)) = c.command.split_first() else {
        return Err(DirectError::CommandNotFound(String::new()));
    };
    // The program is resolved here, on the PATH the pod will have, so that the spawn can use
    // posix_spawn (vfork): with a changed PATH and a bare name the standard library falls
    // back to a full fork, which copies this process's page tables once per pod.
    let host_path = std::env::var("PATH").unwrap_or_default();
    let pod_path = c
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| format!("{host_path}:/usr/games"));
    let program = if prog.contains('/') {
        Path::new(prog).exists().then(|| prog.clone())
    } else {
        crate::images::which_in(prog, &pod_path).or_else(|| crate::images::which(prog))
    };
    let Some(program) = program else {
        return Err(DirectError::CommandNotFound(prog.clone()));
    };
    let proc = if isolated {
        // The argv and environment the pod gets: ours, with its PATH and its own variables.
        let mut env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
            std::env::vars_os().filter(|(k, _)| k != "PATH").collect();
        env.push(("PATH".into(), pod_path.clone().into()));
        for (k, v) in &c.env {
            env.retain(|(x, _)| x.as_os_str() != std::ffi::OsStr::new(k));
            env.push((k.into(), v.into()));
        }
        let child_mounts = if premounted {
            None
        } else {
            let mut binds: Vec<(CString, CString, bool)> = Vec::new();
            for (target, source) in &layout.mounts {
                binds.push((
                    cstr(source)?,
                    cstr(&root.join(target.trim_start_matches('/')))?,
                    false,
                ));
            }
            for (source, target, recursive) in system_binds(&spec.home, &root) {
                binds.push((cstr(&source)?, cstr(&target)?, recursive));
            }
            Some(spawn::ChildMounts {
                overlay: CString::new(overlay_options(&slot_dir))?,
                binds,
            })
        };
        // Inside the root ONYX's home is at `/.onyx-home` (a home under /tmp would be hidden
        // by the pod's fresh /tmp): paths into it (scripts, stand-ins) point there.
        let home_s = spec.home.display().to_string();
        let in_root = |a: &str| match a.strip_prefix(&home_s) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!("{IN_ROOT_HOME}{rest}")
            }
            _ => a.to_string(),
        };
        let plan = spawn::Plan {
            program: CString::new(in_root(&program))?,
            argv: std::iter::once(in_root(prog))
                .chain(args.iter().map(|a| in_root(a)))
                .map(CString::new)
                .collect::<Result<_, _>>()?,
            envp: env
                .into_iter()
                .map(|(k, v)| {
                    let mut kv = k.into_encoded_bytes();
                    kv.push(b'=');
                    kv.extend(v.into_encoded_bytes());
                    CString::new(kv)
                })
                .collect::<Result<_, _>>()?,
            stdout: stdout_file,
            stderr: stderr_file,
            mounts: child_mounts,
            root: cstr(&root)?,
            workdir: CString::new(workdir.clone())?,
        };
        Proc::Raw(spawn::spawn_in_private_root(&plan)?)
    } else {
        let mut cmd = Command::new(&program);
        cmd.arg0(prog)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout_file)
            .stderr(stderr_file)
            .process_group(0)
            .current_dir(&workdir);
        cmd.env("PATH", &pod_path);
        for (k, v) in &c.env {
            cmd.env(k, v);
        }
        Proc::Std(cmd.spawn()?)
    };
    Ok(DirectPod {
        proc,
        layout,
        spec: spec.clone(),
        slot: held.0.take(),
    })
}

/// A started pod's process: through the standard library, or cloned into its private root.
enum Proc {
    Std(Child),
    Raw(i32),
}

impl DirectPod {
    /// The pod's process id, which is also its process group.
    pub fn id(&self) -> u32 {
        match &self.proc {
            Proc::Std(c) => c.id(),
            Proc::Raw(pid) => *pid as u32,
        }
    }

    /// Wait for the pod's process; its exit code, or 128 + the signal that killed it.
    fn wait(&mut self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        match &mut self.proc {
            Proc::Std(c) => match c.wait() {
                Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
                Err(_) => 1,
            },
            Proc::Raw(pid) => spawn::wait(*pid),
        }
    }
}

/// A slot a pod holds, with the mounts made for the pod's volumes.
struct HeldSlot {
    slot: Slot,
    pod_binds: Vec<PathBuf>,
    pool: std::sync::Arc<Sandboxes>,
}

impl HeldSlot {
    fn release(self) {
        self.pool.give_back(self.slot, &self.pod_binds);
    }
}

/// Gives a slot back unless taken out (a start that failed half-way).
struct SlotGuard(Option<HeldSlot>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.release();
        }
    }
}

/// Wait for the pod and collect its outputs.
pub fn finish(mut pod: DirectPod, dir: &Path) -> PodOutcome {
    let code = pod.wait();
    let mut outcome = PodOutcome {
        exit_code: Some(code),
        ..Default::default()
    };
    if code == 127 {
        outcome.message = Some(format!(
            "container main: command '{}' not found",
            pod.spec.main[0]
                .command
                .first()
                .cloned()
                .unwrap_or_default()
        ));
    }
    if pod.spec.capture_result {
        let mut c = Vec::new();
        if let Ok(f) = fs::File::open(dir.join("main.log")) {
            let _ = f.take(MAX_CAPTURE as u64).read_to_end(&mut c);
        }
        outcome.stdout = Some(String::from_utf8_lossy(&c).into_owned());
    }
    for (name, path) in &pod.spec.output_parameters {
        let v = fs::read(pod.layout.host_path(path))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        outcome.parameters.push((name.clone(), v));
    }
    crate::wrapper::save_outputs(
        &pod.spec,
        &dir.join("scratch"),
        |p| pod.layout.host_path(p),
        code,
        &mut outcome,
    );
    // No `result.json`: that file is how a restarted server learns what a wrapper's pod did,
    // and direct pods run only under a controller whose state ends with its process (`onyx
    // run`, the conformance runner), which has the outcome in hand.
    if let Some(slot) = pod.slot.take() {
        // What the pod left running dies with it (as its container would), so that nothing
        // writes into the slot once it is the next pod's.
        crate::pod::kill_group(pod.id());
        slot.release();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mounts are counted at or under a path, not under every path sharing its first bytes.
    #[test]
    fn mounts_are_counted_under_a_path_only() {
        assert!(mounts_under(Path::new("/proc")).unwrap() >= 1);
        assert_eq!(mounts_under(Path::new("/pro")).unwrap(), 0);
        assert_eq!(mounts_under(Path::new("/onyx-no-such-dir")).unwrap(), 0);
    }

    /// Two workflows run by one process (the conformance runner, the server) never share a
    /// slot: each pool has its own folder, and a dropped pool leaves nothing behind.
    #[test]
    fn pools_of_one_process_are_apart_and_clean_up() {
        let home = std::env::temp_dir().join(format!("onyx-pools-{}", std::process::id()));
        let a = Sandboxes::new(&home);
        let b = Sandboxes::new(&home);
        assert_ne!(a.base, b.base);
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped the slot half: the opaque-directory xattr needs root");
            return;
        }
        let (sa, sb) = (a.take().unwrap(), b.take().unwrap());
        assert_ne!(sa.dir, sb.dir);
        let first = sa.dir.clone();
        fs::write(first.join("upper/tmp/left-over"), "x").unwrap();
        fs::create_dir_all(first.join("upper/etc")).unwrap();
        a.give_back(sa, &[]);
        let again = a.take().unwrap();
        assert_eq!(again.dir, first, "an emptied slot is reused");
        assert!(!first.join("upper/tmp/left-over").exists());
        assert!(!first.join("upper/etc").exists());
        assert!(first.join("upper/var/tmp").is_dir());
        a.give_back(again, &[]);
        let base = a.base.clone();
        drop(a);
        assert!(!base.exists());
        drop(b);
        let _ = fs::remove_dir_all(&home);
    }
}
