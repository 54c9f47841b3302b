//! `onyx emissary`: ONYX's executor inside a step's pod, in the container `main`, as Argo's
//! emissary runs there (`argoexec emissary -- COMMAND…`). It runs the container's command
//! with its arguments, passes its standard output through (the kubelet keeps it as the log)
//! while keeping it for `outputs.result`, reads the output parameters from their files once
//! the command ends, writes them to the container's termination message ([`EmissaryReport`],
//! JSON, which the executor on the server reads from the pod's status), and exits with the
//! command's exit code.
//!
//! Kubernetes keeps at most 4096 bytes of a termination message; a report that does not fit
//! says so instead (as its `error`), and the step fails with that: large outputs belong in
//! artifacts. `onyx install-executor DIR`, the pod's init container, copies the binary into
//! the emptyDir the main container runs it from.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::pod_status::EmissaryReport;

/// What Kubernetes keeps of a termination message.
pub const MESSAGE_LIMIT: usize = 4096;
/// Where the kubelet reads a container's termination message (its default
/// `terminationMessagePath`).
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// What the step wants reported (`ONYX_OUTPUTS`, written by `pod_shape`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OutputsSpec {
    #[serde(default)]
    pub result: bool,
    #[serde(default)]
    pub parameters: Vec<ParameterSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParameterSpec {
    pub name: String,
    pub path: String,
}

/// One run of the emissary.
#[derive(Debug, Clone)]
pub struct Emissary {
    pub outputs: OutputsSpec,
    /// A script template's source (`ONYX_SCRIPT`): written to `script_dir` and its path
    /// appended to the command, as Argo runs a script.
    pub script: Option<String>,
    pub script_dir: PathBuf,
    pub termination_log: PathBuf,
}

impl Emissary {
    /// The emissary as the pod sets it up: `ONYX_OUTPUTS`, `ONYX_SCRIPT` (with `--script`),
    /// the directory the binary was installed in for the script, and the termination log.
    pub fn from_env(script: bool) -> Result<Emissary, String> {
        let outputs = match std::env::var("ONYX_OUTPUTS") {
            Ok(text) => serde_json::from_str(&text).map_err(|e| format!("ONYX_OUTPUTS: {e}"))?,
            Err(_) => OutputsSpec::default(),
        };
        let script = if script {
            Some(std::env::var("ONYX_SCRIPT").map_err(|_| {
                "--script: the script's source is expected in ONYX_SCRIPT".to_string()
            })?)
        } else {
            None
        };
        let script_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(std::env::temp_dir);
        Ok(Emissary {
            outputs,
            script,
            script_dir,
            termination_log: PathBuf::from(TERMINATION_LOG),
        })
    }

    /// Run `command` (its program and arguments) to its end; the exit code to exit with.
    pub fn run(&self, mut command: Vec<String>) -> i32 {
        if let Some(source) = &self.script {
            let path = self.script_dir.join("script");
            if let Err(e) = std::fs::write(&path, source) {
                return self.fail(format!("writing the script to {}: {e}", path.display()));
            }
            command.push(path.display().to_string());
        }
        let Some((program, args)) = command.split_first() else {
            return self.fail("no command to run".into());
        };
        let mut child = match Command::new(program)
            .args(args)
            .stdin(Stdio::inherit())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return self.fail(format!("starting {program}: {e}")),
        };
        // Passed through as it comes; at most what a termination message can hold is kept.
        let mut kept = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            let mut buf = [0u8; 8192];
            let mut stdout = std::io::stdout();
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = stdout.write_all(&buf[..n]);
                        let _ = stdout.flush();
                        if self.outputs.result && kept.len() <= MESSAGE_LIMIT {
                            kept.extend_from_slice(&buf[..n]);
                        }
                    }
                }
            }
        }
        let code = match child.wait() {
            Ok(status) => exit_code(status),
            Err(e) => return self.fail(format!("waiting for {program}: {e}")),
        };
        let report = EmissaryReport {
            result: self
                .outputs
                .result
                .then(|| String::from_utf8_lossy(&kept).into_owned()),
            parameters: self
                .outputs
                .parameters
                .iter()
                .map(|p| (p.name.clone(), read_capped(Path::new(&p.path))))
                .collect(),
            error: None,
        };
        self.write(&report);
        code
    }

    /// Report why the command could not run; the exit code of a failed start.
    fn fail(&self, error: String) -> i32 {
        eprintln!("onyx emissary: {error}");
        self.write(&EmissaryReport {
            error: Some(error),
            ..Default::default()
        });
        1
    }

    fn write(&self, report: &EmissaryReport) {
        let mut text = serde_json::to_string(report).unwrap_or_default();
        if text.len() > MESSAGE_LIMIT {
            let error = format!(
                "the step's outputs are {} bytes, more than the {MESSAGE_LIMIT} bytes Kubernetes keeps of a termination message: put large outputs in artifacts",
                text.len()
            );
            text = serde_json::to_string(&EmissaryReport {
                error: Some(error),
                ..Default::default()
            })
            .unwrap_or_default();
        }
        if let Err(e) = std::fs::write(&self.termination_log, text) {
            eprintln!(
                "onyx emissary: writing {}: {e}",
                self.termination_log.display()
            );
        }
    }
}

/// A process's exit code as a shell reports it (128 + the signal that ended it).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// An output parameter's file, if it is a regular file; at most what a message can hold.
fn read_capped(path: &Path) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = Vec::new();
    f.take(MESSAGE_LIMIT as u64 + 1)
        .read_to_end(&mut out)
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `onyx install-executor DIR`: this binary, copied to `DIR/onyx`, with the shared libraries
/// it runs with in `DIR/lib` and its dynamic loader as `DIR/lib/ld.so`. A step's image may
/// have no C library at all (busybox, distroless) or another one; the pod runs
/// `DIR/lib/ld.so --library-path DIR/lib DIR/onyx emissary …`, which needs nothing of the
/// image. The libraries are those mapped into this process now (`/proc/self/maps`): what
/// the binary was linked against, loader included.
pub fn install(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let me = std::env::current_exe()?;
    let to = dir.join("onyx");
    std::fs::copy(&me, &to)?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib)?;
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut loader = None;
    for path in shared_objects(&maps) {
        let Some(name) = Path::new(&path).file_name() else {
            continue;
        };
        std::fs::copy(&path, lib.join(name))?;
        if name.to_string_lossy().starts_with("ld-") {
            loader = Some(lib.join(name));
        }
    }
    let loader = loader.ok_or_else(|| {
        std::io::Error::other(
            "no dynamic loader is mapped into this process (a static build needs no install)",
        )
    })?;
    std::fs::copy(&loader, lib.join("ld.so"))?;
    std::fs::set_permissions(lib.join("ld.so"), std::fs::Permissions::from_mode(0o755))?;
    Ok(to)
}

/// The shared objects (`*.so`, `*.so.N`) among a `/proc/PID/maps` text's mapped files, once
/// each, in order.
pub fn shared_objects(maps: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        if path.starts_with('/')
            && (name.ends_with(".so") || name.contains(".so."))
            && !out.iter().any(|p| p == path)
        {
            out.push(path.to_string());
        }
    }
    out
}
