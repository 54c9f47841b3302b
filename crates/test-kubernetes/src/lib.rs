//! A throwaway Kubernetes control plane for tests: `etcd`, `kube-apiserver` and
//! `kube-controller-manager` of the release
//! in `testenv/kubernetes/go.mod`, built from Kubernetes' Go modules by
//! `testenv/kubernetes/build.sh` into a cache outside the repository.
//!
//! The first caller in a test process starts one control plane (in a temporary directory, on
//! free loopback ports, with a CA and serving certificate made here by `openssl`, a static
//! administrator token, RBAC on); every caller shares it, each test in namespaces of its own.
//! The servers die with the test process (parent-death signal). Nothing here fakes the API:
//! requests go to the real API server over TLS.
//!
//! Nodes: fake ones run by kwok ([`ControlPlane::kwok`]), which only move pods through their
//! phases, and one real node ([`ControlPlane::real_node`], `real_node.rs`): Debian's containerd
//! and the kubelet of the same release, where pods run as containers.
//!
//! `ONYX_KUBERNETES_BIN` names a directory with these (and `kwok`, `kubelet`) to use instead of
//! the build cache; without it, the first caller runs `build.sh` (which returns at once when
//! its cache has them), and an error says what is missing when it cannot build them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_process::{free_port, remove_stale, spawn_tied};

pub mod real_node;

pub use real_node::{RealNode, PAUSE_IMAGE, REAL_NODE_LABEL, REAL_NODE_NAME};

/// A running control plane and how to reach it as its administrator.
pub struct ControlPlane {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// A bearer token in `system:masters`.
    pub token: String,
    /// The CA that signed the API server's certificate (PEM).
    pub ca_file: PathBuf,
    /// A kubeconfig for `url` with `token` and `ca_file`, for clients that read one.
    pub kubeconfig: PathBuf,
    /// The API server's `/version` `gitVersion`.
    pub version: String,
    agent: ureq::Agent,
    bin: PathBuf,
    dir: PathBuf,
    kwok: OnceLock<Result<(), String>>,
    node: OnceLock<Result<RealNode, String>>,
}

/// The annotation that puts a Node in kwok's care (`ControlPlane::kwok`).
pub const FAKE_NODE: (&str, &str) = ("kwok.x-k8s.io/node", "fake");
/// The annotation with which a pod on a fake node ends (its exit code).
pub const FAKE_EXIT_CODE: &str = "onyx.io/fake-exit-code";
/// The annotation with how long a pod on a fake node runs before it ends (`3s`).
pub const FAKE_RUN_TIME: &str = "onyx.io/fake-run-time";
/// The annotation with the termination message the container `main` of a pod on a fake node
/// ends with (what ONYX's executor reports there: `result`, output parameters).
pub const FAKE_TERMINATION_MESSAGE: &str = "onyx.io/fake-termination-message";

static PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// Poll `done` every 200 ms until it holds; the test fails saying `what` did not happen in
/// `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether a Node (as the API returns it) is Ready.
pub fn node_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The process's control plane, started on first use.
pub fn control_plane() -> Result<&'static ControlPlane, String> {
    PLANE.get_or_init(start).as_ref().map_err(Clone::clone)
}

impl ControlPlane {
    /// One request as the administrator: the status and the JSON answer (`null` if none).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let req = self
            .agent
            .request(method, &format!("{}{path}", self.url))
            .set("Authorization", &format!("Bearer {}", self.token));
        let res = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        let res = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(format!("{method} {path}: {e}")),
        };
        let status = res.status();
        let text = res
            .into_string()
            .map_err(|e| format!("{method} {path}: {e}"))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

