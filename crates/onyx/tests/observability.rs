//! Observability against the real tools: Debian's Prometheus scrapes `onyx server` while
//! workflows run and is asked, through its own query API, what it saw; `promtool` checks the
//! shipped config and alert rules and runs their unit tests; every Grafana panel's query is
//! run in that Prometheus and may name only metrics ONYX really exposes.
//!
//! The emergency stop drives Redfish BMCs emulated by PyPI's `sushy-tools`.
//!
//! Prometheus and promtool come from Debian's `prometheus` package, `sushy-emulator` from
//! PyPI's `sushy-tools` (`.ci/run` installs both). Without them these tests say so and pass,
//! except under CI (`CI` set), where they fail.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{temp_home, Server};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The tool's path, or None (with the reason said) when it is not installed outside CI.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed (apt-get install prometheus); CI must run this test"
        );
        eprintln!("{name} is not installed (apt-get install prometheus): test skipped");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get_json(url: &str) -> Value {
    match ureq::get(url).call() {
        Ok(r) => serde_json::from_str(&r.into_string().unwrap_or_default()).unwrap_or(Value::Null),
        Err(ureq::Error::Status(_, r)) => {
            serde_json::from_str(&r.into_string().unwrap_or_default()).unwrap_or(Value::Null)
        }
        Err(_) => Value::Null,
    }
}

