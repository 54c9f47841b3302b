//! A real node for the test control plane: Debian's containerd, runc and reference CNI
//! plugins, and the kubelet of the control plane's release (`testenv/kubernetes/build.sh`
//! builds it with the rest). Where kwok's fake nodes only move pods through their phases, pods
//! bound to this node run as containers: their output, exit codes, termination messages and
//! logs are real, and the API server serves the logs from the kubelet.
//!
//! Nothing is pulled (nothing outside may be reachable): [`RealNode::import_image`] packs host
//! programs, with the shared libraries they load, into an OCI image (`umoci`) and imports it
//! into the node's containerd, for pods with `imagePullPolicy: Never` or `IfNotPresent`. The
//! pod sandbox image ([`PAUSE_IMAGE`]) is made the same way, from busybox.
//!
//! It needs root (containerd, runc and the kubelet make cgroups, mounts and network
//! namespaces) and Debian's containerd, runc, containernetworking-plugins, umoci and
//! busybox-static (`.ci/run` installs them). Pods get addresses in 10.199.0.0/16 on the
//! bridge `onyx0`, without masquerading: they reach this machine, nothing beyond it.
//!
//! One real node per machine at a time: kubelets on one machine share the `kubepods` cgroups,
//! and each removes the pods there that it does not know of. A second test process that asks
//! for one waits for the first to end.
//!
//! Cleaning up: containerd and the kubelet die with the test process (parent-death signal), but
//! containers and their shims are made to outlive containerd, and their mounts stay. So a
//! janitor (a shell started here that is *not* tied to the test process) waits for the test
//! process to end, however it ends, then deletes the containers (`runc delete -f`), kills their
//! shims and removes their sockets (in `/run/containerd/s`, where containerd 1.6 puts them
//! whatever its state directory), removes the pods' logs (in `/var/log/pods`, where the kubelet
//! of 1.27 keeps them whatever its root directory) and their emptied cgroups, unmounts what is
//! mounted under the node's directory (root file systems, network namespaces, `/dev/shm`s, the
//! kubelet's root) and removes it. What stays on the machine: the bridge `onyx0` and the
//! kubelet's `kubepods` QoS cgroups (the next real node uses both again), and IP forwarding,
//! which the CNI bridge plugin turns on. [`RealNode`] itself lives as long as the process
//! (it is kept in the process's control plane), so there is no drop to clean up in.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use test_process::{free_port, spawn_tied};

use crate::{log_file, ControlPlane};

/// The real node's name (the kubelet's `--hostname-override`).
pub const REAL_NODE_NAME: &str = "onyx-node";
/// The label the real node carries, for pods that must run there.
pub const REAL_NODE_LABEL: (&str, &str) = ("onyx.io/real-node", "true");
/// The pod sandbox image containerd starts for every pod (its `sandbox_image`), which
/// [`ControlPlane::real_node`] makes from busybox (`sleep infinity`).
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.6";

/// What to install when something is missing.
const INSTALL: &str =
    "apt-get install containerd runc containernetworking-plugins umoci busybox-static";
/// The first two octets of the pods' /16 (the bridge holds .0.1): away from Docker's,
/// Podman's and the usual CNI defaults.
const POD_NET: [u8; 2] = [10, 199];
/// `PATH` in the images: the binaries keep their host paths.
const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A real node registered with the control plane: containerd + runc + CNI from Debian, the
/// kubelet built by `testenv/kubernetes/build.sh`.
pub struct RealNode {
    /// The Node's name, [`REAL_NODE_NAME`].
    pub name: String,
    /// The node's address: the machine's first non-loopback IPv4 address, where the API
    /// server reaches the kubelet (logs).
    pub ip: Ipv4Addr,
    /// containerd's socket, for `ctr --address` (namespace `k8s.io` holds the pods'
    /// containers and the images).
    pub containerd_socket: PathBuf,
    /// Where containerd, the kubelet, the CNI configuration and the images' makings live
    /// (under the control plane's directory).
    pub dir: PathBuf,
    tools: Tools,
    images: Mutex<HashMap<String, Arc<Image>>>,
    /// The machine's real-node lock ([`machine_lock`]), held while the process lives.
    _lock: UnixListener,
    /// The local registry, once started: its `HOST:PORT`.
    registry: OnceLock<Result<String, String>>,
}

