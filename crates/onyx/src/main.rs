//! `onyx`: the ONYX command line.

mod cluster;
mod conformance;
mod corpus;
mod e2e;
mod inputs;
mod names;
mod render;
mod resource;
mod runner;
mod sim;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use argo_cli::Format;
use clap::{Parser, Subcommand};
use workflow_model::{Object, Severity};

use crate::inputs::Inputs;

// The engine allocates many small short-lived values per step; mimalloc halves their cost
// against glibc's allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "onyx",
    version,
    about = "Argo-compatible workflows with GPU gang scheduling, in one binary"
)]
struct Cli {
    /// Where ONYX keeps its state, pod directories and artifacts.
    #[arg(long, global = true, env = "ONYX_HOME", default_value = ".onyx")]
    home: PathBuf,
    #[command(flatten)]
    client: argo_cli::ClientOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one workflow to completion on this machine, printing its progress.
    Run {
        /// The workflow file; further files hold the WorkflowTemplates, ClusterWorkflowTemplates
        /// and objects (ConfigMaps) it refers to.
        files: Vec<PathBuf>,
        /// Workflow argument, `name=value` (repeatable).
        #[arg(short = 'p', long = "parameter")]
        parameters: Vec<String>,
        /// Output format: the final status as a tree (wide), JSON, YAML or the name.
        #[arg(short, long, value_enum, default_value = "wide")]
        output: Format,
        /// Print each pod's log when it finishes.
        #[arg(long)]
        log: bool,
        /// Resume manual suspend steps as soon as they are reached.
        #[arg(long)]
        auto_resume: bool,
    },
    /// Check workflow files: every problem with its file, line and field.
    Lint { files: Vec<PathBuf> },
    /// Run Argo's example corpus (DIR/MANIFEST.tsv) and report the pass count.
    Conformance {
        dir: PathBuf,
        /// How many rows run at once (most rows only sleep).
        #[arg(long, default_value_t = 48)]
        jobs: usize,
        /// Give up on a workflow after this many seconds.
        #[arg(long, default_value_t = 1500)]
        timeout: u64,
        /// Only rows whose file name contains this text.
        #[arg(long)]
        only: Option<String>,
        /// Also write the results as a Markdown table to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Also run the e2e table (tests/argo-e2e-v3.5.6.tsv) over the fixtures in this
        /// directory: `test/e2e` of an Argo v3.5.6 checkout.
        #[arg(long)]
        e2e: Option<PathBuf>,
        /// Another e2e table in the same format, instead of the committed one (for tests).
        #[arg(long, hide = true)]
        e2e_table: Option<PathBuf>,
    },
    /// Serve Argo Server's API on port 2746, running workflows on this machine with their state
    /// in SQLite under --home.
    Server {
        /// Address to listen on (default 127.0.0.1:2746; other addresses need authentication).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Configuration file (TOML): policies per namespace, parallelism, authentication.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where pods are placed: local (this machine's GPUs), onyx (the seed's 16 GPU nodes,
        /// virtual) or a cluster file.
        #[arg(long)]
        cluster: Option<String>,
        /// Where steps run: local (sandboxed processes here) or kubernetes (pods on a
        /// cluster's nodes, placed and bound by ONYX; the nodes are read from its API).
        #[arg(long)]
        executor: Option<server::config::ExecutorKind>,
        /// The cluster's kubeconfig (--executor kubernetes); default: in-cluster, then
        /// $KUBECONFIG, then ~/.kube/config.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// This server's API address as the other replicas reach it (they forward writes to
        /// the leader); default http://LISTEN. On Kubernetes, the pod's IP.
        #[arg(long, env = "ONYX_ADVERTISE")]
        advertise: Option<String>,
        /// Where state lives: `postgres://USER:PASSWORD@HOST/DB` (production: any number of
        /// servers share it, one leads, the others stand by) or a SQLite file (default:
        /// $ONYX_HOME/onyx.db).
        #[arg(long, env = "ONYX_STORE")]
        store: Option<String>,
        /// Argo Server's auth modes: server (the server acts as itself), client (each call
        /// carries the user's OpenID ID token), sso (and the UI signs in through the issuer).
        /// The issuer and the namespace grants are in the config's [auth].
        #[arg(long)]
        auth_mode: Option<server::config::AuthMode>,
    },
    /// ONYX's executor inside a step's pod on Kubernetes (the pod's `main` runs its command
    /// under it): runs COMMAND, reports `result` and output parameters in the container's
    /// termination message, exits with COMMAND's code.
    #[command(hide = true)]
    Emissary {
        /// Run a script template: its source is in ONYX_SCRIPT.
        #[arg(long)]
        script: bool,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Copy this binary to DIR/onyx (a step pod's init container, for `onyx emissary`).
    #[command(hide = true)]
    InstallExecutor { dir: PathBuf },
    /// Simulators on the scheduler's own code.
    #[command(subcommand)]
    Sim(sim::SimCommand),
    /// The cluster model: `schema`, `show`, `check`.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    #[command(flatten)]
    Client(argo_cli::ClientCommand),
    /// Run a prepared pod (used by ONYX itself, like Argo's argoexec).
    #[command(hide = true)]
    ExecPod { dir: PathBuf },
    /// Make an `http` template's call (used by ONYX itself, like Argo's agent pod).
    #[command(hide = true)]
    ExecHttp {
        /// The workflow's namespace has no egress: only loopback.
        #[arg(long)]
        no_network: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = absolute(&cli.home);
    if matches!(
        cli.command,
        Command::Run { .. } | Command::Server { .. } | Command::Conformance { .. }
    ) && nix::unistd::Uid::effective().is_root()
        && std::env::var_os("ONYX_NO_SANDBOX").is_none()
    {
        // Before any thread starts (see `namespace`). Where it is refused (a container without
        // CAP_SYS_ADMIN) each pod mounts its own root, or runs through the wrapper, as before.
        let _ = pod_sandbox::namespace::enter_private_mount_namespace();
    }
    match cli.command {
        Command::ExecHttp { no_network } => {
            ExitCode::from(local_executor::actions::run_http_agent(no_network).clamp(0, 255) as u8)
        }
        Command::ExecPod { dir } => {
            let run = || match local_executor::run_pod(&dir) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("onyx exec-pod: {e}");
                    1
                }
            };
            // Not root: a user namespace of the wrapper's own first (rootless pods); where it
            // is refused, the pod fails saying so (`pod_sandbox::unavailable`).
            if !pod_sandbox::disabled() {
                let _ = pod_sandbox::enter_rootless();
            }
            // The pod's containers die with the wrapper (see pod_sandbox).
            let code = if nix::unistd::Uid::effective().is_root() && !pod_sandbox::disabled() {
                local_executor::run_in_own_pid_namespace(run)
            } else {
                run()
            };
            ExitCode::from(code.clamp(0, 255) as u8)
        }
        Command::Lint { files } => lint(&files),
        Command::Emissary { script, command } => {
            match kubernetes_executor::emissary::Emissary::from_env(script) {
                Ok(e) => ExitCode::from(e.run(command).clamp(0, 255) as u8),
                Err(message) => {
                    eprintln!("onyx emissary: {message}");
                    ExitCode::from(1)
                }
            }
        }
        Command::InstallExecutor { dir } => match kubernetes_executor::emissary::install(&dir) {
            Ok(to) => {
                eprintln!("onyx: installed {}", to.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("onyx install-executor {}: {e}", dir.display());
                ExitCode::from(1)
            }
        },
        Command::Server {
            listen,
            config,
            cluster,
            executor,
            kubeconfig,
            advertise,
            store,
            auth_mode,
        } => serve(
            &home,
            listen,
            config,
            Placement {
                cluster,
                executor,
                kubeconfig,
                advertise,
            },
            store,
            auth_mode,
        ),
        Command::Client(c) => {
            // A local server's own token, when none is given (never sent elsewhere).
            let mut opts = cli.client.clone();
            if opts.token.is_none() && argo_cli::is_local(&opts.server) {
                opts.token = std::fs::read_to_string(home.join(server::LOCAL_TOKEN_FILE))
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty());
            }
            argo_cli::run(&opts, c)
        }
        Command::Cluster(c) => cluster::run(c),
        Command::Sim(c) => sim::run(c),
        Command::Run {
            files,
            parameters,
            output,
            log,
            auto_resume,
        } => run(&home, &files, &parameters, output, log, auto_resume),
        Command::Conformance {
            dir,
            jobs,
            timeout,
            only,
            report,
            e2e,
            e2e_table,
        } => {
            let opts = corpus::Options {
                jobs,
                timeout: Duration::from_secs(timeout),
                home: home.join("conformance"),
                only,
                report,
                e2e,
                e2e_table,
            };
            match conformance::run(&dir, &opts) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => {
                    eprintln!("conformance: below the bars (95% of host rows, 80% of shim rows, every lint row clean)");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("onyx conformance: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Where a server's steps are placed and run (its command-line flags).
struct Placement {
    cluster: Option<String>,
    executor: Option<server::config::ExecutorKind>,
    kubeconfig: Option<PathBuf>,
    advertise: Option<String>,
}

fn serve(
    home: &std::path::Path,
    listen: Option<std::net::SocketAddr>,
    config: Option<PathBuf>,
    placement: Placement,
    store: Option<String>,
    auth_mode: Option<server::config::AuthMode>,
) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx::postgres::notice=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut cfg = match &config {
        Some(path) => match server::ServerConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("onyx server: {e}");
                return ExitCode::from(2);
            }
        },
        None => server::ServerConfig::default(),
    };
    // --home (or ONYX_HOME) wins over the file unless the file names one.
    if config.is_none() || cfg.home == std::path::Path::new(".onyx") {
        cfg.home = home.to_path_buf();
    }
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(c) = placement.cluster {
        cfg.cluster = c;
    }
    if let Some(e) = placement.executor {
        cfg.executor = e;
    }
    if let Some(k) = placement.kubeconfig {
        cfg.kubernetes.kubeconfig = Some(k);
    }
    if let Some(a) = placement.advertise {
        cfg.standby.advertise = Some(a);
    }
    if let Some(s) = store {
        cfg.store = Some(s);
    }
    if let Some(m) = auth_mode {
        cfg.auth.mode = m;
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("onyx server: {e}");
            return ExitCode::from(1);
        }
    };
    let home_shown = match &cfg.store {
        Some(url) => format!(
            "{}, pods under {}",
            store::Location::parse(url).describe(),
            cfg.home.display()
        ),
        None => cfg.home.display().to_string(),
    };
    // A server with no token configured makes its own (see `server::local_token`).
    let own_token = (cfg.auth_token_file.is_none()
        && cfg.auth.mode == server::config::AuthMode::Server)
        .then(|| cfg.home.join(server::LOCAL_TOKEN_FILE));
    let result = rt.block_on(server::serve(cfg, |addr| {
        eprintln!("onyx server listening on http://{addr} (state in {home_shown})");
        if let Some(t) = own_token.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
            eprintln!(
                "onyx server: its API token is in {} (the CLI on this machine reads it); the UI: http://{addr}/#token={}",
                own_token.as_ref().map(|f| f.display().to_string()).unwrap_or_default(),
                t.trim()
            );
        }
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onyx server: {e}");
            ExitCode::from(1)
        }
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn lint(files: &[PathBuf]) -> ExitCode {
    if files.is_empty() {
        eprintln!("onyx lint: give at least one file");
        return ExitCode::from(2);
    }
    let mut inputs = Inputs::read(files);
    inputs.lint();
    for d in &inputs.diagnostics {
        println!("{d}");
    }
    let errors = inputs
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = inputs.diagnostics.len() - errors;
    if errors > 0 {
        println!("{errors} error(s), {warnings} warning(s)");
        ExitCode::from(1)
    } else {
        println!(
            "{} object(s) linted clean{}",
            inputs.loaded.len(),
            if warnings > 0 {
                format!(", {warnings} warning(s)")
            } else {
                String::new()
            }
        );
        ExitCode::SUCCESS
    }
}

fn run(
    home: &std::path::Path,
    files: &[PathBuf],
    parameters: &[String],
    output: Format,
    log: bool,
    auto_resume: bool,
) -> ExitCode {
    if files.is_empty() {
        eprintln!("onyx run: give the workflow file");
        return ExitCode::from(2);
    }
    let mut params = Vec::new();
    for p in parameters {
        match p.split_once('=') {
            Some((k, v)) => params.push((k.to_string(), v.to_string())),
            None => {
                eprintln!("onyx run: -p {p}: expected name=value");
                return ExitCode::from(2);
            }
        }
    }
    let mut inputs = Inputs::read(files);
    inputs.lint();
    for d in &inputs.diagnostics {
        eprintln!("{d}");
    }
    if inputs.has_errors() {
        eprintln!("onyx run: the input was refused");
        return ExitCode::from(2);
    }
    let first = files[0].display().to_string();
    let workflows: Vec<_> = inputs
        .loaded
        .iter()
        .filter(|l| l.file == first)
        .filter_map(|l| match &l.object {
            Object::Workflow(w) => Some(w.clone()),
            _ => None,
        })
        .collect();
    let wf = match workflows.into_iter().next() {
        Some(wf) => wf,
        None => match inputs.workflow_from_template(&first) {
            Ok(wf) => wf,
            Err(e) => {
                eprintln!("onyx run: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let objects = resource::ObjectStore::new();
    objects.load(&inputs.objects());
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("onyx run: {e}");
            return ExitCode::from(2);
        }
    };
    let shared = Arc::new(runner::Shared {
        store: inputs.store(),
        objects,
        exe,
    });
    let opts = runner::RunOptions {
        home: home.to_path_buf(),
        params,
        auto_resume,
        timeout: None,
    };
    let name = runner::workflow_name(&wf);
    runner::handle_interrupts();
    let outcome = if output == Format::Wide {
        eprintln!("Name: {name}");
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            let mut w = render::TreeWatcher::new(std::io::stderr());
            runner::run(&wf, &name, &shared, &opts, &mut w)
        } else {
            let mut w = render::LineWatcher::new(std::io::stderr());
            runner::run(&wf, &name, &shared, &opts, &mut w)
        }
    } else {
        runner::run(&wf, &name, &shared, &opts, &mut runner::NoWatch)
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("onyx run: {e:#}");
            return ExitCode::from(2);
        }
    };
    if log {
        print_logs(home, &outcome.workflow);
    }
    match output {
        Format::Wide => print!("\n{}", render::summary(&outcome.workflow)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&outcome.workflow).unwrap_or_default()
        ),
        Format::Yaml => print!(
            "{}",
            serde_yaml_ng::to_string(&outcome.workflow).unwrap_or_default()
        ),
        Format::Name => println!("{name}"),
    }
    if outcome.phase == workflow_engine::Phase::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_logs(home: &std::path::Path, wf: &serde_json::Value) {
    let Some(nodes) = wf.pointer("/status/nodes").and_then(|n| n.as_object()) else {
        return;
    };
    let mut pods: Vec<(&str, String)> = nodes
        .values()
        .filter(|n| n["type"] == "Pod")
        .map(|n| {
            let tname = n["templateName"]
                .as_str()
                .or_else(|| n["templateRef"]["template"].as_str())
                .unwrap_or_default();
            let wfname = wf["metadata"]["name"].as_str().unwrap_or_default();
            (
                n["startedAt"].as_str().unwrap_or_default(),
                workflow_engine::pod_name(wfname, n["name"].as_str().unwrap_or_default(), tname),
            )
        })
        .collect();
    pods.sort();
    for (_, pod) in pods {
        for file in ["main.log", "main.err.log"] {
            if let Ok(text) = std::fs::read_to_string(home.join("pods").join(&pod).join(file)) {
                for line in text.lines() {
                    println!("{pod}: {line}");
                }
            }
        }
    }
}
