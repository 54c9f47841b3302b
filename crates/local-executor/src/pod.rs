use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use workflow_model::{Artifact, Container, Template};

use crate::artifacts;
pub use crate::container::{ContainerRun, Mount};
use crate::images;

/// Largest stdout kept for `outputs.result`.
const MAX_CAPTURE: usize = 256 * 1024 + 1;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("pod {pod}: {message}")]
    Setup { pod: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum InputSource {
    Raw(String),
    Http {
        url: String,
        headers: Vec<(String, String)>,
    },
    Repository(String),
    /// An object in a bucket the artifact names itself.
    S3 {
        bucket: Box<S3Location>,
        key: String,
    },
}

/// A bucket an artifact names with Argo's `s3` fields; its credentials are references to the
/// namespace's secrets (`accessKeySecret`, `secretKeySecret`), resolved by the wrapper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct S3Location {
    pub endpoint: String,
    pub bucket: String,
    pub region: Option<String>,
    pub insecure: bool,
    /// (secret, key) of the access key id and of the secret access key.
    pub access_key: Option<(String, String)>,
    pub secret_key: Option<(String, String)>,
    /// Made by the wrapper once the secrets are read: never in `pod.json`.
    #[serde(skip)]
    pub resolved: Option<artifact_repo::S3Config>,
}

impl S3Location {
    /// An artifact's `s3` that names a bucket of its own (not only a key in the default one).
    pub fn of(s3: &Value) -> Option<S3Location> {
        let bucket = s3.get("bucket")?.as_str()?.to_string();
        let endpoint = s3
            .get("endpoint")
            .and_then(Value::as_str)
            .unwrap_or("s3.amazonaws.com")
            .to_string();
        let secret = |field: &str| {
            let r = s3.get(field)?;
            Some((
                r.get("name")?.as_str()?.to_string(),
                r.get("key")?.as_str()?.to_string(),
            ))
        };
        Some(S3Location {
            endpoint,
            bucket,
            region: s3.get("region").and_then(Value::as_str).map(String::from),
            insecure: s3.get("insecure").and_then(Value::as_bool) == Some(true),
            access_key: secret("accessKeySecret"),
            secret_key: secret("secretKeySecret"),
            resolved: None,
        })
    }

