//! `onyx server`: Argo Server's REST API on port 2746 over a durable controller that drives
//! the workflow engine, with state in SQLite under `$ONYX_HOME` and pods as local processes.

#![forbid(unsafe_code)]

mod api;

mod standby;

// What the API serves, from the crate below it; named here so that `control_plane::state` and the
// like read the same in every module of the server.
pub use control_plane::config;
use control_plane::{auth, cron, error, maintenance_runner, requests, state, submit, usage};

use std::sync::Arc;

pub use config::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Events(#[from] event_runtime::EventError),
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("recovering workflows: {0}")]
    Recover(workflow_runtime::RuntimeError),
}

/// The GPUs pods are placed on: this machine's (`local`) or a cluster file's GPU nodes.
/// The cluster pods are placed on, and the BMC address of each node that has one.
type Nodes = (
    cluster_shell::Cluster,
    std::collections::BTreeMap<String, String>,
);

fn cluster(cfg: &ServerConfig) -> Result<Nodes, ServerError> {
    let policy = cfg.scheduling_policy();
    policy
        .check_queues()
        .map_err(|e| ServerError::Config(config::ConfigError::Invalid(e)))?;
    if cfg.cluster == "local" {
        if policy.dynamic_mig {
            // Re-partitioning real GPUs needs them idle and NVIDIA's MIG manager; ONYX does
            // not drive nvidia-smi behind running work.
            return Err(ServerError::Config(config::ConfigError::Invalid(
                "dynamic_mig: this machine's GPUs keep the MIG layout they have (set it with nvidia-smi mig); dynamic MIG works on --cluster onyx or a cluster file".into(),
            )));
        }
        return Ok((
            cluster_shell::Cluster::local(
                policy,
                local_executor::actions::node_config().node_labels,
            ),
            Default::default(),
        ));
    }
    let name = &cfg.cluster;
    let text = match cluster_model::builtin(name) {
        Some(t) => t.to_string(),
        None => std::fs::read_to_string(name).map_err(|source| ServerError::Io {
            what: format!("--cluster {name} (not a file, and not a built-in cluster: local, onyx)"),
            source,
        })?,
    };
    let cat = cluster_model::Catalogue::builtin();
    let c = cluster_model::load(name, &text, &cat).map_err(|errs| {
        ServerError::Config(config::ConfigError::Invalid(
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        ))
    })?;
    let bmcs = c
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.clone(), n.bmc?.to_string())))
        .collect();
    Ok((cluster_shell::Cluster::virtual_nodes(&c, policy), bmcs))
}

/// The Kubernetes executor on the configured cluster, its nodes read from the API.
async fn kubernetes_pods(
    cfg: &ServerConfig,
    store: &store::Store,
) -> Result<(Arc<kubernetes_executor::KubernetesExecutor>, kube::Client), ServerError> {
    let unreachable = |e: kubernetes_executor::ClusterError| {
        ServerError::Config(config::ConfigError::Invalid(format!(
            "--executor kubernetes: {e}"
        )))
    };
    let client = kubernetes_executor::client(cfg.kubernetes.kubeconfig.as_deref())
        .await
        .map_err(unreachable)?;
    let cluster = kubernetes_executor::read_nodes(&client, cfg.scheduling_policy())
        .await
        .map_err(unreachable)?;
    let local = cfg.pod_settings();
    let settings = kubernetes_executor::KubernetesSettings {
        home: cfg.home.clone(),
        executor_image: cfg.kubernetes.executor_image.clone(),
        repository: local
            .repository
            .unwrap_or_else(|| artifact_repo::Repository::Local(cfg.home.join("artifacts"))),
        repositories: local.repositories,
        pod_security: cfg
            .namespaces
            .iter()
            .map(|(ns, p)| (ns.clone(), p.pod_security))
            .collect(),
        default_pod_security: cfg.policy.pod_security,
        live_workflows: live_workflows(store).await?,
        // The server's own namespace, where it runs in the cluster (its ServiceAccount's).
        forbidden_namespaces: std::fs::read_to_string(
            "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
        )
        .ok()
        .map(|ns| ns.trim().to_string())
        .filter(|ns| !ns.is_empty())
        .into_iter()
        .collect(),
    };
    let pods = kubernetes_executor::KubernetesExecutor::new(client.clone(), cluster, settings)
        .await
        .map_err(|e| unreachable(e.into()))?;
    Ok((pods, client))
}

/// `(namespace, name)` of every workflow the store has unfinished: the ones whose pods a
/// starting server may find running.
async fn live_workflows(
    store: &store::Store,
) -> Result<std::collections::HashSet<(String, String)>, ServerError> {
    let rows = store.unfinished_workflows().await.map_err(|e| {
        ServerError::Config(config::ConfigError::Invalid(format!(
            "reading the store: {e}"
        )))
    })?;
    Ok(rows.into_iter().map(|r| (r.namespace, r.name)).collect())
}

/// The file in a server's home holding the token it made for itself (mode 0600): the CLI on the
/// same machine reads it, and so does the UI through the link the server prints.
pub const LOCAL_TOKEN_FILE: &str = "token";

