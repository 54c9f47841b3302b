//! The client's command line: `argo`'s verbs and flags, and ONYX's own (nodes, queues,
//! namespaces, usage, maintenance).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

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
