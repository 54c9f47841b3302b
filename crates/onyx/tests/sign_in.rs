//! Production sign-in against a real OpenID provider (npm's `oidc-provider`, started here):
//! `--auth-mode client` verifies ID tokens against the issuer's discovery document and keys;
//! namespace grants from the token's groups decide what each user sees and does; `sso` signs
//! a browser in through `/oauth2/redirect` and `/oauth2/callback`. Argo's Python client runs
//! unchanged against a PostgreSQL-backed server in client mode with a user's token.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::{temp_home, Server};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The OpenID provider, on `port` (0: any), its key made at start.
struct Provider {
    child: Child,
    issuer: String,
}

const ACCOUNTS: &str = r#"{"alice": {"groups": ["team-a"]}, "bob": {"groups": ["team-b"]}, "carol": {"groups": ["team-c"]}, "ops": {"groups": ["onyx-admins"]}}"#;

impl Provider {
    fn start(port: u16, id_token_ttl: u64, redirect: &str) -> Provider {
        let dir = root().join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the OpenID provider is not installed: run `npm ci --prefix tests/oidc` (.ci/run does)"
        );
        let mut child = Command::new("node")
            .arg("provider.js")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("ACCOUNTS", ACCOUNTS)
            .env("ID_TOKEN_TTL", id_token_ttl.to_string())
            .env("REDIRECT_URIS", format!("http://127.0.0.1/cb,{redirect}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let issuer = line
            .strip_prefix("issuer ")
            .unwrap_or_else(|| panic!("the provider said {line:?}"))
            .trim()
            .to_string();
        Provider { child, issuer }
    }

    fn port(&self) -> u16 {
        self.issuer.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// An ID token for `user`, signed in as a browser would (authorization code + PKCE).
    fn token(&self, user: &str) -> String {
        let out = Command::new("python3")
            .arg(root().join("tests/oidc/login.py"))
            .args(["token", &self.issuer, user])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(home: &Path, issuer: &str, mode: &str, redirect: &str) -> PathBuf {
    std::fs::write(home.join("client-secret"), "onyx-secret\n").unwrap();
    let text = format!(
        r#"
[auth]
mode = "{mode}"
issuer = "{issuer}"
client_id = "onyx"
client_secret_file = "{secret}"
redirect_url = "{redirect}"
clock_skew_seconds = 0
admin_groups = ["onyx-admins"]

[[auth.grants]]
group = "team-a"
namespaces = ["default", "team-a"]

[[auth.grants]]
group = "team-b"
namespaces = ["team-b"]
verbs = ["get", "list", "watch", "create"]
"#,
        secret = home.join("client-secret").display()
    );
    let path = home.join("onyx.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn hello(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {"entrypoint": "main",
                 "arguments": {"parameters": [{"name": "ticket_id", "value": "T-1"}]},
                 "templates": [{"name": "main", "container": {"image": "debian", "command": ["true"]}}]}
    })
}

fn message(v: &Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn client_mode_verifies_tokens_and_grants_namespaces_by_group() {
    let home = temp_home("sign-in-client");
    let mut provider = Provider::start(0, 3600, "http://127.0.0.1/unused");
    let cfg = config(&home, &provider.issuer, "client", "http://127.0.0.1/unused");
    let db = test_postgres::database("sign_in").unwrap_or_else(|e| panic!("{e}"));
    let cfg_s = cfg.display().to_string();
    let server = Server::start(&home, &["--config", &cfg_s, "--store", &db]);
    let (alice, bob, ops) = (
        provider.token("alice"),
        provider.token("bob"),
        provider.token("ops"),
    );

    // No token, a malformed one: 401, saying what to send.
    let (code, body) = server.call("GET", "/api/v1/workflows/team-a", None);
    assert_eq!(code, 401, "{body}");
    assert!(message(&body).contains(&provider.issuer), "{body}");
    let (code, body) = server.call_as(Some("nonsense"), "GET", "/api/v1/workflows/team-a", None);
    assert_eq!(code, 401);
    assert!(message(&body).contains("not a JWT"), "{body}");

    // Alice works in team-a; bob in team-b.
    let (code, body) = server.call_as(
        Some(&alice),
        "POST",
        "/api/v1/workflows/team-a",
        Some(json!({"workflow": hello("alice-1")})),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = server.call_as(
        Some(&bob),
        "POST",
        "/api/v1/workflows/team-b",
        Some(json!({"workflow": hello("bob-1")})),
    );
    assert_eq!(code, 200, "{body}");
    // Bob may not see alice's workflow: 403 naming the missing permission.
    let (code, body) = server.call_as(Some(&bob), "GET", "/api/v1/workflows/team-a/alice-1", None);
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        message(&body),
        "workflows.argoproj.io is forbidden: User \"bob@onyx.internal\" (groups [\"team-b\"]) cannot get resource \"workflows\" in API group \"argoproj.io\" in the namespace \"team-a\""
    );
    let (code, _) = server.call_as(Some(&bob), "GET", "/api/v1/workflows/team-a", None);
    assert_eq!(code, 403);
    // … nor find it in a list over every namespace.
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|w| w["metadata"]["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (code, all) = server.call_as(Some(&bob), "GET", "/api/v1/workflows/", None);
    assert_eq!(code, 200, "{all}");
    assert_eq!(names(&all), ["bob-1"]);
    let (_, all) = server.call_as(Some(&alice), "GET", "/api/v1/workflows/", None);
    assert_eq!(names(&all), ["alice-1"]);
    // Bob's grant has no delete; cluster operations need an admin group.
    let (code, body) = server.call_as(Some(&bob), "DELETE", "/api/v1/workflows/team-b/bob-1", None);
    assert_eq!(code, 403, "{body}");
    assert!(message(&body).contains("cannot delete"), "{body}");
    let (code, body) = server.call_as(Some(&alice), "PUT", "/api/v1/onyx/nodes/n1/cordon", None);
    assert_eq!(code, 403, "{body}");
    assert!(message(&body).contains("admin groups"), "{body}");
    let (_, all) = server.call_as(Some(&ops), "GET", "/api/v1/workflows/", None);
    assert_eq!(names(&all).len(), 2, "an admin sees every namespace");
    let (_, me) = server.call_as(Some(&alice), "GET", "/api/v1/userinfo", None);
    assert_eq!(me["subject"], "alice@onyx.internal");
    assert_eq!(me["groups"], json!(["team-a"]));

    // Bob's workflow, once archived: alice cannot reach it by any spelling of its uid, and bob
    // cannot copy it into a namespace where he may not create.
    let t0 = std::time::Instant::now();
    let uid = loop {
        let (_, archived) = server.call_as(
            Some(&bob),
            "GET",
            "/api/v1/archived-workflows?namespace=team-b",
            None,
        );
        if let Some(uid) = archived["items"][0]["metadata"]["uid"].as_str() {
            break uid.to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{archived}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let encoded = format!("%{:02X}{}", uid.as_bytes()[0], &uid[1..]);
    for spelling in [uid.clone(), encoded] {
        let (code, body) = server.call_as(
            Some(&alice),
            "GET",
            &format!("/api/v1/archived-workflows/{spelling}"),
            None,
        );
        assert_eq!(code, 403, "{spelling}: {body}");
    }
    let (code, body) = server.call_as(
        Some(&bob),
        "PUT",
        &format!("/api/v1/archived-workflows/{uid}/resubmit"),
        Some(json!({"namespace": "team-a"})),
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        message(&body).contains("in the namespace \"team-a\""),
        "{body}"
    );

    // Refusals are audited with who was refused.
    let audit = std::fs::read_to_string(home.join("state/audit/audit.jsonl")).unwrap_or_default();
    let refused: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["status"] == 403)
        .collect();
    assert!(
        refused.iter().any(|e| e["who"] == "bob@onyx.internal"),
        "audit: {audit}"
    );

    // A token from another issuer: 401 saying whose it is.
    let elsewhere = Provider::start(0, 3600, "http://127.0.0.1/unused");
    let foreign = elsewhere.token("alice");
    let (code, body) = server.call_as(Some(&foreign), "GET", "/api/v1/workflows/team-a", None);
    assert_eq!(code, 401, "{body}");
    assert!(
        message(&body).contains(&format!("issued by \"{}\"", elsewhere.issuer)),
        "{body}"
    );

    // The issuer rotates its key (restarted with a new one, same address): a new token
    // verifies (the server fetches the keys again), one signed with the retired key does not.
    let port = provider.port();
    drop(provider);
    provider = Provider::start(port, 1, "http://127.0.0.1/unused");
    let rotated = provider.token("alice");
    let (code, body) = server.call_as(Some(&rotated), "GET", "/api/v1/workflows/team-a", None);
    assert_eq!(code, 200, "{body}");
    let (code, body) = server.call_as(Some(&alice), "GET", "/api/v1/workflows/team-a", None);
    assert_eq!(code, 401, "{body}");
    assert!(message(&body).contains("does not publish"), "{body}");
    // That provider's tokens live a second: expired, 401.
    std::thread::sleep(Duration::from_millis(2100));
    let (code, body) = server.call_as(Some(&rotated), "GET", "/api/v1/workflows/team-a", None);
    assert_eq!(code, 401, "{body}");
    assert!(message(&body).contains("expired"), "{body}");
}

/// Argo's Python client, unchanged, on a PostgreSQL store in client mode with alice's token.
#[test]
fn hera_runs_unchanged_in_client_mode_on_postgresql() {
    let has_hera = Command::new("python3")
        .args(["-c", "import hera, pytest"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_hera {
        assert!(
            std::env::var_os("CI").is_none(),
            "hera and pytest are not installed (.ci/run installs them)"
        );
        eprintln!("hera in client mode: pip install hera pytest to run it; skipped");
        return;
    }
    let home = temp_home("sign-in-hera");
    let provider = Provider::start(0, 3600, "http://127.0.0.1/unused");
    let cfg = config(&home, &provider.issuer, "client", "http://127.0.0.1/unused");
    let db = test_postgres::database("hera_client").unwrap_or_else(|e| panic!("{e}"));
    let token = provider.token("alice");
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/hera"])
        .current_dir(root())
        .env("ONYX_BIN", env!("CARGO_BIN_EXE_onyx"))
        .env(
            "ONYX_SERVER_ARGS",
            format!("--auth-mode client --config {} --store {db}", cfg.display()),
        )
        .env("ONYX_TOKEN", &token)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pg = test_postgres::server().unwrap();
    let stored = pg.psql_in(&db, "SELECT count(*) FROM workflows").unwrap();
    assert!(
        stored.parse::<u32>().unwrap() >= 2,
        "{stored} workflows stored"
    );
    // Without the token the same server refuses: the tests passed because hera sent it.
    let out = Command::new("python3")
        .args([
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "tests/hera",
        ])
        .current_dir(root())
        .env("ONYX_BIN", env!("CARGO_BIN_EXE_onyx"))
        .env(
            "ONYX_SERVER_ARGS",
            format!("--auth-mode client --config {} --store {db}", cfg.display()),
        )
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "hera without a token must be refused"
    );
}

/// `sso`: a browser signs in through the server; the cookie it gets is a bearer for the API.
#[test]
fn sso_signs_a_browser_in_through_the_issuer() {
    let home = temp_home("sign-in-sso");
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/oauth2/callback");
    let provider = Provider::start(0, 3600, &callback);
    let cfg = config(&home, &provider.issuer, "sso", &callback);
    let cfg_s = cfg.display().to_string();
    let server = Server::start_on(&home, &format!("127.0.0.1:{port}"), &["--config", &cfg_s]);
    let out = Command::new("python3")
        .arg(root().join("tests/oidc/login.py"))
        .args(["sso", &server.base, "alice"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let said: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(said["userinfo"]["subject"], "alice@onyx.internal", "{said}");
    assert_eq!(said["cookie"], true);
    // A forged callback (no sign-in under way) is refused.
    let (code, body) = server.call("GET", "/oauth2/callback?code=x&state=forged", None);
    assert_eq!(code, 401, "{body}");

    // Login CSRF: a sign-in is bound to the browser that started it by a cookie holding its
    // state; a callback with the state but without that cookie (another browser, sent there
    // by whoever started the sign-in) is refused.
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let started = agent
        .get(&format!(
            "{}/oauth2/redirect?redirect=/workflows",
            server.base
        ))
        .call()
        .unwrap();
    assert!((300..400).contains(&started.status()));
    let location = started.header("location").unwrap().to_string();
    let state = location
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("state="))
        .unwrap()
        .to_string();
    let cookie = started.header("set-cookie").unwrap().to_string();
    assert_eq!(
        cookie,
        format!("oauthState={state}; Path=/oauth2; Max-Age=600; HttpOnly; SameSite=Lax")
    );
    let callback = |cookie: Option<&str>| {
        let mut req = agent.get(&format!(
            "{}/oauth2/callback?code=x&state={state}",
            server.base
        ));
        if let Some(c) = cookie {
            req = req.set("Cookie", c);
        }
        match req.call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{e}"),
        }
    };
    for cookie in [None, Some("oauthState=someone-elses"), Some("oauthState=")] {
        let (code, body) = callback(cookie);
        assert_eq!(code, 401, "{cookie:?}: {body}");
        assert!(body.contains("did not start this sign-in"), "{body}");
    }
    // With its cookie the state is accepted (the made-up code is then the issuer's to refuse).
    let (code, body) = callback(Some(&format!("oauthState={state}")));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("the issuer refused the code"), "{body}");
}

/// The spec's access flow: carol asks for a namespace for her group (ticket, GPU quota) with
/// the CLI; she cannot use it, nor approve it herself; an admin approves; from then on the
/// namespace is her group's, with its quota — after a restart too.
#[test]
fn a_namespace_request_approved_grants_the_namespace_and_its_quota() {
    let home = temp_home("sign-in-requests");
    let provider = Provider::start(0, 3600, "http://127.0.0.1/unused");
    let cfg = config(&home, &provider.issuer, "client", "http://127.0.0.1/unused");
    let db = test_postgres::database("requests").unwrap_or_else(|e| panic!("{e}"));
    let cfg_s = cfg.display().to_string();
    let mut server = Server::start(&home, &["--config", &cfg_s, "--store", &db]);
    let (carol, ops) = (provider.token("carol"), provider.token("ops"));
    let cli = |server: &Server, token: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_onyx"))
            .args(["--server", &server.base, "--token", token])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = cli(
        &server,
        &carol,
        &[
            "namespace",
            "request",
            "team-c",
            "--ticket",
            "OPS-7",
            "--gpus",
            "8",
        ],
    );
    assert!(ok, "{said}");
    assert!(said.contains("namespace request team-c: Pending"), "{said}");
    // A namespace another group already works in (granted to team-a by the config) is not
    // to be had by asking, and the refusal names no one.
    let (ok, said) = cli(
        &server,
        &carol,
        &["namespace", "request", "team-a", "--ticket", "OPS-8"],
    );
    assert!(!ok, "{said}");
    assert!(
        said.contains("namespace \"team-a\" already exists (it is in use)"),
        "{said}"
    );
    let submit = |server: &Server, token: &str| {
        server.call_as(
            Some(token),
            "POST",
            "/api/v1/workflows/team-c",
            Some(json!({"workflow": hello("carol-1")})),
        )
    };
    assert_eq!(submit(&server, &carol).0, 403, "not granted yet");
    let (ok, said) = cli(&server, &carol, &["namespace", "approve", "team-c"]);
    assert!(
        !ok && said.contains("admin groups"),
        "carol cannot approve her own: {said}"
    );
    let (ok, said) = cli(&server, &ops, &["namespace", "approve", "team-c"]);
    assert!(ok && said.contains("Approved"), "{said}");
    let (code, body) = submit(&server, &carol);
    assert_eq!(code, 200, "{body}");
    let (ok, said) = cli(&server, &carol, &["namespace", "list"]);
    assert!(ok, "{said}");
    assert!(
        said.contains("team-c") && said.contains("Approved") && said.contains("OPS-7"),
        "{said}"
    );
    let quota = |server: &Server| {
        let (_, v) = server.call_as(Some(&ops), "GET", "/api/v1/onyx/namespaces", None);
        v["items"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["namespace"] == "team-c").cloned())
            .unwrap_or(Value::Null)
    };
    assert_eq!(quota(&server)["gpuQuota"], 8, "{}", quota(&server));
    // A second request for it is refused; after a restart the grant and the quota stand.
    let (ok, said) = cli(
        &server,
        &carol,
        &["namespace", "request", "team-c", "--ticket", "OPS-8"],
    );
    assert!(!ok && said.contains("already been requested"), "{said}");
    server.kill9();
    let server = Server::start(&home, &["--config", &cfg_s, "--store", &db]);
    std::thread::sleep(Duration::from_millis(300));
    let (code, body) = server.call_as(
        Some(&carol),
        "GET",
        "/api/v1/workflows/team-c/carol-1",
        None,
    );
    assert_eq!(code, 200, "{body}");
    // It leads once the killed server's lease runs out: then the quota is the scheduler's.
    let t0 = std::time::Instant::now();
    while quota(&server)["gpuQuota"] != 8 {
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", quota(&server));
        std::thread::sleep(Duration::from_millis(100));
    }
}