/// The server's own token: read from `HOME/token`, or made there (random, mode 0600).
pub fn local_token(home: &std::path::Path) -> std::io::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = home.join(LOCAL_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 16 => return Ok(t.trim().to_string()),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} holds no token (at least 16 characters): remove it to make a new one",
                path.display()
            )))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let token: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let tmp = home.join(format!("{LOCAL_TOKEN_FILE}.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    // Two servers starting on one home at once: the first token stays.
    match std::fs::hard_link(&tmp, &path) {
        Ok(()) => {
            let _ = std::fs::remove_file(&tmp);
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let _ = std::fs::remove_file(&tmp);
            Ok(std::fs::read_to_string(&path)?.trim().to_string())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Run the server until SIGINT or SIGTERM. `ready` is called with the bound address once the
/// API accepts connections.
///
/// On a SQLite store the server leads from the start. On PostgreSQL it is one of possibly
/// several servers sharing the store (`standby`): it follows until it holds the lease.
pub async fn serve(
    cfg: ServerConfig,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServerError> {
    let token = cfg.check()?;
    let io = |what: String| move |source| ServerError::Io { what, source };
    std::fs::create_dir_all(&cfg.home).map_err(io(format!("creating {}", cfg.home.display())))?;
    // The home holds every tenant's logs, pods and the store: its owner's only.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg.home, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("making {} private", cfg.home.display())))?;
    }
    // No token configured and no issuer: the server makes its own at first start, so that
    // no other local user can call it (its steps run as root).
    let token = match token {
        None if cfg.auth.mode == config::AuthMode::Server => Some(
            local_token(&cfg.home).map_err(io(format!("the token in {}", cfg.home.display())))?,
        ),
        t => t,
    };
    let location = match &cfg.store {
        Some(url) => store::Location::parse(url),
        None => store::Location::Sqlite(cfg.home.join("onyx.db")),
    };
    let store = store::Store::connect(&location).await?;
    let audit = audit::AuditLog::start(cfg.audit.resolve(&cfg.home))
        .map_err(|e| ServerError::Config(config::ConfigError::Invalid(format!("[audit]: {e}"))))?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(io(format!("listening on {}", cfg.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the bound address".into()))?;
    let auth = Arc::new(
        auth::Auth::new(&cfg, token.clone())
            .await
            .map_err(|e| ServerError::Config(config::ConfigError::Invalid(e)))?,
    );
    let parts = Parts {
        cfg: Arc::new(cfg),
        store,
        audit,
        token,
        auth,
    };
    let app = if let store::Location::Postgres(_) = &location {
        let address = parts
            .cfg
            .standby
            .advertise
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let holder = format!(
            "{address} pid {} {}",
            std::process::id(),
            workflow_runtime::new_uid()
        );
        let lease = std::time::Duration::from_secs_f64(parts.cfg.standby.lease_seconds);
        let follower = parts.assemble(false).await?;
        let roles = standby::Roles::following(api::router(follower.state), address.clone());
        tracing::info!(
            "standby on {}: leading once the {} lease is free",
            location.describe(),
            standby::LEASE
        );
        let store = parts.store.clone();
        let (settled, known) = tokio::sync::oneshot::channel();
        tokio::spawn(standby::elect(
            roles.clone(),
            store,
            holder,
            address,
            lease,
            settled,
            move || async move {
                let leader = parts.assemble(true).await?;
                let state = leader.lead().await?;
                Ok::<_, ServerError>(api::router(state))
            },
        ));
        // Ready once requests can be routed: leading, or following a known leader. A leader
        // that died leaves its row behind, so a lone server settles within a lease too.
        let _ = tokio::time::timeout(lease * 2, known).await;
        standby::router(roles)
    } else {
        let state = parts.assemble(true).await?.lead().await?;
        api::router(state)
    };
    ready(addr);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        })
        .await
        .map_err(io("serving".into()))
}

/// What every role of the server is built from.
struct Parts {
    cfg: Arc<ServerConfig>,
    store: store::Store,
    audit: audit::AuditLog,
    token: Option<String>,
    auth: Arc<auth::Auth>,
}

/// A server's state, and what its controllers need once it leads.
struct Assembled {
    state: Arc<state::AppState>,
    /// The cluster's API, with `--executor kubernetes`: Argo's objects are synced with it.
    kubernetes: Option<kube::Client>,
    notifier: Arc<event_runtime::notify::Notifier>,
    ledger: tokio::sync::mpsc::UnboundedReceiver<cluster_shell::Ledger>,
}

impl Parts {
    /// The request handlers' state. `adopt`: the leader's, whose pods adopt those still
    /// running; a follower's runs nothing.
    async fn assemble(&self, adopt: bool) -> Result<Assembled, ServerError> {
        let cfg = &self.cfg;
        let mut kubernetes = None;
        let (executor, cluster, bmcs): (Arc<dyn workflow_runtime::Executor>, _, _) =
            match cfg.executor {
                config::ExecutorKind::Local => {
                    let (cluster, bmcs) = cluster(cfg)?;
                    let pods = local_executor::pods::Pods::new(cfg.pod_settings(), cluster, adopt)
                        .map_err(|source| ServerError::Io {
                            what: "installing the image stand-ins".into(),
                            source,
                        })?;
                    let cluster = pods.cluster.clone();
                    (Arc::new(pods), cluster, bmcs)
                }
                config::ExecutorKind::Kubernetes => {
                    let (pods, client) = kubernetes_pods(cfg, &self.store).await?;
                    kubernetes = Some(client);
                    let cluster = pods.cluster.clone();
                    (pods, cluster, Default::default())
                }
            };
        let power = maintenance_runner::Power::new(
            &cfg.power,
            bmcs,
            std::time::Duration::from_secs(cfg.maintenance.simulated_reboot_seconds),
        )?;
        let maint = Arc::new(maintenance_runner::Maintenance::new(
            cfg.maintenance.clone(),
            power,
        ));
        if adopt {
            tracing::info!(
                "{} GPU(s) to place pods on ({})",
                cluster.total_gpus(),
                match cfg.executor {
                    config::ExecutorKind::Local => format!("--cluster {}", cfg.cluster),
                    config::ExecutorKind::Kubernetes => "the Kubernetes cluster's nodes".into(),
                }
            );
        }
        let ledger = cluster.take_ledger().expect("the ledger is taken once");
        let notifier = Arc::new(event_runtime::notify::Notifier::new(
            &cfg.notifications,
            self.store.clone(),
        )?);
        let ctl = workflow_runtime::Controller::new(
            self.store.clone(),
            executor,
            cluster,
            Arc::new(event_runtime::event_bus::Announcer(notifier.clone())),
            self.audit.clone(),
        );
        let state = Arc::new(state::AppState {
            audit: self.audit.clone(),
            maint,
            ctl,
            cfg: cfg.clone(),
            token: self.token.clone(),
            auth: self.auth.clone(),
            notifier: notifier.clone(),
        });
        Ok(Assembled {
            state,
            kubernetes,
            notifier,
            ledger,
        })
    }
}

impl Assembled {
    /// Start the controllers: the usage ledger, notifications, every unfinished workflow
    /// resumed from its log, maintenance and cron.
    async fn lead(self) -> Result<Arc<state::AppState>, ServerError> {
        let Assembled {
            state,
            kubernetes,
            notifier,
            ledger,
        } = self;
        if let Some(client) = kubernetes {
            kubernetes_sync::start(state.clone(), client);
        }
        let ctl = state.ctl.clone();
        // Pods adopted from before a restart hold their GPUs again by now.
        tokio::spawn(usage::record(
            ctl.store.clone(),
            ctl.cluster().ledgered_pods(),
            ledger,
        ));
        let submitter: event_runtime::notify::Submitter = {
            let state = state.clone();
            Arc::new(move |ns: String, workflow: serde_json::Value| {
                let state = state.clone();
                Box::pin(async move {
                    match submit::submit(&state, &ns, workflow, &[], false).await {
                        // A retry after a crash finds its first submission (`notify`).
                        Ok(_) | Err(error::ApiError::AlreadyExists(_)) => {
                            event_runtime::notify::Outcome::Done
                        }
                        Err(
                            e @ (error::ApiError::InvalidArgument(_)
                            | error::ApiError::Forbidden(_)
                            | error::ApiError::FailedPrecondition(_)),
                        ) => event_runtime::notify::Outcome::GiveUp(e.to_string()),
                        Err(e) => event_runtime::notify::Outcome::Retry(e.to_string()),
                    }
                })
            })
        };
        tokio::spawn(event_runtime::notify::run(notifier.clone(), submitter));
        // Workflows that resource templates create go through the API's own submission: the
        // namespace's admission and Pod Security rules hold for them too.
        ctl.set_child_submitter({
            let state = state.clone();
            Arc::new(move |ns: String, workflow: serde_json::Value| {
                let state = state.clone();
                Box::pin(async move {
                    submit::submit(&state, &ns, workflow, &[], false)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
            })
        });
        tokio::spawn(event_runtime::event_bus::run(
            notifier,
            state.cfg.event_settings(),
        ));
        // Namespaces granted by approved requests keep their GPU quotas.
        for row in ctl.store.objects(requests::KIND, Some("")).await? {
            if let Some((ns, quota)) = requests::quota_of(&row.body) {
                ctl.cluster().grant_tenant(&ns, quota);
            }
        }
        state.auth.refresh_grants(&ctl.store, true).await;
        let recovered = ctl.recover().await.map_err(ServerError::Recover)?;
        if recovered > 0 {
            tracing::info!(
                "resumed {recovered} running workflow(s) from {}",
                ctl.store.location().describe()
            );
        }
        tokio::spawn(maintenance_runner::run(ctl.clone(), state.maint.clone()));
        tokio::spawn(cron::run(state.clone()));
        Ok(state)
    }
}