impl ControlPlane {
    /// Start kwok (once) for this control plane: it keeps every Node annotated [`FAKE_NODE`]
    /// Ready, with heartbeats, and runs the pods bound to them, as kubelets would, without
    /// running anything: a pod annotated [`FAKE_EXIT_CODE`] ends with that code (after
    /// [`FAKE_RUN_TIME`], a duration), as a container would (`testenv/kubernetes/
    /// kwok-stages.yaml`). Fake nodes are made through the API like any Node.
    pub fn kwok(&self) -> Result<(), String> {
        self.kwok
            .get_or_init(|| {
                let mut kwok = Command::new(self.bin.join("kwok"));
                kwok.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
                    .arg("--manage-all-nodes=false")
                    .arg(format!(
                        "--manage-nodes-with-annotation-selector={}={}",
                        FAKE_NODE.0, FAKE_NODE.1
                    ))
                    .arg("--server-address=")
                    .arg(format!(
                        "--config={}",
                        Path::new(env!("CARGO_MANIFEST_DIR"))
                            .join("../../testenv/kubernetes/kwok-stages.yaml")
                            .display()
                    ))
                    .stdout(Stdio::null())
                    .stderr(log_file(&self.dir, "kwok.log")?);
                spawn_tied(kwok, "kwok").map(|_| ())
            })
            .clone()
    }

