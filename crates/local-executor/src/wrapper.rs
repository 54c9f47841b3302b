//! The wrapper (`onyx exec-pod DIR`, ONYX's `argoexec`): it claims the pod's directory, resolves
//! its secrets, builds its sandbox, stages its inputs, runs its init containers, sidecars and
//! main containers, and saves outputs, parameters and stdout into `result.json`.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub use crate::container::{ContainerRun, Mount};
use crate::pod::*;
use artifact_repo::archive as artifacts;

/// Largest stdout kept for `outputs.result`.
const MAX_CAPTURE: usize = 256 * 1024 + 1;

/// Run a prepared pod to completion and write `result.json`. Returns the main exit code.
pub fn run_pod(dir: &Path) -> Result<i32, ExecError> {
    // Held until this process ends; `None`: the pod already ran (a controller that crashed
    // while starting it started it again).
    let Some(_claim) = crate::durable::claim(dir)? else {
        return Ok(read_outcome(dir).and_then(|o| o.exit_code).unwrap_or(0));
    };
    let mut spec: PodSpec =
        serde_json::from_slice(&fs::read(dir.join("pod.json"))?).map_err(|e| ExecError::Setup {
            pod: dir.display().to_string(),
            message: e.to_string(),
        })?;
    // Secrets, and the S3 credentials, are host files the pod's own root does not show.
    if let Err(message) = resolve_secrets(&mut spec) {
        let outcome = PodOutcome {
            exit_code: None,
            message: Some(message),
            ..Default::default()
        };
        write_outcome(dir, &outcome)?;
        return Ok(-1);
    }
    if let Some(c) = spec.s3.as_mut() {
        c.connect().map_err(|e| ExecError::Setup {
            pod: dir.display().to_string(),
            message: format!("the artifact repository: {e}"),
        })?;
    }
    let mut dir = dir.to_path_buf();
    let mut home = spec.home.clone();
    let outcome = match execute(&spec, &mut dir, &mut home) {
        Ok(o) => o,
        Err(e) => PodOutcome {
            exit_code: None,
            message: Some(e.to_string()),
            ..Default::default()
        },
    };
    // The secret volumes' files go with the pod (seen under the pod's root, if it has one).
    for v in &spec.secret_volumes {
        let _ = fs::remove_dir_all(rebase(&v.dir, &spec.home, &home));
    }
    write_outcome(&dir, &outcome)?;
    Ok(outcome.exit_code.unwrap_or(1))
}

fn write_outcome(dir: &Path, outcome: &PodOutcome) -> std::io::Result<()> {
    let tmp = dir.join("result.json.tmp");
    fs::write(&tmp, serde_json::to_vec(outcome).unwrap_or_default())?;
    fs::rename(&tmp, dir.join("result.json"))
}

/// The pod's namespace into `fieldRef: metadata.namespace`, and its secrets into the
/// containers' environments and the secret volumes (in memory and those files only).
pub(crate) fn resolve_secrets(spec: &mut PodSpec) -> Result<(), String> {
    let namespace = spec.namespace.clone();
    let none_wanted = spec.secret_volumes.is_empty()
        && spec
            .init
            .iter()
            .chain(&spec.sidecars)
            .chain(&spec.main)
            .all(|c| c.secret_env.is_empty());
    let buckets_with_secrets = spec
        .inputs
        .iter()
        .filter_map(|a| match &a.source {
            InputSource::S3 { bucket, .. } => Some(bucket.as_ref()),
            _ => None,
        })
        .chain(spec.output_artifacts.iter().filter_map(|a| a.s3.as_ref()))
        .any(|b| b.access_key.is_some());
    let secrets = match &spec.secrets_file {
        Some(f) if !none_wanted || buckets_with_secrets => Some(pod_secrets::Secrets::load(f)?),
        _ => None,
    };
    let mut env: Vec<pod_secrets::EnvTarget> = Vec::new();
    let PodSpec {
        init,
        sidecars,
        main,
        secret_volumes,
        inputs,
        output_artifacts,
        ..
    } = spec;
    // Buckets artifacts name themselves: their credentials from the namespace's secrets, and
    // their clients made now (the pod's root has neither the secrets nor the certificates).
    let buckets = inputs
        .iter_mut()
        .filter_map(|a| match &mut a.source {
            InputSource::S3 { bucket, .. } => Some(bucket.as_mut()),
            _ => None,
        })
        .chain(output_artifacts.iter_mut().filter_map(|a| a.s3.as_mut()));
    for b in buckets {
        let credentials = match (&b.access_key, &b.secret_key) {
            (Some((sa, ka)), Some((ss, ks))) => {
                let source = secrets.as_ref().ok_or_else(|| {
                    format!(
                        "the bucket {}'s credentials are secrets, and this server keeps no secrets (set [secrets] file in its config)",
                        b.bucket
                    )
                })?;
                Some((
                    source.value(&namespace, sa, ka)?,
                    source.value(&namespace, ss, ks)?,
                ))
            }
            _ => None,
        };
        let mut c = artifact_repo::S3Config::for_artifact(
            &b.endpoint,
            &b.bucket,
            b.region.as_deref(),
            b.insecure,
            credentials,
        );
        c.connect()
            .map_err(|e| format!("the bucket {}: {e}", b.bucket))?;
        b.resolved = Some(c);
    }
    for c in init
        .iter_mut()
        .chain(sidecars.iter_mut())
        .chain(main.iter_mut())
    {
        for (_, v) in c.env.iter_mut() {
            if v == NAMESPACE_PLACEHOLDER {
                *v = namespace.clone();
            }
        }
        env.push((&c.secret_env, &mut c.env));
    }
    pod_secrets::resolve(&namespace, secrets.as_ref(), &mut env, secret_volumes)
}

