//! Artifacts in an S3 bucket: a real S3-compatible server (moto's, from PyPI) started by the
//! test; `[artifact_repository.s3]` in the server's config. An artifact-passing workflow ends
//! Succeeded with its artifacts in the bucket under Argo's key layout
//! (`{workflow}/{pod}/{artifact}.tgz`); the S3 server going away mid-upload fails the step
//! with the error, not a hang.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{node, temp_home, Server};

struct Moto {
    child: Child,
    base: String,
}

impl Moto {
    fn start() -> Option<Moto> {
        let has = Command::new("python3")
            .args(["-c", "import moto.server"])
            .status()
            .is_ok_and(|s| s.success());
        if !has {
            assert!(
                std::env::var_os("CI").is_none(),
                "moto[server] is not installed (.ci/run installs it from PyPI)"
            );
            eprintln!("S3 artifacts: pip install 'moto[server]' to run these tests; skipped");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        while ureq::get(&format!("{base}/moto-api/")).call().is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        ureq::put(&format!("{base}/onyx-artifacts"))
            .call()
            .expect("the bucket is made");
        Some(Moto { child, base })
    }

    fn keys(&self) -> Vec<String> {
        let xml = ureq::get(&format!("{}/onyx-artifacts?list-type=2", self.base))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        xml.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(String::from)
            .collect()
    }

    /// An object's bytes, read with a signed request (objects are private).
    fn object(&self, key: &str) -> Vec<u8> {
        let out = Command::new("curl")
            .args([
                "-sf",
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
                "--user",
                "testing:testing-secret",
            ])
            .arg(format!("{}/onyx-artifacts/{key}", self.base))
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {key}: {:?}", out.status);
        out.stdout
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_with_bucket(name: &str, moto: &Moto) -> Server {
    let home = temp_home(name);
    std::fs::write(home.join("access"), "testing\n").unwrap();
    std::fs::write(home.join("secret"), "testing-secret\n").unwrap();
    std::fs::write(
        home.join("secrets.toml"),
        "[default.team-s3]\naccessKey = \"team\"\nsecretKey = \"team-secret\"\n",
    )
    .unwrap();
    let cfg = home.join("onyx.toml");
    std::fs::write(
        &cfg,
        format!(
            "[secrets]\nfile = \"{}\"\n[artifact_repository.s3]\nendpoint = \"{}\"\nbucket = \"onyx-artifacts\"\ninsecure = true\naccess_key_file = \"{}\"\nsecret_key_file = \"{}\"\ntimeout_seconds = 5\nretries = 1\n[artifact_repositories.team.s3]\nendpoint = \"{}\"\nbucket = \"team-repo\"\ninsecure = true\n",
            home.join("secrets.toml").display(),
            moto.base.trim_start_matches("http://"),
            home.join("access").display(),
            home.join("secret").display(),
            moto.base.trim_start_matches("http://"),
        ),
    )
    .unwrap();
    Server::start(&home, &["--config", &cfg.display().to_string()])
}

fn params() -> Value {
    json!({"parameters": [{"name": "ticket_id", "value": "T-1"}]})
}

#[test]
fn artifacts_pass_through_the_bucket_under_argos_key_layout() {
    let Some(moto) = Moto::start() else { return };
    let server = server_with_bucket("s3-pass", &moto);
    server.submit(
        "default",
        json!({
            "metadata": {"name": "s3-pass"},
            "spec": {"entrypoint": "main", "arguments": params(), "templates": [
                {"name": "main", "steps": [
                    [{"name": "make", "template": "make"}],
                    [{"name": "use", "template": "use", "arguments": {"artifacts": [
                        {"name": "greeting", "from": "{{steps.make.outputs.artifacts.greeting}}"},
                        {"name": "tree", "from": "{{steps.make.outputs.artifacts.tree}}"}]}}]
                ]},
                {"name": "make", "script": {"image": "debian", "command": ["sh"], "source":
                    "echo hello from s3 > /tmp/greeting.txt\nmkdir -p /tmp/tree/sub\necho one > /tmp/tree/one.txt\necho two > /tmp/tree/sub/two.txt\n"},
                 "outputs": {"artifacts": [
                    {"name": "greeting", "path": "/tmp/greeting.txt"},
                    {"name": "tree", "path": "/tmp/tree", "archive": {"none": {}}}]}},
                {"name": "use",
                 "inputs": {"artifacts": [{"name": "greeting", "path": "/in/greeting.txt"},
                                          {"name": "tree", "path": "/in/tree"}]},
                 "script": {"image": "debian", "command": ["sh"], "source":
                    "cat /in/greeting.txt /in/tree/one.txt /in/tree/sub/two.txt\n"}}
            ]}
        }),
    );
    let wf = server.wait("default", "s3-pass", Duration::from_secs(120));
    assert_eq!(wf["status"]["phase"], "Succeeded", "{wf}");
    assert_eq!(
        node(&wf, "use")["outputs"]["result"],
        "hello from s3\none\ntwo"
    );
    let mut keys = moto.keys();
    keys.sort();
    let make_pod = keys
        .iter()
        .find(|k| k.ends_with("/greeting.tgz"))
        .unwrap_or_else(|| panic!("no greeting.tgz in the bucket: {keys:?}"))
        .split('/')
        .nth(1)
        .unwrap()
        .to_string();
    assert_eq!(
        keys,
        [
            format!("s3-pass/{make_pod}/greeting.tgz"),
            format!("s3-pass/{make_pod}/tree/one.txt"),
            format!("s3-pass/{make_pod}/tree/sub/two.txt"),
        ]
    );
    assert!(make_pod.starts_with("s3-pass-"), "{make_pod}");
    // The archived one is a tar.gz holding the file under its own name; the other is as is.
    let tgz = moto.object(&keys[0]);
    assert_eq!(&tgz[..2], &[0x1f, 0x8b]);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
    let names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["greeting.txt"]);
    assert_eq!(moto.object(&keys[2]), b"two\n");
    // Nothing went to the local directory.
    assert!(!server.home.join("state/artifacts/s3-pass").exists());
}

#[test]
fn the_bucket_going_away_mid_upload_fails_the_step_with_the_error() {
    let Some(mut moto) = Moto::start() else {
        return;
    };
    let server = server_with_bucket("s3-gone", &moto);
    server.submit(
        "default",
        json!({
            "metadata": {"name": "s3-gone"},
            "spec": {"entrypoint": "big", "arguments": params(), "templates": [
                {"name": "big", "script": {"image": "debian", "command": ["sh"], "source":
                    "head -c 400000000 /dev/urandom > /tmp/big.bin\necho written\n"},
                 "outputs": {"artifacts": [
                    {"name": "big", "path": "/tmp/big.bin", "archive": {"none": {}}}]}}
            ]}
        }),
    );
    // Once the step's main has written its file, its upload starts: then the S3 server dies.
    let t0 = Instant::now();
    loop {
        let (_, wf) = server.call("GET", "/api/v1/workflows/default/s3-gone", None);
        let pod = wf["status"]["nodes"]
            .as_object()
            .and_then(|m| m.keys().next().cloned());
        if let Some(pod) = pod {
            let log = std::fs::read_to_string(
                server
                    .home
                    .join("state/pods/default")
                    .join(&pod)
                    .join("main.log"),
            )
            .unwrap_or_default();
            if log.contains("written") {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the step never wrote its file: {wf}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = moto.child.kill();
    let _ = moto.child.wait();
    let killed = Instant::now();
    let wf = server.wait("default", "s3-gone", Duration::from_secs(90));
    eprintln!(
        "the step ended {} ms after the S3 server died",
        killed.elapsed().as_millis()
    );
    assert_ne!(wf["status"]["phase"], "Succeeded", "{wf}");
    let step = node(&wf, "s3-gone");
    let message = step["message"].as_str().unwrap_or_default();
    eprintln!("the step says: {message}");
    assert!(
        message.contains("failed to save output artifact 'big'")
            && message.contains("s3://onyx-artifacts/s3-gone/"),
        "{step}"
    );
}

/// An artifact naming its own bucket with Argo's `s3` fields, credentials from a secret of the
/// workflow's namespace: written there by one step, read from there by the next.
#[test]
fn an_artifact_in_a_bucket_of_its_own_with_credentials_from_a_secret() {
    let Some(moto) = Moto::start() else { return };
    ureq::put(&format!("{}/team-bucket", moto.base))
        .call()
        .expect("the team's bucket is made");
    let server = server_with_bucket("s3-own", &moto);
    let endpoint = moto.base.trim_start_matches("http://").to_string();
    let s3 = |key: &str| {
        json!({"endpoint": endpoint, "bucket": "team-bucket", "key": key, "insecure": true,
               "accessKeySecret": {"name": "team-s3", "key": "accessKey"},
               "secretKeySecret": {"name": "team-s3", "key": "secretKey"}})
    };
    server.submit(
        "default",
        json!({
            "metadata": {"name": "s3-own"},
            "spec": {"entrypoint": "main", "arguments": params(), "templates": [
                {"name": "main", "steps": [[{"name": "write", "template": "write"}],
                                           [{"name": "read", "template": "read"}]]},
                {"name": "write", "script": {"image": "debian", "command": ["sh"],
                    "source": "echo quarterly > /tmp/report.txt\n"},
                 "outputs": {"artifacts": [{"name": "report", "path": "/tmp/report.txt",
                    "archive": {"none": {}}, "s3": s3("reports/q4.txt")}]}},
                {"name": "read",
                 "inputs": {"artifacts": [{"name": "report", "path": "/in/report.txt",
                    "s3": s3("reports/q4.txt")}]},
                 "script": {"image": "debian", "command": ["sh"], "source": "cat /in/report.txt\n"}}
            ]}
        }),
    );
    let wf = server.wait("default", "s3-own", Duration::from_secs(120));
    assert_eq!(wf["status"]["phase"], "Succeeded", "{wf}");
    assert_eq!(node(&wf, "read")["outputs"]["result"], "quarterly");
    let xml = ureq::get(&format!("{}/team-bucket?list-type=2", moto.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(xml.contains("<Key>reports/q4.txt</Key>"), "{xml}");
    assert!(
        moto.keys().is_empty(),
        "nothing went to the default bucket: {:?}",
        moto.keys()
    );
}

/// Argo's artifact garbage collection: the workflow's strategy (OnWorkflowDeletion) and an
/// artifact's own (OnWorkflowCompletion) decide when each leaves the bucket.
#[test]
fn artifact_gc_removes_artifacts_on_completion_and_on_deletion() {
    let Some(moto) = Moto::start() else { return };
    let server = server_with_bucket("s3-gc", &moto);
    server.submit(
        "default",
        json!({
            "metadata": {"name": "s3-gc"},
            "spec": {"entrypoint": "make", "arguments": params(),
                "artifactGC": {"strategy": "OnWorkflowDeletion"},
                "templates": [
                {"name": "make", "script": {"image": "debian", "command": ["sh"], "source":
                    "echo keep > /tmp/keep.txt\necho scratch > /tmp/scratch.txt\n"},
                 "outputs": {"artifacts": [
                    {"name": "keep", "path": "/tmp/keep.txt"},
                    {"name": "scratch", "path": "/tmp/scratch.txt",
                     "artifactGC": {"strategy": "OnWorkflowCompletion"}}]}}
            ]}
        }),
    );
    let wf = server.wait("default", "s3-gc", Duration::from_secs(60));
    assert_eq!(wf["status"]["phase"], "Succeeded", "{wf}");
    // The completion's collection runs as the workflow is archived: give it a moment.
    let t0 = Instant::now();
    while moto.keys().len() != 1 {
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", moto.keys());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(moto.keys(), ["s3-gc/s3-gc/keep.tgz"]);
    let (code, body) = server.call("DELETE", "/api/v1/workflows/default/s3-gc", None);
    assert_eq!(code, 200, "{body}");
    assert!(moto.keys().is_empty(), "{:?}", moto.keys());
}

/// `artifactRepositoryRef` picks a named repository of the server's config (Argo's
/// `artifact-repositories` ConfigMap keys); a key the server does not have is refused.
#[test]
fn artifact_repository_ref_picks_a_named_repository() {
    let Some(moto) = Moto::start() else { return };
    ureq::put(&format!("{}/team-repo", moto.base))
        .call()
        .expect("the named repository's bucket is made");
    let server = server_with_bucket("s3-ref", &moto);
    let wf = |name: &str, key: &str| {
        json!({
            "metadata": {"name": name},
            "spec": {"entrypoint": "make", "arguments": params(),
                "artifactRepositoryRef": {"configMap": "artifact-repositories", "key": key},
                "templates": [{"name": "make", "script": {"image": "debian", "command": ["sh"],
                    "source": "echo team > /tmp/out.txt\n"},
                    "outputs": {"artifacts": [{"name": "out", "path": "/tmp/out.txt"}]}}]}
        })
    };
    let (code, body) = server.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": wf("s3-ref-bad", "nope")})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no artifact repository \"nope\""),
        "{body}"
    );
    server.submit("default", wf("s3-ref", "team"));
    let done = server.wait("default", "s3-ref", Duration::from_secs(60));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    let xml = ureq::get(&format!("{}/team-repo?list-type=2", moto.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(xml.contains("<Key>s3-ref/s3-ref/out.tgz</Key>"), "{xml}");
    assert!(
        moto.keys().is_empty(),
        "the default bucket is untouched: {:?}",
        moto.keys()
    );
}

/// Argo's `archiveLogs`: each pod's main log is kept as the `main-logs` artifact under
/// `{workflow}/{pod}/main.log` in the repository.
#[test]
fn archived_logs_land_in_the_bucket() {
    let Some(moto) = Moto::start() else { return };
    let server = server_with_bucket("s3-logs", &moto);
    server.submit(
        "default",
        json!({
            "metadata": {"name": "s3-logs"},
            "spec": {"entrypoint": "say", "arguments": params(), "archiveLogs": true,
                "templates": [{"name": "say", "container": {"image": "debian",
                    "command": ["sh", "-c", "echo kept in the bucket"]}}]}
        }),
    );
    let wf = server.wait("default", "s3-logs", Duration::from_secs(60));
    assert_eq!(wf["status"]["phase"], "Succeeded", "{wf}");
    let logs = &node(&wf, "s3-logs")["outputs"]["artifacts"];
    assert_eq!(logs[0]["name"], "main-logs", "{wf}");
    assert_eq!(moto.keys(), ["s3-logs/s3-logs/main.log"]);
    assert_eq!(
        moto.object("s3-logs/s3-logs/main.log"),
        b"kept in the bucket\n"
    );
}