/// An image imported once per process: what it was asked to hold, and how its import went.
struct Image {
    contents: String,
    imported: OnceLock<Result<(), String>>,
}

impl ControlPlane {
    /// Start (once per process) containerd and the kubelet for this control plane, and wait
    /// until their Node ([`REAL_NODE_NAME`], labelled [`REAL_NODE_LABEL`]) is Ready. An error
    /// says what is missing when a Debian package, root or the kubelet is.
    pub fn real_node(&self) -> Result<&RealNode, String> {
        self.node
            .get_or_init(|| start(self))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// GET `path` as the administrator, as text: what is not JSON (a pod's `log`). The
    /// status and the body.
    pub fn get_text(&self, path: &str) -> Result<(u16, String), String> {
        let res = match self
            .agent
            .get(&format!("{}{path}", self.url))
            .set("Authorization", &format!("Bearer {}", self.token))
            .call()
        {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(format!("GET {path}: {e}")),
        };
        let status = res.status();
        let text = res.into_string().map_err(|e| format!("GET {path}: {e}"))?;
        Ok((status, text))
    }
}

impl RealNode {
    /// Build an OCI image named `reference` (e.g. `onyx.local/busybox:1`; a name without a
    /// registry is Docker Hub's, as pods name it: `busybox:1` is
    /// `docker.io/library/busybox:1`) whose root holds each of `binaries` at the same path,
    /// each of `extra` (a path in the image, the host file copied there), every shared library
    /// `ldd` lists for any of them that is a dynamically linked program (at its host path),
    /// and busybox with its applets as links in /bin when `with_busybox` (then the image's
    /// command is `/bin/sh`); and import it into the node's containerd (namespace `k8s.io`),
    /// so that pods with `imagePullPolicy: Never` or `IfNotPresent` run it. Once per
    /// reference and process: a second call with the same contents does nothing, one with
    /// other contents is an error.
    pub fn import_image(
        &self,
        reference: &str,
        binaries: &[&Path],
        extra: &[(&str, &Path)],
        with_busybox: bool,
    ) -> Result<(), String> {
        let contents = format!("binaries {binaries:?}, files {extra:?}, busybox {with_busybox}");
        self.import(reference, contents, || {
            let mut root = Root::default();
            if with_busybox {
                root.busybox(&self.tools.busybox)?;
            }
            for binary in binaries {
                let at = std::path::absolute(binary)
                    .map_err(|e| format!("{}: {e}", binary.display()))?;
                root.program(&at, &at)?;
            }
            for (at, host) in extra {
                root.program(&Path::new("/").join(at), host)?;
            }
            let config = if with_busybox {
                vec!["--config.cmd", "/bin/sh"]
            } else {
                Vec::new()
            };
            Ok((root, config))
        })
    }

    /// Import an OCI image archive made elsewhere (ONYX's own, `deploy/image/build.sh`) into
    /// the node's containerd as `name:TAG`, TAG being the tag its index names.
    pub fn import_archive(&self, name: &str, archive: &Path) -> Result<(), String> {
        output(
            ctr(&self.tools, &self.containerd_socket)
                .args(["images", "import", "--base-name", name])
                .arg(archive),
        )
        .map(|_| ())
        .map_err(|e| format!("importing {} as {name}: {e}", archive.display()))
    }

