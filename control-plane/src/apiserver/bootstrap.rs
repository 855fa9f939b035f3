//! What a fresh apiserver makes sure exists at every start, as kube-apiserver's bootstrap
//! controllers do: the system namespaces. Idempotent: existing objects are left alone.

use serde_json::json;

use super::admission::IMMORTAL_NAMESPACES;
use super::rest::{self, WriteOptions};
use super::state::ApiState;
use super::status::ApiError;

/// Creates the namespaces every cluster has (default, kube-system, kube-public, kube-node-lease).
pub async fn ensure_system_namespaces(state: &ApiState) -> Result<(), ApiError> {
    let catalog = state.catalog();
    let Some(namespaces) = catalog.lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    for name in IMMORTAL_NAMESPACES {
        let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match rest::create(state, namespaces, "", object, &WriteOptions::default()).await {
            Ok(_) => tracing::info!(namespace = name, "created system namespace"),
            Err(error) if error.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Creates the bootstrap ClusterRoles and ClusterRoleBindings that are missing.
pub async fn ensure_rbac_policy(state: &ApiState) -> Result<(), ApiError> {
    let catalog = state.catalog();
    let kinds = [
        (
            "clusterroles",
            super::auth::bootstrap_policy::cluster_roles(),
        ),
        (
            "clusterrolebindings",
            super::auth::bootstrap_policy::cluster_role_bindings(),
        ),
    ];
    for (plural, objects) in kinds {
        let Some(resource) = catalog.lookup("rbac.authorization.k8s.io", "v1", plural) else {
            continue;
        };
        for object in objects {
            match rest::create(state, resource, "", object, &WriteOptions::default()).await {
                Ok(_) => {}
                Err(error) if error.code == 409 => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(())
}
