//! `onyx` as a client of `onyx server` (or of any Argo Server): `argo`'s verbs and flags over
//! the REST API.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::render;

#[derive(Args, Clone)]
pub struct ClientOpts {
    /// The ONYX (or Argo) server to talk to.
    #[arg(
        long,
        global = true,
        env = "ONYX_SERVER",
        default_value = "http://127.0.0.1:2746"
    )]
    pub server: String,
    /// Bearer token for a server that requires one.
    #[arg(long, global = true, env = "ONYX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Namespace (tenant) to work in.
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "ONYX_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Default)]
pub enum Format {
    #[default]
    Wide,
    Json,
    Yaml,
    Name,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Submit workflows (files, or `--from workflowtemplate/NAME`).
    Submit {
        files: Vec<PathBuf>,
        /// Make the workflow from a stored object: workflowtemplate/NAME,
        /// clusterworkflowtemplate/NAME or cronwf/NAME.
        #[arg(long)]
        from: Option<String>,
        #[arg(short = 'p', long = "parameter")]
        parameters: Vec<String>,
        /// Labels to add, `k=v,k2=v2`.
        #[arg(short = 'l', long)]
        labels: Option<String>,
        #[arg(long)]
        generate_name: Option<String>,
        #[arg(long)]
        entrypoint: Option<String>,
        /// Wait for the workflow to end; the exit code says whether it succeeded.
        #[arg(long)]
        wait: bool,
        /// Watch the workflow until it ends.
        #[arg(long)]
        watch: bool,
        #[arg(short, long, value_enum, default_value = "wide")]
        output: Format,
    },
    /// List workflows, newest first.
    List {
        /// Label selector.
        #[arg(short = 'l', long)]
        selector: Option<String>,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short, long, value_enum, default_value = "wide")]
        output: Format,
    },
    /// Show a workflow.
    Get {
        name: String,
        #[arg(short, long, value_enum, default_value = "wide")]
        output: Format,
    },
    /// Print a workflow's (or one pod's) logs.
    Logs {
        name: String,
        pod: Option<String>,
        #[arg(short, long)]
        follow: bool,
        #[arg(short, long, default_value = "main")]
        container: String,
        #[arg(long)]
        grep: Option<String>,
    },
    /// Watch a workflow until it ends.
    Watch {
        name: String,
    },
    /// Wait for workflows to end; exit 1 if any did not succeed.
    Wait {
        names: Vec<String>,
    },
    Suspend {
        names: Vec<String>,
    },
    Resume {
        names: Vec<String>,
        #[arg(long)]
        node_field_selector: Option<String>,
    },
    /// Stop (exit handlers still run).
    Stop {
        names: Vec<String>,
    },
    /// Terminate (exit handlers do not run).
    Terminate {
        names: Vec<String>,
    },
    /// Run a failed workflow again, keeping what succeeded.
    Retry {
        names: Vec<String>,
        #[arg(long)]
        restart_successful: bool,
        #[arg(long)]
        node_field_selector: Option<String>,
        #[arg(short = 'p', long = "parameter")]
        parameters: Vec<String>,
    },
    /// Submit a copy of a workflow.
    Resubmit {
        names: Vec<String>,
        #[arg(short = 'p', long = "parameter")]
        parameters: Vec<String>,
    },
    Delete {
        names: Vec<String>,
    },
    /// WorkflowTemplates.
    #[command(subcommand)]
    Template(ObjectCommand),
    /// ClusterWorkflowTemplates.
    #[command(subcommand)]
    ClusterTemplate(ObjectCommand),
    /// CronWorkflows.
    #[command(subcommand)]
    Cron(CronCommand),
    /// The workflow archive.
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// The server's nodes: list, cordon, uncordon, drain.
    #[command(subcommand)]
    Node(NodeCommand),
    /// The scheduler's queues: what each holds and who waits in it.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// GPU- and CPU-hours and their cost, from the server's usage ledger.
    #[command(subcommand)]
    Usage(UsageCommand),
    /// Namespace requests: ask for a namespace for your group, list them, approve or deny
    /// one (admins).
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// The maintenance window: the next windows and the rolling reboot (drain, reboot,
    /// uncordon, one node after another).
    #[command(subcommand)]
    Maintenance(MaintenanceCommand),
    /// Copy a workflow's output artifacts to a directory, as `argo cp` does (through the
    /// server's artifact API: from the local repository or S3).
    Cp {
        workflow: String,
        output_dir: PathBuf,
        #[arg(long)]
        node_id: Option<String>,
        #[arg(long)]
        template_name: Option<String>,
        #[arg(long)]
        artifact_name: Option<String>,
        /// Where under OUTPUT_DIR each artifact goes; {namespace}, {workflowName}, {nodeId},
        /// {templateName} and {artifactName} are replaced.
        #[arg(
            long,
            default_value = "{namespace}/{workflowName}/{nodeId}/outputs/{artifactName}"
        )]
        path: String,
    },
    /// Cordon every node and suspend every workflow (the spec's emergency stop, ONYX side).
    EmergencyStop,
}

