//! The server's configuration file (TOML) and the per-namespace policies it sets.
//!
//! ```toml
//! listen = "127.0.0.1:2746"
//! parallelism = 16                 # pods running at once, all namespaces (0: no limit)
//! auth_token_file = "/etc/onyx/token"
//! max_body_bytes = 8388608
//!
//! [policy]                         # every namespace, unless it has its own
//! required_parameters = ["ticket_id"]
//!
//! [namespaces.sandbox]
//! parallelism = 4
//! required_parameters = []
//! gpu_quota = 8                    # GPUs the namespace's pods hold at once
//! weight = 2                       # its weight in fair share across tenants
//! no_egress = true                 # pods without network (default: only onyx-data)
//! max_gpus_per_step = 8            # admission: refused with the rule, field and value
//! max_parallel_pods = 16           # the largest spec.parallelism a workflow may set
//! allowed_queues = ["shared"]
//! allowed_priority_classes = ["normal"]
//! allowed_registries = ["harbor.onyx.internal/"]
//!
//! [queues.research]                # besides the built-in default, dedicated and shared
//! weight = 2
//! capability_gpus = 32
//! unit = "any"                     # any | node (whole nodes, exclusive) | slice (MIG, fractions)
//!
//! guarantee_gpus = 8               # kept for research: other queues never take what it does not use
//!
//! [queues.vision]                  # hierarchical: research's capability bounds it and its siblings
//! parent = "research"
//!
//! [priority_classes]
//! urgent = 1000
//!
//! [maintenance]                    # the spec's window: first Friday, 2 hours
//! schedule = "0 2 * * FRI#1"
//! timezone = "Asia/Tokyo"
//! window_minutes = 120
//! automatic = true                 # roll through the nodes when a window opens
//! grace_seconds = 300
//! reboot_timeout_seconds = 900
//!
//! [prices]                         # for the usage report's cost (onyx usage report)
//! currency = "JPY"
//! gpu_hour = 450.0                 # a whole GPU for an hour (a MIG 1g instance is 1/7 of it)
//! cpu_hour = 5.0                   # a requested core for an hour
//! storage_gb_month = 3.0           # a GB of artifacts kept for a month
//!
//! [power]                          # the nodes' BMCs ({node}, {bmc}, {action}: cycle|off|status)
//! command = "ipmitool -I lanplus -H {bmc} -U admin -f /etc/onyx/bmc.pass chassis power {action}"
//!
//! [audit]                          # every API change and workflow event, as JSON lines
//! dir = "/var/lib/onyx/audit"      # default: $ONYX_HOME/audit
//! max_bytes = 104857600            # rotate past this size
//! keep_days = 183                  # the spec's six months
//! loki_url = "http://loki.onyx.internal:3100"   # also push every line to Loki
//! loki_buffer_lines = 10000        # held while Loki is away; past it the oldest are dropped, counted
//!
//! [[notifications.webhooks]]        # the spec's Triggers: told when workflows end
//! name = "ops-slack"
//! url = "https://hooks.slack.com/services/…"
//! format = "slack"                 # slack | generic (ONYX's JSON event)
//! phases = ["Failed", "Error"]     # default: Succeeded, Failed, Error (Running too, if listed)
//! namespaces = []                  # default: every namespace
//! secret_file = "/etc/onyx/webhook-secret"  # HMAC-SHA256 of the body in X-Onyx-Signature-256
//!
//! [power.redfish]                  # or Redfish, at each node's `bmc` address of the cluster file
//! scheme = "https"
//! port = 443
//! system = "1"                     # /redfish/v1/Systems/1 (default: the first member)
//! timeout_seconds = 10             # per request: a BMC that does not answer fails its node only
//! off_wait_seconds = 60            # the emergency stop reads PowerState back until Off
//! credentials_file = "/etc/onyx/bmc-credentials.toml"  # [default] and [nodes.NAME]: username, password
//! ```

