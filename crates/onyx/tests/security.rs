//! The security suite: each test is an attack a hostile tenant (or another local user) would
//! make on `onyx server`, and what must come of it. One test per class of docs/security.md:
//! the pod sandbox, Pod Security admission, artifact keys, tenants' artifacts, names that
//! become paths, the server's own token, and limits that keep one workflow from taking the
//! server down. They run as root with an OCI runtime (CI installs runc): the sandbox is
//! what they test.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{node, temp_home, Server};

fn params() -> Value {
    json!({"parameters": [{"name": "ticket_id", "value": "T-SEC"}]})
}

/// The sandbox needs root and an OCI runtime; CI has both. Elsewhere the suite says why it
/// cannot run rather than passing.
fn sandboxed() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    let runtime = pod_sandbox::runtime().is_some();
    assert!(
        root && runtime || std::env::var_os("CI").is_none(),
        "CI runs the security suite as root with runc installed"
    );
    if !(root && runtime) {
        eprintln!("security suite: needs root and runc (apt-get install runc); not run here");
    }
    root && runtime
}

fn script(name: &str, source: &str) -> Value {
    json!({"name": name, "script": {"image": "debian", "command": ["sh"], "source": source}})
}

/// A root step tries the host every way the issue found open: the host's processes and
/// root through /proc, ONYX's home, token and database, writing the host's /usr, mounting,
/// new namespaces, and the other pods' processes. It sees none of them, with the container's
/// default capabilities and a seccomp filter.
#[test]
fn a_root_step_reaches_neither_the_host_nor_onyx_nor_other_pods() {
    if !sandboxed() {
        return;
    }
    let home = temp_home("security-sandbox");
    let s = Server::start(&home, &[]);
    let log = attack_from_a_pod(&s, &home);
    // Its root is an unprivileged range of host uids.
    assert!(log.contains("uid_map=0 1000000000 65536"), "{log}");
}

/// The same attack on a server run by an unprivileged user: its pods run rootless (a user
/// namespace of the wrapper's own, the server's uid as the containers' root) and see no more
/// of the host, or of the server's files their root could otherwise read, than a root server's.
#[test]
fn a_server_that_is_not_root_runs_its_pods_rootless_and_as_contained() {
    if !sandboxed() {
        return;
    }
    let home = temp_home("security-rootless");
    let s = Server::start_as_user(&home, NOBODY, &[]);
    let log = attack_from_a_pod(&s, &home);
    // Its root is the server's user on the host, and nothing else is mapped.
    assert!(log.contains(&format!("uid_map=0 {NOBODY} 1")), "{log}");
}

/// `nobody`: an account with nothing of its own on the host.
const NOBODY: u32 = 65_534;

