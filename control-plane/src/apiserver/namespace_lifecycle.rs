//! The namespace finalizer: when a namespace is deleted (it turns Terminating and keeps the
//! `kubernetes` entry of `spec.finalizers`), delete everything in it, wait until it is empty
//! (pods get their grace period, objects their finalizers), then drop the finalizer so the
//! namespace itself goes. Runs inside the apiserver, reacting to namespace watch events and
//! rechecking terminating namespaces every second until they are gone.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::objects;
use super::resources::ResourceInfo;
use super::rest::{self, DeleteOptions, ObjectRef, WriteOptions};
use super::state::ApiState;
use super::status::ApiError;

/// The finalizer the apiserver owns in `spec.finalizers`.
const FINALIZER: &str = "kubernetes";
const RECHECK: Duration = Duration::from_secs(1);

/// Runs until `cancel`.
pub async fn run(state: Arc<ApiState>, cancel: CancellationToken) {
    loop {
        if let Err(error) = sweep(&state).await {
            tracing::warn!(%error, "namespace finalizer sweep failed");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// Finalizes every terminating namespace that still carries our finalizer.
async fn sweep(state: &ApiState) -> Result<(), ApiError> {
    let catalog = state.catalog();
    let Some(namespaces) = catalog.lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    let (all, _) = state
        .cache
        .list(&objects::collection_prefix(namespaces, ""));
    for namespace in all
        .iter()
        .filter(|ns| objects::is_deleting(ns) && has_finalizer(ns))
    {
        let name = objects::name(namespace).to_string();
        let remaining = delete_contents(state, catalog.all(), &name).await?;
        if remaining == 0 {
            remove_finalizer(state, namespaces, &name).await?;
            tracing::info!(namespace = %name, "namespace emptied and finalized");
        }
    }
    Ok(())
}

fn has_finalizer(namespace: &Value) -> bool {
    namespace
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|v| v == FINALIZER))
}

/// Deletes every object in `namespace`; returns how many are still there.
async fn delete_contents(
    state: &ApiState,
    resources: &[ResourceInfo],
    namespace: &str,
) -> Result<usize, ApiError> {
    let mut remaining = 0;
    let mut seen = std::collections::HashSet::new();
    for resource in resources
        .iter()
        .filter(|r| r.namespaced && r.verbs.iter().any(|v| v == "delete"))
    {
        if !seen.insert((resource.group.clone(), resource.plural.clone())) {
            continue;
        }
        let (items, _) = state
            .cache
            .list(&objects::collection_prefix(resource, namespace));
        remaining += items.len();
        for object in items.iter().filter(|o| !objects::is_deleting(o)) {
            let at = ObjectRef {
                resource,
                namespace,
                name: objects::name(object),
            };
            match rest::delete(state, at, &DeleteOptions::default()).await {
                Ok(_) => {}
                Err(error) if error.code == 404 || error.code == 409 => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(remaining)
}

async fn remove_finalizer(
    state: &ApiState,
    namespaces: &ResourceInfo,
    name: &str,
) -> Result<(), ApiError> {
    let at = ObjectRef {
        resource: namespaces,
        namespace: "",
        name,
    };
    let result = rest::guaranteed_update(
        state,
        at,
        &WriteOptions::default(),
        |current| {
            let mut wanted = current.clone();
            let kept: Vec<Value> = current
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .map(|f| f.iter().filter(|v| *v != FINALIZER).cloned().collect())
                .unwrap_or_default();
            wanted["spec"]["finalizers"] = json!(kept);
            Ok(Some(wanted))
        },
        "finalize",
    )
    .await;
    match result {
        Ok(_) => Ok(()),
        Err(error) if error.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}