use event_runtime::{EventSourcesConfig, NotificationsConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespacePolicy {
    /// Parameters every workflow must carry in `spec.arguments.parameters`, with a value.
    #[serde(default = "default_required")]
    pub required_parameters: Vec<String>,
    /// Pods of this namespace running at once (0: no limit of its own).
    #[serde(default)]
    pub parallelism: usize,
    /// GPUs this namespace's pods may hold at once (a tenant's quota; none: no quota).
    #[serde(default)]
    pub gpu_quota: Option<u32>,
    /// The namespace's weight in fair share across tenants.
    #[serde(default = "one")]
    pub weight: u32,
    /// Its pods run without network (a network namespace with only loopback): the spec's
    /// `onyx-data` rule. Unset: true for `onyx-data`, false elsewhere.
    #[serde(default)]
    pub no_egress: Option<bool>,
    /// Admission rules (Gatekeeper's and Harbor's part in the spec): most GPUs per step.
    #[serde(default)]
    pub max_gpus_per_step: Option<f64>,
    /// The largest `spec.parallelism` a workflow may set.
    #[serde(default)]
    pub max_parallel_pods: Option<i64>,
    #[serde(default)]
    pub allowed_queues: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_priority_classes: Option<Vec<String>>,
    /// Image prefixes allowed, such as `harbor.onyx.internal/`.
    #[serde(default)]
    pub allowed_registries: Option<Vec<String>>,
    /// The Pod Security Standards level its pods are held to, as Kubernetes' Pod Security
    /// admission: `baseline` (default: no hostPath, privileged, host namespaces or added
    /// capabilities), `restricted`, or `privileged` (anything; for trusted namespaces only).
    #[serde(default)]
    pub pod_security: admission::PodSecurityLevel,
}

/// The spec's data-governance namespace, which runs without network unless configured.
pub const DATA_NAMESPACE: &str = "onyx-data";

impl NamespacePolicy {
    pub fn admission(&self) -> admission::Rules {
        admission::Rules {
            max_gpus_per_step: self.max_gpus_per_step,
            max_parallel_pods: self.max_parallel_pods,
            allowed_queues: self.allowed_queues.clone(),
            allowed_priority_classes: self.allowed_priority_classes.clone(),
            allowed_registries: self.allowed_registries.clone(),
        }
    }
}

fn one() -> u32 {
    1
}

fn default_required() -> Vec<String> {
    vec![audit::TICKET_PARAMETER.into()]
}

impl Default for NamespacePolicy {
    fn default() -> Self {
        NamespacePolicy {
            required_parameters: default_required(),
            parallelism: 0,
            gpu_quota: None,
            no_egress: None,
            max_gpus_per_step: None,
            max_parallel_pods: None,
            allowed_queues: None,
            allowed_priority_classes: None,
            allowed_registries: None,
            weight: 1,
            pod_security: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// State (SQLite), pods and artifacts live here.
    #[serde(default = "default_home")]
    pub home: PathBuf,
    /// Pods running at once across all namespaces (0: no limit).
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// A file holding the bearer token every API request must carry.
    #[serde(default)]
    pub auth_token_file: Option<PathBuf>,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Where pods are placed: `local` (this machine's GPUs, through NVML), a built-in cluster
    /// (`onyx`: the seed's 16 GPU nodes, virtual; steps run here) or a cluster file.
    #[serde(default = "default_cluster")]
    pub cluster: String,
    /// Where steps run: this machine (`local`) or the nodes of a Kubernetes cluster, placed by
    /// ONYX's scheduler (`kubernetes`; `cluster` is then read from the cluster's API).
    #[serde(default)]
    pub executor: ExecutorKind,
    #[serde(default)]
    pub kubernetes: KubernetesConfig,
    #[serde(default)]
    pub policy: NamespacePolicy,
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespacePolicy>,
    /// Scheduling queues; `default`, `dedicated` (whole nodes) and `shared` (MIG slices) exist
    /// unless configured otherwise.
    #[serde(default)]
    pub queues: BTreeMap<String, cluster_shell::QueueConfig>,
    /// Priority classes by name (`priorityClassName`), higher first.
    #[serde(default)]
    pub priority_classes: BTreeMap<String, i64>,
    /// Let the scheduler re-partition idle MIG GPUs to fit waiting pods.
    #[serde(default)]
    pub dynamic_mig: bool,
    /// Evict lower-priority gangs for higher-priority ones in a queue, and reclaim from queues
    /// over their share (Volcano's preempt and reclaim actions).
    #[serde(default)]
    pub preemption: bool,
    /// Which Volcano's scheduling decisions to follow where its versions differ: "1.7" (the
    /// spec's, the default) or "1.10".
    #[serde(default)]
    pub volcano: Option<String>,
    /// The maintenance window and its rolling reboot.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// How to reach the nodes' BMCs (reboots, the emergency stop's power-off).
    #[serde(default)]
    pub power: PowerConfig,
    /// What GPU- and CPU-hours cost, for the usage report.
    #[serde(default)]
    pub prices: Prices,
    /// Webhooks told when workflows reach a phase (the spec's Triggers).
    #[serde(default)]
    pub notifications: NotificationsConfig,
    /// The audit trail: where, how long, and Loki.
    #[serde(default)]
    pub audit: AuditSettings,
    /// Where state lives: a PostgreSQL URL (`postgres://…`: production mode, where several
    /// servers share it with one leader) or a SQLite file; `$home/onyx.db` when unset.
    #[serde(default)]
    pub store: Option<String>,
    /// Hot standby on a shared PostgreSQL: the lease, and where this server is reached.
    #[serde(default)]
    pub standby: StandbyConfig,
    /// Who may call the API: Argo's auth modes, the OpenID issuer, and namespace grants.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The default artifact repository (Argo's `artifactRepository`): an S3 bucket, or
    /// `$home/artifacts` when unset.
    #[serde(default)]
    pub artifact_repository: ArtifactRepositoryConfig,
    /// Named artifact repositories a workflow picks with `artifactRepositoryRef.key` (Argo's
    /// `artifact-repositories` ConfigMap's keys).
    #[serde(default)]
    pub artifact_repositories: BTreeMap<String, ArtifactRepositoryConfig>,
    /// Where pods' `secretKeyRef`s and secret volumes are read from.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// `[event_sources]`: where webhook EventSources may listen.
    #[serde(default)]
    pub event_sources: EventSourcesConfig,
    /// The `onyx` executable that runs pods (`onyx exec-pod`); the running one by default.
    #[serde(skip)]
    pub exe: PathBuf,
    /// What one workflow may grow to: `[limits] max_stack_depth` (Argo's 100),
    /// `max_loop_items` (100,000 items in one loop) and `max_nodes` (200,000). A workflow
    /// past one ends Error, naming it.
    #[serde(default)]
    pub limits: workflow_engine::EngineLimits,
    /// The file this config was read from.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:2746".parse().expect("a valid address")
}
fn default_home() -> PathBuf {
    PathBuf::from(".onyx")
}
fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 4)
}
/// Where a server's steps run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Sandboxed processes on this machine.
    #[default]
    Local,
    /// Pods on a Kubernetes cluster's nodes.
    Kubernetes,
}

impl std::str::FromStr for ExecutorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(ExecutorKind::Local),
            "kubernetes" => Ok(ExecutorKind::Kubernetes),
            _ => Err(format!("{s}: expected local or kubernetes")),
        }
    }
}

