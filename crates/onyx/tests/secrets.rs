//! Kubernetes Secrets for steps: `secretKeyRef` env and `secret` volumes resolved from the
//! server's secrets file when the pod starts — and written nowhere else: not in the pod's spec,
//! the store, the logs or the audit trail (every file under the server's home is searched).

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::{node, temp_home, Server};

const SECRET: &str = "s3cr3t-Value-4242";

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            found.extend(files_containing(&p, needle));
        } else if ft.is_file() {
            if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn secrets_reach_the_step_and_nothing_else() {
    let home = temp_home("secrets");
    let secrets = home.join("secrets.toml");
    std::fs::write(
        &secrets,
        format!("[team-a.db]\npassword = \"{SECRET}\"\nuser = \"onyx\"\n"),
    )
    .unwrap();
    let cfg = home.join("onyx.toml");
    std::fs::write(
        &cfg,
        format!("[secrets]\nfile = \"{}\"\n", secrets.display()),
    )
    .unwrap();
    let server = Server::start(&home, &["--config", &cfg.display().to_string()]);
    server.submit(
        "team-a",
        json!({
            "metadata": {"name": "uses-secrets"},
            "spec": {"entrypoint": "main",
                "arguments": {"parameters": [{"name": "ticket_id", "value": "T-9"}]},
                "volumes": [{"name": "db", "secret": {"secretName": "db", "defaultMode": 256}}],
                "templates": [
                {"name": "main", "steps": [[
                    {"name": "use", "template": "use"},
                    {"name": "missing", "template": "missing"}]]},
                {"name": "use", "script": {"image": "debian", "command": ["sh"],
                    "env": [
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                    "volumeMounts": [{"name": "db", "mountPath": "/etc/db"}],
                    "source": "test \"$PASSWORD\" = \"$(cat /etc/db/password)\" && echo match\nls /etc/db | tr '\\n' ' '\necho\necho $NS\nstat -c %a /etc/db/password\n"}},
                {"name": "missing", "container": {"image": "debian", "command": ["true"],
                    "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "token"}}}]}}
            ]}
        }),
    );
    let wf = server.wait("team-a", "uses-secrets", Duration::from_secs(60));
    assert_eq!(
        node(&wf, "use")["outputs"]["result"],
        "match\npassword user \nteam-a\n400",
        "{wf}"
    );
    let missing = node(&wf, "missing");
    assert_ne!(missing["phase"], "Succeeded");
    assert_eq!(
        missing["message"], "secret \"nope\" not found in namespace \"team-a\"",
        "{missing}"
    );
    // The value is nowhere under the server's home: not in pod.json, the store, logs, audit,
    // and the volume's files went with the pod.
    let found = files_containing(&home.join("state"), SECRET.as_bytes());
    assert!(found.is_empty(), "the secret was written to {found:?}");
    let pods = home.join("state/pods/team-a");
    let use_pod = std::fs::read_dir(&pods)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains("use"))
        .unwrap()
        .path();
    assert!(!use_pod.join("volumes/db/password").exists());
    let spec = std::fs::read_to_string(use_pod.join("pod.json")).unwrap();
    assert!(
        spec.contains("\"secret\":\"db\""),
        "the spec keeps the reference: {spec}"
    );
}

#[test]
fn a_broken_secrets_file_is_said_at_start() {
    let home = temp_home("secrets-broken");
    let secrets = home.join("secrets.toml");
    std::fs::write(&secrets, "[team-a.db\npassword = 1\n").unwrap();
    let cfg = home.join("onyx.toml");
    std::fs::write(
        &cfg,
        format!("[secrets]\nfile = \"{}\"\n", secrets.display()),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["server", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .env("ONYX_HOME", home.join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("the secrets file {}", secrets.display())),
        "{err}"
    );
}