use pod_sandbox::Sandbox;

/// Put every input artifact where the pod will see it; `place` maps a container path to the
/// path to write.
pub(crate) fn stage_inputs(
    spec: &PodSpec,
    scratch: &Path,
    place: impl Fn(&str) -> PathBuf,
) -> Result<(), String> {
    let repo = spec.local_repository();
    for (i, a) in spec.inputs.iter().enumerate() {
        let dest = place(&a.path);
        let r = match &a.source {
            InputSource::Repository(key) | InputSource::S3 { key, .. }
                if artifact_repo::check_key(key).is_err() =>
            {
                Err(artifacts::ArtifactError::Other(format!(
                    "artifact key {key:?} is not a relative key (no '/' at the start, no '..')"
                )))
            }
            InputSource::Raw(data) => artifacts::write_raw(data, &dest),
            InputSource::Http { url, headers } => artifacts::download(url, headers, &dest),
            InputSource::Repository(key) => match &spec.s3 {
                None => artifacts::load(
                    &repo.join(key),
                    &dest,
                    a.sub_path.as_deref(),
                    &scratch.join(i.to_string()),
                ),
                Some(c) => fetch(
                    &artifact_repo::Repository::S3(c.clone()),
                    key,
                    &dest,
                    a.sub_path.as_deref(),
                    &scratch.join(i.to_string()),
                ),
            },
            InputSource::S3 { bucket, key } => bucket
                .repository()
                .map_err(artifacts::ArtifactError::Other)
                .and_then(|repo| {
                    fetch(
                        &repo,
                        key,
                        &dest,
                        a.sub_path.as_deref(),
                        &scratch.join(i.to_string()),
                    )
                }),
        };
        if let Err(e) = r {
            if a.optional {
                continue;
            }
            return Err(format!("failed to load input artifact '{}': {e}", a.name));
        }
        if let Some(mode) = a.mode {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&dest, fs::Permissions::from_mode(mode));
        }
    }
    Ok(())
}

fn rebase(p: &Path, old: &Path, new: &Path) -> PathBuf {
    match p.strip_prefix(old) {
        Ok(rest) => new.join(rest),
        Err(_) => p.to_path_buf(),
    }
}

/// After entering the private root, every path into ONYX's home points at its new place.
fn rebase_spec(spec: &mut PodSpec, new_home: &Path) {
    let old = spec.home.clone();
    let old_s = old.display().to_string();
    let new_s = new_home.display().to_string();
    for c in spec
        .init
        .iter_mut()
        .chain(spec.sidecars.iter_mut())
        .chain(spec.main.iter_mut())
    {
        for m in c.mounts.iter_mut() {
            m.source = rebase(&m.source, &old, new_home);
        }
        for a in c.command.iter_mut() {
            if let Some(rest) = a.strip_prefix(&old_s) {
                *a = format!("{new_s}{rest}");
            }
        }
    }
    if let Some(d) = spec.artifacts_dir.as_mut() {
        *d = rebase(d, &old, new_home);
    }
    spec.home = new_home.to_path_buf();
}