/// How the Kubernetes executor reaches its cluster and what it puts in pods.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig; without one, the pod's in-cluster ServiceAccount, else `$KUBECONFIG` or
    /// `~/.kube/config`.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// ONYX's executor image: with it, each step's command runs under `onyx emissary`, which
    /// reports `result` and output parameters; without it, containers run as written and a
    /// step's result is its exit code.
    #[serde(default)]
    pub executor_image: Option<String>,
}

fn default_cluster() -> String {
    "local".into()
}
fn default_max_body() -> usize {
    8 << 20
}

/// `[artifact_repository]`: Argo's artifact repository, S3 only for now.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRepositoryConfig {
    #[serde(default)]
    pub s3: Option<artifact_repo::S3Config>,
}

/// `[secrets]`: Kubernetes Secrets for pods.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// A TOML file: `[NAMESPACE.SECRET]` tables of keys and values. Read by each pod's
    /// wrapper when the pod starts; its values are never written to the store or a log.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// Argo Server's `--auth-mode`s.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The server acts as itself: no user identity (a static bearer token may still be
    /// required, `auth_token_file`).
    #[default]
    Server,
    /// Each call carries the user's ID token from the OpenID issuer (`Authorization: Bearer`).
    Client,
    /// As `client`, and the UI signs users in through the issuer (authorization code with
    /// PKCE, callback `/oauth2/callback`), keeping the token in a cookie.
    Sso,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<AuthMode, String> {
        match s {
            "server" => Ok(AuthMode::Server),
            "client" => Ok(AuthMode::Client),
            "sso" => Ok(AuthMode::Sso),
            _ => Err(format!("auth mode {s:?}: expected server, client or sso")),
        }
    }
}

/// `[auth]`: the OpenID issuer and who may do what where.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub mode: AuthMode,
    /// The OpenID issuer's URL (Keycloak: `https://HOST/realms/REALM`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// The client id registered with the issuer: tokens must carry it in `aud`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `sso`: a file holding the client's secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// `sso`: this server's callback as the issuer knows it (`https://HOST/oauth2/callback`).
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// The token claim listing the user's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// Groups whose members may do anything, cluster operations included.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// Which groups may use which verbs in which namespaces.
    #[serde(default)]
    pub grants: Vec<access::Grant>,
}

