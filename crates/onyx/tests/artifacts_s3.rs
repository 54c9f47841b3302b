//! Artifacts in an S3 bucket: a real S3-compatible server (moto's, from PyPI) started by the
//! test; `[artifact_repository.s3]` in the server's config. An artifact-passing workflow ends
//! Succeeded with its artifacts in the bucket under Argo's key layout
//! (`{workflow}/{pod}/{artifact}.tgz`); the S3 server going away mid-upload fails the step
//! with the error, not a hang.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{node, temp_home, Server};
use test_s3::Moto;

/// The test's S3 server, its default bucket `onyx-artifacts` made.
fn moto() -> Option<Moto> {
    let m = Moto::start()?;
    m.make_bucket("onyx-artifacts");
    Some(m)
}

/// Keys in the default bucket, as the workflows of namespace `default` name them: every key
/// of a configured repository is under its namespace's prefix (a tenant's keys are its own).
fn keys(m: &Moto) -> Vec<String> {
    namespaced(m.keys("onyx-artifacts"))
}

fn namespaced(keys: Vec<String>) -> Vec<String> {
    keys.into_iter()
        .map(|k| match k.strip_prefix("default/") {
            Some(rest) => rest.to_string(),
            None => panic!("key {k:?} is not under its namespace's prefix default/"),
        })
        .collect()
}

/// An object of the default bucket (a key of namespace `default`), read with the server's
/// credentials.
fn object(m: &Moto, key: &str) -> Vec<u8> {
    m.object(
        "onyx-artifacts",
        &format!("default/{key}"),
        "testing",
        "testing-secret",
    )
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
            moto.endpoint(),
            home.join("access").display(),
            home.join("secret").display(),
            moto.endpoint(),
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
    let Some(moto) = moto() else { return };
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
    let mut keys = keys(&moto);
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
    let tgz = object(&moto, &keys[0]);
    assert_eq!(&tgz[..2], &[0x1f, 0x8b]);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
    let names: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(names, ["greeting.txt"]);
    assert_eq!(object(&moto, &keys[2]), b"two\n");
    // Nothing went to the local directory.
    assert!(!server.home.join("state/artifacts/s3-pass").exists());
    // Argo's artifact server reads them back from the bucket, byte for byte.
    let make = node(&wf, "make")["id"].as_str().unwrap().to_string();
    let use_node = node(&wf, "use")["id"].as_str().unwrap().to_string();
    // Redirects followed here: ureq drops the Authorization header on a redirect.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let get = |path: &str| {
        let mut at = path.to_string();
        let r = loop {
            let mut req = agent.get(&format!("{}{at}", server.base));
            if let Some(t) = &server.token {
                req = req.set("Authorization", &format!("Bearer {t}"));
            }
            let r = req.call().unwrap_or_else(|e| panic!("GET {at}: {e}"));
            match r.header("location") {
                Some(next) if (300..400).contains(&r.status()) => at = next.to_string(),
                _ => break r,
            }
        };
        let disposition = r
            .header("content-disposition")
            .unwrap_or_default()
            .to_string();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
        (disposition, body)
    };
    let (disposition, body) = get(&format!("/artifacts/default/s3-pass/{make}/greeting"));
    assert_eq!(body, tgz);
    assert_eq!(disposition, "attachment; filename=\"greeting.tgz\"");
    let uid = wf["metadata"]["uid"].as_str().unwrap();
    assert_eq!(
        get(&format!("/artifacts-by-uid/{uid}/{make}/greeting")).1,
        tgz
    );
    assert_eq!(
        get(&format!(
            "/input-artifacts/default/s3-pass/{use_node}/greeting"
        ))
        .1,
        tgz
    );
    let files = format!("/artifact-files/default/workflows/s3-pass/{make}/outputs/tree");
    let (_, listing) = get(&format!("{files}/"));
    let listing = String::from_utf8(listing).unwrap();
    assert!(
        listing.contains("<a href=\"./one.txt\">one.txt</a>")
            && listing.contains("<a href=\"./sub/\">sub/</a>"),
        "{listing}"
    );
    assert_eq!(get(&format!("{files}/sub/two.txt")).1, b"two\n");
    // A directory without its slash is redirected to it (ureq follows), as Argo does.
    assert!(String::from_utf8(get(&files).1)
        .unwrap()
        .contains("one.txt"));
    // `onyx cp`, as `argo cp`: the artifact under {namespace}/{workflow}/{node}/outputs/{name}.
    let out = server.home.join("copied");
    let cp = std::process::Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["--server", &server.base, "cp", "s3-pass"])
        .env("ONYX_HOME", server.home.join("state"))
        .arg(&out)
        .args(["--artifact-name", "greeting"])
        .output()
        .unwrap();
    assert!(
        cp.status.success(),
        "{}",
        String::from_utf8_lossy(&cp.stderr)
    );
    let copied = out.join(format!(
        "default/s3-pass/{make}/outputs/greeting/greeting.tgz"
    ));
    assert_eq!(std::fs::read(&copied).unwrap(), tgz, "{}", copied.display());
    // A directory artifact: its files, each byte for byte.
    let cp = std::process::Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["--server", &server.base, "cp", "s3-pass"])
        .env("ONYX_HOME", server.home.join("state"))
        .arg(&out)
        .args(["--artifact-name", "tree"])
        .output()
        .unwrap();
    assert!(
        cp.status.success(),
        "{}",
        String::from_utf8_lossy(&cp.stderr)
    );
    let tree = out.join(format!("default/s3-pass/{make}/outputs/tree/tree"));
    assert_eq!(std::fs::read(tree.join("one.txt")).unwrap(), b"one\n");
    assert_eq!(std::fs::read(tree.join("sub/two.txt")).unwrap(), b"two\n");
}

