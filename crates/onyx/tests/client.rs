//! The `onyx` client verbs against a real `onyx server`, as a user types them.

mod support;

use std::process::Command;

use support::{temp_home, Server};

fn onyx(s: &Server, args: &[&str]) -> std::process::Output {
    s.cli(args)
}

fn ok(s: &Server, args: &[&str]) -> String {
    s.cli_ok(args)
}

#[test]
fn argo_verbs_end_to_end() {
    let home = temp_home("client");
    let s = Server::start(&home, &[]);
    let dir = home.join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let wf = dir.join("hello.yaml");
    std::fs::write(
        &wf,
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {generateName: hello-}\nspec:\n  entrypoint: main\n  arguments: {parameters: [{name: msg, value: hi}]}\n  templates:\n  - name: main\n    container: {image: argoproj/argosay:v2, args: [echo, '{{workflow.parameters.msg}}']}\n",
    )
    .unwrap();
    let wf_s = wf.to_str().unwrap();
    // Refused without ticket_id, with the way to pass it.
    let out = onyx(&s, &["submit", wf_s]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("-p ticket_id=VALUE") && err.contains("(HTTP 400)"),
        "{err}"
    );
    // submit --wait -o name, then list, get, logs.
    let name = ok(
        &s,
        &[
            "submit",
            wf_s,
            "-p",
            "ticket_id=T-1",
            "-p",
            "msg=from the cli",
            "--wait",
            "-o",
            "name",
        ],
    )
    .trim()
    .to_string();
    assert!(name.starts_with("hello-"), "{name}");
    let list = ok(&s, &["list"]);
    assert!(list.contains(&name) && list.contains("Succeeded"), "{list}");
    let get = ok(&s, &["get", &name]);
    assert!(get.contains("Status:              Succeeded"), "{get}");
    assert_eq!(
        ok(&s, &["logs", &name]).trim(),
        format!("{name}: from the cli")
    );
    let json = ok(&s, &["get", &name, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["status"]["phase"], "Succeeded");
    // Argo's `@latest` names the newest workflow, wherever a workflow is named.
    let latest = ok(&s, &["get", "@latest", "-o", "name"]);
    assert_eq!(latest.trim(), name);
    assert_eq!(
        ok(&s, &["logs", "@latest"]).trim(),
        format!("{name}: from the cli")
    );
    assert!(ok(&s, &["watch", "@latest"]).contains(&name));
    // A failing workflow: --wait exits 1; wait says how it ended.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: bad}\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    container: {image: argoproj/argosay:v2, args: [exit, '2']}\n",
    )
    .unwrap();
    let out = onyx(
        &s,
        &[
            "submit",
            bad.to_str().unwrap(),
            "-p",
            "ticket_id=T-2",
            "--wait",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let out = onyx(&s, &["wait", "bad"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("bad Failed at "));
    // Templates and submit --from.
    let tmpl = dir.join("tmpl.yaml");
    std::fs::write(
        &tmpl,
        "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata: {name: greet}\nspec:\n  entrypoint: main\n  arguments: {parameters: [{name: who, value: world}]}\n  templates:\n  - name: main\n    inputs: {parameters: [{name: who}]}\n    container: {image: argoproj/argosay:v2, args: [echo, 'hello {{inputs.parameters.who}}']}\n",
    )
    .unwrap();
    assert_eq!(
        ok(&s, &["template", "create", tmpl.to_str().unwrap()]).trim(),
        "greet created"
    );
    assert!(ok(&s, &["template", "list"]).contains("greet"));
    assert!(ok(&s, &["template", "get", "greet"]).contains("kind: WorkflowTemplate"));
    let from = ok(
        &s,
        &[
            "submit",
            "--from",
            "workflowtemplate/greet",
            "-p",
            "who=onyx",
            "-p",
            "ticket_id=T-3",
            "--wait",
            "-o",
            "name",
        ],
    );
    assert_eq!(
        ok(&s, &["logs", from.trim()]).trim(),
        format!("{}: hello onyx", from.trim())
    );
    // Cron workflows and the archive.
    let cron = dir.join("cron.yaml");
    std::fs::write(
        &cron,
        "apiVersion: argoproj.io/v1alpha1\nkind: CronWorkflow\nmetadata: {name: nightly}\nspec:\n  schedule: '0 3 * * *'\n  timezone: Asia/Tokyo\n  workflowSpec:\n    entrypoint: main\n    arguments: {parameters: [{name: ticket_id, value: T-4}]}\n    templates:\n    - name: main\n      container: {image: argoproj/argosay:v2, args: [echo, nightly]}\n",
    )
    .unwrap();
    assert_eq!(
        ok(&s, &["cron", "create", cron.to_str().unwrap()]).trim(),
        "nightly created"
    );
    assert!(ok(&s, &["cron", "suspend", "nightly"]).contains("suspended"));
    assert!(ok(&s, &["cron", "get", "nightly"]).contains("suspend: true"));
    assert!(ok(&s, &["cron", "list"]).contains("nightly"));
    let archived = ok(&s, &["archive", "list"]);
    assert!(
        archived.contains(&name) && archived.contains("bad"),
        "{archived}"
    );
    // Delete.
    assert_eq!(
        ok(&s, &["delete", &name]).trim(),
        format!("Workflow '{name}' deleted")
    );
    let out = onyx(&s, &["get", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!(
        "workflows.argoproj.io \"{name}\" not found (HTTP 404)"
    )));
    // No server: a clear message.
    let out = Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["list", "--server", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot reach the server at http://127.0.0.1:1"));
}