    /// A local registry the node pulls from (Debian's `docker-registry`, plain HTTP on
    /// loopback, its storage under the node's directory), started once: its `HOST:PORT`.
    /// containerd is told to pull from it over HTTP through its `certs.d` hosts file.
    pub fn registry(&self) -> Result<&str, String> {
        self.registry
            .get_or_init(|| {
                let bin = which("docker-registry").ok_or_else(|| {
                    "docker-registry is not installed: apt-get install docker-registry".to_string()
                })?;
                let port = free_port()?;
                let host = format!("127.0.0.1:{port}");
                let config = self.dir.join("registry.yml");
                write(
                    &config,
                    &format!(
                        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
                        self.dir.join("registry").display()
                    ),
                )?;
                let mut registry = Command::new(bin);
                registry
                    .arg("serve")
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(log_file(&self.dir, "registry.log")?);
                spawn_tied(registry, "docker-registry")?;
                let deadline = Instant::now() + Duration::from_secs(30);
                while std::net::TcpStream::connect(&host).is_err() {
                    if Instant::now() > deadline {
                        return Err(format!("docker-registry did not listen on {host} in 30 s"));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                mkdir(&self.dir.join("certs.d").join(&host))?;
                write(
                    &self.dir.join("certs.d").join(&host).join("hosts.toml"),
                    &format!(
                        "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
                    ),
                )?;
                Ok(host)
            })
            .as_deref()
            .map_err(Clone::clone)
    }

    /// Push an OCI image archive (ONYX's, `deploy/image/build.sh`) to the local registry as
    /// `repository:tag` (`skopeo copy`); the reference pods name it by.
    pub fn push_archive(
        &self,
        archive: &Path,
        repository: &str,
        tag: &str,
    ) -> Result<String, String> {
        let host = self.registry()?;
        let skopeo = which("skopeo")
            .ok_or_else(|| "skopeo is not installed: apt-get install skopeo".to_string())?;
        let reference = format!("{host}/{repository}:{tag}");
        output(
            Command::new(skopeo)
                .args(["copy", "--dest-tls-verify=false", "--quiet"])
                .arg(format!("oci-archive:{}", archive.display()))
                .arg(format!("docker://{reference}")),
        )
        .map_err(|e| format!("pushing {} as {reference}: {e}", archive.display()))?;
        Ok(reference)
    }

    /// Import `reference` once per process: `make` gives its root and `umoci config`
    /// arguments; `contents` tells one call's image from another's.
    fn import(
        &self,
        reference: &str,
        contents: String,
        make: impl FnOnce() -> Result<(Root, Vec<&'static str>), String>,
    ) -> Result<(), String> {
        let (name, tag) = full_reference(reference)?;
        let image = self
            .images
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(format!("{name}:{tag}"))
            .or_insert_with(|| {
                Arc::new(Image {
                    contents: contents.clone(),
                    imported: OnceLock::new(),
                })
            })
            .clone();
        if image.contents != contents {
            return Err(format!(
                "image {name}:{tag} was imported already with other contents ({}); give these ({contents}) another reference",
                image.contents
            ));
        }
        image
            .imported
            .get_or_init(|| {
                let (root, config) = make()?;
                self.build(&name, &tag, &root, &config)
                    .map_err(|e| format!("making image {name}:{tag}: {e}"))
            })
            .clone()
    }

    /// Lay out `root`, make it the one layer of an OCI image `name:tag` (`umoci`), archive
    /// that and import it into containerd (`ctr images import`, which also unpacks it for
    /// the overlay snapshotter the CRI uses).
    fn build(&self, name: &str, tag: &str, root: &Root, config: &[&str]) -> Result<(), String> {
        let work = self
            .dir
            .join("images")
            .join(format!("{name}:{tag}").replace(
                |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
                "_",
            ));
        let _ = std::fs::remove_dir_all(&work);
        let rootfs = work.join("rootfs");
        mkdir(&rootfs)?;
        root.write(&rootfs)?;
        let layout = work.join("oci").display().to_string();
        let image = format!("{layout}:{tag}");
        let umoci = &self.tools.umoci;
        output(Command::new(umoci).args(["init", "--layout", &layout]))?;
        output(Command::new(umoci).args(["new", "--image", &image]))?;
        output(
            Command::new(umoci)
                .args(["insert", "--image", &image])
                .arg(&rootfs)
                .arg("/"),
        )?;
        output(
            Command::new(umoci)
                .args(["config", "--image", &image, "--config.env", IMAGE_PATH])
                .args(config),
        )?;
        // An OCI layout archive: its index names the manifest by the tag, which
        // `--base-name` makes `name:tag`.
        let archive = work.join("image.tar");
        output(
            Command::new("tar")
                .arg("-C")
                .arg(&layout)
                .arg("-cf")
                .arg(&archive)
                .arg("."),
        )?;
        output(
            ctr(&self.tools, &self.containerd_socket)
                .args(["images", "import", "--base-name", name])
                .arg(&archive),
        )?;
        Ok(())
    }
}

fn start(plane: &ControlPlane) -> Result<RealNode, String> {
    let tools = Tools::find()?;
    require_root()?;
    let kubelet_bin = plane.bin.join("kubelet");
    if !executable(&kubelet_bin) {
        return Err(format!(
            "{} is missing: testenv/kubernetes/build.sh builds it with the control plane (ONYX_KUBERNETES_BIN names a directory without it)",
            kubelet_bin.display()
        ));
    }
    let dir = plane.dir.join("node");
    let socket = dir.join("containerd.sock");
    // The longest unix sockets made here: containerd's ttrpc one and the kubelet's
    // pod-resources one (sun_path holds 107 bytes and a NUL).
    for path in [
        format!("{}.ttrpc", socket.display()),
        format!("{}/kubelet/pod-resources/kubelet.sock", dir.display()),
    ] {
        if path.len() > 107 {
            return Err(format!(
                "{path} is too long for a unix socket (107 bytes at most): point TMPDIR at a shorter directory"
            ));
        }
    }
    let ip = node_ip()?;
    let lock = machine_lock()?;
    mkdir(&dir.join("cni/net.d"))?;
    start_janitor(&plane.dir, &dir, &tools)?;

    // The pods' network: a bridge on this machine, addresses from a range of their own, no
    // masquerading or port mappings (so no iptables rules to leave behind), loopback inside.
    let cni = json!({
        "cniVersion": "1.0.0",
        "name": "onyx-pods",
        "plugins": [
            {"type": "bridge", "bridge": "onyx0", "isGateway": true, "ipMasq": false,
             "hairpinMode": true,
             "ipam": {"type": "host-local",
                      "ranges": [[{"subnet": format!("{}.{}.0.0/16", POD_NET[0], POD_NET[1])}]],
                      "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": dir.join("cni/ipam").display().to_string()}},
            {"type": "loopback"}
        ]
    });
    write(&dir.join("cni/net.d/10-onyx.conflist"), &cni.to_string())?;

    // containerd with everything under `dir`. restrict_oom_score_adj: the kubelet asks for
    // OOM scores below containerd's own (-998 for sandboxes), which needs CAP_SYS_RESOURCE
    // that a CI container may not have; restricted, containers get containerd's score at
    // least. Network namespaces under the state directory, where the janitor unmounts them
    // (not in /var/run/netns). runc's state under `dir` too, where the janitor finds the
    // containers (`Root`/k8s.io). Registries' settings in `certs.d`, read at each pull: the
    // local registry ([`RealNode::registry`]) is added there once it runs.
    let config = dir.join("containerd.toml");
    write(
        &config,
        &format!(
            r#"version = 2
root = {root}
state = {state}

[grpc]
  address = {socket}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = {certs}
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      BinaryName = {runc}
      Root = {runc_root}
"#,
            root = quoted(&dir.join("containerd/root")),
            state = quoted(&dir.join("containerd/state")),
            socket = quoted(&socket),
            opt = quoted(&dir.join("containerd/opt")),
            cni_bin = quoted(&tools.cni),
            cni_conf = quoted(&dir.join("cni/net.d")),
            runc = quoted(&tools.runc),
            runc_root = quoted(&dir.join("runc")),
            certs = quoted(&dir.join("certs.d")),
        ),
    )?;
    let mut containerd = Command::new(&tools.containerd);
    containerd
        .arg("--config")
        .arg(&config)
        .env("PATH", &tools.path)
        .stdout(Stdio::null())
        .stderr(log_file(&plane.dir, "containerd.log")?);
    spawn_tied(containerd, "containerd")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ctr(&tools, &socket)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        if Instant::now() > deadline {
            return Err(format!(
                "containerd did not answer on {} in 30 s (logs in {}):\n{}",
                socket.display(),
                plane.dir.display(),
                tail(&plane.dir.join("containerd.log"), 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let node = RealNode {
        name: REAL_NODE_NAME.to_string(),
        ip,
        containerd_socket: socket,
        dir: dir.clone(),
        tools,
        images: Mutex::new(HashMap::new()),
        _lock: lock,
        registry: OnceLock::new(),
    };
    node.import(PAUSE_IMAGE, "pause".to_string(), || {
        let mut root = Root::default();
        root.program(Path::new("/bin/busybox"), &node.tools.busybox)?;
        let config = vec![
            "--config.entrypoint",
            "/bin/busybox",
            "--config.entrypoint",
            "sleep",
            "--config.entrypoint",
            "infinity",
            "--config.user",
            "65535:65535",
        ];
        Ok((root, config))
    })?;

    // The kubelet: registered as the administrator (the control plane's kubeconfig), serving
    // on the node's address (the kubelet refuses a loopback one) on a free port, which it
    // reports in the Node's status for the API server. Anonymous requests are allowed there:
    // the API server calls without a client certificate (it has none for kubelets), and the
    // port lives as long as the test. cgroupfs, not systemd, on cgroup v1 and v2 alike; swap
    // allowed; no eviction thresholds (a small CI disk must not taint the node) and no image
    // garbage collection (imported images cannot be pulled again); no iptables chains of its
    // own (nothing here needs them, and they would outlive it); no health port.
    let port = free_port()?;
    let kubelet_config = json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "failSwapOn": false,
        "authentication": {"anonymous": {"enabled": true}, "webhook": {"enabled": false}},
        "authorization": {"mode": "AlwaysAllow"},
        "address": ip.to_string(),
        "port": port,
        "readOnlyPort": 0,
        "healthzPort": 0,
        "containerRuntimeEndpoint": format!("unix://{}", node.containerd_socket.display()),
        "clusterDomain": "cluster.local",
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {},
        "serializeImagePulls": false,
        "makeIPTablesUtilChains": false
    });
    let kubelet_config_file = dir.join("kubelet.json");
    write(&kubelet_config_file, &kubelet_config.to_string())?;
    let mut kubelet = Command::new(&kubelet_bin);
    kubelet
        .arg(format!("--config={}", kubelet_config_file.display()))
        .arg(format!("--kubeconfig={}", plane.kubeconfig.display()))
        .arg(format!("--root-dir={}", dir.join("kubelet").display()))
        .arg(format!("--cert-dir={}", dir.join("kubelet-pki").display()))
        .arg(format!(
            "--volume-plugin-dir={}",
            dir.join("kubelet/volume-plugins").display()
        ))
        .arg(format!("--node-ip={ip}"))
        .arg(format!("--hostname-override={REAL_NODE_NAME}"))
        .arg(format!(
            "--node-labels={}={}",
            REAL_NODE_LABEL.0, REAL_NODE_LABEL.1
        ))
        .arg(format!("--pod-infra-container-image={PAUSE_IMAGE}"))
        .arg("--v=2")
        .env("PATH", &node.tools.path)
        .stdout(Stdio::null())
        .stderr(log_file(&plane.dir, "kubelet.log")?);
    spawn_tied(kubelet, "kubelet")?;

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, n) = plane.call("GET", &format!("/api/v1/nodes/{REAL_NODE_NAME}"), None)?;
        if code == 200 && crate::node_ready(&n) {
            return Ok(node);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the kubelet did not make Node {REAL_NODE_NAME} Ready in 120 s ({}, cgroupfs driver; logs in {}):\n{}",
                cgroup_version(),
                plane.dir.display(),
                tail(&plane.dir.join("kubelet.log"), 20)
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The host programs the node runs, found on `PATH` or in the usual `bin` and `sbin`
/// directories (a non-root `PATH` may lack the latter), and that search path, which
/// containerd and the kubelet get so that they find the shim, runc and `mount` as well.
struct Tools {
    path: String,
    containerd: PathBuf,
    ctr: PathBuf,
    runc: PathBuf,
    umoci: PathBuf,
    busybox: PathBuf,
    /// Where the CNI plugins are (Debian: /usr/lib/cni).
    cni: PathBuf,
}

impl Tools {
    fn find() -> Result<Tools, String> {
        let mut missing: Vec<String> = Vec::new();
        let mut find = |name: &str| {
            let found = which(name);
            if found.is_none() {
                missing.push(name.to_string());
            }
            found.unwrap_or_default()
        };
        let containerd = find("containerd");
        let ctr = find("ctr");
        find("containerd-shim-runc-v2");
        let runc = find("runc");
        let umoci = find("umoci");
        let busybox = find("busybox");
        let cni = ["/usr/lib/cni", "/opt/cni/bin"]
            .into_iter()
            .map(PathBuf::from)
            .find(|d| {
                ["bridge", "host-local", "loopback"]
                    .iter()
                    .all(|p| executable(&d.join(p)))
            });
        if cni.is_none() {
            missing.push("the CNI plugins bridge, host-local and loopback".to_string());
        }
        if !missing.is_empty() {
            return Err(format!(
                "{} {} not installed (the real node runs them): {INSTALL}",
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" }
            ));
        }
        Ok(Tools {
            path: search_dirs().join(":"),
            containerd,
            ctr,
            runc,
            umoci,
            busybox,
            cni: cni.unwrap_or_default(),
        })
    }
}

/// What goes into an image's root: host files by their paths in the image, and symbolic
/// links.
#[derive(Default)]
struct Root {
    files: BTreeMap<PathBuf, PathBuf>,
    links: BTreeMap<PathBuf, String>,
}

impl Root {
    /// The file `host` at `at` and, if it is a dynamically linked program, every shared
    /// library `ldd` lists for it at its host path, with the loader's cache (`/etc/ld.so.cache`), so
    /// that libraries outside the loader's default directories are found as on the host.
    fn program(&mut self, at: &Path, host: &Path) -> Result<(), String> {
        self.files.insert(at.to_path_buf(), host.to_path_buf());
        let libraries = shared_libraries(host)?;
        let cache = Path::new("/etc/ld.so.cache");
        if !libraries.is_empty() && cache.is_file() {
            self.files.insert(cache.to_path_buf(), cache.to_path_buf());
        }
        for library in libraries {
            self.files.insert(library.clone(), library);
        }
        Ok(())
    }

    /// busybox at /bin/busybox and each of its applets (`busybox --list`) as a link to it in
    /// /bin.
    fn busybox(&mut self, host: &Path) -> Result<(), String> {
        self.program(Path::new("/bin/busybox"), host)?;
        let applets = output(Command::new(host).arg("--list"))?;
        for applet in applets.lines().map(str::trim) {
            if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
                self.links
                    .insert(Path::new("/bin").join(applet), "busybox".to_string());
            }
        }
        Ok(())
    }

    /// Copy it all under `rootfs` (a file wins over a link at the same path), with a /tmp
    /// that anyone may write to.
    fn write(&self, rootfs: &Path) -> Result<(), String> {
        for (at, host) in &self.files {
            let to = inside(rootfs, at);
            mkdir(to.parent().unwrap_or(rootfs))?;
            std::fs::copy(host, &to)
                .map_err(|e| format!("copying {} to {}: {e}", host.display(), to.display()))?;
        }
        for (at, target) in &self.links {
            if self.files.contains_key(at) {
                continue;
            }
            let to = inside(rootfs, at);
            mkdir(to.parent().unwrap_or(rootfs))?;
            std::os::unix::fs::symlink(target, &to)
                .map_err(|e| format!("linking {} to {target}: {e}", to.display()))?;
        }
        let tmp = rootfs.join("tmp");
        mkdir(&tmp)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
            .map_err(|e| format!("{}: {e}", tmp.display()))
    }
}

/// Where `at`, a path in an image, is in its root laid out at `rootfs`.
fn inside(rootfs: &Path, at: &Path) -> PathBuf {
    rootfs.join(at.strip_prefix("/").unwrap_or(at))
}

/// The shared libraries `ldd` lists for `program` by their host paths (the loader among
/// them); none for a static one.
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| format!("running ldd {}: {e}", program.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("not a dynamic executable") || text.contains("not a dynamic executable") {
            return Ok(Vec::new());
        }
        return Err(format!("ldd {}: {}", program.display(), err.trim()));
    }
    let mut libraries = Vec::new();
    for line in text.lines() {
        if line.contains("not found") {
            return Err(format!(
                "{} needs a shared library that is not installed: {}",
                program.display(),
                line.trim()
            ));
        }
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux-x86-64.so.2
        // (0x...)`; the vDSO has no file.
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// `reference` as the CRI names it (Docker's normalization, which pods' image names get:
/// `busybox:1` is `docker.io/library/busybox:1`), as its name and its tag (`latest` when it
/// has none).
fn full_reference(reference: &str) -> Result<(String, String), String> {
    if reference.contains('@') {
        return Err(format!(
            "{reference}: images are imported by tag, not by digest"
        ));
    }
    let (name, tag) = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    };
    if name.is_empty() || tag.is_empty() {
        return Err(format!("{reference:?} is not an image reference"));
    }
    let name = match name.split_once('/') {
        None => format!("docker.io/library/{name}"),
        Some((domain, _))
            if domain.contains('.') || domain.contains(':') || domain == "localhost" =>
        {
            name.to_string()
        }
        Some(_) => format!("docker.io/{name}"),
    };
    Ok((name, tag.to_string()))
}

/// Not root: containerd, runc and the kubelet could not make cgroups, mounts and network
/// namespaces.
fn require_root() -> Result<(), String> {
    let uid = std::fs::metadata("/proc/self")
        .map_err(|e| format!("reading /proc/self: {e}"))?
        .uid();
    if uid != 0 {
        return Err(format!(
            "the real node needs root: containerd, runc and the kubelet make cgroups, mounts and network namespaces (this test process runs as uid {uid})"
        ));
    }
    Ok(())
}

/// The machine's first non-loopback IPv4 address (`hostname -I`; Debian's `hostname` is
/// essential), leaving out the pods' bridge: the kubelet refuses a loopback node IP, and the
/// API server, on this machine, reaches the kubelet at any address of it.
fn node_ip() -> Result<Ipv4Addr, String> {
    let out = Command::new("hostname")
        .arg("-I")
        .output()
        .map_err(|e| format!("running hostname -I to find the node's address: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .filter_map(|a| a.parse::<Ipv4Addr>().ok())
        .find(|a| !a.is_loopback() && a.octets()[..2] != POD_NET)
        .ok_or_else(|| {
            format!(
                "this machine has no IPv4 address but loopback ones (hostname -I: {:?}); the kubelet needs one",
                text.trim()
            )
        })
}

/// One real node per machine at a time (see the module's documentation). The lock is an
/// abstract unix socket, which the kernel lets go of when the process ends, however it ends;
/// a second test process waits up to 15 minutes for it.
fn machine_lock() -> Result<UnixListener, String> {
    let name = "onyx-test-real-node";
    let addr = SocketAddr::from_abstract_name(name).map_err(|e| format!("@{name}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        match UnixListener::bind_addr(&addr) {
            Ok(lock) => return Ok(lock),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                return Err(format!(
                    "taking this machine's real-node lock (the abstract unix socket @{name}, which another test process with a real node holds while it lives): {e}"
                ))
            }
        }
    }
}

/// The janitor's script (see the module's documentation): `$1` the test process, `$2` the
/// node's directory, `$3` runc. It ignores the signals a terminal or a CI runner sends to
/// the test's process group, and is in a group of its own besides; it refuses a directory
/// that is not a node's before it removes anything.
const JANITOR: &str = r#"trap '' HUP INT TERM
pid=$1 dir=$2 runc=$3
case $dir in /*/node) ;; *) echo "janitor: $dir is not a node's directory" >&2; exit 2 ;; esac
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
socket=$dir/containerd.sock
root=$dir/runc/k8s.io
uids=$(ls "$dir/kubelet/pods" 2>/dev/null)
for id in $("$runc" --root "$root" list -q 2>/dev/null); do
  "$runc" --root "$root" delete -f "$id"
done
for p in /proc/[0-9]*; do
  case $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) in
    *containerd-shim*" -address $socket "*) kill -9 "${p#/proc/}" ;;
  esac
done
for a in "$dir"/containerd/state/io.containerd.runtime.v2.task/*/*/address; do
  [ -f "$a" ] && rm -f "$(sed 's|^unix://||' "$a")"
done
for uid in $uids; do
  rm -rf /var/log/pods/*_"$uid"
  find /sys/fs/cgroup -depth -type d -path "*/pod$uid*" -exec rmdir {} + 2>/dev/null
done
find /var/log/containers -xtype l -delete 2>/dev/null
grep -o " $dir/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
rm -rf "$dir"
"#;

/// Start the janitor for the node in `dir`, logging to `plane_dir`. Not tied to this process
/// (it must outlive it), nor to its process group.
fn start_janitor(plane_dir: &Path, dir: &Path, tools: &Tools) -> Result<(), String> {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(JANITOR)
        .arg("onyx-real-node-janitor")
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(&tools.runc)
        .env("PATH", &tools.path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(plane_dir, "real-node-janitor.log")?)
        .process_group(0);
    let mut janitor = sh
        .spawn()
        .map_err(|e| format!("starting the real node's janitor: {e}"))?;
    // Reaped here if it ends early (only when it refuses its directory); otherwise it
    // outlives this process and init reaps it.
    std::thread::spawn(move || janitor.wait());
    Ok(())
}

/// A file that someone may execute.
fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `ctr` on the node's containerd, in the namespace the CRI uses.
fn ctr(tools: &Tools, socket: &Path) -> Command {
    let mut ctr = Command::new(&tools.ctr);
    ctr.arg("--address")
        .arg(socket)
        .args(["--namespace", "k8s.io"]);
    ctr
}

/// `cgroup v2` when /sys/fs/cgroup is the unified hierarchy, else `cgroup v1` (hybrid, as
/// here); the kubelet uses the cgroupfs driver on either, so this only explains errors.
fn cgroup_version() -> &'static str {
    let fs = Command::new("stat")
        .args(["-fc", "%T", "/sys/fs/cgroup"])
        .output();
    if fs.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "cgroup2fs") {
        "cgroup v2"
    } else {
        "cgroup v1"
    }
}

/// Run `cmd`: its standard output, or an error with the command and what it printed.
fn output(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The last `lines` lines of `file`.
fn tail(file: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `path` as a TOML basic string.
fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Where programs are looked for: `PATH`, then the system's directories (a test's PATH may
/// lack the sbin ones); also the PATH the node's daemons get.
fn search_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        if !dirs.iter().any(|x| x == d) {
            dirs.push(d.to_string());
        }
    }
    dirs
}

/// A program in [`search_dirs`].
fn which(name: &str) -> Option<PathBuf> {
    search_dirs()
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| executable(p))
}

fn mkdir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))
}

fn write(file: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(file, contents).map_err(|e| format!("writing {}: {e}", file.display()))
}
