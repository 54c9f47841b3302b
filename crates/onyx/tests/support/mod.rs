//! A real `onyx server` process for tests, and a small HTTP client for its API.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The token a server with its state in `state` made for itself, if it made one.
pub fn own_token(state: &Path) -> Option<String> {
    std::fs::read_to_string(state.join("token"))
        .ok()
        .map(|t| t.trim().to_string())
}

pub fn temp_home(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("onyx-server")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A cluster file of GPU nodes, each `(name, GPUs, MIG layout of every GPU or [])`.
pub fn cluster_file(home: &Path, nodes: &[(&str, u32, &[&str])]) -> PathBuf {
    let mut yaml = String::from(
        "apiVersion: onyx.dev/v1\nkind: Cluster\nmetadata: {name: test}\nspec:\n  racks:\n  - {name: R1, units: 42, feeds: [{name: A, phases: 3, voltage: 415V, current: 80A}]}\n  nodes:\n",
    );
    for (i, (name, gpus, mig)) in nodes.iter().enumerate() {
        let mig = if mig.is_empty() {
            String::new()
        } else {
            format!(", mig: {{enabled: true, layout: [{}]}}", mig.join(", "))
        };
        yaml.push_str(&format!(
            "  - name: {name}\n    role: gpu\n    rack: R1\n    position: {}\n    chassis: supermicro-as-8125gs-tnhr\n    cpus: {{model: amd-epyc-9654, count: 2}}\n    memory: {{dimm: 48GB, count: 24, type: DDR5-4800}}\n    gpus: {{model: nvidia-h100-sxm5-80gb, count: {gpus}{mig}}}\n    psus: {{count: 6, capacity: 3000W, redundancy: 3+3}}\n",
            1 + 8 * i
        ));
    }
    let path = home.join("cluster.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub home: PathBuf,
    /// The token the server made for itself at first start (`state/token`), sent by
    /// [`Server::call`] and [`Server::request`].
    pub token: Option<String>,
}

impl Server {
    /// Start `onyx server` on a free port with its state in `home/state`.
    /// A config file whose namespace `default` is at Pod Security level `privileged`, for tests
    /// whose steps leave witnesses on the host through hostPath volumes.
    pub fn privileged_default_config(home: &Path) -> String {
        let cfg = home.join("privileged.toml");
        std::fs::write(
            &cfg,
            "[namespaces.default]\npod_security = \"privileged\"\n",
        )
        .expect("config written");
        cfg.display().to_string()
    }

    pub fn start(home: &Path, extra: &[&str]) -> Server {
        Server::start_on(home, "127.0.0.1:0", extra)
    }

    /// Start `onyx server` listening on `listen`.
    pub fn start_on(home: &Path, listen: &str, extra: &[&str]) -> Server {
        Server::spawn(home, listen, extra, None)
    }

    /// Start `onyx server` as an unprivileged user (`uid`, its group the same number), as a
    /// server run by an ordinary account is: `home` becomes that user's.
    pub fn start_as_user(home: &Path, uid: u32, extra: &[&str]) -> Server {
        std::os::unix::fs::chown(home, Some(uid), Some(uid)).expect("home given to the user");
        Server::spawn(home, "127.0.0.1:0", extra, Some(uid))
    }

    fn spawn(home: &Path, listen: &str, extra: &[&str], user: Option<u32>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onyx"));
        if let Some(id) = user {
            // std drops the supplementary groups too when root changes user.
            use std::os::unix::process::CommandExt;
            cmd.uid(id).gid(id);
        }
        let mut child = cmd
            .args(["server", "--listen", listen])
            .args(extra)
            .env("ONYX_HOME", home.join("state"))
            .env(
                "PATH",
                format!("{}:/usr/games", std::env::var("PATH").unwrap_or_default()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("onyx server starts");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut base = None;
        for line in lines.by_ref() {
            let line = line.expect("a line");
            if let Some(rest) = line.split("listening on ").nth(1) {
                base = Some(rest.split_whitespace().next().unwrap().to_string());
                break;
            }
            eprintln!("server: {line}");
        }
        let base = base.expect("the server says where it listens");
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            base,
            home: home.to_path_buf(),
            token: own_token(&home.join("state")),
        }
    }

    /// The `onyx` client against this server, as on the server's machine (it reads the
    /// server's own token from its home).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_onyx"))
            .args(args)
            .env("ONYX_SERVER", &self.base)
            .env("ONYX_HOME", self.home.join("state"))
            .output()
            .expect("onyx runs")
    }

    /// [`Server::cli`] that must succeed: its standard output.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "onyx {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A request to the server with its own token (when it made one).
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        let req = ureq::request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(self.token.as_deref(), method, path, body)
    }

    /// A call with `Authorization: Bearer TOKEN` when a token is given.
    pub fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = ureq::request(method, &format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let res = match body {
            // A JSON string is sent as it is: a way to send a body that is not JSON.
            Some(Value::String(raw)) => req
                .set("Content-Type", "application/json")
                .send_string(&raw),
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        let (code, text) = match res {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, v)
    }

    /// Submit a workflow to namespace `ns`; it must be accepted.
    pub fn submit(&self, ns: &str, wf: Value) {
        let (c, b) = self.call(
            "POST",
            &format!("/api/v1/workflows/{ns}"),
            Some(serde_json::json!({"workflow": wf})),
        );
        assert_eq!(c, 200, "{b}");
    }

    /// Wait until some node of a workflow says `part` in its message; return the message.
    pub fn message_with(&self, ns: &str, name: &str, part: &str) -> String {
        let t0 = Instant::now();
        loop {
            let (_, w) = self.call("GET", &format!("/api/v1/workflows/{ns}/{name}"), None);
            if let Some(m) = w["status"]["nodes"].as_object().and_then(|m| {
                m.values().find_map(|n| {
                    n["message"]
                        .as_str()
                        .filter(|m| m.contains(part))
                        .map(String::from)
                })
            }) {
                return m;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no node of {name} said {part:?}: {w}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A pod's main log, as one string.
    pub fn log(&self, ns: &str, workflow: &str, pod: &str) -> String {
        let url = format!(
            "/api/v1/workflows/{ns}/{workflow}/log?podName={pod}&logOptions.container=main"
        );
        let body = self
            .request("GET", &url)
            .call()
            .expect("the log")
            .into_string()
            .unwrap();
        body.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                v["result"]["content"].as_str().unwrap().to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Poll a workflow until it ends.
    pub fn wait(&self, ns: &str, name: &str, limit: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let (code, wf) = self.call("GET", &format!("/api/v1/workflows/{ns}/{name}"), None);
            assert_eq!(code, 200, "{wf}");
            if matches!(
                wf["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed" | "Error")
            ) {
                return wf;
            }
            assert!(t0.elapsed() < limit, "{name} did not end: {wf}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn node<'a>(wf: &'a Value, display: &str) -> &'a Value {
    wf["status"]["nodes"]
        .as_object()
        .and_then(|m| m.values().find(|n| n["displayName"] == display))
        .unwrap_or(&Value::Null)
}

/// A one-step workflow saying `hi`, with the `ticket_id` the default policy requires when
/// `ticket` is set.
pub fn hello(name: &str, ticket: bool) -> Value {
    let mut params = vec![json!({"name": "msg", "value": "hi"})];
    if ticket {
        params.push(json!({"name": "ticket_id", "value": "T-1"}));
    }
    json!({
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": params},
            "templates": [{"name": "main",
                "inputs": {"parameters": [{"name": "msg"}]},
                "container": {"image": "argoproj/argosay:v2", "args": ["echo", "{{inputs.parameters.msg}}"]}}]
        }
    })
}

/// A test HTTP receiver: its URL (`http://127.0.0.1:PORT`) and the JSON bodies it is sent, in
/// order, each answered 200.
pub fn receiver() -> (String, std::sync::mpsc::Receiver<Value>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut r = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = r.read_exact(&mut body);
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
        }
    });
    (url, rx)
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