fn default_groups_claim() -> String {
    "groups".into()
}
fn default_clock_skew() -> u64 {
    30
}

/// The controllers' lease, when servers share a PostgreSQL store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyConfig {
    /// How long the leader's lease lasts unrenewed: a standby takes over this long after the
    /// leader's last renewal (renewed four times a lease).
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: f64,
    /// This server's API address as the others reach it (they forward writes to the leader);
    /// `http://LISTEN` by default.
    #[serde(default)]
    pub advertise: Option<String>,
}

fn default_lease_seconds() -> f64 {
    2.0
}

impl Default for StandbyConfig {
    fn default() -> Self {
        StandbyConfig {
            lease_seconds: default_lease_seconds(),
            advertise: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            home: default_home(),
            parallelism: default_parallelism(),
            auth_token_file: None,
            max_body_bytes: default_max_body(),
            cluster: default_cluster(),
            executor: ExecutorKind::default(),
            kubernetes: KubernetesConfig::default(),
            policy: NamespacePolicy::default(),
            namespaces: BTreeMap::new(),
            queues: BTreeMap::new(),
            priority_classes: BTreeMap::new(),
            dynamic_mig: false,
            preemption: false,
            volcano: None,
            maintenance: Default::default(),
            power: Default::default(),
            prices: Default::default(),
            notifications: Default::default(),
            audit: Default::default(),
            store: None,
            standby: Default::default(),
            auth: Default::default(),
            artifact_repository: Default::default(),
            artifact_repositories: BTreeMap::new(),
            secrets: Default::default(),
            event_sources: Default::default(),
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("onyx")),
            limits: Default::default(),
            source: None,
        }
    }
}

impl ServerConfig {
    /// Where webhook EventSources may listen, and the secrets their `authSecret`s name.
    pub fn event_settings(&self) -> event_runtime::Settings {
        event_runtime::Settings {
            listen_address: self.event_sources.listen_address,
            ports: self.event_sources.ports,
            secrets_file: self.secrets.file.clone(),
        }
    }

    /// Where and how this machine's pods run, as the local executor takes it.
    pub fn pod_settings(&self) -> local_executor::pods::PodSettings {
        let namespaces = self.namespaces.keys().map(String::as_str);
        local_executor::pods::PodSettings {
            home: self.home.clone(),
            exe: self.exe.clone(),
            repository: self
                .artifact_repository
                .s3
                .clone()
                .map(artifact_repo::Repository::S3),
            repositories: self
                .artifact_repositories
                .iter()
                .filter_map(|(k, r)| {
                    Some((k.clone(), artifact_repo::Repository::S3(r.s3.clone()?)))
                })
                .collect(),
            secrets_file: self.secrets.file.clone(),
            hidden: self.private_files(),
            parallelism: self.parallelism,
            namespace_parallelism: self
                .namespaces
                .iter()
                .map(|(ns, p)| (ns.clone(), p.parallelism))
                .collect(),
            no_egress: namespaces
                .chain([DATA_NAMESPACE])
                .filter(|ns| self.no_egress(ns))
                .map(str::to_string)
                .collect(),
            privileged: self
                .namespaces
                .iter()
                .filter(|(_, p)| p.pod_security == admission::PodSecurityLevel::Privileged)
                .map(|(ns, _)| ns.clone())
                .collect(),
        }
    }