    fn repository(&self) -> Result<artifact_repo::Repository, String> {
        self.resolved
            .clone()
            .map(artifact_repo::Repository::S3)
            .ok_or_else(|| format!("the bucket {} was not prepared", self.bucket))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InputArtifact {
    pub name: String,
    pub path: String,
    pub source: InputSource,
    pub sub_path: Option<String>,
    pub mode: Option<u32>,
    pub optional: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputArtifact {
    pub name: String,
    pub path: String,
    pub key: String,
    pub archive: bool,
    pub level: Option<u32>,
    pub optional: bool,
    /// The artifact's own bucket, when its `s3` names one.
    #[serde(default)]
    pub s3: Option<S3Location>,
    /// The pod's main log (Argo's `main-logs` under `archiveLogs`), not a container path.
    #[serde(default)]
    pub main_log: bool,
}

/// Everything the wrapper needs, written to `DIR/pod.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodSpec {
    pub pod_name: String,
    pub home: PathBuf,
    pub init: Vec<ContainerRun>,
    pub sidecars: Vec<ContainerRun>,
    pub main: Vec<ContainerRun>,
    pub script: Option<String>,
    pub inputs: Vec<InputArtifact>,
    pub output_parameters: Vec<(String, String)>,
    pub output_artifacts: Vec<OutputArtifact>,
    pub capture_result: bool,
    /// Run without network: a network namespace of the pod's own with only loopback
    /// (a no-egress namespace's pods).
    #[serde(default)]
    pub no_network: bool,
    /// The artifact repository when it is an S3 bucket (`None`: `HOME/artifacts`). Its
    /// credentials are files, read by the wrapper before it enters the pod's root.
    #[serde(default)]
    pub s3: Option<artifact_repo::S3Config>,
    /// The pod's namespace (its secrets are that namespace's).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The server's secrets file, read by the wrapper at pod start.
    #[serde(default)]
    pub secrets_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_volumes: Vec<crate::secrets::SecretVolume>,
    /// Host files the pod must not see even where its image directories hold them (the
    /// server's config, token and secrets files).
    #[serde(default)]
    pub hidden: Vec<PathBuf>,
    /// Run the pod's root as the host's root (no user namespace), as Kubernetes runs pods
    /// without `hostUsers: false`: for `privileged` namespaces, whose pods may use hostPath
    /// volumes, and for `onyx run`, whose workflows are its own user's.
    #[serde(default)]
    pub host_users: bool,
    /// The namespace's local artifact repository (`HOME/artifacts/NAMESPACE` by default).
    #[serde(default)]
    pub artifacts_dir: Option<PathBuf>,
}

impl PodSpec {
    /// Where this pod's artifacts are kept when the repository is local: its namespace's part.
    pub fn local_repository(&self) -> PathBuf {
        self.artifacts_dir
            .clone()
            .unwrap_or_else(|| self.home.join("artifacts").join(&self.namespace))
    }
}

fn default_namespace() -> String {
    "default".into()
}

/// What the wrapper leaves in `DIR/result.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PodOutcome {
    pub exit_code: Option<i32>,
    pub stdout: Option<String>,
    pub parameters: Vec<(String, Option<String>)>,
    /// (name, repository key) of each saved output artifact.
    pub artifacts: Vec<(String, String)>,
    pub message: Option<String>,
}

pub struct Layout {
    pub home: PathBuf,
}

impl Layout {
    pub fn new(home: impl Into<PathBuf>) -> Layout {
        Layout { home: home.into() }
    }
    pub fn pod_dir(&self, pod: &str) -> PathBuf {
        self.home.join("pods").join(pod)
    }
    pub fn repository(&self) -> PathBuf {
        self.home.join("artifacts")
    }
    pub fn argosay(&self) -> PathBuf {
        self.home.join("bin").join("argosay")
    }
    /// Install the image stand-ins (once per home).
    pub fn install_stand_ins(&self) -> std::io::Result<()> {
        let p = self.argosay();
        if fs::read_to_string(&p).ok().as_deref() != Some(images::ARGOSAY) {
            fs::create_dir_all(p.parent().unwrap_or(Path::new(".")))?;
            // Runs of one process may install at the same time: each writes its own file.
            static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = p.with_extension(format!("tmp.{}.{n}", std::process::id()));
            fs::write(&tmp, images::ARGOSAY)?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
            fs::rename(&tmp, &p)?;
        }
        Ok(())
    }
}

fn container_run(
    c: &Container,
    default_name: &str,
    image_default: &str,
    pod: &str,
    script: Option<&Path>,
    argosay: &str,
    mounts: Vec<Mount>,
) -> ContainerRun {
    let image = c.image.clone().unwrap_or_else(|| image_default.to_string());
    let rule = images::rule(&image, argosay);
    let mut command: Vec<String> = match &c.command {
        Some(cmd) if !cmd.is_empty() => cmd.iter().map(|s| s.0.clone()).collect(),
        _ => {
            if c.args.as_ref().is_some_and(|a| !a.is_empty())
                && images::repository(&image) != "argoproj/argosay"
                && images::repository(&image) != "docker/whalesay"
            {
                // An image whose entrypoint runs its arguments (alpine, debian, ...).
                Vec::new()
            } else if script.is_some() {
                vec!["sh".into()]
            } else {
                rule.default_command.clone()
            }
        }
    };
    if let Some(first) = command.first_mut() {
        *first = images::host_command(first, &image, argosay);
    }
    command.extend(c.args.iter().flatten().map(|s| s.0.clone()));
    if let Some(s) = script {
        command.push(s.display().to_string());
    }
    let mut env: Vec<(String, String)> = Vec::new();
    let mut secret_env = Vec::new();
    for e in &c.env {
        if let Some((secret, key, optional)) =
            e.value_from.as_ref().and_then(crate::secrets::secret_ref)
        {
            if e.value.is_none() {
                secret_env.push(crate::secrets::SecretEnv {
                    name: e.name.clone(),
                    secret,
                    key,
                    optional,
                });
                continue;
            }
        }
        let v = match (&e.value, &e.value_from) {
            (Some(v), _) => v.0.clone(),
            (None, Some(vf)) => match vf.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
                Some("metadata.name") => pod.to_string(),
                // Set again by the wrapper from the pod's namespace (`NAMESPACE_PLACEHOLDER`).
                Some("metadata.namespace") => NAMESPACE_PLACEHOLDER.into(),
                Some("spec.nodeName") => hostname(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        env.push((e.name.clone(), v));
    }
    ContainerRun {
        name: c.name.clone().unwrap_or_else(|| default_name.to_string()),
        image,
        command,
        env,
        secret_env,
        working_dir: c.working_dir.clone(),
        dependencies: c.dependencies.clone(),
        mounts,
    }
}

/// `fieldRef: metadata.namespace` before the pod's namespace is known.
pub(crate) const NAMESPACE_PLACEHOLDER: &str = "\u{0}namespace";

fn hostname() -> String {
    fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Inputs to build a pod: the instantiated template and what the engine resolved.
pub struct PodInput<'a> {
    pub pod_name: &'a str,
    /// Where the pod's directory is: `HOME/pods/KEY` (the server's keys are
    /// `NAMESPACE/POD`: two namespaces may run pods of one name).
    pub dir_key: &'a str,
    pub workflow: &'a str,
    pub template: &'a Template,
    pub input_artifacts: &'a [Artifact],
    pub output_artifacts: &'a [Artifact],
    pub volumes: &'a [Value],
    pub config_maps: &'a HashMap<String, BTreeMap<String, String>>,
    pub capture_result: bool,
}

/// Translate a template into a [`PodSpec`] and lay out the pod directory. The spec is written
/// to `pod.json` by [`launch`] when the pod goes through the wrapper.
pub fn prepare_pod(layout: &Layout, input: &PodInput) -> Result<PodSpec, ExecError> {
    let pod = input.pod_name;
    let dir = layout.pod_dir(input.dir_key);
    fs::create_dir_all(&dir)?;
    let argosay = layout.argosay().display().to_string();
    let t = input.template;
    let setup = |m: String| ExecError::Setup {
        pod: pod.to_string(),
        message: m,
    };
    // Volumes: emptyDir per pod, claims per workflow, configMaps written out.
    let mut volume_paths: HashMap<String, PathBuf> = HashMap::new();
    let mut secret_volumes = Vec::new();
    for v in input.volumes {
        let Some(name) = v.get("name").and_then(Value::as_str) else {
            continue;
        };
        // Names that become directories: one path part each, as Kubernetes' names are.
        let part = |what: &str, n: &str| -> Result<(), ExecError> {
            if crate::sandbox::is_path_part(n) {
                Ok(())
            } else {
                Err(setup(format!(
                    "{what} {n:?} is not a valid name: expected letters, digits, '-', '_' or '.', not '.' or '..'"
                )))
            }
        };
        part("volume", name)?;
        let path = if let Some(claim) = v
            .pointer("/persistentVolumeClaim/claimName")
            .and_then(Value::as_str)
        {
            part("persistentVolumeClaim claimName", claim)?;
            part("workflow", input.workflow)?;
            // Claims are per workflow, under the pod directory's namespace.
            let ns = input.dir_key.rsplit_once('/').map_or("", |(ns, _)| ns);
            let mut p = layout.home.join("volumes");
            if !ns.is_empty() {
                part("namespace", ns)?;
                p = p.join(ns);
            }
            p.join(input.workflow).join(claim)
        } else if let Some(host) = v.pointer("/hostPath/path").and_then(Value::as_str) {
            PathBuf::from(host)
        } else if let Some(secret) = v.pointer("/secret/secretName").and_then(Value::as_str) {
            // Filled by the wrapper when the pod starts, emptied when it ends.
            let p = dir.join("volumes").join(name);
            secret_volumes.push(crate::secrets::SecretVolume {
                dir: p.clone(),
                secret: secret.to_string(),
                items: v
                    .pointer("/secret/items")
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| {
                                Some((
                                    i.get("key")?.as_str()?.to_string(),
                                    i.get("path")?.as_str()?.to_string(),
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                optional: v.pointer("/secret/optional").and_then(Value::as_bool) == Some(true),
                mode: v
                    .pointer("/secret/defaultMode")
                    .and_then(Value::as_u64)
                    .map(|m| m as u32),
            });
            p
        } else if let Some(cm) = v.pointer("/configMap/name").and_then(Value::as_str) {
            let p = dir.join("volumes").join(name);
            fs::create_dir_all(&p)?;
            if let Some(data) = input.config_maps.get(cm) {
                for (k, val) in data {
                    part("configMap key", k)?;
                    fs::write(p.join(k), val)?;
                }
            }
            p
        } else {
            dir.join("volumes").join(name)
        };
        fs::create_dir_all(&path)?;
        volume_paths.insert(name.to_string(), path);
    }
    let mounts_for =
        |c: &Container, extra: &[workflow_model::VolumeMount]| -> Result<Vec<Mount>, ExecError> {
            let mut out = Vec::new();
            for m in c.volume_mounts.iter().chain(extra.iter()) {
                let src = volume_paths.get(&m.name).ok_or_else(|| {
                    setup(format!(
                        "volumeMount '{}' refers to no volume of the pod",
                        m.name
                    ))
                })?;
                let src = match &m.sub_path {
                    Some(s) if !s.is_empty() => {
                        let rel = crate::sandbox::confined_relative(s).ok_or_else(|| {
                            setup(format!(
                                "volumeMount '{}': subPath {s:?} leaves the volume",
                                m.name
                            ))
                        })?;
                        let p = src.join(rel);
                        fs::create_dir_all(&p)?;
                        p
                    }
                    _ => src.clone(),
                };
                out.push(Mount {
                    source: src,
                    target: m.mount_path.clone(),
                });
            }
            Ok(out)
        };
    let script_path = t.script.as_ref().map(|s| {
        let p = dir.join("script");
        let _ = fs::write(&p, &s.source);
        p
    });
    let mut main = Vec::new();
    let mut main_mounts: Vec<Mount> = Vec::new();
    if let Some(c) = &t.container {
        let m = mounts_for(c, &[])?;
        main_mounts.extend(m.iter().cloned());
        main.push(container_run(c, "main", "", pod, None, &argosay, m));
    } else if let Some(s) = &t.script {
        let m = mounts_for(&s.container, &[])?;
        main_mounts.extend(m.iter().cloned());
        main.push(container_run(
            &s.container,
            "main",
            "",
            pod,
            script_path.as_deref(),
            &argosay,
            m,
        ));
    } else if let Some(cs) = &t.container_set {
        for c in &cs.containers {
            let m = mounts_for(c, &cs.volume_mounts)?;
            main_mounts.extend(m.iter().cloned());
            main.push(container_run(c, "main", "", pod, None, &argosay, m));
        }
    } else {
        return Err(setup(
            "template has no container, script or containerSet".into(),
        ));
    }
    let mut init = Vec::new();
    for (i, c) in t.init_containers.iter().enumerate() {
        let mut m = mounts_for(c, &[])?;
        if c.mirror_volume_mounts == Some(true) {
            m.extend(main_mounts.iter().cloned());
        }
        init.push(container_run(
            c,
            &format!("init-{i}"),
            "",
            pod,
            None,
            &argosay,
            m,
        ));
    }
    let mut sidecars = Vec::new();
    for (i, c) in t.sidecars.iter().enumerate() {
        let mut m = mounts_for(c, &[])?;
        if c.mirror_volume_mounts == Some(true) {
            m.extend(main_mounts.iter().cloned());
        }
        sidecars.push(container_run(
            c,
            &format!("sidecar-{i}"),
            "",
            pod,
            None,
            &argosay,
            m,
        ));
    }
    let repo = layout.repository();
    let mut inputs = Vec::new();
    for a in input.input_artifacts {
        let Some(path) = a.path.clone() else { continue };
        let source = if let Some(raw) = &a.raw {
            InputSource::Raw(raw.data.clone())
        } else if let Some(h) = &a.http {
            InputSource::Http {
                url: h.url.clone(),
                headers: h
                    .headers
                    .iter()
                    .map(|x| (x.name.clone(), x.value.clone()))
                    .collect(),
            }
        } else if let Some(l) = &a.local {
            InputSource::Repository(l.key.clone())
        } else if let Some(key) =
            a.s3.as_ref()
                .and_then(|s| s.get("key"))
                .and_then(Value::as_str)
        {
            match a.s3.as_ref().and_then(S3Location::of) {
                Some(bucket) => InputSource::S3 {
                    bucket: Box::new(bucket),
                    key: key.to_string(),
                },
                None => InputSource::Repository(key.to_string()),
            }
        } else if a.optional {
            continue;
        } else {
            return Err(setup(format!("input artifact '{}' has a source the local executor cannot read (git, gcs, oss, azure, hdfs, artifactory)", a.name)));
        };
        inputs.push(InputArtifact {
            name: a.name.clone(),
            path,
            source,
            sub_path: a.sub_path.clone(),
            mode: a.mode.map(|m| m as u32),
            optional: a.optional,
        });
    }
    let _ = repo;
    let output_parameters = t
        .outputs
        .parameters
        .iter()
        .filter_map(|p| {
            p.value_from
                .as_ref()
                .and_then(|v| v.path.clone())
                .map(|path| (p.name.clone(), path))
        })
        .collect();
    let output_artifacts = input
        .output_artifacts
        .iter()
        .filter_map(|a| {
            let main_log = a.path.is_none() && a.name == workflow_engine::MAIN_LOGS;
            let path = if main_log {
                String::new()
            } else {
                a.path.clone()?
            };
            let key = a.local.as_ref()?.key.clone();
            let level = a
                .archive
                .as_ref()
                .and_then(|x| x.pointer("/tar/compressionLevel"))
                .and_then(Value::as_u64)
                .map(|l| l as u32);
            Some(OutputArtifact {
                name: a.name.clone(),
                path,
                key,
                archive: !a.archive_none(),
                level,
                optional: a.optional,
                s3: a.s3.as_ref().and_then(S3Location::of),
                main_log,
            })
        })
        .collect::<Vec<_>>();
    // Paths inside the container: none may climb out of its root with `..`.
    let container_paths = inputs
        .iter()
        .map(|a| ("input artifact", a.name.as_str(), a.path.as_str()))
        .chain(
            output_artifacts
                .iter()
                .filter(|a| !a.main_log)
                .map(|a| ("output artifact", a.name.as_str(), a.path.as_str())),
        )
        .chain(t.outputs.parameters.iter().filter_map(|p| {
            Some((
                "output parameter",
                p.name.as_str(),
                p.value_from.as_ref()?.path.as_deref()?,
            ))
        }))
        .chain(main.iter().chain(&init).chain(&sidecars).flat_map(|c| {
            c.mounts
                .iter()
                .map(|m| ("volumeMount mountPath", c.name.as_str(), m.target.as_str()))
        }));
    for (what, name, path) in container_paths {
        if crate::sandbox::confined_relative(path).is_none() {
            return Err(setup(format!(
                "{what} '{name}': path {path:?} has '..': paths name places inside the container"
            )));
        }
    }
    let spec = PodSpec {
        pod_name: pod.to_string(),
        home: layout.home.clone(),
        init,
        sidecars,
        main,
        script: t.script.as_ref().map(|s| s.source.clone()),
        inputs,
        output_parameters,
        output_artifacts,
        capture_result: input.capture_result,
        no_network: false,
        s3: None,
        namespace: default_namespace(),
        secrets_file: None,
        secret_volumes,
        hidden: Vec::new(),
        host_users: false,
        artifacts_dir: None,
    };
    Ok(spec)
}

/// A started pod: its wrapper process.
pub struct RunningPod {
    pub child: Child,
    pub dir: PathBuf,
}

/// Start `exe exec-pod DIR` in its own process group.
pub fn launch(exe: &Path, dir: &Path, spec: &PodSpec) -> Result<RunningPod, ExecError> {
    let child = wrapper_command(exe, dir, spec)?.spawn()?;
    Ok(RunningPod {
        child,
        dir: dir.to_path_buf(),
    })
}

/// Write `pod.json` and build the command that runs the pod's wrapper, in a process group of
/// its own (so a signal to the controller does not reach the pod, and the pod outlives it).
pub fn wrapper_command(exe: &Path, dir: &Path, spec: &PodSpec) -> Result<Command, ExecError> {
    use std::os::unix::process::CommandExt;
    let text = serde_json::to_vec(spec).map_err(|e| ExecError::Setup {
        pod: spec.pod_name.clone(),
        message: e.to_string(),
    })?;
    fs::write(dir.join("pod.json"), text)?;
    let log = fs::File::create(dir.join("wrapper.log"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("exec-pod")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    Ok(cmd)
}

/// Remove a finished pod's private root; its logs, claim and result stay.
pub fn clean_pod_dir(dir: &Path) {
    for d in [
        "ovl",
        "upper",
        "work-ovl",
        "root",
        "scratch-dirs",
        "bundles",
        "runtime-state",
    ] {
        let _ = fs::remove_dir_all(dir.join(d));
    }
}

/// Kill every process of a pod (its process group).
pub fn kill_group(pid: u32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    // Group 0 is the caller's own and group 1 init's: no pod is either (a pid read from a pod's
    // files is checked, never trusted to be sane).
    if pid <= 1 || pid > i32::MAX as u32 {
        return;
    }
    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Read what a finished wrapper left; `None` if it did not finish.
pub fn read_outcome(dir: &Path) -> Option<PodOutcome> {
    let text = fs::read(dir.join("result.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

// ----- the wrapper (runs inside `onyx exec-pod`) -----

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
        Some(f) if !none_wanted || buckets_with_secrets => Some(crate::secrets::Secrets::load(f)?),
        _ => None,
    };
    let mut env: Vec<crate::secrets::EnvTarget> = Vec::new();
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
    crate::secrets::resolve(&namespace, secrets.as_ref(), &mut env, secret_volumes)
}

use crate::sandbox::Sandbox;

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
    if crate::sandbox::disabled() {
        return Ok(None);
    }
    if let Some(why) = crate::sandbox::unavailable() {
        return Err(format!("pods run in an OCI sandbox, and {why}"));
    }
    let gpus = spec
        .main
        .iter()
        .chain(&spec.init)
        .chain(&spec.sidecars)
        .any(|c| c.env.iter().any(|(k, _)| k == "NVIDIA_VISIBLE_DEVICES"));
    let script = spec.script.as_ref().map(|_| dir.join("script"));
    Sandbox::prepare(&crate::sandbox::PodRoot {
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
        crate::images::plant_image_files(&sb.root, images, crate::sandbox::IN_ROOT_HOME)
            .map_err(|e| format!("image files: {e}"))?;
        Ok(Some(sb))
    })
}

/// Run the pod; `dir` and `home` become the paths the wrapper sees them at afterwards (inside
/// the pod's root, when sandboxed, where outputs are read).
fn execute(spec: &PodSpec, dir: &mut PathBuf, home: &mut PathBuf) -> Result<PodOutcome, String> {
    if spec.no_network {
        crate::network::enter_empty_network()?;
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
                crate::sandbox::inside(&sb.root, p).unwrap_or_else(|| sb.root.join(".invalid"))
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
        rebase_spec(&mut running, Path::new(crate::sandbox::IN_ROOT_HOME));
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
            let mut cmd = sb.command(c, n).map_err(std::io::Error::other)?;
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
        return crate::sandbox::inside(root, prog).is_some_and(|p| exists(&p));
    }
    let path = c
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games");
    path.split(':')
        .filter(|d| d.starts_with('/'))
        .any(|d| crate::sandbox::inside(root, d).is_some_and(|dir| exists(&dir.join(prog))))
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