/// How a pod's containers run: in an OCI sandbox (rootless where the server is not root), or,
/// only where the operator said so (`ONYX_NO_SANDBOX`), as plain processes on the host's paths.
fn sandbox_for(spec: &PodSpec, dir: &Path, volumes: &[Mount]) -> Result<Option<Sandbox>, String> {
    if pod_sandbox::disabled() {
        return Ok(None);
    }
    if let Some(why) = pod_sandbox::unavailable() {
        return Err(format!("pods run in an OCI sandbox, and {why}"));
    }
    let gpus = spec
        .main
        .iter()
        .chain(&spec.init)
        .chain(&spec.sidecars)
        .any(|c| c.env.iter().any(|(k, _)| k == "NVIDIA_VISIBLE_DEVICES"));
    let script = spec.script.as_ref().map(|_| dir.join("script"));
    Sandbox::prepare(&pod_sandbox::PodRoot {
        dir,
        home: &spec.home,
        pod: &spec.pod_name,
        volumes,
        script: script.as_deref().filter(|p| p.exists()),
        hidden: &spec.hidden,
        gpus,
        host_users: spec.host_users,
    })
    .and_then(|sb| {
        let images = spec
            .main
            .iter()
            .chain(&spec.init)
            .chain(&spec.sidecars)
            .map(|c| c.image.as_str());
        crate::images::plant_image_files(&sb.root, images, pod_sandbox::IN_ROOT_HOME)
            .map_err(|e| format!("image files: {e}"))?;
        Ok(Some(sb))
    })
}

/// Run the pod; `dir` and `home` become the paths the wrapper sees them at afterwards (inside
/// the pod's root, when sandboxed, where outputs are read).
fn execute(spec: &PodSpec, dir: &mut PathBuf, home: &mut PathBuf) -> Result<PodOutcome, String> {
    if spec.no_network {
        pod_sandbox::network::enter_empty_network()?;
    }
    // Volume mounts of every container are visible to the whole pod.
    let mut all_mounts: Vec<Mount> = Vec::new();
    for c in spec
        .init
        .iter()
        .chain(spec.sidecars.iter())
        .chain(spec.main.iter())
    {
        for m in &c.mounts {
            if !all_mounts.iter().any(|x| x.target == m.target) {
                all_mounts.push(m.clone());
            }
        }
    }
    let sandbox = sandbox_for(spec, dir, &all_mounts)?;
    let scratch = dir.join("scratch");
    fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    // Inputs, staged by the wrapper where the pod will see them (into its fresh root, which
    // holds no link of the pod's yet).
    match &sandbox {
        Some(sb) => {
            let place = |p: &str| {
                pod_sandbox::inside(&sb.root, p).unwrap_or_else(|| sb.root.join(".invalid"))
            };
            stage_inputs(spec, &scratch, place)?;
            for a in &spec.inputs {
                let dest = place(&a.path);
                if dest.exists() {
                    sb.give_tree(&dest)?;
                }
            }
        }
        None => stage_inputs(spec, &scratch, |p| PathBuf::from(p))?,
    }
    let log_path = dir.join("main.log");
    let log = Arc::new(Mutex::new(
        fs::File::create(&log_path).map_err(|e| e.to_string())?,
    ));
    // A container starts in its image's WORKDIR, `/` for most images; with a root of the
    // pod's own that is safe. Without one, a directory of the pod's own stands in.
    let workdir = if sandbox.is_some() {
        PathBuf::from("/")
    } else {
        dir.join("work")
    };
    if sandbox.is_none() {
        fs::create_dir_all(&workdir).map_err(|e| e.to_string())?;
    }
    let run = Runner {
        sandbox: sandbox.as_ref(),
        workdir: &workdir,
    };
    // Inside the sandbox, ONYX's home (its stand-ins and the script) is at IN_ROOT_HOME.
    let mut running = spec.clone();
    if sandbox.is_some() {
        rebase_spec(&mut running, Path::new(pod_sandbox::IN_ROOT_HOME));
    }
    let spec_for_outputs = spec;
    let spec = &running;
    for (i, c) in spec.init.iter().enumerate() {
        let (code, _) = run_container(&run, c, i, &log, false)?;
        if code != 0 {
            return Ok(PodOutcome {
                exit_code: Some(code),
                message: Some(format!(
                    "init container {} failed with exit code {code}",
                    c.name
                )),
                ..Default::default()
            });
        }
    }
    let mut sidecars = Vec::new();
    for (i, c) in spec.sidecars.iter().enumerate() {
        if let Ok(child) = run.spawn(c, 100 + i, Stdio::null(), Stdio::null()) {
            sidecars.push(child);
        }
    }
    // Main containers, in dependency order (containerSet), each waiting for its dependencies.
    let mut exit = 0;
    let mut stdout_text = String::new();
    let mut done: Vec<String> = Vec::new();
    let mut remaining: Vec<(usize, &ContainerRun)> = spec.main.iter().enumerate().collect();
    let mut message = None;
    while !remaining.is_empty() {
        let Some(pos) = remaining
            .iter()
            .position(|(_, c)| c.dependencies.iter().all(|d| done.contains(d)))
        else {
            return Err("containerSet has a dependency cycle or an unknown dependency".into());
        };
        let (i, c) = remaining.remove(pos);
        let (code, out) = run_container(&run, c, 200 + i, &log, spec.capture_result)?;
        if spec.main.len() == 1 || c.name == "main" {
            stdout_text = out;
        }
        if code != 0 && exit == 0 {
            exit = code;
            if code == 127 {
                message = Some(format!(
                    "container {}: command '{}' not found",
                    c.name,
                    c.command.first().cloned().unwrap_or_default()
                ));
            }
        }
        done.push(c.name.clone());
        if code != 0 {
            break;
        }
    }
    for mut s in sidecars {
        let _ = s.kill();
        let _ = s.wait();
    }
    // Outputs: read inside the pod's root, so that links the pod left resolve there.
    let mut spec = spec_for_outputs.clone();
    if let Some(sb) = &sandbox {
        let new_home = sb.enter_for_outputs(&spec.home)?;
        *dir = rebase(dir, &spec.home, &new_home);
        rebase_spec(&mut spec, &new_home);
        *home = new_home;
    }
    let spec = &spec;
    let scratch = dir.join("scratch");
    let mut outcome = PodOutcome {
        exit_code: Some(exit),
        message,
        ..Default::default()
    };
    if spec.capture_result {
        outcome.stdout = Some(stdout_text);
    }
    for (name, path) in &spec.output_parameters {
        let v = read_capped(Path::new(path), MAX_CAPTURE)
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        outcome.parameters.push((name.clone(), v));
    }
    save_outputs(
        spec,
        &scratch,
        |p: &str| PathBuf::from(p),
        exit,
        &mut outcome,
    );
    Ok(outcome)
}