    /// Files no pod may see: this config, and the token, secrets and credentials it names.
    pub fn private_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = [
            self.source.as_ref(),
            self.auth_token_file.as_ref(),
            self.secrets.file.as_ref(),
            self.auth.client_secret_file.as_ref(),
            self.power
                .redfish
                .as_ref()
                .and_then(|r| r.credentials_file.as_ref()),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        out.extend(
            self.notifications
                .webhooks
                .iter()
                .filter_map(|w| w.secret_file.clone()),
        );
        out.iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect()
    }

    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut c: ServerConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        c.exe = ServerConfig::default().exe;
        c.source = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        Ok(c)
    }

    /// What the scheduler needs from this configuration.
    pub fn scheduling_policy(&self) -> cluster_shell::SchedulingPolicy {
        let mut queues = cluster_shell::builtin_queues();
        queues.extend(self.queues.clone());
        cluster_shell::SchedulingPolicy {
            queues,
            priority_classes: self.priority_classes.clone(),
            tenants: self
                .namespaces
                .iter()
                .map(|(ns, p)| (ns.clone(), (p.gpu_quota, p.weight.max(1))))
                .collect(),
            dynamic_mig: self.dynamic_mig,
            preemption: self.preemption,
            volcano: self.volcano.clone(),
        }
    }

    pub fn policy(&self, namespace: &str) -> &NamespacePolicy {
        self.namespaces.get(namespace).unwrap_or(&self.policy)
    }

    /// Whether the namespace's pods run without network.
    pub fn no_egress(&self, namespace: &str) -> bool {
        self.policy(namespace)
            .no_egress
            .unwrap_or(namespace == DATA_NAMESPACE)
    }

    /// The bearer token, if authentication is configured.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        let Some(f) = &self.auth_token_file else {
            return Ok(None);
        };
        let t = std::fs::read_to_string(f)
            .map_err(|e| ConfigError::Invalid(format!("auth_token_file {}: {e}", f.display())))?;
        let t = t.trim().to_string();
        if t.len() < 16 {
            return Err(ConfigError::Invalid(format!(
                "auth_token_file {}: the token must be at least 16 characters",
                f.display()
            )));
        }
        Ok(Some(t))
    }

    /// Safe by default: no listening beyond this machine without authentication.
    pub fn check(&self) -> Result<Option<String>, ConfigError> {
        let token = self.token()?;
        if let Some(v) = self
            .volcano
            .as_deref()
            .filter(|v| !["1.7", "1.10"].contains(v))
        {
            return Err(ConfigError::Invalid(format!(
                "volcano = {v:?}: expected \"1.7\" (the default) or \"1.10\""
            )));
        }
        if self.auth.mode != AuthMode::Server {
            for (field, set) in [
                ("issuer", self.auth.issuer.is_some()),
                ("client_id", self.auth.client_id.is_some()),
            ] {
                if !set {
                    return Err(ConfigError::Invalid(format!(
                        "[auth] mode {:?} needs auth.{field}",
                        self.auth.mode
                    )));
                }
            }
            for g in &self.auth.grants {
                g.check()
                    .map_err(|e| ConfigError::Invalid(format!("[auth] {e}")))?;
            }
        }
        if self.auth.mode == AuthMode::Sso {
            for (field, set) in [
                ("client_secret_file", self.auth.client_secret_file.is_some()),
                ("redirect_url", self.auth.redirect_url.is_some()),
            ] {
                if !set {
                    return Err(ConfigError::Invalid(format!(
                        "[auth] mode \"sso\" needs auth.{field}"
                    )));
                }
            }
        }
        for (key, r) in &self.artifact_repositories {
            if r.s3.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "artifact_repositories.{key}: no repository (expected an [artifact_repositories.{key}.s3] table)"
                )));
            }
        }
        if let Some(f) = &self.secrets.file {
            // Read by every pod's wrapper; checked here so that a broken file is said at start.
            pod_secrets::Secrets::load(f).map_err(ConfigError::Invalid)?;
        }
        let lease = self.standby.lease_seconds;
        if !(lease.is_finite() && (0.2..=3600.0).contains(&lease)) {
            return Err(ConfigError::Invalid(format!(
                "standby.lease_seconds is {lease}: expected seconds between 0.2 and 3600"
            )));
        }
        if !self.listen.ip().is_loopback() && token.is_none() && self.auth.mode == AuthMode::Server
        {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on {}: it is not a loopback address and no authentication is configured; set auth_token_file in the config file (a file holding a bearer token) or listen on 127.0.0.1",
                self.listen
            )));
        }
        Ok(token)
    }
}

/// Prices of the usage report (none set: every cost is 0).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    // Read as the config file writes them (`gpu_hour`); reports show them the same way.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// A whole GPU for an hour; a MIG instance or a fraction pays its share.
    #[serde(default)]
    pub gpu_hour: f64,
    /// A requested CPU core for an hour.
    #[serde(default)]
    pub cpu_hour: f64,
    /// A GB (10^9 bytes) of artifacts stored for a month (730 hours).
    #[serde(default)]
    pub storage_gb_month: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            currency: default_currency(),
            gpu_hour: 0.0,
            cpu_hour: 0.0,
            storage_gb_month: 0.0,
        }
    }
}

fn default_currency() -> String {
    "USD".into()
}

