//! `onyx run` and `onyx lint` end to end: real processes, real files, our own workflows.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn home(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("onyx-cli")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn onyx(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(args)
        .env("ONYX_HOME", home.join("state"))
        .env(
            "PATH",
            format!("{}:/usr/games", std::env::var("PATH").unwrap_or_default()),
        )
        .output()
        .expect("onyx runs")
}

/// Run a workflow with `-o json`; returns the exit code and the final Workflow object.
fn run_json(home: &Path, files: &[&Path], extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["run", "-o", "json"];
    let owned: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(owned.iter().map(String::as_str));
    args.extend(extra);
    let out = onyx(home, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let wf: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout={stdout} stderr={}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), wf)
}

fn node<'a>(wf: &'a Value, display: &str) -> &'a Value {
    wf["status"]["nodes"]
        .as_object()
        .and_then(|m| m.values().find(|n| n["displayName"] == display))
        .unwrap_or(&Value::Null)
}

const HEAD: &str =
    "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: t-\nspec:\n";

#[test]
fn scripts_results_parameters_and_artifacts_flow_between_real_processes() {
    let h = home("flow");
    let f = write(
        &h,
        "wf.yaml",
        &format!(
            "{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: gen\n        template: gen\n    - - name: use\n        template: use\n        arguments:\n          parameters: [{{name: p, value: '{{{{steps.gen.outputs.parameters.p}}}}'}}]\n          artifacts: [{{name: data, from: '{{{{steps.gen.outputs.artifacts.dir}}}}'}}]\n  - name: gen\n    script:\n      image: python:3\n      command: [python3]\n      source: |\n        import os\n        os.makedirs('/tmp/out/sub')\n        open('/tmp/out/sub/f.txt', 'w').write('file-content')\n        open('/tmp/p.txt', 'w').write('param-value')\n        print('result-text')\n    outputs:\n      parameters: [{{name: p, valueFrom: {{path: /tmp/p.txt}}}}]\n      artifacts: [{{name: dir, path: /tmp/out}}]\n  - name: use\n    inputs:\n      parameters: [{{name: p}}]\n      artifacts: [{{name: data, path: /in/data}}]\n    container:\n      image: alpine\n      command: [sh, -c]\n      args: ['echo {{{{inputs.parameters.p}}}} $(cat /in/data/sub/f.txt)']\n"
        ),
    );
    let (code, wf) = run_json(&h, &[&f], &[]);
    assert_eq!(code, 0, "{wf}");
    assert_eq!(wf["status"]["phase"], "Succeeded");
    assert_eq!(node(&wf, "gen")["outputs"]["result"], "result-text");
    assert_eq!(
        node(&wf, "use")["outputs"]["result"],
        "param-value file-content"
    );
    // The pod's /tmp was its own: nothing leaked onto the host.
    assert!(!Path::new("/in/data").exists());
}