/// At most `max` bytes of a regular file (an output parameter: a pod may leave a link to a
/// device or a fifo, or a file too large to keep).
fn read_capped(path: &Path, max: usize) -> Option<Vec<u8>> {
    let f = fs::File::open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = Vec::new();
    f.take(max as u64).read_to_end(&mut out).ok()?;
    Some(out)
}

/// Where and how a pod's containers start.
struct Runner<'a> {
    sandbox: Option<&'a Sandbox>,
    workdir: &'a Path,
}

impl Runner<'_> {
    /// Start container `c` (the `n`th of the pod).
    fn spawn(&self, c: &ContainerRun, n: usize, out: Stdio, err: Stdio) -> std::io::Result<Child> {
        let Some((prog, args)) = c.command.split_first() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "container has no command",
            ));
        };
        if let Some(sb) = self.sandbox {
            if !found_in_root(&sb.root, prog, c) {
                return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
            }
            let mut cmd = sb.command(&c.process(), n).map_err(std::io::Error::other)?;
            cmd.stdin(Stdio::null()).stdout(out).stderr(err);
            return cmd.spawn();
        }
        let mut cmd = Command::new(prog);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{path}:/usr/games"));
        for (k, v) in &c.env {
            cmd.env(k, v);
        }
        match &c.working_dir {
            Some(wd) => {
                let _ = fs::create_dir_all(wd);
                cmd.current_dir(wd);
            }
            None => {
                cmd.current_dir(self.workdir);
            }
        }
        cmd.spawn()
    }
}

/// Whether the pod's root has the program a container starts (the runtime's own error for a
/// missing one is not the message Kubernetes users know).
fn found_in_root(root: &Path, prog: &str, c: &ContainerRun) -> bool {
    let exists = |p: &Path| fs::metadata(p).is_ok_and(|m| m.is_file());
    if prog.contains('/') {
        return pod_sandbox::inside(root, prog).is_some_and(|p| exists(&p));
    }
    let path = c
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games");
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .any(|d| pod_sandbox::inside(root, d).is_some_and(|dir| exists(&dir.join(prog))))
}