/// The monthly maintenance window (spec §10): when it opens and how the rollout paces itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// Cron schedule of the windows' starts (the spec: the first Friday of each month).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default = "default_minutes")]
    pub window_minutes: i64,
    /// Start the rollout when a window opens (otherwise `onyx maintenance start`).
    #[serde(default)]
    pub automatic: bool,
    /// What a node's pods get to end on their own before they are evicted.
    #[serde(default = "default_grace")]
    pub grace_seconds: i64,
    /// How long a node may take to come back before the rollout stops.
    #[serde(default = "default_reboot")]
    pub reboot_timeout_seconds: i64,
    /// Without a power command: how long a simulated reboot takes.
    #[serde(default = "default_simulated")]
    pub simulated_reboot_seconds: u64,
}

fn default_schedule() -> String {
    ::maintenance::DEFAULT_SCHEDULE.into()
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_minutes() -> i64 {
    120
}
fn default_grace() -> i64 {
    300
}
fn default_reboot() -> i64 {
    900
}
fn default_simulated() -> u64 {
    5
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            schedule: default_schedule(),
            timezone: default_timezone(),
            window_minutes: default_minutes(),
            automatic: false,
            grace_seconds: default_grace(),
            reboot_timeout_seconds: default_reboot(),
            simulated_reboot_seconds: default_simulated(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerConfig {
    /// A shell command that acts on a node's power through its BMC, with `{node}`, `{bmc}`
    /// and `{action}` (cycle, off, status) filled in. `status` must print `on` when the node
    /// is powered.
    #[serde(default)]
    pub command: Option<String>,
    /// Drive the BMCs over Redfish instead of a command.
    #[serde(default)]
    pub redfish: Option<RedfishConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedfishConfig {
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// The BMCs' Redfish port (the scheme's default when unset).
    #[serde(default)]
    pub port: Option<u16>,
    /// The ComputerSystem's id or path (`{node}` is the node's name); default: the first
    /// member of `/redfish/v1/Systems`.
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default = "default_bmc_timeout")]
    pub timeout_seconds: u64,
    #[serde(default = "default_off_wait")]
    pub off_wait_seconds: u64,
    /// A TOML file of BMC logins: `[default]` and `[nodes.NAME]`, each `username`, `password`.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

fn default_scheme() -> String {
    "https".into()
}

fn default_bmc_timeout() -> u64 {
    10
}

fn default_off_wait() -> u64 {
    60
}

/// BMC logins, kept out of the config file (which may be readable by more people).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcCredentials {
    #[serde(default)]
    pub default: Option<Login>,
    #[serde(default)]
    pub nodes: BTreeMap<String, Login>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl BmcCredentials {
    pub fn load(path: &Path) -> Result<BmcCredentials, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Invalid(format!(
                "power.redfish.credentials_file {}: {e}",
                path.display()
            ))
        })?;
        toml::from_str(&text).map_err(|e| {
            ConfigError::Invalid(format!(
                "power.redfish.credentials_file {}: {e}",
                path.display()
            ))
        })
    }

    pub fn of(&self, node: &str) -> Option<&Login> {
        self.nodes.get(node).or(self.default.as_ref())
    }
}

#[cfg(test)]
mod tests;

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_audit_bytes")]
    pub max_bytes: u64,
    #[serde(default = "default_keep_days")]
    pub keep_days: u64,
    #[serde(default)]
    pub loki_url: Option<String>,
    #[serde(default)]
    pub loki_labels: BTreeMap<String, String>,
    #[serde(default = "default_loki_buffer")]
    pub loki_buffer_lines: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            dir: None,
            max_bytes: default_audit_bytes(),
            keep_days: default_keep_days(),
            loki_url: None,
            loki_labels: BTreeMap::new(),
            loki_buffer_lines: default_loki_buffer(),
        }
    }
}

fn default_audit_bytes() -> u64 {
    100 * 1024 * 1024
}

fn default_keep_days() -> u64 {
    183
}

fn default_loki_buffer() -> usize {
    10_000
}

impl AuditSettings {
    /// The audit crate's configuration, with the directory under `home` by default.
    pub fn resolve(&self, home: &Path) -> audit::AuditConfig {
        audit::AuditConfig {
            dir: self.dir.clone().unwrap_or_else(|| home.join("audit")),
            max_bytes: self.max_bytes,
            keep_days: self.keep_days,
            loki: self.loki_url.as_ref().map(|url| audit::LokiConfig {
                url: url.clone(),
                labels: self
                    .loki_labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                buffer_lines: self.loki_buffer_lines,
                timeout: std::time::Duration::from_secs(10),
            }),
        }
    }
}