    /// Create `object` (any kind, as `kubectl create -f` would): its collection's path is
    /// made from its `apiVersion`, `kind` (lower case, plural with `s`, which holds for the
    /// kinds ONYX ships) and `metadata.namespace`. The status and the API's answer.
    pub fn create(&self, object: &Value) -> Result<(u16, Value), String> {
        let api = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default().to_lowercase();
        let root = if api == "v1" {
            "/api/v1".to_string()
        } else {
            format!("/apis/{api}")
        };
        let path = match object["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{root}/namespaces/{ns}/{kind}s"),
            None => format!("{root}/{kind}s"),
        };
        self.call("POST", &path, Some(object))
    }

    /// A kubeconfig for the ServiceAccount `namespace/name`, with a token the API server
    /// issues for it (TokenRequest, an hour), written to `file`.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        file: &Path,
    ) -> Result<(), String> {
        let (code, answer) = self.call(
            "POST",
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"),
            Some(
                &serde_json::json!({"apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}),
            ),
        )?;
        let token = answer["status"]["token"]
            .as_str()
            .filter(|_| code == 201)
            .ok_or_else(|| format!("TokenRequest for {namespace}/{name}: {code} {answer}"))?;
        std::fs::write(
            file,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: onyx-test\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\nusers:\n- name: {name}\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: onyx-test\n  context: {{cluster: onyx-test, user: {name}}}\ncurrent-context: onyx-test\n",
                self.url,
                self.ca_file.display()
            ),
        )
        .map_err(|e| format!("{}: {e}", file.display()))
    }

    /// Whether the API server's authorizer lets `user` (in `groups`) do `verb` on `resource`
    /// (`pods`, `pods/binding`) of `group` in `namespace` (a SubjectAccessReview).
    pub fn may(
        &self,
        user: &str,
        groups: &[&str],
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<bool, String> {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        let (code, answer) = self.call(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(&serde_json::json!({"apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": groups, "resourceAttributes": {
                    "verb": verb, "group": group, "resource": resource,
                    "subresource": subresource, "namespace": namespace.unwrap_or("")}}})),
        )?;
        if code != 201 {
            return Err(format!("SubjectAccessReview: {code} {answer}"));
        }
        Ok(answer["status"]["allowed"] == true)
    }

    /// What `kubectl get` shows of `path` (a list or one object): the API server's Table,
    /// with the resource's printer columns.
    pub fn table(&self, path: &str) -> Result<Value, String> {
        let res = self
            .agent
            .get(&format!("{}{path}", self.url))
            .set("Authorization", &format!("Bearer {}", self.token))
            .set(
                "Accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )
            .call()
            .map_err(|e| format!("GET {path} as a table: {e}"))?;
        let text = res.into_string().map_err(|e| e.to_string())?;
        serde_json::from_str(&text).map_err(|e| format!("GET {path} as a table: {e}"))
    }

    /// A new namespace with its `default` ServiceAccount, which kube-controller-manager's
    /// service-account controller would make (it is not run here) and without which the
    /// ServiceAccount admission plugin refuses pods.
    pub fn namespace(&self, name: &str) -> Result<(), String> {
        let (code, body) = self.call(
            "POST",
            "/api/v1/namespaces",
            Some(&serde_json::json!({"metadata": {"name": name}})),
        )?;
        if code != 201 {
            return Err(format!("creating namespace {name}: {code} {body}"));
        }
        let (code, body) = self.call(
            "POST",
            &format!("/api/v1/namespaces/{name}/serviceaccounts"),
            Some(&serde_json::json!({"metadata": {"name": "default"}})),
        )?;
        if code != 201 {
            return Err(format!(
                "creating {name}/default ServiceAccount: {code} {body}"
            ));
        }
        // Admission reads ServiceAccounts from its informer's cache: ready once a dry-run
        // pod is admitted.
        let probe = serde_json::json!({"metadata": {"name": "probe"},
            "spec": {"containers": [{"name": "c", "image": "probe"}]}});
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = self.call(
                "POST",
                &format!("/api/v1/namespaces/{name}/pods?dryRun=All"),
                Some(&probe),
            )?;
            if code == 201 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "namespace {name}: pods still refused: {code} {body}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Where the binaries are: `ONYX_KUBERNETES_BIN`, else what `testenv/kubernetes/build.sh`
/// prints (it builds them first if its cache does not have them yet).
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("ONYX_KUBERNETES_BIN") {
        return Ok(PathBuf::from(d));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testenv/kubernetes/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let dir = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    if !out.status.success() || dir.is_empty() {
        return Err(format!(
            "{} could not build kube-apiserver and etcd (it needs Go and the Go module proxy); or point ONYX_KUBERNETES_BIN at a directory with both",
            script.display()
        ));
    }
    Ok(PathBuf::from(dir))
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .map_err(|e| format!("running openssl (Debian's openssl): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A CA, the API server's certificate for 127.0.0.1 signed by it, and the service-account key.
fn certificates(dir: &Path) -> Result<(), String> {
    let days = ["-days", "2"];
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=onyx-test-ca",
            days[0],
            days[1],
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "apiserver.key",
            "-out",
            "apiserver.csr",
            "-subj",
            "/CN=kube-apiserver",
        ],
    )?;
    std::fs::write(
        dir.join("apiserver.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "apiserver.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "apiserver.crt",
            "-extfile",
            "apiserver.ext",
            days[0],
            days[1],
        ],
    )?;
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"])
}

fn log_file(dir: &Path, name: &str) -> Result<std::fs::File, String> {
    std::fs::File::create(dir.join(name)).map_err(|e| format!("creating {name}: {e}"))
}

fn agent(ca_file: &Path) -> Result<ureq::Agent, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls_pki_types::CertificateDer::pem_file_iter(ca_file).map_err(|e| e.to_string())?
    {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(ureq::AgentBuilder::new()
        .tls_config(Arc::new(tls))
        .timeout(Duration::from_secs(30))
        .build())
}

fn start() -> Result<ControlPlane, String> {
    let bin = bin_dir()?;
    let tmp = std::env::temp_dir();
    remove_stale(&tmp, "onyx-k8s-");
    let dir = tmp.join(format!("onyx-k8s-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    certificates(&dir)?;
    let token = format!("onyx-test-{}", std::process::id());
    std::fs::write(
        dir.join("tokens.csv"),
        format!("{token},onyx-test-admin,onyx-test-admin,\"system:masters\"\n"),
    )
    .map_err(|e| e.to_string())?;

    let (client, peer, secure) = (free_port()?, free_port()?, free_port()?);
    let mut etcd = Command::new(bin.join("etcd"));
    etcd.arg("--data-dir")
        .arg(dir.join("etcd"))
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args([
            "--initial-cluster",
            &format!("default=http://127.0.0.1:{peer}"),
        ])
        .args(["--unsafe-no-fsync", "--quota-backend-bytes", "4294967296"])
        .stdout(Stdio::null())
        .stderr(log_file(&dir, "etcd.log")?);
    spawn_tied(etcd, "etcd")?;

    let mut apiserver = Command::new(bin.join("kube-apiserver"));
    apiserver
        .args(["--etcd-servers", &format!("http://127.0.0.1:{client}")])
        .args([
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
        ])
        .args(["--secure-port", &secure.to_string()])
        .arg(format!(
            "--tls-cert-file={}",
            dir.join("apiserver.crt").display()
        ))
        .arg(format!(
            "--tls-private-key-file={}",
            dir.join("apiserver.key").display()
        ))
        .arg(format!(
            "--token-auth-file={}",
            dir.join("tokens.csv").display()
        ))
        .args(["--authorization-mode", "Node,RBAC"])
        .arg(format!(
            "--service-account-key-file={}",
            dir.join("sa.key").display()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            dir.join("sa.key").display()
        ))
        .args(["--service-account-issuer", "https://kubernetes.default.svc"])
        .args(["--service-cluster-ip-range", "10.96.0.0/16"])
        // Logs (and exec, port-forward) go through the API server to the kubelet, which it
        // reaches by the Node's address: InternalIP first, since the default order tries the
        // Hostname first, and a node's name (the real node's `onyx-node`) resolves nowhere.
        .arg("--kubelet-preferred-address-types=InternalIP,Hostname")
        .stdout(Stdio::null())
        .stderr(log_file(&dir, "kube-apiserver.log")?);
    spawn_tied(apiserver, "kube-apiserver")?;

    let ca_file = dir.join("ca.crt");
    let url = format!("https://127.0.0.1:{secure}");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: onyx-test\n  cluster: {{server: \"{url}\", certificate-authority: \"{}\"}}\nusers:\n- name: admin\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: onyx-test\n  context: {{cluster: onyx-test, user: admin}}\ncurrent-context: onyx-test\n",
            ca_file.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let mut plane = ControlPlane {
        url,
        token,
        ca_file: ca_file.clone(),
        kubeconfig,
        version: String::new(),
        agent: agent(&ca_file)?,
        bin,
        dir: dir.clone(),
        kwok: OnceLock::new(),
        node: OnceLock::new(),
    };
    // Ready when every check passes (etcd reached, RBAC's bootstrap roles made, ...).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok((200, _)) = plane.call("GET", "/readyz", None) {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("kube-apiserver.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            return Err(format!(
                "kube-apiserver was not ready in 120 s (logs in {}):\n{}",
                dir.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, v) = plane.call("GET", "/version", None)?;
    plane.version = v["gitVersion"].as_str().unwrap_or_default().to_string();
    // The controllers a cluster's objects rely on here: node lifecycle (a Ready node loses
    // the not-ready taint the API server puts on new nodes; one that stops reporting gets
    // it back), garbage collection (owner references), namespace deletion, Deployments'
    // ReplicaSets and their pods (ONYX's own deployment), and each namespace's
    // `kube-root-ca.crt`, without which a pod's service-account token volume cannot mount.
    let mut kcm = Command::new(plane.bin.join("kube-controller-manager"));
    kcm.arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
        .arg("--controllers=nodelifecycle,garbagecollector,namespace,deployment,replicaset,root-ca-cert-publisher")
        .arg(format!("--root-ca-file={}", plane.ca_file.display()))
        .arg("--leader-elect=false")
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={}", free_port()?))
        .arg(format!("--cert-dir={}", dir.join("kcm").display()))
        .stdout(Stdio::null())
        .stderr(log_file(&dir, "kube-controller-manager.log")?);
    spawn_tied(kcm, "kube-controller-manager")?;
    Ok(plane)
}
