//! The API client of keel-scheduler and keel-controller-manager: a kube-rs `Client` built from
//! a kubeconfig file (or, without one, from the in-cluster service account or
//! $KUBECONFIG, as kube-rs infers).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: kube::config::KubeconfigError,
    },
    #[error("no kubeconfig given and none could be inferred: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("building the API client: {0}")]
    Client(#[from] kube::Error),
}

/// A client for the cluster of `kubeconfig` (its current context), or the inferred one.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let loaded = Kubeconfig::read_from(path).map_err(|source| ClientError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            Config::from_custom_kubeconfig(loaded, &KubeConfigOptions::default())
                .await
                .map_err(|source| ClientError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?
        }
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}