/// An instant query's result vector, through Prometheus' HTTP API.
fn query(prom: &str, q: &str) -> Value {
    let url = format!("{prom}/api/v1/query?query={}", urlencode(q));
    get_json(&url)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The query's single value, once Prometheus has one.
fn value(prom: &str, q: &str) -> Option<f64> {
    let r = query(prom, q);
    let v = r["data"]["result"].as_array()?.first()?["value"][1]
        .as_str()?
        .parse()
        .ok()?;
    Some(v)
}

/// Wait until `q` evaluates to `want` in Prometheus (it scrapes every second).
fn expect(prom: &str, q: &str, want: f64) {
    let t0 = Instant::now();
    loop {
        let got = value(prom, q);
        if got == Some(want) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "Prometheus: {q} is {got:?}, expected {want}: {}",
            query(prom, q)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn metric_workflow(name: &str, script: &str, resources: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {"entrypoint": "work",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T-9"}]},
        "templates": [{"name": "work",
            "metrics": {"prometheus": [
                {"name": "onyx_test_results", "help": "Results of the test's steps",
                 "labels": [{"key": "status", "value": "{{status}}"}],
                 "counter": {"value": "1"}},
                {"name": "onyx_test_value", "help": "Values the test's steps printed",
                 "when": "{{status}} == Succeeded",
                 "histogram": {"buckets": [1, 5, 10], "value": "{{outputs.result}}"}}]},
            "script": {"image": "debian", "command": ["sh"], "source": script,
                       "resources": {"limits": resources}}}]}})
}

#[test]
fn prometheus_scrapes_workflow_scheduler_and_gpu_metrics() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let home = temp_home("obs-prometheus");
    let onyx_toml = home.join("onyx.toml");
    std::fs::write(
        &onyx_toml,
        format!(
            "home = {:?}\n[namespaces.vision]\ngpu_quota = 8\n",
            home.join("state")
        ),
    )
    .unwrap();
    let s = Server::start(
        &home,
        &["--cluster", "onyx", "--config", onyx_toml.to_str().unwrap()],
    );
    let port = free_port();
    let target = s.base.trim_start_matches("http://").to_string();
    let rules = repo().join("deploy/prometheus/onyx-rules.yaml");
    let config = home.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{:?}]\nscrape_configs:\n- job_name: onyx\n  authorization: {{credentials_file: {:?}}}\n  static_configs: [{{targets: ['{target}']}}]\n",
            rules.canonicalize().unwrap(),
            home.join("state").join("token")
        ),
    )
    .unwrap();
    let prom = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                home.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let url = format!("http://127.0.0.1:{port}");
    // Prometheus scrapes the server before any workflow runs.
    expect(&url, r#"up{job="onyx"}"#, 1.0);

    for i in 0..3 {
        s.submit(
            "default",
            metric_workflow(&format!("ok-{i}"), "echo 4", json!({})),
        );
    }
    s.submit("default", metric_workflow("broken", "exit 3", json!({})));
    s.submit(
        "vision",
        metric_workflow("gpu", "echo 7; sleep 4", json!({"nvidia.com/gpu": 1})),
    );
    // While the GPU step runs: its GPU is held by its namespace and busy (modelled).
    expect(
        &url,
        r#"sum(onyx_gpus_allocated{namespace="vision",queue="default"})"#,
        1.0,
    );
    expect(&url, "max(DCGM_FI_DEV_GPU_UTIL)", 100.0);
    expect(&url, "count(DCGM_FI_DEV_GPU_UTIL == 100)", 1.0);
    for (ns, name) in [
        ("default", "ok-0"),
        ("default", "ok-1"),
        ("default", "ok-2"),
        ("default", "broken"),
        ("vision", "gpu"),
    ] {
        s.wait(ns, name, Duration::from_secs(60));
    }

    // Argo's own gauge and the spec's per-namespace name.
    expect(&url, r#"argo_workflows_count{status="Succeeded"}"#, 4.0);
    expect(&url, r#"argo_workflows_count{status="Failed"}"#, 1.0);
    expect(
        &url,
        r#"argo_workflows_workflow_count{namespace="vision",status="Succeeded"}"#,
        1.0,
    );
    // A histogram: every finished workflow observed once, by namespace and phase.
    expect(
        &url,
        "sum(argo_workflows_workflow_duration_seconds_count)",
        5.0,
    );
    expect(
        &url,
        r#"argo_workflows_workflow_duration_seconds_count{namespace="default",status="Failed"}"#,
        1.0,
    );
    // Every pod's running time, by namespace (four in default, one in vision).
    expect(
        &url,
        r#"onyx_pod_duration_seconds_count{namespace="default"}"#,
        4.0,
    );
    // The templates' custom metrics: a counter per status, a histogram only on success.
    expect(
        &url,
        r#"argo_workflows_onyx_test_results{status="Succeeded"}"#,
        4.0,
    );
    expect(
        &url,
        r#"argo_workflows_onyx_test_results{status="Failed"}"#,
        1.0,
    );
    expect(&url, "argo_workflows_onyx_test_value_count", 4.0);
    expect(&url, "argo_workflows_onyx_test_value_sum", 19.0);
    expect(
        &url,
        r#"argo_workflows_onyx_test_value_bucket{le="5"}"#,
        3.0,
    );
    // Scheduler and GPUs: the seed's 16 nodes × 8 GPUs, one pod waited for its grant.
    expect(&url, "count(DCGM_FI_DEV_GPU_UTIL)", 128.0);
    expect(&url, "count(onyx_node_schedulable)", 16.0);
    expect(
        &url,
        r#"onyx_pod_scheduling_wait_seconds_count{queue_name="default"}"#,
        1.0,
    );
    expect(&url, r#"volcano_queue_weight{queue_name="default"}"#, 1.0);

    // The shipped alert rules load and evaluate.
    let rules = get_json(&format!("{url}/api/v1/rules"));
    let groups = rules["data"]["groups"].as_array().expect("rule groups");
    assert_eq!(groups.len(), 5, "{rules}");
    let t0 = Instant::now();
    loop {
        let rules = get_json(&format!("{url}/api/v1/rules"));
        let healths: Vec<String> = rules["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .map(|r| r["health"].as_str().unwrap_or_default().to_string())
            .collect();
        if healths.iter().all(|h| h == "ok") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{rules}");
        std::thread::sleep(Duration::from_millis(250));
    }

    // Every dashboard panel's query runs, and names only metrics Prometheus has from ONYX.
    let names: BTreeSet<String> = get_json(&format!("{url}/api/v1/label/__name__/values"))["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("deploy/grafana")).unwrap() {
        let path = entry.unwrap().path();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let r = query(&url, expr);
                assert_eq!(
                    r["status"],
                    "success",
                    "{}: panel {:?}: {expr}: {r}",
                    path.display(),
                    panel["title"]
                );
                for name in metric_names(expr) {
                    assert!(
                        names.contains(&name),
                        "{}: panel {:?} queries {name}, which onyx server does not expose",
                        path.display(),
                        panel["title"]
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 18, "only {checked} panel queries found");
    drop(prom);
}

/// The metric names a PromQL expression reads: identifiers outside label matchers, strings
/// and grouping clauses, not followed by `(` (functions, aggregations).
fn metric_names(expr: &str) -> Vec<String> {
    let mut cleaned = String::new();
    let mut depth_braces = 0;
    let mut in_string = false;
    for c in expr.chars() {
        match c {
            '"' => in_string = !in_string,
            '{' if !in_string => depth_braces += 1,
            '}' if !in_string => depth_braces -= 1,
            _ if in_string || depth_braces > 0 => {}
            _ => cleaned.push(c),
        }
    }
    // Grouping clauses name labels, not metrics.
    let grouping = regex_lite_strip(&cleaned);
    let mut out = Vec::new();
    let chars: Vec<char> = grouping.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            let preceded_by_digit = start > 0 && chars[start - 1].is_ascii_digit();
            if next != Some(&'(') && !preceded_by_digit && !is_keyword(&word) {
                out.push(word);
            }
        } else if c == '[' {
            // A range: `[5m]`.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

fn is_keyword(w: &str) -> bool {
    matches!(
        w,
        "by" | "without"
            | "on"
            | "ignoring"
            | "group_left"
            | "group_right"
            | "and"
            | "or"
            | "unless"
            | "bool"
            | "offset"
    )
}

/// Remove `by (…)`, `on (…)`, `without (…)`, `ignoring (…)` and their label lists.
fn regex_lite_strip(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    'outer: while !rest.is_empty() {
        for kw in [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ] {
            if let Some(after) = rest.strip_prefix(kw) {
                let boundary = out
                    .chars()
                    .last()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
                let trimmed = after.trim_start();
                if boundary && trimmed.starts_with('(') {
                    if let Some(end) = trimmed.find(')') {
                        out.push(' ');
                        rest = &trimmed[end + 1..];
                        continue 'outer;
                    }
                }
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[test]
fn panel_queries_are_read_for_metric_names_only() {
    assert_eq!(
        metric_names(
            r#"sum by (queue_name) (rate(a_b_sum{x="y(z)"}[1h])) / on (namespace) c:d * 1024"#
        ),
        vec!["a_b_sum", "c:d"]
    );
    assert_eq!(
        metric_names("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))"),
        vec!["x_bucket"]
    );
}

#[test]
fn promtool_checks_the_shipped_config_rules_and_their_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = repo().join("deploy/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "onyx-rules.yaml"],
        vec!["test", "rules", "onyx-rules.test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A Redfish BMC: PyPI's `sushy-tools` emulator (its fake driver: power changes land 1-11 s
/// after the request, as on real hardware), on its own loopback address, with a login.
fn sushy(home: &Path, name: &str, address: &str, port: u16) -> Killed {
    let htpasswd = home.join(format!("{name}.htpasswd"));
    let hash = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import bcrypt; print(bcrypt.hashpw(b'pw-{name}', bcrypt.gensalt()).decode())"
            ),
        ])
        .output()
        .expect("python3 with bcrypt (a sushy-tools dependency)");
    std::fs::write(
        &htpasswd,
        format!("admin-{name}:{}", String::from_utf8_lossy(&hash.stdout)),
    )
    .unwrap();
    let config = home.join(format!("{name}.py"));
    std::fs::write(
        &config,
        format!(
            "SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_FAKE_SYSTEMS = [{{'uuid': 'system-{name}', 'name': '{name}', 'power_state': 'On', 'nics': []}}]\nSUSHY_EMULATOR_AUTH_FILE = {:?}\nSUSHY_EMULATOR_STATE_DIR = {:?}\n",
            htpasswd.display().to_string(),
            home.join(format!("sushy-{name}")).display().to_string()
        ),
    )
    .unwrap();
    let child = Killed(
        Command::new("python3")
            .args(["-m", "sushy_tools.emulator.main", "--config"])
            .arg(&config)
            .args(["--interface", address, "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sushy-emulator starts"),
    );
    let t0 = Instant::now();
    while std::net::TcpStream::connect((address, port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "sushy-emulator on {address}:{port} did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn emulated_power(address: &str, port: u16, name: &str) -> String {
    let r = ureq::get(&format!(
        "http://{address}:{port}/redfish/v1/Systems/system-{name}"
    ))
    .set(
        "Authorization",
        &format!(
            "Basic {}",
            base64_encode(&format!("admin-{name}:pw-{name}"))
        ),
    )
    .call()
    .expect("the emulator answers");
    let v: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
    v["PowerState"].as_str().unwrap().to_string()
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The spec's emergency stop with Redfish BMCs: two emulated BMCs are powered off (their
/// PowerState read back from the emulator), every node is cordoned and the running workflow
/// suspended; a third BMC that accepts connections but never answers is reported by name and
/// does not keep the others on.
#[test]
fn the_emergency_stop_powers_nodes_off_over_redfish() {
    let has_sushy = Command::new("python3")
        .args(["-c", "import sushy_tools, bcrypt"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_sushy {
        assert!(
            std::env::var_os("CI").is_none(),
            "sushy-tools is not installed (pip install sushy-tools); CI must run this test"
        );
        eprintln!("sushy-tools is not installed (pip install sushy-tools): test skipped");
        return;
    }
    let home = temp_home("obs-redfish");
    let port = free_port();
    let _a = sushy(&home, "a", "127.0.0.2", port);
    let _b = sushy(&home, "b", "127.0.0.3", port);
    // Accepted by the kernel's backlog, never answered: a hung BMC.
    let _hung = std::net::TcpListener::bind(("127.0.0.4", port)).unwrap();
    let cluster = support::cluster_file(&home, &[("a", 1, &[]), ("b", 1, &[]), ("c", 1, &[])]);
    let yaml = std::fs::read_to_string(&cluster).unwrap();
    let yaml = ["a", "b", "c"].iter().zip(2..).fold(yaml, |y, (n, i)| {
        y.replace(
            &format!("  - name: {n}\n"),
            &format!("  - name: {n}\n    bmc: 127.0.0.{i}\n"),
        )
    });
    std::fs::write(&cluster, yaml).unwrap();
    let credentials = home.join("bmc-credentials.toml");
    std::fs::write(
        &credentials,
        "[nodes.a]\nusername = \"admin-a\"\npassword = \"pw-a\"\n[nodes.b]\nusername = \"admin-b\"\npassword = \"pw-b\"\n[default]\nusername = \"admin\"\npassword = \"x\"\n",
    )
    .unwrap();
    let config = home.join("onyx.toml");
    std::fs::write(
        &config,
        format!(
            "home = {:?}\n[power.redfish]\nscheme = \"http\"\nport = {port}\ntimeout_seconds = 3\noff_wait_seconds = 30\ncredentials_file = {:?}\n",
            home.join("state"),
            credentials
        ),
    )
    .unwrap();
    let s = Server::start(
        &home,
        &[
            "--cluster",
            cluster.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    s.submit(
        "default",
        json!({"metadata": {"name": "long"}, "spec": {"entrypoint": "work",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T-5"}]},
            "templates": [{"name": "work", "steps": [[{"name": "one", "template": "sleep"}], [{"name": "two", "template": "sleep"}]]},
                          {"name": "sleep", "script": {"image": "debian", "command": ["sh"], "source": "sleep 2"}}]}}),
    );
    assert_eq!(emulated_power("127.0.0.2", port, "a"), "On");
    let t0 = Instant::now();
    let (c, stop) = s.call("POST", "/api/v1/onyx/emergency-stop", Some(json!({})));
    let took = t0.elapsed();
    assert_eq!(c, 200, "{stop}");
    assert_eq!(stop["cordoned"], json!(["a", "b", "c"]), "{stop}");
    assert_eq!(stop["suspended"], json!(["long"]), "{stop}");
    assert_eq!(stop["poweredOff"], json!(["a", "b"]), "{stop}");
    let errors = stop["powerErrors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{stop}");
    assert_eq!(errors[0]["node"], "c");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 3 s"),
        "{stop}"
    );
    // The hung BMC cost its own timeout, not the others' wait on top of it.
    assert!(took < Duration::from_secs(40), "{took:?}");
    // Read back from the emulators themselves.
    assert_eq!(emulated_power("127.0.0.2", port, "a"), "Off");
    assert_eq!(emulated_power("127.0.0.3", port, "b"), "Off");
    let (_, wf) = s.call("GET", "/api/v1/workflows/default/long", None);
    assert_eq!(wf["spec"]["suspend"], true, "{wf}");
}

/// One call a webhook receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    headers: std::collections::HashMap<String, String>,
    body: String,
    status: u16,
}

/// A webhook receiver on loopback that fails its first `failures` calls with 500.
fn receiver(failures: usize) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Call>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Call>::new()));
    let seen = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let mut headers = std::collections::HashMap::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let len: usize = headers
                .get("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let mut calls = seen.lock().unwrap();
            let status = if calls.len() < failures { 500 } else { 200 };
            calls.push(Call {
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                status,
            });
            drop(calls);
            let reason = if status == 200 {
                "OK"
            } else {
                "Internal Server Error"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (base, calls)
}

/// The spec's Triggers: a webhook receiver that fails its first three calls still gets each
/// notification acknowledged exactly once after it recovers — also when the server was
/// killed (-9) between its failed calls. Generic bodies are signed (HMAC-SHA256).
#[test]
fn webhooks_get_every_notification_once_across_failures_and_a_crash() {
    use hmac::{Hmac, Mac};
    let (base, calls) = receiver(3);
    let home = temp_home("obs-webhooks");
    let secret = home.join("webhook-secret");
    std::fs::write(&secret, "s3cr3t\n").unwrap();
    let config = home.join("onyx.toml");
    std::fs::write(
        &config,
        format!(
            "home = {:?}\n[[notifications.webhooks]]\nname = \"ops\"\nurl = \"{base}/generic\"\nsecret_file = {:?}\nretry_seconds = 0.5\n[[notifications.webhooks]]\nname = \"chat\"\nurl = \"{base}/slack\"\nformat = \"slack\"\nphases = [\"Failed\"]\nretry_seconds = 0.5\n",
            home.join("state"),
            secret
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let mut s = Server::start(&home, &args);
    let wf = |name: &str, script: &str| {
        json!({"metadata": {"name": name}, "spec": {"entrypoint": "work",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T-77"}]},
            "templates": [{"name": "work", "script": {"image": "debian", "command": ["sh"], "source": script}}]}})
    };
    s.submit("default", wf("ok", "true"));
    s.submit("default", wf("bad", "exit 1"));
    s.wait("default", "ok", Duration::from_secs(30));
    s.wait("default", "bad", Duration::from_secs(30));
    let t0 = Instant::now();
    while calls.lock().unwrap().len() < 2 {
        assert!(t0.elapsed() < Duration::from_secs(20), "no webhook call");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Killed between the receiver's failures: the outbox is all that remembers them.
    s.kill9();
    let _s = Server::start(&home, &args);
    let acked = |calls: &[Call]| -> Vec<String> {
        let mut keys: Vec<String> = calls
            .iter()
            .filter(|c| c.status == 200)
            .map(|c| c.headers["x-onyx-delivery"].clone())
            .collect();
        keys.sort();
        keys
    };
    let t0 = Instant::now();
    while acked(&calls.lock().unwrap()).len() < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{:#?}",
            calls.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500)); // nothing more arrives
    let calls = calls.lock().unwrap().clone();
    let keys = acked(&calls);
    let mut distinct = keys.clone();
    distinct.dedup();
    assert_eq!(
        keys, distinct,
        "a notification acknowledged twice: {calls:#?}"
    );
    let kinds: Vec<String> = keys
        .iter()
        .map(|k| k.split_once('/').unwrap().1.to_string())
        .collect();
    let mut kinds_sorted = kinds.clone();
    kinds_sorted.sort();
    assert_eq!(
        kinds_sorted,
        vec!["chat/Failed", "ops/Failed", "ops/Succeeded"],
        "{calls:#?}"
    );
    assert_eq!(calls.iter().filter(|c| c.status == 500).count(), 3);
    for c in &calls {
        if c.path == "/generic" {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cr3t").unwrap();
            mac.update(c.body.as_bytes());
            let want: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(c.headers["x-onyx-signature-256"], format!("sha256={want}"));
            let v: Value = serde_json::from_str(&c.body).unwrap();
            assert_eq!(v["ticketId"], "T-77");
        } else {
            assert_eq!(c.path, "/slack");
            assert!(!c.headers.contains_key("x-onyx-signature-256"));
            let v: Value = serde_json::from_str(&c.body).unwrap();
            assert!(
                v["text"]
                    .as_str()
                    .unwrap()
                    .starts_with(":x: Workflow default/bad Failed after"),
                "{v}"
            );
        }
    }
}

/// Every audit line of a server's trail, rotated files first.
fn audit_lines(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort_by_key(|p| p.file_name().unwrap() == "audit.jsonl");
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The audit trail: API changes (who, what, namespace, ticket, result — refusals too) and
/// every workflow event as JSON lines, rotated by size; pushed to Loki's push API from a
/// bounded buffer that, while Loki fails, drops its oldest lines and says so in /metrics.
/// (Grafana Loki does not install here — Debian's `loki` package is an unrelated program —
/// so the receiver is a loopback listener that checks the push API's shape.)
#[test]
fn the_audit_trail_records_changes_and_events_and_feeds_loki() {
    let (loki, pushes) = receiver(3);
    let home = temp_home("obs-audit");
    let config = home.join("onyx.toml");
    std::fs::write(
        &config,
        format!(
            "home = {:?}\n[audit]\nmax_bytes = 1500\nloki_url = \"{loki}\"\nloki_buffer_lines = 4\n[audit.loki_labels]\njob = \"onyx-test\"\n",
            home.join("state")
        ),
    )
    .unwrap();
    let s = Server::start(&home, &["--config", config.to_str().unwrap()]);
    s.submit(
        "default",
        json!({"metadata": {"name": "audited"}, "spec": {"entrypoint": "work",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T-31"}]},
            "templates": [{"name": "work", "steps": [[{"name": "a", "template": "nap"}], [{"name": "b", "template": "nap"}]]},
                          {"name": "nap", "script": {"image": "debian", "command": ["sh"], "source": "sleep 0.5"}}]}}),
    );
    let (c, _) = s.call(
        "PUT",
        "/api/v1/workflows/default/audited/suspend",
        Some(json!({})),
    );
    assert_eq!(c, 200);
    let (c, _) = s.call(
        "PUT",
        "/api/v1/workflows/default/audited/resume",
        Some(json!({})),
    );
    assert_eq!(c, 200);
    // Refused: no ticket_id.
    let (c, _) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": {"metadata": {"name": "no-ticket"}, "spec": {"entrypoint": "w",
            "templates": [{"name": "w", "script": {"image": "debian", "command": ["sh"], "source": "true"}}]}}})),
    );
    assert_eq!(c, 400);
    s.wait("default", "audited", Duration::from_secs(30));
    let (c, _) = s.call("DELETE", "/api/v1/workflows/default/audited", None);
    assert_eq!(c, 200);

    let dir = home.join("state/audit");
    let t0 = Instant::now();
    let lines = loop {
        let lines = audit_lines(&dir);
        if lines.iter().any(|l| l["action"] == "delete") {
            break lines;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{lines:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let api = |action: &str| {
        lines
            .iter()
            .find(|l| l["kind"] == "api" && l["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {lines:#?}"))
            .clone()
    };
    let create = api("create");
    // The server's own token (made at first start) is its caller's name, without the secret.
    let who = create["who"].as_str().unwrap_or_default();
    assert!(who.starts_with("token:"), "{create}");
    assert!(
        !s.token.as_deref().is_some_and(|t| who.contains(t)),
        "{create}"
    );
    assert_eq!(create["namespace"], "default");
    assert_eq!(create["name"], "audited");
    assert_eq!(create["ticketId"], "T-31");
    assert_eq!(create["status"], 200);
    assert_eq!(create["result"], "ok");
    // The ticket of a call on an existing workflow comes from the workflow.
    assert_eq!(api("suspend")["ticketId"], "T-31");
    assert_eq!(api("delete")["ticketId"], "T-31");
    let (c, made) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(
            json!({"workflow": {"metadata": {"generateName": "gen-"}, "spec": {"entrypoint": "w",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T-32"}]},
            "templates": [{"name": "w", "suspend": {}}]}}}),
        ),
    );
    assert_eq!(c, 200, "{made}");
    let generated = made["metadata"]["name"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    while !audit_lines(&dir)
        .iter()
        .any(|l| l["kind"] == "api" && l["name"] == generated.as_str())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "a generated name is audited"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = lines
        .iter()
        .find(|l| l["kind"] == "api" && l["name"] == "no-ticket")
        .expect("the refused submission is audited");
    assert_eq!(refused["status"], 400);
    assert_eq!(refused["result"], "error");
    let events: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "workflow" && l["name"] == "audited")
        .map(|l| l["event"].as_str().unwrap())
        .collect();
    assert_eq!(events.first(), Some(&"Start"), "{events:?}");
    for e in ["Suspend", "Resume", "PodDone"] {
        assert!(events.contains(&e), "{e} not in {events:?}");
    }
    assert!(lines
        .iter()
        .filter(|l| l["kind"] == "workflow")
        .all(|l| l["ticketId"] == "T-31"));
    let rotated = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("audit-"))
        .count();
    assert!(rotated >= 1, "1,500-byte files rotate");

    // Loki: three failed pushes with a 4-line buffer drop the oldest lines, counted; then
    // every later line arrives, in Loki's push shape, the delete among them.
    let t0 = Instant::now();
    loop {
        let pushed: Vec<Value> = pushes
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.status == 200)
            .map(|c| serde_json::from_str(&c.body).unwrap())
            .collect();
        let has_delete = pushed.iter().any(|p| {
            p["streams"].as_array().unwrap().iter().any(|s| {
                s["stream"]["job"] == "onyx-test"
                    && s["stream"]["kind"] == "api"
                    && s["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|v| v[1].as_str().unwrap().contains("\"action\":\"delete\""))
            })
        });
        if has_delete {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{:#?}",
            pushes.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pushes
        .lock()
        .unwrap()
        .iter()
        .all(|c| c.path == "/loki/api/v1/push"));
    let metrics = s
        .request("GET", "/metrics")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let dropped: f64 = metrics
        .lines()
        .find(|l| l.starts_with("onyx_audit_loki_dropped_lines "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("the dropped-lines counter");
    assert!(dropped > 0.0, "{metrics}");
}