#[derive(Subcommand)]
pub enum NodeCommand {
    List,
    Cordon {
        names: Vec<String>,
    },
    Uncordon {
        names: Vec<String>,
    },
    /// Cordon a node, give its pods their grace period, then evict what is left (a gang's
    /// pods on other nodes too: gangs move whole). Waits until the node is empty.
    Drain {
        name: String,
        /// Seconds the node's pods get to end on their own.
        #[arg(long, default_value_t = 30)]
        grace: u64,
    },
}

#[derive(Subcommand)]
pub enum MaintenanceCommand {
    /// The schedule, the next windows, and the rollout in progress or last run.
    Status,
    /// Start a rolling reboot of every node now, for one window's length.
    Start,
}

#[derive(Subcommand)]
pub enum UsageCommand {
    /// A month's GPU-hours (a MIG instance counts as its share of a GPU), CPU-hours and cost
    /// per namespace and queue.
    Report {
        /// The month, YYYY-MM (UTC); the current one by default.
        #[arg(long)]
        month: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: crate::usage::ReportFormat,
    },
}

#[derive(Subcommand)]
pub enum NamespaceCommand {
    /// Ask for a namespace (with the ticket that approves it) for one of your groups.
    Request {
        namespace: String,
        #[arg(long)]
        ticket: String,
        /// Its GPU quota.
        #[arg(long)]
        gpus: Option<u32>,
        /// The group the namespace is for (default: your token's first group).
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    Approve {
        namespace: String,
    },
    Deny {
        namespace: String,
    },
    List,
}

#[derive(Subcommand)]
pub enum QueueCommand {
    List,
    Get {
        name: String,
        #[arg(short, long, value_enum, default_value = "yaml")]
        output: Format,
    },
}

#[derive(Subcommand)]
pub enum ObjectCommand {
    Create {
        files: Vec<PathBuf>,
    },
    List {
        #[arg(short, long, value_enum, default_value = "wide")]
        output: Format,
    },
    Get {
        name: String,
        #[arg(short, long, value_enum, default_value = "yaml")]
        output: Format,
    },
    Delete {
        names: Vec<String>,
    },
    Lint {
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum CronCommand {
    #[command(flatten)]
    Object(ObjectCommand),
    Suspend {
        names: Vec<String>,
    },
    Resume {
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
pub enum ArchiveCommand {
    List {
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[arg(long, default_value_t = 0)]
        limit: usize,
        #[arg(short, long, value_enum, default_value = "wide")]
        output: Format,
    },
    Get {
        uid: String,
        #[arg(short, long, value_enum, default_value = "wide")]
        output: Format,
    },
    Delete {
        uids: Vec<String>,
    },
}

struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Whether a server URL names this machine (loopback): only then does the CLI send the local
/// server's own token unasked.
pub fn is_local(server: &str) -> bool {
    let rest = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("https://"))
        .unwrap_or(server);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Api {
    fn new(o: &ClientOpts) -> Api {
        Api {
            base: o.server.trim_end_matches('/').to_string(),
            token: o.token.clone(),
            // Redirects are followed by `call` itself: ureq drops the token on a redirect.
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .redirects(0)
                .build(),
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<ureq::Response> {
        let mut path = path.to_string();
        // The server's own redirects (a directory listing's `…/`), to its own paths only.
        for _ in 0..5 {
            let r = self.call_once(method, &path, body)?;
            match r.header("location") {
                Some(next) if (300..400).contains(&r.status()) && next.starts_with('/') => {
                    path = next.to_string();
                }
                _ => return Ok(r),
            }
        }
        bail!("{method} {path}: too many redirects")
    }

    fn call_once(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<ureq::Response> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let res = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        match res {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(String::from))
                    .unwrap_or(text);
                bail!("{msg} (HTTP {code})")
            }
            Err(e) => Err(anyhow!(
                "cannot reach the server at {}: {e}; start one with `onyx server` or point --server / ONYX_SERVER at it",
                self.base
            )),
        }
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        let r = self.call(method, path, body)?;
        let text = r.into_string()?;
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {path}: the server's answer is not JSON"))
    }
}

/// Write a download to `target`.
fn save(r: ureq::Response, target: &Path) -> anyhow::Result<()> {
    let mut out =
        std::fs::File::create(target).with_context(|| format!("creating {}", target.display()))?;
    std::io::copy(&mut r.into_reader(), &mut out)
        .with_context(|| format!("writing {}", target.display()))?;
    println!("Created {}", target.display());
    Ok(())
}

/// Copy what `/artifact-files` serves at `path` to `target`: a file, or (an HTML listing, as
/// Argo's server writes it for a directory) every file below. Returns how many files.
fn copy_tree(api: &Api, path: &str, target: &Path) -> anyhow::Result<usize> {
    let r = api.call("GET", path, None)?;
    let is_listing = r
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html"));
    if !is_listing {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        save(r, target)?;
        return Ok(1);
    }
    let html = r.into_string()?;
    std::fs::create_dir_all(target)?;
    let mut n = 0;
    for entry in html.split("<a href=\"").skip(1) {
        let Some(href) = entry.split('"').next() else {
            continue;
        };
        // The server's links are `./NAME` or `./NAME/`, NAME percent-encoded.
        let href = href.strip_prefix("./").unwrap_or(href);
        let Some(name) = access::decoded_path(href.trim_end_matches('/')) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let dir = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        n += copy_tree(api, &format!("{dir}{href}"), &target.join(&name))?;
    }
    Ok(n)
}

fn print_obj(v: &Value, f: Format) -> anyhow::Result<()> {
    match f {
        Format::Json => println!("{}", serde_json::to_string_pretty(v)?),
        Format::Yaml => print!("{}", render::to_yaml(v)),
        Format::Name => println!("{}", v["metadata"]["name"].as_str().unwrap_or_default()),
        Format::Wide => println!("{}", render::summary(v)),
    }
    Ok(())
}

/// Read objects from files (YAML or JSON, several documents each) as JSON.
fn read_objects(files: &[PathBuf]) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for f in files {
        let text = if f == Path::new("-") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s
        } else {
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?
        };
        let (loaded, diags) = workflow_model::load_str(&f.display().to_string(), &text);
        let errors: Vec<String> = diags
            .iter()
            .filter(|d| d.severity == workflow_model::Severity::Error)
            .map(|d| d.to_string())
            .collect();
        if !errors.is_empty() {
            bail!("{}", errors.join("\n"));
        }
        for l in loaded {
            out.push(match l.object {
                workflow_model::Object::Workflow(w)
                | workflow_model::Object::WorkflowTemplate(w)
                | workflow_model::Object::ClusterWorkflowTemplate(w) => w.raw,
                workflow_model::Object::CronWorkflow(c) => c.raw,
                workflow_model::Object::Other(o) => o.raw,
            });
        }
    }
    if out.is_empty() {
        bail!(
            "no objects in {}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}

fn finished(wf: &Value) -> bool {
    matches!(
        wf["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Error")
    )
}

fn wait_for(api: &Api, ns: &str, name: &str, watch: bool) -> anyhow::Result<Value> {
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let wf = api.json("GET", &format!("/api/v1/workflows/{ns}/{name}"), None)?;
        if watch {
            let now = render::tree(&wf);
            if now != last {
                if tty {
                    print!("\x1b[2J\x1b[H");
                }
                println!("{}", render::summary(&wf));
                last = now;
            }
        }
        if finished(&wf) {
            return Ok(wf);
        }
        std::thread::sleep(Duration::from_millis(if watch { 500 } else { 200 }));
    }
}

fn outcome_line(wf: &Value) -> String {
    format!(
        "{} {} at {}",
        wf["metadata"]["name"].as_str().unwrap_or_default(),
        wf["status"]["phase"].as_str().unwrap_or_default(),
        wf["status"]["finishedAt"].as_str().unwrap_or_default()
    )
}

fn table(rows: &[Vec<String>]) {
    let mut widths = vec![0; rows.first().map_or(0, Vec::len)];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }
}

fn age(t: &Value) -> String {
    let Some(t) = t
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return String::new();
    };
    let s = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn list_workflows(items: &[Value], f: Format, all_ns: bool) -> anyhow::Result<()> {
    match f {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json!(items))?),
        Format::Yaml => print!("{}", render::to_yaml(&json!(items))),
        Format::Name => {
            for w in items {
                println!("{}", w["metadata"]["name"].as_str().unwrap_or_default());
            }
        }
        Format::Wide => {
            let mut rows = vec![];
            let mut head = vec!["NAME", "STATUS", "AGE", "DURATION", "PROGRESS"];
            if all_ns {
                head.insert(0, "NAMESPACE");
            }
            rows.push(head.iter().map(|s| s.to_string()).collect());
            for w in items {
                let mut r = vec![
                    w["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    w["status"]["phase"]
                        .as_str()
                        .unwrap_or("Pending")
                        .to_string(),
                    age(&w["metadata"]["creationTimestamp"]),
                    render::duration(&w["status"]),
                    w["status"]["progress"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ];
                if all_ns {
                    r.insert(
                        0,
                        w["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or_default()
                            .into(),
                    );
                }
                rows.push(r);
            }
            table(&rows);
        }
    }
    Ok(())
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn run(opts: &ClientOpts, cmd: ClientCommand) -> ExitCode {
    match run_inner(opts, cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("onyx: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn each(
    names: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    if names.is_empty() {
        bail!("name at least one workflow");
    }
    let mut failed = false;
    for n in names {
        if let Err(e) = f(n) {
            eprintln!("onyx: {n}: {e:#}");
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_inner(o: &ClientOpts, cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    let api = Api::new(o);
    let ns = o.namespace.as_str();
    let wf_path = |n: &str| format!("/api/v1/workflows/{ns}/{n}");
    match cmd {
        ClientCommand::Submit {
            files,
            from,
            parameters,
            labels,
            generate_name,
            entrypoint,
            wait,
            watch,
            output,
        } => {
            let mut created = Vec::new();
            if let Some(from) = from {
                let (kind, name) = from.split_once('/').ok_or_else(|| {
                    anyhow!(
                        "--from {from:?}: expected KIND/NAME, e.g. workflowtemplate/my-template"
                    )
                })?;
                let kind = match kind.to_ascii_lowercase().as_str() {
                    "workflowtemplate" | "wftmpl" => "WorkflowTemplate",
                    "clusterworkflowtemplate" | "cwftmpl" => "ClusterWorkflowTemplate",
                    "cronworkflow" | "cronwf" | "cwf" => "CronWorkflow",
                    other => bail!("--from {other}/...: expected workflowtemplate, clusterworkflowtemplate or cronwf"),
                };
                let body = json!({"resourceKind": kind, "resourceName": name, "submitOptions": {
                    "parameters": parameters, "labels": labels.clone().unwrap_or_default(),
                    "generateName": generate_name.clone().unwrap_or_default(),
                    "entryPoint": entrypoint.clone().unwrap_or_default()}});
                created.push(api.json(
                    "POST",
                    &format!("/api/v1/workflows/{ns}/submit"),
                    Some(&body),
                )?);
            } else {
                if files.is_empty() {
                    bail!("name a workflow file, or --from workflowtemplate/NAME");
                }
                for mut wf in read_objects(&files)? {
                    crate::client::apply(
                        &mut wf,
                        &parameters,
                        labels.as_deref(),
                        generate_name.as_deref(),
                        entrypoint.as_deref(),
                    )?;
                    created.push(api.json(
                        "POST",
                        &format!("/api/v1/workflows/{ns}"),
                        Some(&json!({"workflow": wf})),
                    )?);
                }
            }
            let mut ok = true;
            for wf in &created {
                let name = wf["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if wait || watch {
                    let end = wait_for(&api, ns, &name, watch)?;
                    ok &= end["status"]["phase"] == "Succeeded";
                    if output == Format::Wide && !watch {
                        println!("{}", outcome_line(&end));
                    } else if output != Format::Wide {
                        print_obj(&end, output)?;
                    }
                } else {
                    print_obj(wf, output)?;
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        ClientCommand::List {
            selector,
            limit,
            all_namespaces,
            output,
        } => {
            let scope = if all_namespaces { "" } else { ns };
            let mut q = format!("/api/v1/workflows/{scope}?");
            if let Some(s) = &selector {
                q += &format!("listOptions.labelSelector={}&", enc(s));
            }
            if limit > 0 {
                q += &format!("listOptions.limit={limit}&");
            }
            let v = api.json("GET", q.trim_end_matches(['?', '&']), None)?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            list_workflows(&items, output, all_namespaces)?;
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Get { name, output } => {
            print_obj(&api.json("GET", &wf_path(&name), None)?, output)?;
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Logs {
            name,
            pod,
            follow,
            container,
            grep,
        } => {
            let mut q = format!(
                "{}/log?logOptions.container={}&logOptions.follow={follow}",
                wf_path(&name),
                enc(&container)
            );
            if let Some(p) = &pod {
                q += &format!("&podName={}", enc(p));
            }
            if let Some(g) = &grep {
                q += &format!("&grep={}", enc(g));
            }
            let r = api.call("GET", &q, None)?;
            let mut out = std::io::stdout().lock();
            for line in BufReader::new(r.into_reader()).lines() {
                let line = line?;
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let e = &v["result"];
                if pod.is_some() {
                    writeln!(out, "{}", e["content"].as_str().unwrap_or_default())?;
                } else {
                    writeln!(
                        out,
                        "{}: {}",
                        e["podName"].as_str().unwrap_or_default(),
                        e["content"].as_str().unwrap_or_default()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Watch { name } => {
            let end = wait_for(&api, ns, &name, true)?;
            Ok(if end["status"]["phase"] == "Succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        ClientCommand::Wait { names } => {
            let mut ok = true;
            let code = each(&names, |n| {
                let end = wait_for(&api, ns, n, false)?;
                println!("{}", outcome_line(&end));
                ok &= end["status"]["phase"] == "Succeeded";
                Ok(())
            })?;
            Ok(if ok { code } else { ExitCode::from(1) })
        }
        ClientCommand::Suspend { names } => each(&names, |n| {
            api.json("PUT", &format!("{}/suspend", wf_path(n)), Some(&json!({})))?;
            println!("workflow {n} suspended");
            Ok(())
        }),
        ClientCommand::Resume {
            names,
            node_field_selector,
        } => each(&names, |n| {
            let body =
                json!({"nodeFieldSelector": node_field_selector.clone().unwrap_or_default()});
            api.json("PUT", &format!("{}/resume", wf_path(n)), Some(&body))?;
            println!("workflow {n} resumed");
            Ok(())
        }),
        ClientCommand::Stop { names } => each(&names, |n| {
            api.json("PUT", &format!("{}/stop", wf_path(n)), Some(&json!({})))?;
            println!("workflow {n} stopped");
            Ok(())
        }),
        ClientCommand::Terminate { names } => each(&names, |n| {
            api.json(
                "PUT",
                &format!("{}/terminate", wf_path(n)),
                Some(&json!({})),
            )?;
            println!("workflow {n} terminated");
            Ok(())
        }),
        ClientCommand::Retry {
            names,
            restart_successful,
            node_field_selector,
            parameters,
        } => each(&names, |n| {
            let body = json!({"restartSuccessful": restart_successful,
                "nodeFieldSelector": node_field_selector.clone().unwrap_or_default(),
                "parameters": parameters});
            let wf = api.json("PUT", &format!("{}/retry", wf_path(n)), Some(&body))?;
            println!("{}", render::summary(&wf));
            Ok(())
        }),
        ClientCommand::Resubmit { names, parameters } => each(&names, |n| {
            let wf = api.json(
                "PUT",
                &format!("{}/resubmit", wf_path(n)),
                Some(&json!({"parameters": parameters})),
            )?;
            println!("{}", render::summary(&wf));
            Ok(())
        }),
        ClientCommand::Delete { names } => each(&names, |n| {
            api.json("DELETE", &wf_path(n), None)?;
            println!("Workflow '{n}' deleted");
            Ok(())
        }),
        ClientCommand::Template(c) => objects(
            &api,
            &format!("/api/v1/workflow-templates/{ns}"),
            "template",
            c,
        ),
        ClientCommand::ClusterTemplate(c) => {
            objects(&api, "/api/v1/cluster-workflow-templates", "template", c)
        }
        ClientCommand::Cron(c) => {
            let base = format!("/api/v1/cron-workflows/{ns}");
            let c = match c {
                CronCommand::Suspend { names } => {
                    return each(&names, |n| {
                        api.json("PUT", &format!("{base}/{n}/suspend"), Some(&json!({})))?;
                        println!("CronWorkflow '{n}' suspended");
                        Ok(())
                    })
                }
                CronCommand::Resume { names } => {
                    return each(&names, |n| {
                        api.json("PUT", &format!("{base}/{n}/resume"), Some(&json!({})))?;
                        println!("CronWorkflow '{n}' resumed");
                        Ok(())
                    })
                }
                CronCommand::Object(c) => c,
            };
            objects(&api, &base, "cronWorkflow", c)
        }
        ClientCommand::Node(c) => match c {
            NodeCommand::List => {
                let v = api.json("GET", "/api/v1/onyx/nodes", None)?;
                let mut rows = vec![vec![
                    "NODE".to_string(),
                    "GPUS".into(),
                    "FREE".into(),
                    "MIG".into(),
                    "PODS".into(),
                    "STATUS".into(),
                ]];
                for n in v["items"].as_array().cloned().unwrap_or_default() {
                    let mig: usize = n["mig"].as_array().map_or(0, |g| {
                        g.iter()
                            .filter(|l| l.as_array().is_some_and(|l| !l.is_empty()))
                            .count()
                    });
                    rows.push(vec![
                        n["name"].as_str().unwrap_or_default().into(),
                        n["gpus"].to_string(),
                        n["freeGpus"].to_string(),
                        mig.to_string(),
                        n["pods"].to_string(),
                        if n["cordoned"] == true {
                            "SchedulingDisabled".into()
                        } else {
                            "Ready".into()
                        },
                    ]);
                }
                table(&rows);
                Ok(ExitCode::SUCCESS)
            }
            NodeCommand::Cordon { names } => each(&names, |n| {
                api.json(
                    "PUT",
                    &format!("/api/v1/onyx/nodes/{}/cordon", enc(n)),
                    Some(&json!({})),
                )?;
                println!("node/{n} cordoned");
                Ok(())
            }),
            NodeCommand::Uncordon { names } => each(&names, |n| {
                api.json(
                    "PUT",
                    &format!("/api/v1/onyx/nodes/{}/uncordon", enc(n)),
                    Some(&json!({})),
                )?;
                println!("node/{n} uncordoned");
                Ok(())
            }),
            NodeCommand::Drain { name, grace } => {
                let v = api.json(
                    "PUT",
                    &format!(
                        "/api/v1/onyx/nodes/{}/drain?graceSeconds={grace}",
                        enc(&name)
                    ),
                    Some(&json!({})),
                )?;
                println!("node/{name} cordoned");
                for p in v["pods"].as_array().cloned().unwrap_or_default() {
                    println!(
                        "waiting for pod {} (grace {grace}s, then evicted)",
                        p.as_str().unwrap_or_default()
                    );
                }
                loop {
                    let nodes = api.json("GET", "/api/v1/onyx/nodes", None)?;
                    let left = nodes["items"]
                        .as_array()
                        .and_then(|a| a.iter().find(|n| n["name"] == name.as_str()))
                        .map_or(0, |n| n["pods"].as_u64().unwrap_or(0));
                    if left == 0 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                println!("node/{name} drained");
                Ok(ExitCode::SUCCESS)
            }
        },
        ClientCommand::Maintenance(c) => {
            let v = match c {
                MaintenanceCommand::Status => api.json("GET", "/api/v1/onyx/maintenance", None)?,
                MaintenanceCommand::Start => {
                    api.json("POST", "/api/v1/onyx/maintenance/start", Some(&json!({})))?
                }
            };
            print!("{}", render::to_yaml(&v));
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Usage(UsageCommand::Report { month, output }) => {
            let path = match &month {
                Some(m) => format!("/api/v1/usage?month={}", enc(m)),
                None => "/api/v1/usage".to_string(),
            };
            let v = api.json("GET", &path, None)?;
            crate::usage::print(&v, output, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Namespace(c) => {
            let v = match c {
                NamespaceCommand::Request {
                    namespace,
                    ticket,
                    gpus,
                    group,
                    reason,
                } => api.json(
                    "POST",
                    "/api/v1/namespace-requests",
                    Some(
                        &serde_json::json!({"namespace": namespace, "ticketId": ticket,
                        "gpuQuota": gpus, "group": group, "reason": reason}),
                    ),
                )?,
                NamespaceCommand::Approve { namespace } => api.json(
                    "PUT",
                    &format!("/api/v1/namespace-requests/{}/approve", enc(&namespace)),
                    None,
                )?,
                NamespaceCommand::Deny { namespace } => api.json(
                    "PUT",
                    &format!("/api/v1/namespace-requests/{}/deny", enc(&namespace)),
                    None,
                )?,
                NamespaceCommand::List => {
                    let v = api.json("GET", "/api/v1/namespace-requests", None)?;
                    let mut rows = vec![vec![
                        "NAMESPACE".to_string(),
                        "GROUP".into(),
                        "GPUS".into(),
                        "TICKET".into(),
                        "REQUESTER".into(),
                        "PHASE".into(),
                    ]];
                    for r in v["items"].as_array().cloned().unwrap_or_default() {
                        let s = &r["spec"];
                        let text = |v: &Value| v.as_str().unwrap_or("-").to_string();
                        rows.push(vec![
                            text(&s["namespace"]),
                            text(&s["group"]),
                            s["gpuQuota"].as_u64().map_or("-".into(), |g| g.to_string()),
                            text(&s["ticketId"]),
                            text(&s["requester"]),
                            text(&r["status"]["phase"]),
                        ]);
                    }
                    table(&rows);
                    return Ok(ExitCode::SUCCESS);
                }
            };
            println!(
                "namespace request {}: {}",
                v["metadata"]["name"].as_str().unwrap_or_default(),
                v["status"]["phase"].as_str().unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Queue(c) => match c {
            QueueCommand::List => {
                let v = api.json("GET", "/api/v1/onyx/queues", None)?;
                let mut rows = vec![vec![
                    "QUEUE".to_string(),
                    "UNIT".into(),
                    "WEIGHT".into(),
                    "CAPABILITY".into(),
                    "ALLOCATED".into(),
                    "RUNNING".into(),
                    "PENDING".into(),
                ]];
                for q in v["items"].as_array().cloned().unwrap_or_default() {
                    let gpus =
                        |v: &Value| v.as_u64().map_or("-".to_string(), |g| format!("{g} GPU"));
                    rows.push(vec![
                        q["name"].as_str().unwrap_or_default().into(),
                        q["unit"].as_str().unwrap_or_default().into(),
                        q["weight"].to_string(),
                        gpus(&q["capabilityGpus"]),
                        format!("{:.2} GPU", q["allocatedGpus"].as_f64().unwrap_or(0.0)),
                        q["running"].to_string(),
                        q["pending"].to_string(),
                    ]);
                }
                table(&rows);
                Ok(ExitCode::SUCCESS)
            }
            QueueCommand::Get { name, output } => {
                let v = api.json("GET", &format!("/api/v1/onyx/queues/{}", enc(&name)), None)?;
                match output {
                    Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                    _ => print!("{}", render::to_yaml(&v)),
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        ClientCommand::Cp {
            workflow,
            output_dir,
            node_id,
            template_name,
            artifact_name,
            path,
        } => {
            let ns = o.namespace.as_str();
            let wf = api.json(
                "GET",
                &format!("/api/v1/workflows/{}/{}", enc(ns), enc(&workflow)),
                None,
            )?;
            let mut copied = 0;
            for (id, node) in wf["status"]["nodes"].as_object().into_iter().flatten() {
                let template = node["templateName"].as_str().unwrap_or_default();
                if node_id.as_ref().is_some_and(|n| n != id)
                    || template_name.as_ref().is_some_and(|t| t != template)
                {
                    continue;
                }
                for a in node["outputs"]["artifacts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let name = a["name"].as_str().unwrap_or_default();
                    let Some(key) = a["local"]["key"].as_str().or(a["s3"]["key"].as_str()) else {
                        continue;
                    };
                    if artifact_name.as_ref().is_some_and(|n| n != name) {
                        continue;
                    }
                    // Names from the server are a workflow's (a tenant's) words: each must be
                    // one plain path part, so that nothing lands outside the output directory.
                    for (what, part) in [
                        ("template name", template),
                        ("node id", id.as_str()),
                        ("artifact name", name),
                        (
                            "artifact key's file name",
                            key.rsplit('/').next().unwrap_or(key),
                        ),
                    ] {
                        let plain = !part.is_empty()
                            && part != "."
                            && part != ".."
                            && !part.contains(['/', '\\', '\0']);
                        if !plain {
                            bail!(
                                "workflow {workflow}: the {what} {part:?} cannot be a file name (one path part: no '/', not '.' or '..'); nothing was copied for it"
                            );
                        }
                    }
                    let dir = output_dir.join(
                        path.replacen("{templateName}", template, 1)
                            .replacen("{namespace}", ns, 1)
                            .replacen("{workflowName}", &workflow, 1)
                            .replacen("{nodeId}", id, 1)
                            .replacen("{artifactName}", name, 1),
                    );
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    let file_name = key.rsplit('/').next().unwrap_or(key);
                    if a["archive"]["none"].is_object() {
                        // Maybe a directory saved without an archive: its files, as the
                        // artifact-files listing names them (one file comes back as itself).
                        let base = format!(
                            "/artifact-files/{}/workflows/{}/{}/outputs/{}",
                            enc(ns),
                            enc(&workflow),
                            enc(id),
                            enc(name)
                        );
                        copied += copy_tree(&api, &base, &dir.join(file_name))?;
                        continue;
                    }
                    let target = dir.join(file_name);
                    let r = api.call(
                        "GET",
                        &format!(
                            "/artifacts/{}/{}/{}/{}",
                            enc(ns),
                            enc(&workflow),
                            enc(id),
                            enc(name)
                        ),
                        None,
                    )?;
                    save(r, &target)?;
                    copied += 1;
                }
            }
            if copied == 0 {
                bail!("workflow {workflow} has no output artifacts that match");
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::EmergencyStop => {
            let v = api.json("POST", "/api/v1/onyx/emergency-stop", Some(&json!({})))?;
            println!(
                "emergency stop: cordoned {} node(s), suspended {} workflow(s)",
                v["cordoned"].as_array().map_or(0, Vec::len),
                v["suspended"].as_array().map_or(0, Vec::len)
            );
            if v["powerConfigured"] == true {
                println!(
                    "powered off {} node(s) through their BMCs",
                    v["poweredOff"].as_array().map_or(0, Vec::len)
                );
                for e in v["powerErrors"].as_array().cloned().unwrap_or_default() {
                    eprintln!(
                        "power off of {} failed: {}",
                        e["node"].as_str().unwrap_or("?"),
                        e["error"].as_str().unwrap_or_default()
                    );
                }
            } else {
                println!("no [power] command is configured: power the GPU nodes off through their BMCs by hand");
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Archive(c) => match c {
            ArchiveCommand::List {
                selector,
                limit,
                output,
            } => {
                let mut q = format!("/api/v1/archived-workflows?namespace={}", enc(ns));
                if let Some(s) = &selector {
                    q += &format!("&listOptions.labelSelector={}", enc(s));
                }
                if limit > 0 {
                    q += &format!("&listOptions.limit={limit}");
                }
                let v = api.json("GET", &q, None)?;
                let items = v["items"].as_array().cloned().unwrap_or_default();
                if output == Format::Wide {
                    let mut rows = vec![vec![
                        "NAME".to_string(),
                        "STATUS".into(),
                        "AGE".into(),
                        "UID".into(),
                    ]];
                    for w in &items {
                        rows.push(vec![
                            w["metadata"]["name"].as_str().unwrap_or_default().into(),
                            w["status"]["phase"].as_str().unwrap_or_default().into(),
                            age(&w["metadata"]["creationTimestamp"]),
                            w["metadata"]["uid"].as_str().unwrap_or_default().into(),
                        ]);
                    }
                    table(&rows);
                } else {
                    list_workflows(&items, output, false)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            ArchiveCommand::Get { uid, output } => {
                print_obj(
                    &api.json(
                        "GET",
                        &format!("/api/v1/archived-workflows/{}", enc(&uid)),
                        None,
                    )?,
                    output,
                )?;
                Ok(ExitCode::SUCCESS)
            }
            ArchiveCommand::Delete { uids } => each(&uids, |u| {
                api.json(
                    "DELETE",
                    &format!("/api/v1/archived-workflows/{}", enc(u)),
                    None,
                )?;
                println!("Archived workflow '{u}' deleted");
                Ok(())
            }),
        },
    }
}

/// `-p`, `-l`, `--generate-name`, `--entrypoint` on a workflow read from a file.
pub fn apply(
    wf: &mut Value,
    params: &[String],
    labels: Option<&str>,
    generate_name: Option<&str>,
    entrypoint: Option<&str>,
) -> anyhow::Result<()> {
    if !params.is_empty() {
        let list = wf["spec"]["arguments"]["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut list = list;
        for p in params {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| anyhow!("-p {p:?}: expected name=value"))?;
            match list.iter_mut().find(|x| x["name"] == k) {
                Some(x) => {
                    x["value"] = json!(v);
                    if let Some(m) = x.as_object_mut() {
                        m.remove("valueFrom");
                    }
                }
                None => list.push(json!({"name": k, "value": v})),
            }
        }
        wf["spec"]["arguments"]["parameters"] = json!(list);
    }
    if let Some(l) = labels.filter(|l| !l.is_empty()) {
        for kv in l.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("-l {kv:?}: expected key=value"))?;
            wf["metadata"]["labels"][k] = json!(v);
        }
    }
    if let Some(g) = generate_name {
        wf["metadata"]["generateName"] = json!(g);
        if let Some(m) = wf["metadata"].as_object_mut() {
            m.remove("name");
        }
    }
    if let Some(e) = entrypoint {
        wf["spec"]["entrypoint"] = json!(e);
    }
    Ok(())
}

fn objects(api: &Api, base: &str, field: &str, c: ObjectCommand) -> anyhow::Result<ExitCode> {
    match c {
        ObjectCommand::Create { files } => {
            for obj in read_objects(&files)? {
                let v = api.json("POST", base, Some(&json!({ field: obj })))?;
                println!(
                    "{} created",
                    v["metadata"]["name"].as_str().unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ObjectCommand::Lint { files } => {
            let mut ok = true;
            for obj in read_objects(&files)? {
                match api.json(
                    "POST",
                    &format!("{base}/lint"),
                    Some(&json!({ field: obj })),
                ) {
                    Ok(v) => println!(
                        "{}: no linting errors found",
                        v["metadata"]["name"].as_str().unwrap_or_default()
                    ),
                    Err(e) => {
                        ok = false;
                        eprintln!(
                            "{}: {e:#}",
                            obj["metadata"]["name"].as_str().unwrap_or_default()
                        );
                    }
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        ObjectCommand::List { output } => {
            let v = api.json("GET", base, None)?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&items)?),
                Format::Yaml => print!("{}", render::to_yaml(&json!(items))),
                _ => {
                    let mut rows = vec![vec!["NAME".to_string(), "AGE".into()]];
                    for i in &items {
                        rows.push(vec![
                            i["metadata"]["name"].as_str().unwrap_or_default().into(),
                            age(&i["metadata"]["creationTimestamp"]),
                        ]);
                    }
                    table(&rows);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ObjectCommand::Get { name, output } => {
            let v = api.json("GET", &format!("{base}/{}", enc(&name)), None)?;
            match output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Format::Name => println!("{name}"),
                _ => print!("{}", render::to_yaml(&v)),
            }
            Ok(ExitCode::SUCCESS)
        }
        ObjectCommand::Delete { names } => each(&names, |n| {
            api.json("DELETE", &format!("{base}/{}", enc(n)), None)?;
            println!("'{n}' deleted");
            Ok(())
        }),
    }
}

#[cfg(test)]
mod local_token_tests {
    use super::is_local;

    #[test]
    fn the_local_token_goes_only_to_this_machine() {
        for local in [
            "http://127.0.0.1:2746",
            "http://localhost:2746/",
            "https://[::1]:2746",
            "127.0.0.2:80",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in [
            "http://10.0.0.1:2746",
            "https://argo.example.com",
            "http://127.0.0.1.evil.example:2746",
            "http://localhost.evil.example",
        ] {
            assert!(!is_local(remote), "{remote}");
        }
    }
}