#[test]
fn failing_step_exit_code_and_log() {
    let h = home("fail");
    let f = write(&h, "wf.yaml", &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    container: {{image: alpine, command: [sh, -c, 'echo to-stderr >&2; exit 3']}}\n"));
    let (code, wf) = run_json(&h, &[&f], &[]);
    assert_eq!(code, 1);
    assert_eq!(wf["status"]["phase"], "Failed");
    let root = node(&wf, wf["metadata"]["name"].as_str().unwrap());
    assert_eq!(root["outputs"]["exitCode"], "3");
    assert_eq!(root["message"], "Error (exit code 3)");
    let pod = workflow_pod(&wf);
    let dir = h.join("state/pods").join(pod);
    let log = ["main.log", "main.err.log"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .collect::<String>();
    assert!(log.contains("to-stderr"), "{log}");
}

fn workflow_pod(wf: &Value) -> String {
    let name = wf["metadata"]["name"].as_str().unwrap();
    name.to_string()
}

#[test]
fn argosay_stand_in_and_parameters_from_the_command_line() {
    let h = home("argosay");
    let f = write(&h, "wf.yaml", &format!("{HEAD}  entrypoint: main\n  arguments: {{parameters: [{{name: who}}]}}\n  templates:\n  - name: main\n    container: {{image: argoproj/argosay:v2, args: [echo, 'hi {{{{workflow.parameters.who}}}}']}}\n"));
    let (code, wf) = run_json(&h, &[&f], &["-p", "who=onyx"]);
    assert_eq!(code, 0, "{wf}");
    assert_eq!(
        node(&wf, wf["metadata"]["name"].as_str().unwrap())["outputs"]["result"],
        "hi onyx"
    );
}

#[test]
fn container_set_runs_containers_in_dependency_order() {
    let h = home("cset");
    let f = write(
        &h,
        "wf.yaml",
        &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    containerSet:\n      volumeMounts: [{{name: ws, mountPath: /ws}}]\n      containers:\n      - {{name: b, image: alpine, command: [sh, -c, 'cat /ws/a > /ws/b; echo b >> /ws/b'], dependencies: [a]}}\n      - {{name: a, image: alpine, command: [sh, -c, 'echo a > /ws/a']}}\n      - {{name: main, image: alpine, command: [sh, -c, 'cat /ws/b'], dependencies: [b]}}\n    volumes: [{{name: ws, emptyDir: {{}}}}]\n"),
    );
    let (code, wf) = run_json(&h, &[&f], &[]);
    assert_eq!(code, 0, "{wf}");
    assert_eq!(
        node(&wf, wf["metadata"]["name"].as_str().unwrap())["outputs"]["result"],
        "a\nb"
    );
}

#[test]
fn resource_templates_keep_config_maps_and_refuse_other_kinds() {
    let h = home("resource");
    let f = write(
        &h,
        "wf.yaml",
        &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: make\n        template: make\n    - - name: deploy\n        template: deploy\n        continueOn: {{failed: true}}\n  - name: make\n    resource:\n      action: create\n      manifest: |\n        apiVersion: v1\n        kind: ConfigMap\n        metadata: {{name: made}}\n        data: {{k: v}}\n    outputs: {{parameters: [{{name: n, valueFrom: {{jsonPath: '{{.metadata.name}}'}}}}]}}\n  - name: deploy\n    resource:\n      action: create\n      manifest: |\n        apiVersion: apps/v1\n        kind: Deployment\n        metadata: {{name: web}}\n"),
    );
    let (code, wf) = run_json(&h, &[&f], &[]);
    assert_eq!(code, 0, "{wf}");
    assert_eq!(
        node(&wf, "make")["outputs"]["parameters"][0]["value"],
        "made"
    );
    assert_eq!(node(&wf, "deploy")["phase"], "Failed");
    assert!(node(&wf, "deploy")["message"]
        .as_str()
        .unwrap()
        .contains("resource kind 'Deployment' cannot be honoured without Kubernetes"));
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let h = home("timeout");
    let marker = h.join("child-survived");
    let f = write(
        &h,
        "wf.yaml",
        &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    activeDeadlineSeconds: 2\n    container: {{image: alpine, command: [sh, -c, '(sleep 4; touch {}) & sleep 60']}}\n", marker.display()),
    );
    let started = std::time::Instant::now();
    let (code, wf) = run_json(&h, &[&f], &[]);
    assert_eq!(code, 1);
    assert!(started.elapsed().as_secs() < 20);
    assert_eq!(wf["status"]["phase"], "Failed");
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(
        !marker.exists(),
        "a background child of the pod outlived the kill"
    );
}

// ----- bad input -----

fn stderr(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn malformed_yaml_is_refused_with_its_line() {
    let h = home("bad-yaml");
    let f = write(
        &h,
        "bad.yaml",
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nspec:\n  templates: [\n    {name: a\n",
    );
    let out = onyx(&h, &["run", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let e = stderr(&out);
    assert!(
        e.contains("bad.yaml:") && e.contains("malformed YAML"),
        "{e}"
    );
}

#[test]
fn unknown_template_cyclic_dag_and_bad_expression_are_lint_errors_with_locations() {
    let h = home("bad-lint");
    let f = write(
        &h,
        "wf.yaml",
        &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    dag:\n      tasks:\n      - {{name: a, template: w, depends: b}}\n      - {{name: b, template: w, depends: a}}\n      - {{name: c, template: nope}}\n  - name: w\n    container: {{image: x, args: ['{{{{=1 +}}}}']}}\n"),
    );
    let out = onyx(&h, &["lint", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("wf.yaml:13:19: error: spec.templates[0].dag.tasks[2].template: template 'nope' not found"), "{e}");
    assert!(e.contains("dependency cycle"), "{e}");
    assert!(
        e.contains("spec.templates[1].container.args[0]: invalid expression '1 +'"),
        "{e}"
    );
    let out = onyx(&h, &["run", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "run refuses what lint refuses");
}

#[test]
fn missing_parameter_and_missing_command_are_clear() {
    let h = home("bad-run");
    let f = write(&h, "wf.yaml", &format!("{HEAD}  entrypoint: main\n  arguments: {{parameters: [{{name: ticket_id}}]}}\n  templates:\n  - name: main\n    container: {{image: alpine, command: [no-such-command-here]}}\n"));
    let out = onyx(&h, &["run", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("spec.arguments.parameters.ticket_id.value is required; pass it with -p ticket_id=VALUE"), "{}", stderr(&out));
    let (code, wf) = run_json(&h, &[&f], &["-p", "ticket_id=T-1"]);
    assert_eq!(code, 1);
    let root = node(&wf, wf["metadata"]["name"].as_str().unwrap());
    assert_eq!(
        root["message"],
        "container main: command 'no-such-command-here' not found"
    );
}

#[test]
fn unknown_fields_are_warnings_and_the_example_lints_clean() {
    let h = home("warn");
    let f = write(&h, "wf.yaml", &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    contaner: {{image: x}}\n    container: {{image: x}}\n"));
    let out = onyx(&h, &["lint", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("wf.yaml:9:5: warning: spec.templates[0].contaner: unknown field"),
        "{}",
        stderr(&out)
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-world.yaml");
    let out = onyx(&h, &["lint", example.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// YAML as Kubernetes reads it: a plain `n` in a string field is the boolean false, so the
/// field reads "false" (and the template's `{{inputs.parameters.n}}` names nothing); lint
/// warns at the scalar with the fix. A wrong shape is an error with its line and what was
/// expected, in the document's words.
#[test]
fn yaml_1_1_scalars_warn_with_the_fix_and_wrong_shapes_say_what_was_expected() {
    let h = home("yaml11");
    let f = write(
        &h,
        "wf.yaml",
        &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    inputs:\n      parameters:\n      - name: n\n    container: {{image: alpine, args: [echo, '{{{{inputs.parameters.n}}}}']}}\n"),
    );
    let out = onyx(&h, &["lint", f.to_str().unwrap()]);
    let e = stderr(&out);
    assert!(
        e.contains("wf.yaml:11:9: warning: spec.templates[0].inputs.parameters[0].name: the plain scalar n is read by YAML 1.1 (as Kubernetes reads it) as false, so this string field gets \"false\"; quote it (\"n\") to keep the text"),
        "{e}"
    );
    let quoted = write(
        &h,
        "ok.yaml",
        &std::fs::read_to_string(&f)
            .unwrap()
            .replace("name: n\n", "name: 'n'\n"),
    );
    let out = onyx(&h, &["lint", quoted.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let shape = write(&h, "shape.yaml", &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: a\n        template: main\n        arguments: {{parameters: {{name: x}}}}\n"));
    let out = onyx(&h, &["lint", shape.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains("shape.yaml:12:21: error: spec.templates[0].steps[0][0].arguments.parameters: expected a list, found a mapping"),
        "{e}"
    );
    assert!(!e.contains("untagged") && !e.contains("struct "), "{e}");
}

#[test]
fn raw_and_http_input_artifacts() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf);
        let body = "from-http";
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    let h = home("inputs");
    let f = write(
        &h,
        "wf.yaml",
        &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    inputs:\n      artifacts:\n      - {{name: r, path: /in/raw.txt, raw: {{data: from-raw}}}}\n      - {{name: h, path: /in/http.txt, http: {{url: 'http://127.0.0.1:{port}/file'}}}}\n    container: {{image: alpine, command: [sh, -c, 'cat /in/raw.txt; echo; cat /in/http.txt']}}\n"),
    );
    let (code, wf) = run_json(&h, &[&f], &[]);
    server.join().unwrap();
    assert_eq!(code, 0, "{wf}");
    assert_eq!(
        node(&wf, wf["metadata"]["name"].as_str().unwrap())["outputs"]["result"],
        "from-raw\nfrom-http"
    );
}

#[test]
fn ctrl_c_terminates_the_workflow_and_its_pods() {
    let h = home("sigint");
    let marker = h.join("pod-survived");
    let f = write(&h, "wf.yaml", &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    container: {{image: alpine, command: [sh, -c, 'sleep 3; touch {}']}}\n", marker.display()));
    let child = Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["run", "-o", "json", f.to_str().unwrap()])
        .env("ONYX_HOME", h.join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let wf: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(wf["status"]["phase"], "Failed");
    assert_eq!(wf["status"]["message"], "Stopped with strategy 'Terminate'");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(!marker.exists(), "the pod kept running after Ctrl-C");
}

/// Argo sets a pod's `nodeSelector` from the template when it has one and from the workflow
/// otherwise; the two are never merged. Here the workflow's selector names no node, the
/// template's names this one: the step runs. Without its own, the step waits until the deadline.
#[test]
fn template_node_selector_replaces_the_workflows() {
    let h = home("selector");
    let spec = "  entrypoint: main\n  activeDeadlineSeconds: 3\n  nodeSelector: {kubernetes.io/arch: no-such-arch}\n  templates:\n  - name: main\n";
    let f = write(&h, "own.yaml", &format!("{HEAD}{spec}    nodeSelector: {{kubernetes.io/os: linux}}\n    container: {{image: argosay, args: [echo, ran]}}\n"));
    let (code, wf) = run_json(&h, &[&f], &[]);
    assert_eq!(code, 0, "{wf}");
    let f = write(
        &h,
        "inherited.yaml",
        &format!("{HEAD}{spec}    container: {{image: argosay, args: [echo, ran]}}\n"),
    );
    let (code, wf) = run_json(&h, &[&f], &[]);
    assert_eq!(code, 1, "{wf}");
    assert_eq!(wf["status"]["phase"], "Failed");
}

/// Pods get their private roots from reused slots: what one pod leaves in its fresh /tmp,
/// /var/tmp or /mnt, or writes over the host's files, is gone for the next pod, and the fresh
/// directories keep their modes. Only meaningful where pods are sandboxed (as root).
#[test]
fn reused_private_roots_start_empty() {
    if !nix_is_root() || std::env::var_os("ONYX_NO_SANDBOX").is_some() {
        eprintln!("skipped: pods are sandboxed only when run as root");
        return;
    }
    let h = home("reuse");
    let f = write(&h, "wf.yaml", &format!("{HEAD}  entrypoint: main\n  parallelism: 1\n  templates:\n  - name: main\n    steps:\n    - - {{name: dirty, template: dirty}}\n    - - {{name: check, template: check}}\n  - name: dirty\n    container: {{image: alpine, command: [sh, -c, 'echo x > /tmp/leak; echo x > /var/tmp/leak; mkdir /mnt/d; chmod 700 /tmp; echo x >> /etc/hosts.allow; mkdir -p /opt/onyx-leak']}}\n  - name: check\n    container: {{image: alpine, command: [sh, -c, 'ls -A /tmp /var/tmp /mnt; stat -c %a /tmp /var/tmp; test -e /opt/onyx-leak && echo leaked; cat /etc/hosts.allow 2>/dev/null | grep -c x; true']}}\n"));
    let (code, wf) = run_json(&h, &[&f], &[]);
    assert_eq!(code, 0, "{wf}");
    let out = node(&wf, "check")["outputs"]["result"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let host_x = std::fs::read_to_string("/etc/hosts.allow")
        .map(|s| s.lines().filter(|l| l.contains('x')).count())
        .unwrap_or(0);
    assert_eq!(
        out,
        format!("/mnt:\n\n/tmp:\n\n/var/tmp:\n1777\n1777\n{host_x}"),
        "{wf}"
    );
}

/// Reused roots stay mounted from pod to pod (in the controller's own mount namespace): a
/// pod's volume is bound for that pod only, a path the pod made that the host lacks is removed
/// before the next pod, a mount a pod leaves over its own files is never deleted through
/// (here a folder of ONYX's home bound over one in the pod's /tmp), and a mount a pod leaves
/// anywhere (a tmpfs over its /mnt) is not there for the next pod. No
/// mount is left on the host afterwards.
#[test]
fn reused_roots_keep_volumes_and_pod_mounts_to_their_pod() {
    if !nix_is_root() || std::env::var_os("ONYX_NO_SANDBOX").is_some() {
        eprintln!("skipped: pods are sandboxed only when run as root");
        return;
    }
    let h = home("reuse-mounts");
    let host_dir = h.join("host-dir");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("seed"), "seed\n").unwrap();
    let keep = h.join("state/precious/keep");
    std::fs::create_dir_all(keep.parent().unwrap()).unwrap();
    std::fs::write(&keep, "kept").unwrap();
    let top = format!("/onyx-test-top-{}", std::process::id());
    let vol = format!("/onyx-test-vol-{}", std::process::id());
    let f = write(
        &h,
        "wf.yaml",
        &format!(
            "{HEAD}  entrypoint: main\n  parallelism: 1\n  volumes: [{{name: hd, hostPath: {{path: '{}'}}}}]\n  templates:\n  - name: main\n    steps:\n    - - {{name: vol, template: vol}}\n    - - {{name: mnt, template: mnt}}\n    - - {{name: over, template: over}}\n    - - {{name: top, template: top}}\n    - - {{name: check, template: check}}\n  - name: vol\n    container: {{image: alpine, command: [sh, -c, 'cat {vol}/in/seed; echo from-pod > {vol}/in/out'], volumeMounts: [{{name: hd, mountPath: '{vol}/in'}}]}}\n  - name: mnt\n    container: {{image: alpine, command: [sh, -c, 'mkdir /tmp/b && mount --bind /.onyx-home/precious /tmp/b 2>/dev/null; true']}}\n  - name: over\n    container: {{image: alpine, command: [sh, -c, 'mount -t tmpfs none /mnt 2>/dev/null && touch /mnt/mark; true']}}\n  - name: top\n    container: {{image: alpine, command: [sh, -c, 'mkdir -p {top}/a && echo x > {top}/a/f && echo x > /tmp/t']}}\n  - name: check\n    container: {{image: alpine, command: [sh, -c, 'ls -A /tmp /mnt; test -e {vol} && echo vol-left; test -e {top} && echo top-left; true']}}\n",
            host_dir.display()
        ),
    );
    let (code, wf) = run_json(&h, &[&f], &[]);
    assert_eq!(code, 0, "{wf}");
    assert_eq!(node(&wf, "vol")["outputs"]["result"], "seed", "{wf}");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("out")).unwrap(),
        "from-pod\n"
    );
    assert_eq!(
        node(&wf, "check")["outputs"]["result"],
        "/mnt:\n\n/tmp:",
        "{wf}"
    );
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "kept");
    assert!(!Path::new(&top).exists() && !Path::new(&vol).exists());
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!table.contains("sandboxes"), "{table}");
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// A pod's fresh /tmp hides the host's: with ONYX's home under /tmp, scripts and the argosay
/// stand-in (files in the home) are still found, at the home's place inside the pod's root.
#[test]
fn a_home_under_tmp_still_runs_scripts() {
    let h = home("tmp-home");
    let state = std::env::temp_dir().join(format!("onyx-cli-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let f = write(&h, "wf.yaml", &format!("{HEAD}  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - {{name: script, template: script}}\n      - {{name: say, template: say}}\n  - name: script\n    script: {{image: debian, command: [sh], source: 'echo from-script'}}\n  - name: say\n    container: {{image: argoproj/argosay:v2, args: [echo, from-argosay]}}\n"));
    let out = Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["run", "-o", "json", f.to_str().unwrap()])
        .env("ONYX_HOME", &state)
        .output()
        .expect("onyx runs");
    let _ = std::fs::remove_dir_all(&state);
    let text = String::from_utf8_lossy(&out.stdout);
    let wf: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(out.status.code(), Some(0), "{wf}");
    assert_eq!(node(&wf, "script")["outputs"]["result"], "from-script");
    assert_eq!(node(&wf, "say")["outputs"]["result"], "from-argosay");
}

/// `onyx run` on a WorkflowTemplate file runs it as `argo submit --from workflowtemplate/NAME`
/// does: a Workflow `NAME-xxxxx`, labelled with its template, with the template's arguments
/// (an enum parameter's value) and `-p` over them.
#[test]
fn a_workflow_template_file_runs_as_submit_from_does() {
    let h = home("run-from-template");
    let f = write(&h, "wt.yaml", "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata:\n  name: greet\nspec:\n  entrypoint: main\n  arguments:\n    parameters:\n    - name: who\n      value: ann\n      enum: [ann, bob]\n  templates:\n  - name: main\n    container:\n      image: argoproj/argosay:v2\n      args: [echo, 'hi {{workflow.parameters.who}}']\n");
    let (code, wf) = run_json(&h, &[&f], &["-p", "who=bob"]);
    assert_eq!(code, 0, "{wf}");
    assert_eq!(wf["status"]["phase"], "Succeeded");
    let name = wf["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("greet-"), "{name}");
    assert_eq!(
        wf["metadata"]["labels"]["workflows.argoproj.io/workflow-template"],
        "greet"
    );
    assert_eq!(wf["spec"]["workflowTemplateRef"]["name"], "greet");
    let pod = workflow_pod(&wf);
    let log =
        std::fs::read_to_string(h.join("pods").join(&pod).join("main.log")).unwrap_or_default();
    assert!(
        log.contains("hi bob") || wf.to_string().contains("bob"),
        "{log}"
    );
    let other = write(
        &h,
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    );
    let out = onyx(&h, &["run", other.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("holds no Workflow, WorkflowTemplate or ClusterWorkflowTemplate"),
        "{}",
        stderr(&out)
    );
}

/// `onyx conformance --e2e DIR` runs a table of fixtures with their tests' assertions: an end
/// phase, node phases by display name or part of the name, the workflow's message, a
/// ConfigMap the test creates, a fixture decoded as the kind the test names, and rows that are
/// not run with why.
#[test]
fn the_e2e_table_runs_fixtures_with_their_tests_assertions() {
    let h = home("e2e-table");
    let fx = h.join("e2e");
    std::fs::create_dir_all(fx.join("functional")).unwrap();
    write(&fx.join("functional"), "ok.yaml", "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {generateName: ok-}\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    steps: [[{name: a, template: say}]]\n  - name: say\n    container: {image: argoproj/argosay:v2}\n");
    write(&fx.join("functional"), "tmpl.yaml", "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: as-template}\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    container: {image: argoproj/argosay:v2, args: [echo, '{{=sprig.trim(\\\" x \\\")}}']}\n");
    write(&fx.join("functional"), "bad.yaml", "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {generateName: bad-}\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    container: {image: argoproj/argosay:v2, volumeMounts: [{name: foo, mountPath: /foo}]}\n");
    let table = write(&h, "table.tsv", "test\tfixture\twith\tsubmit\truns\texpect\tnodes\tnotes\n\
t.TestOk\tfunctional/ok.yaml\tconfigmap/my-config/k=v\tworkflow\thost\tSucceeded\ta=Succeeded;~.a=Succeeded\t\n\
t.TestWrongNode\tfunctional/ok.yaml\t\tworkflow\thost\tSucceeded\ta=Failed\t\n\
t.TestFromTemplate\tfunctional/tmpl.yaml\t\tfrom-template\thost\tSucceeded\t\t\n\
t.TestMessage\tfunctional/bad.yaml\t\tworkflow\thost\tError\tmessage=error in entry template execution\t\n\
t.TestCluster\tfunctional/ok.yaml\t\tworkflow\tk8s\tSucceeded\t\tneeds a cluster\n");
    // No examples: the first table is empty.
    let examples = h.join("examples-none");
    std::fs::create_dir_all(examples.join("examples")).unwrap();
    write(
        &examples,
        "MANIFEST.tsv",
        "file\tkind\texpect\truns\tneeds\tnotes\n",
    );
    let out = onyx(
        &h,
        &[
            "conformance",
            examples.to_str().unwrap(),
            "--e2e",
            fx.to_str().unwrap(),
            "--e2e-table",
            table.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("PASS e2e functional/ok.yaml t.TestOk"),
        "{text}{}",
        stderr(&out)
    );
    assert!(text.contains("FAIL e2e functional/ok.yaml t.TestWrongNode expected=Succeeded got=Succeeded node a=Succeeded (expected Failed)"), "{text}");
    assert!(
        text.contains("PASS e2e functional/tmpl.yaml t.TestFromTemplate"),
        "{text}"
    );
    assert!(
        text.contains("PASS e2e functional/bad.yaml t.TestMessage"),
        "{text}"
    );
    assert!(
        text.contains("SKIP e2e functional/ok.yaml t.TestCluster (k8s: needs a cluster)"),
        "{text}"
    );
    assert!(
        text.contains("e2e: 3 passed, 1 failed (host 3/4; 1 not run"),
        "{text}"
    );
}
