//! `onyx cluster schema|show|check|nodes`.

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use cluster_model::{Catalogue, Cluster};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Print the cluster file's JSON Schema.
    Schema,
    /// Print a cluster's inventory (racks, nodes, GPUs) and totals, or the file itself.
    Show {
        /// A cluster file, or the name of a built-in cluster (`onyx`).
        cluster: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: ShowFormat,
    },
    /// Check a cluster design: every finding with its rule, severity, numbers and fix.
    /// Exits 1 when there is an error.
    Check {
        cluster: String,
        #[arg(short, long, value_enum, default_value = "text")]
        output: CheckFormat,
        /// The date support windows are judged against (default: today).
        #[arg(long)]
        today: Option<String>,
    },
    /// A Kubernetes cluster's Nodes, read from its API, as ONYX's scheduler sees them: GPUs
    /// (whole, and partitioned with their MIG instances), model, schedulable, taints.
    Nodes {
        /// The cluster's kubeconfig; default: in-cluster, then $KUBECONFIG, then
        /// ~/.kube/config.
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum ShowFormat {
    Table,
    Yaml,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum CheckFormat {
    Text,
    Json,
}

fn load(name: &str, cat: &Catalogue) -> Result<(Cluster, String), ExitCode> {
    let (file, text) = match cluster_model::builtin(name) {
        Some(t) => (name.to_string(), t.to_string()),
        None => match std::fs::read_to_string(name) {
            Ok(t) => (name.to_string(), t),
            Err(e) => {
                eprintln!(
                    "onyx cluster: {name}: {e} (not a file, and not a built-in cluster: onyx)"
                );
                return Err(ExitCode::from(2));
            }
        },
    };
    match cluster_model::load(&file, &text, cat) {
        Ok(c) => Ok((c, text)),
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            Err(ExitCode::from(2))
        }
    }
}

pub fn run(cmd: ClusterCommand) -> ExitCode {
    let cat = Catalogue::builtin();
    match cmd {
        ClusterCommand::Nodes { kubeconfig } => {
            let read = async {
                let client = kubernetes_executor::client(kubeconfig.as_deref()).await?;
                kubernetes_executor::node_specs(&client).await
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("onyx cluster nodes: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(read) {
                Ok(specs) => {
                    print!("{}", kubernetes_executor::nodes::table(&specs));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("onyx cluster nodes: {e}");
                    ExitCode::from(1)
                }
            }
        }
        ClusterCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&cluster_model::schema()).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        ClusterCommand::Show { cluster, output } => {
            let (c, text) = match load(&cluster, &cat) {
                Ok(x) => x,
                Err(code) => return code,
            };
            match output {
                ShowFormat::Yaml => print!("{text}"),
                ShowFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&c.file).unwrap_or_default()
                ),
                ShowFormat::Table => print!("{}", cluster_check::inventory(&c, &cat)),
            }
            ExitCode::SUCCESS
        }
        ClusterCommand::Check {
            cluster,
            output,
            today,
        } => {
            let (c, _) = match load(&cluster, &cat) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let today = today.unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%d").to_string());
            let findings = cluster_check::check(&c, &cat, &today);
            match output {
                CheckFormat::Text => print!("{}", cluster_check::render_text(&findings)),
                CheckFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&findings).unwrap_or_default()
                ),
            }
            if findings
                .iter()
                .any(|f| f.severity == cluster_check::Severity::Error)
            {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