/// The attack, its common verdicts, and what the attacker saw.
fn attack_from_a_pod(s: &Server, home: &std::path::Path) -> String {
    let state = home.join("state").canonicalize().unwrap();
    let token = s.token.clone().expect("the server made its own token");
    let marker = format!("/usr/bin/onyx-escape-{}", std::process::id());
    let attack = format!(
        r#"set +e
echo "pid1=$(tr '\0' ' ' < /proc/1/cmdline)"
echo "procs=$(ls /proc | grep -c '^[0-9]')"
echo "uid_map=$(cat /proc/self/uid_map | tr -s ' ' | sed 's/^ //')"
ls /proc/1/root/ | tr '\n' ' '; echo
cat {state}/token; echo "token=$?"
ls {state} 2>&1; echo "home=$?"
cat /proc/1/root{state}/token 2>&1; echo
head -c 64 {state}/onyx.db 2>&1; echo "db=$?"
ls /.onyx-home 2>&1
touch {marker} 2>&1; echo "usr=$?"
mount -t tmpfs none /mnt 2>&1; echo "mount=$?"
unshare -U true 2>&1; echo "unshare=$?"
grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status
ps -e -o args 2>/dev/null | grep -c '[s]leep-in-another-pod'
echo done
"#,
        state = state.display()
    );
    s.submit(
        "default",
        json!({"metadata": {"name": "attack"}, "spec": {"entrypoint": "main", "arguments": params(),
            "templates": [
                {"name": "main", "dag": {"tasks": [
                    {"name": "victim", "template": "victim"},
                    {"name": "attacker", "template": "attacker"}]}},
                script(
                    "victim",
                    "cp /bin/sleep /tmp/sleep-in-another-pod && /tmp/sleep-in-another-pod 5",
                ),
                script("attacker", &format!("sleep 1\n{attack}"))]}}),
    );
    let wf = s.wait("default", "attack", Duration::from_secs(60));
    assert_eq!(wf["status"]["phase"], "Succeeded", "{wf}");
    // The victim was running while the attacker looked (both ran, side by side).
    assert_eq!(node(&wf, "victim")["phase"], "Succeeded", "{wf}");
    let log = node(&wf, "attacker")["outputs"]["result"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    eprintln!("the attacker saw:\n{log}");
    assert!(log.contains("done"), "{log}");
    assert!(!log.contains(&token), "the token leaked: {log}");
    // Its own pid namespace: pid 1 is its own shell, and few processes.
    assert!(log.contains("pid1=sh "), "{log}");
    assert!(log.contains("token=1"), "{log}");
    assert!(log.contains("home=2"), "{log}");
    assert!(log.contains("db=1"), "{log}");
    assert!(!log.contains("SQLite format"), "{log}");
    assert!(log.contains("usr=1"), "{log}");
    assert!(log.contains("mount=32") || log.contains("mount=1"), "{log}");
    assert!(log.contains("unshare=1"), "{log}");
    // Docker's and containerd's default capabilities, and a seccomp filter.
    assert!(log.contains("CapEff:\t00000000a80425fb"), "{log}");
    assert!(log.contains("Seccomp:\t2"), "{log}");
    // The other pod's processes are not there to see or trace.
    assert!(log.contains("\n0\ndone"), "{log}");
    assert!(!std::path::Path::new(&marker).exists());
    // The host's /usr is untouched, and so is the home.
    let procs: u32 = log
        .lines()
        .find_map(|l| l.strip_prefix("procs="))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(procs < 10, "{log}");
    log
}

/// Pod Security admission, `baseline` by default: hostPath volumes, privileged containers,
/// host namespaces and added capabilities are refused at submission, naming rule, field and
/// value; a namespace configured `privileged` admits them.
#[test]
fn pod_security_baseline_refuses_host_access_at_submission() {
    let home = temp_home("security-pss");
    let cfg = home.join("onyx.toml");
    std::fs::write(
        &cfg,
        "[namespaces.ops]\npod_security = \"privileged\"\nrequired_parameters = []\n",
    )
    .unwrap();
    let s = Server::start(&home, &["--config", cfg.to_str().unwrap()]);
    let refused = |wf: Value, want: &[&str]| {
        let (code, body) = s.call(
            "POST",
            "/api/v1/workflows/default",
            Some(json!({"workflow": wf})),
        );
        assert_eq!(code, 400, "{body}");
        let m = body["message"].as_str().unwrap();
        for w in want {
            assert!(m.contains(w), "{w:?} not in {m}");
        }
    };
    let with = |template: Value, spec_extra: Value| {
        let mut spec =
            json!({"entrypoint": "main", "arguments": params(), "templates": [template]});
        for (k, v) in spec_extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"metadata": {"name": "pss"}, "spec": spec})
    };
    refused(
        with(
            json!({"name": "main", "container": {"image": "debian", "command": ["true"],
                "volumeMounts": [{"name": "host", "mountPath": "/host"}]}}),
            json!({"volumes": [{"name": "host", "hostPath": {"path": "/"}}]}),
        ),
        &[
            "pod_security",
            "spec.volumes[0].hostPath",
            "violates PodSecurity \"baseline:latest\": hostPath volumes",
        ],
    );
    refused(
        with(
            json!({"name": "main", "container": {"image": "debian", "command": ["true"],
                "securityContext": {"privileged": true}}}),
            json!({}),
        ),
        &[
            "privileged",
            "spec.templates[0].container.securityContext.privileged",
        ],
    );
    refused(
        with(
            json!({"name": "main", "container": {"image": "debian", "command": ["true"],
                "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}}),
            json!({}),
        ),
        &["non-default capabilities", "SYS_ADMIN"],
    );
    refused(
        with(
            json!({"name": "main", "container": {"image": "debian", "command": ["true"]}}),
            json!({"hostNetwork": true}),
        ),
        &["host namespaces", "hostNetwork=true"],
    );
    // A trusted namespace may.
    let (code, body) = s.call(
        "POST",
        "/api/v1/workflows/ops",
        Some(json!({"workflow": with(
            json!({"name": "main", "container": {"image": "debian", "command": ["true"],
                "volumeMounts": [{"name": "host", "mountPath": "/host"}]}}),
            json!({"volumes": [{"name": "host", "hostPath": {"path": "/tmp"}}]}),
        )})),
    );
    assert_eq!(code, 200, "{body}");
}

/// Artifact keys are relative and stay in the repository: an absolute key or one with `..`
/// fails the step that names it, and reaches no host file.
#[test]
fn absolute_and_dotdot_artifact_keys_fail_the_step() {
    if !sandboxed() {
        return;
    }
    let home = temp_home("security-keys");
    let s = Server::start(&home, &[]);
    let token_path = home.join("state/token").canonicalize().unwrap();
    for (name, key) in [
        ("abs-in", token_path.display().to_string()),
        ("dots-in", "../../token".to_string()),
    ] {
        s.submit(
            "default",
            json!({"metadata": {"name": name}, "spec": {"entrypoint": "main", "arguments": params(),
                "templates": [{"name": "main",
                    "inputs": {"artifacts": [{"name": "t", "path": "/in/t", "s3": {"key": key}}]},
                    "script": {"image": "debian", "command": ["sh"], "source": "cat /in/t"}}]}}),
        );
        let wf = s.wait("default", name, Duration::from_secs(60));
        // The node that hit the limit errs; its workflow ends Error or, where Argo lets a
        // step group fail for an errored child, Failed.
        let phase = wf["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(phase == "Error" || phase == "Failed", "{name}: {wf}");
        let m = node(&wf, name)["message"].as_str().unwrap_or_default();
        assert!(m.contains("is not a relative key"), "{name}: {m}");
    }
    s.submit(
        "default",
        json!({"metadata": {"name": "abs-out"}, "spec": {"entrypoint": "main", "arguments": params(),
            "templates": [{"name": "main",
                "outputs": {"artifacts": [{"name": "o", "path": "/tmp/o",
                    "s3": {"key": "/tmp/onyx-written-by-a-pod"}}]},
                "script": {"image": "debian", "command": ["sh"], "source": "echo x > /tmp/o"}}]}}),
    );
    let wf = s.wait("default", "abs-out", Duration::from_secs(60));
    assert_ne!(wf["status"]["phase"], "Succeeded", "{wf}");
    assert!(!std::path::Path::new("/tmp/onyx-written-by-a-pod").exists());
    assert!(!std::path::Path::new("/tmp/onyx-written-by-a-pod.tgz").exists());
}

/// Tenants' artifacts are apart: a workflow of one name in two namespaces keeps two
/// artifacts, each under its namespace, and neither reads the other's by key.
#[test]
fn tenants_keep_their_artifacts_apart() {
    if !sandboxed() {
        return;
    }
    let home = temp_home("security-tenants");
    let s = Server::start(&home, &[]);
    let wf = |secret: &str| {
        json!({"metadata": {"name": "same"}, "spec": {"entrypoint": "main", "arguments": params(),
            "templates": [{"name": "main",
                "outputs": {"artifacts": [{"name": "o", "path": "/tmp/o", "archive": {"none": {}}}]},
                "script": {"image": "debian", "command": ["sh"],
                    "source": format!("echo {secret} > /tmp/o")}}]}})
    };
    s.submit("team-a", wf("secret-of-a"));
    let a = s.wait("team-a", "same", Duration::from_secs(60));
    assert_eq!(a["status"]["phase"], "Succeeded", "{a}");
    s.submit("team-b", wf("secret-of-b"));
    let b = s.wait("team-b", "same", Duration::from_secs(60));
    assert_eq!(b["status"]["phase"], "Succeeded", "{b}");
    let key = node(&a, "same")["outputs"]["artifacts"][0]["s3"]["key"]
        .as_str()
        .or(node(&a, "same")["outputs"]["artifacts"][0]["local"]["key"].as_str())
        .unwrap()
        .to_string();
    let repo = home.join("state/artifacts");
    assert_eq!(
        std::fs::read_to_string(repo.join("team-a").join(&key)).unwrap(),
        "secret-of-a\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("team-b").join(&key)).unwrap(),
        "secret-of-b\n"
    );
    // Team b names team a's key, and gets its own namespace's object (or none): never a's.
    s.submit(
        "team-b",
        json!({"metadata": {"name": "steal"}, "spec": {"entrypoint": "main", "arguments": params(),
            "templates": [{"name": "main",
                "inputs": {"artifacts": [{"name": "t", "path": "/in/t", "s3": {"key": key},
                    "archive": {"none": {}}}]},
                "script": {"image": "debian", "command": ["sh"], "source": "cat /in/t"}}]}}),
    );
    let steal = s.wait("team-b", "steal", Duration::from_secs(60));
    assert_ne!(
        node(&steal, "steal")["outputs"]["result"],
        "secret-of-a",
        "{steal}"
    );
}

/// Names become paths only once checked: a namespace that is not a DNS-1123 label, a path
/// segment that decodes to `..` or holds an encoded `/`, and an archived resubmission into a
/// namespace that is no namespace name, are refused before anything is made.
#[test]
fn names_that_would_become_paths_are_refused_where_they_enter() {
    let home = temp_home("security-names");
    let s = Server::start(&home, &[]);
    let hello = json!({"workflow": {"metadata": {"name": "n"}, "spec": {"entrypoint": "main",
        "arguments": params(),
        "templates": [{"name": "main", "container": {"image": "debian", "command": ["true"]}}]}}});
    for path in [
        "/api/v1/workflows/%2Ftmp%2Fonyx-ns",
        "/api/v1/workflows/%2e%2e",
        "/api/v1/workflows/Not_A_Namespace",
    ] {
        let (code, body) = s.call("POST", path, Some(hello.clone()));
        // Refused by the authentication layer (400), or routed nowhere (404): never made.
        assert!(code == 400 || code == 404, "{path}: {code} {body}");
    }
    assert!(!std::path::Path::new("/tmp/onyx-ns").exists());
    let (code, body) = s.call(
        "GET",
        "/artifact-files/default/workflows/n/n/outputs/o/%2e%2e/%2e%2e/%2e%2e/",
        None,
    );
    assert_eq!(code, 400, "{body}");
    // A pod may not mount or read outside its root through `..`.
    let (code, body) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(
            json!({"workflow": {"metadata": {"name": "dots"}, "spec": {"entrypoint": "main",
            "arguments": params(),
            "volumes": [{"name": "v", "emptyDir": {}}],
            "templates": [{"name": "main", "container": {"image": "debian", "command": ["true"],
                "volumeMounts": [{"name": "v", "mountPath": "/a/../../../host"}]}}]}}}),
        ),
    );
    if code == 200 {
        let wf = s.wait("default", "dots", Duration::from_secs(60));
        assert_ne!(wf["status"]["phase"], "Succeeded", "{wf}");
    } else {
        assert_eq!(code, 400, "{body}");
    }
}

/// No local root by default: a server on loopback with no token configured makes one at
/// first start (0600, in its home, kept across restarts), refuses calls without it, and the
/// CLI on the same machine uses it unasked; it never sends it to another server.
#[test]
fn a_default_server_makes_its_own_token_and_the_cli_picks_it_up() {
    use std::os::unix::fs::PermissionsExt;
    let home = temp_home("security-token");
    let mut s = Server::start(&home, &[]);
    let token = s.token.clone().expect("a token in HOME/token");
    let meta = std::fs::metadata(home.join("state/token")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let home_mode = std::fs::metadata(home.join("state"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(home_mode & 0o077, 0, "the home is its owner's only");
    let (code, _) = s.call_as(None, "GET", "/api/v1/workflows/default", None);
    assert_eq!(code, 401);
    let (code, _) = s.call_as(Some("wrong-token-0123456789"), "GET", "/metrics", None);
    assert_eq!(code, 401);
    let (code, _) = s.call("GET", "/api/v1/workflows/default", None);
    assert_eq!(code, 200);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["--server", &s.base, "list"])
        .env("ONYX_HOME", home.join("state"))
        .env_remove("ONYX_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.kill9();
    let s = Server::start(&home, &[]);
    assert_eq!(
        s.token.as_deref(),
        Some(token.as_str()),
        "kept across restarts"
    );
}

/// Limits, not crashes: a template that calls itself, an expression that would build a huge
/// string and a loop of a million items each make their own workflow Error, saying which limit;
/// the server keeps answering, and a restart recovers without aborting.
#[test]
fn hostile_expansions_error_their_workflow_and_the_server_survives_a_restart() {
    let home = temp_home("security-limits");
    let mut s = Server::start(&home, &[]);
    let submit = |name: &str, templates: Value| {
        s.submit(
            "default",
            json!({"metadata": {"name": name}, "spec": {"entrypoint": "main", "arguments": params(),
                "templates": templates}}),
        )
    };
    submit(
        "recurse",
        json!([{"name": "main", "steps": [[{"name": "again", "template": "main"}]]}]),
    );
    submit(
        "huge",
        json!([{"name": "main", "steps": [[{"name": "s", "template": "say",
            "arguments": {"parameters": [{"name": "m",
                "value": "{{=sprig.repeat(1000000000, 'x')}}"}]}}]]},
            {"name": "say", "inputs": {"parameters": [{"name": "m"}]},
             "container": {"image": "debian", "command": ["echo", "{{inputs.parameters.m}}"]}}]),
    );
    submit(
        "wide",
        json!([{"name": "main", "steps": [[{"name": "s", "template": "nop",
            "withSequence": {"count": "1000000"}}]]},
            {"name": "nop", "suspend": {"duration": "0"}}]),
    );
    for (name, says) in [
        ("recurse", "Maximum recursion depth exceeded"),
        ("huge", "(MAX_VALUE_BYTES)"),
        ("wide", "(max_loop_items)"),
    ] {
        let wf = s.wait("default", name, Duration::from_secs(60));
        // The node that hit the limit errs; its workflow ends Error or, where Argo lets a
        // step group fail for an errored child, Failed.
        let phase = wf["status"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(phase == "Error" || phase == "Failed", "{name}: {wf}");
        let text = wf.to_string();
        assert!(text.contains(says), "{name}: no {says:?} in {text:.2000}");
    }
    let (code, _) = s.call("GET", "/api/v1/info", None);
    assert_eq!(code, 200);
    s.kill9();
    let s = Server::start(&home, &[]);
    let (code, list) = s.call("GET", "/api/v1/workflows/default", None);
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3), "{list}");
}

/// `http` templates run in ONYX's agent, a process of their own under the namespace's egress
/// rule, as Argo runs them in an agent pod: in the no-egress namespace `onyx-data` the call
/// reaches nothing (not even this machine), elsewhere it is made.
#[test]
fn http_templates_obey_the_namespace_egress_rule() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(4) {
            use std::io::{Read, Write};
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nreached",
            );
        }
    });
    let home = temp_home("security-http");
    let s = Server::start(&home, &[]);
    let wf = json!({"metadata": {"name": "call"}, "spec": {"entrypoint": "main", "arguments": params(),
        "templates": [{"name": "main",
            "http": {"url": format!("http://127.0.0.1:{port}/"), "timeoutSeconds": 5}}]}});
    s.submit("default", wf.clone());
    s.submit("onyx-data", wf);
    let open = s.wait("default", "call", Duration::from_secs(60));
    assert_eq!(open["status"]["phase"], "Succeeded", "{open}");
    assert_eq!(
        node(&open, "call")["outputs"]["result"],
        "reached",
        "{open}"
    );
    let closed = s.wait("onyx-data", "call", Duration::from_secs(60));
    assert_ne!(closed["status"]["phase"], "Succeeded", "{closed}");
    assert_ne!(node(&closed, "call")["outputs"]["result"], "reached");
}