#[test]
fn the_bucket_going_away_mid_upload_fails_the_step_with_the_error() {
    let Some(mut moto) = moto() else {
        return;
    };
    let server = server_with_bucket("s3-gone", &moto);
    server.submit(
        "default",
        json!({
            "metadata": {"name": "s3-gone"},
            "spec": {"entrypoint": "big", "arguments": params(), "templates": [
                {"name": "big", "script": {"image": "debian", "command": ["sh"], "source":
                    "head -c 150000000 /dev/urandom > /tmp/big.bin\necho written\n"},
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
    moto.kill();
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
            && message.contains("s3://onyx-artifacts/default/s3-gone/"),
        "{step}"
    );
}

/// An artifact naming its own bucket with Argo's `s3` fields, credentials from a secret of the
/// workflow's namespace: written there by one step, read from there by the next.
#[test]
fn an_artifact_in_a_bucket_of_its_own_with_credentials_from_a_secret() {
    let Some(moto) = moto() else { return };
    moto.make_bucket("team-bucket");
    let server = server_with_bucket("s3-own", &moto);
    let endpoint = moto.endpoint().to_string();
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
    assert_eq!(moto.keys("team-bucket"), ["reports/q4.txt"]);
    assert!(
        keys(&moto).is_empty(),
        "nothing went to the default bucket: {:?}",
        keys(&moto)
    );
}

/// Argo's artifact garbage collection: the workflow's strategy (OnWorkflowDeletion) and an
/// artifact's own (OnWorkflowCompletion) decide when each leaves the bucket.
#[test]
fn artifact_gc_removes_artifacts_on_completion_and_on_deletion() {
    let Some(moto) = moto() else { return };
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
    while keys(&moto).len() != 1 {
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", keys(&moto));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(keys(&moto), ["s3-gc/s3-gc/keep.tgz"]);
    let (code, body) = server.call("DELETE", "/api/v1/workflows/default/s3-gc", None);
    assert_eq!(code, 200, "{body}");
    assert!(keys(&moto).is_empty(), "{:?}", keys(&moto));
}

/// `artifactRepositoryRef` picks a named repository of the server's config (Argo's
/// `artifact-repositories` ConfigMap keys); a key the server does not have is refused.
#[test]
fn artifact_repository_ref_picks_a_named_repository() {
    let Some(moto) = moto() else { return };
    moto.make_bucket("team-repo");
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
    assert_eq!(
        namespaced(moto.keys("team-repo")),
        ["s3-ref/s3-ref/out.tgz"]
    );
    assert!(
        keys(&moto).is_empty(),
        "the default bucket is untouched: {:?}",
        keys(&moto)
    );
}

/// Argo's `archiveLogs`: each pod's main log is kept as the `main-logs` artifact under
/// `{workflow}/{pod}/main.log` in the repository.
#[test]
fn archived_logs_land_in_the_bucket() {
    let Some(moto) = moto() else { return };
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
    assert_eq!(keys(&moto), ["s3-logs/s3-logs/main.log"]);
    assert_eq!(
        object(&moto, "s3-logs/s3-logs/main.log"),
        b"kept in the bucket\n"
    );
}
