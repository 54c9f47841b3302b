//! ONYX's executor on a Kubernetes cluster (`onyx server --executor kubernetes`): each step's
//! pod is made as Argo's controller makes it, placed and bound by ONYX's scheduler, and
//! followed through the API to its end. The cluster's kubelets run the pods; ONYX runs no
//! agent of its own on the nodes.
//!
//! - [`pod_shape`]: the Pod of a step (pure).
//! - [`pod_status`]: what a Pod's status says of its step (pure).
//! - [`nodes`]: the cluster's Nodes as the scheduler sees them (pure).
//! - [`executor`]: the executor itself, behind `workflow_runtime::Executor`.
//! - [`emissary`]: `onyx emissary`, ONYX's executor inside a pod (outputs to the termination
//!   message).

pub mod emissary;
pub mod executor;
pub mod nodes;
pub mod pod_shape;
pub mod pod_status;

pub use executor::{KubernetesExecutor, KubernetesSettings};

/// A client for the cluster: from `kubeconfig` when given, else the pod's in-cluster
/// configuration (its ServiceAccount), else `$KUBECONFIG` or `~/.kube/config`.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let bad = |source| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let kc = kube::config::Kubeconfig::read_from(path).map_err(bad)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(bad)?
        }
        None => kube::Config::infer().await.map_err(ClusterError::Infer)?,
    };
    Ok(kube::Client::try_from(config)?)
}

/// Why ONYX cannot reach or read the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no cluster to run pods on (no in-cluster ServiceAccount, no $KUBECONFIG, no ~/.kube/config): {0}")]
    Infer(kube::config::InferConfigError),
    #[error("the Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

/// The cluster's Nodes, read once, as ONYX's scheduler sees them (what of each it left out is
/// logged).
pub async fn node_specs(client: &kube::Client) -> Result<Vec<scheduler::NodeSpec>, ClusterError> {
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let list = api.list(&Default::default()).await?;
    let mut specs = Vec::new();
    for n in list.items {
        let (spec, left_out) = nodes::node_spec(&serde_json::to_value(&n).unwrap_or_default());
        for l in left_out {
            tracing::warn!("{l}");
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// The cluster's Nodes, read once, as ONYX's scheduler places pods on them.
pub async fn read_nodes(
    client: &kube::Client,
    policy: cluster_shell::SchedulingPolicy,
) -> Result<cluster_shell::Cluster, ClusterError> {
    Ok(cluster_shell::Cluster::kubernetes_nodes(
        node_specs(client).await?,
        policy,
    ))
}

#[cfg(test)]
mod tests;