/// Download `key` from a bucket into `scratch`, then place it at `dest` (unpacking a tar.gz).
fn fetch(
    repo: &artifact_repo::Repository,
    key: &str,
    dest: &Path,
    sub_path: Option<&str>,
    scratch: &Path,
) -> Result<(), artifacts::ArtifactError> {
    let fetched = scratch.join("fetched");
    repo.blocking(repo.get(key, &fetched))
        .map_err(|e| artifacts::ArtifactError::Other(e.to_string()))?;
    artifacts::load(&fetched, dest, sub_path, scratch)
}

/// Save each output artifact into the repository (`host` maps a container path to the path
/// to read): in `HOME/artifacts`, or staged in `scratch` and uploaded to S3. A failure to save
/// one that is not optional fails a pod that otherwise succeeded, with the error.
pub(crate) fn save_outputs(
    spec: &PodSpec,
    scratch: &Path,
    host: impl Fn(&str) -> PathBuf,
    exit: i32,
    outcome: &mut PodOutcome,
) {
    let local = spec.local_repository();
    for (i, a) in spec.output_artifacts.iter().enumerate() {
        let src = if a.main_log {
            scratch.parent().unwrap_or(scratch).join("main.log")
        } else {
            host(&a.path)
        };
        if !src.exists() {
            continue;
        }
        let bucket = match (&a.s3, &spec.s3) {
            (Some(own), _) => Some(own.repository()),
            (None, Some(c)) => Some(Ok(artifact_repo::Repository::S3(c.clone()))),
            (None, None) => None,
        };
        let saved = match bucket {
            _ if artifact_repo::check_key(&a.key).is_err() => {
                Err(artifacts::ArtifactError::Other(format!(
                    "artifact key {:?} is not a relative key (no '/' at the start, no '..')",
                    a.key
                )))
            }
            None => artifacts::save(&src, &local.join(&a.key), a.archive, a.level),
            Some(Err(e)) => Err(artifacts::ArtifactError::Other(e)),
            Some(Ok(repo)) => {
                let staged = scratch.join(format!("output-{i}"));
                artifacts::save(&src, &staged, a.archive, a.level).and_then(|()| {
                    repo.blocking(repo.put(&a.key, &staged))
                        .map(|_| ())
                        .map_err(|e| artifacts::ArtifactError::Other(e.to_string()))
                })
            }
        };
        match saved {
            Ok(()) => outcome.artifacts.push((a.name.clone(), a.key.clone())),
            Err(e) => {
                if !a.optional && exit == 0 && outcome.message.is_none() {
                    outcome.message =
                        Some(format!("failed to save output artifact '{}': {e}", a.name));
                }
            }
        }
    }
}

/// Run one container, copying its output to the pod log; returns the exit code and stdout.
fn run_container(
    run: &Runner,
    c: &ContainerRun,
    n: usize,
    log: &Arc<Mutex<fs::File>>,
    capture: bool,
) -> Result<(i32, String), String> {
    let mut child = match run.spawn(c, n, Stdio::piped(), Stdio::piped()) {
        Ok(ch) => ch,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            let msg = format!(
                "exec: \"{}\": executable file not found in $PATH\n",
                c.command.first().cloned().unwrap_or_default()
            );
            if let Ok(mut l) = log.lock() {
                let _ = l.write_all(msg.as_bytes());
            }
            return Ok((127, String::new()));
        }
        Err(e) => return Err(format!("container {}: {e}", c.name)),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let log2 = log.clone();
    let err_thread = std::thread::spawn(move || {
        if let Some(mut e) = stderr {
            let mut buf = [0u8; 8192];
            while let Ok(n) = e.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut l) = log2.lock() {
                    let _ = l.write_all(&buf[..n]);
                }
            }
        }
    });
    let mut captured = Vec::new();
    if let Some(o) = stdout {
        let mut reader = BufReader::new(o);
        let mut line = Vec::new();
        while reader
            .read_until(b'\n', &mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            if let Ok(mut l) = log.lock() {
                let _ = l.write_all(&line);
            }
            if capture && captured.len() < MAX_CAPTURE {
                captured.extend_from_slice(&line[..line.len().min(MAX_CAPTURE - captured.len())]);
            }
            line.clear();
        }
    }
    let _ = err_thread.join();
    let status = child.wait().map_err(|e| e.to_string())?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9));
    Ok((code, String::from_utf8_lossy(&captured).into_owned()))
}
