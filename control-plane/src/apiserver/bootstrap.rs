//! What a fresh apiserver makes sure exists at every start, as kube-apiserver's bootstrap
//! controllers do: the system namespaces, the system PriorityClasses, the RBAC policy, the
//! Service allocations and the `kubernetes` Service. Idempotent: existing objects are left alone.

use serde_json::json;

use super::admission::IMMORTAL_NAMESPACES;
use super::rest::{self, WriteOptions};
use super::state::ApiState;
use super::status::ApiError;
use super::{kubernetes_service, service_allocation, service_rest};

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

/// The PriorityClasses every cluster has, as kube-apiserver creates them.
const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// Creates `system-node-critical` and `system-cluster-critical` when missing.
pub async fn ensure_system_priority_classes(state: &ApiState) -> Result<(), ApiError> {
    let catalog = state.catalog();
    let Some(classes) = catalog.lookup("scheduling.k8s.io", "v1", "priorityclasses") else {
        return Ok(());
    };
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        let object = json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "globalDefault": false,
            "preemptionPolicy": "PreemptLowerPriority",
            "description": description,
        });
        match rest::create(state, classes, "", object, &WriteOptions::default()).await {
            Ok(_) => tracing::info!(priority_class = name, "created system priority class"),
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

/// Checks the service ranges, repairs the allocation records against the stored Services and
/// reconciles the `kubernetes` Service (a failure there is logged: the API still serves).
pub async fn ensure_service_allocations(state: &ApiState) -> Result<(), super::Error> {
    state
        .service_allocations
        .check_config()
        .map_err(|e| super::Error::Setup(format!("--service-cluster-ip-range: {e}")))?;
    service_rest::repair(state, service_allocation::LEAK_GRACE)
        .await
        .map_err(|e| super::Error::Setup(format!("repairing service allocations: {e}")))?;
    if let Err(error) = kubernetes_service::reconcile(state).await {
        tracing::error!(%error, "could not reconcile the kubernetes service");
    }
    Ok(())
}
