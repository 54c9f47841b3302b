use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use workflow_model::{Artifact, Container, Template};

pub use crate::container::{ContainerRun, Mount};
use crate::images;

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

    pub(crate) fn repository(&self) -> Result<artifact_repo::Repository, String> {
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
    pub secret_volumes: Vec<pod_secrets::SecretVolume>,
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
            e.value_from.as_ref().and_then(pod_secrets::secret_ref)
        {
            if e.value.is_none() {
                secret_env.push(pod_secrets::SecretEnv {
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
            if pod_sandbox::is_path_part(n) {
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
            secret_volumes.push(pod_secrets::SecretVolume {
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
                        let rel = pod_sandbox::confined_relative(s).ok_or_else(|| {
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
        if pod_sandbox::confined_relative(path).is_none() {
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
