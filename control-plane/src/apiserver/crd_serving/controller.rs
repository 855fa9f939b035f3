//! The CRD controller: follows CRDs in the watch cache; on every change decides which names are
//! accepted, swaps in the catalog, served types and OpenAPI documents, writes each CRD's
//! status, and finalizes deleted CRDs (deletes their custom resources, then drops the cleanup
//! finalizer).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::{CLEANUP_FINALIZER, CRD_GROUP, CRD_PLURAL, ServedCrds, ServedType, is_builtin};
use crate::apiserver::catalog::Catalog;
use crate::apiserver::crd::naming::{self, NameConflict};
use crate::apiserver::crd::{CustomResourceType, definition};
use crate::apiserver::objects;
use crate::apiserver::openapi::{self, CrdSchemas, OpenApiDocs};
use crate::apiserver::resources::{ResourceInfo, builtin_resources, version_priority};
use crate::apiserver::rest::{self, DeleteOptions, ObjectRef, WriteOptions};
use crate::apiserver::state::ApiState;
use crate::apiserver::status::ApiError;
use crate::apiserver::table;

/// How often a CRD being deleted is rechecked while its custom resources go.
const CLEANUP_RECHECK: Duration = Duration::from_secs(1);
/// A full resync when nothing happens, in case an event was missed.
const IDLE_RESYNC: Duration = Duration::from_secs(30);
/// How long cleanup waits for the watch cache to see its own deletions.
const CACHE_CATCH_UP: Duration = Duration::from_secs(3);

/// Serves the CRDs already stored, then keeps following CRD changes until `cancel`.
pub async fn start(state: Arc<ApiState>, cancel: CancellationToken) {
    let mut controller = Controller::default();
    // Serve before listening; statuses and cleanups wait for the loop.
    controller.serve_stored(&state).await;
    tokio::spawn(async move { controller.run(state, cancel).await });
}

#[derive(Default)]
struct Controller {
    /// What the served set was built from, to skip rebuilding when only statuses changed.
    fingerprint: Option<String>,
}

fn crd_resource(state: &ApiState) -> Option<ResourceInfo> {
    state.catalog().lookup(CRD_GROUP, "v1", CRD_PLURAL).cloned()
}

impl Controller {
    async fn run(mut self, state: Arc<ApiState>, cancel: CancellationToken) {
        let Some(crds) = crd_resource(&state) else {
            return;
        };
        let prefix = objects::resource_prefix(&crds);
        loop {
            let mut live = match state.cache.subscribe(&prefix, None) {
                Ok(subscription) => subscription.live,
                Err(error) => {
                    tracing::warn!(%error, "CRD controller cannot watch CRDs");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(CLEANUP_RECHECK) => continue,
                    }
                }
            };
            loop {
                let cleaning = self.sync(&state).await;
                let wait = if cleaning {
                    CLEANUP_RECHECK
                } else {
                    IDLE_RESYNC
                };
                let changed = async {
                    loop {
                        match live.recv().await {
                            Ok(event) if event.key.starts_with(&prefix) => return true,
                            Ok(_) => {}
                            Err(RecvError::Lagged(_)) => return true,
                            Err(RecvError::Closed) => return false,
                        }
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    open = changed => if !open { break },
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    /// One pass: serve the accepted CRDs, write statuses, finalize deleted CRDs. True while a
    /// CRD is still being finalized.
    async fn sync(&mut self, state: &ApiState) -> bool {
        let Some((crd_resource, crds, decisions)) = self.serve_stored(state).await else {
            return false;
        };
        let mut cleaning = false;
        for (crd, conflict) in crds.iter().zip(&decisions) {
            let name = objects::name(crd);
            let terminating = objects::is_deleting(crd);
            let desired =
                naming::desired_status(crd, conflict.as_ref(), terminating, chrono::Utc::now());
            if crd.get("status") != Some(&desired)
                && let Err(error) =
                    write_status(state, &crd_resource, name, conflict.as_ref()).await
            {
                tracing::warn!(crd = %name, %error, "writing CRD status failed");
            }
            if terminating
                && objects::finalizers(crd)
                    .iter()
                    .any(|f| f == CLEANUP_FINALIZER)
            {
                cleaning = true;
                if let Err(error) = finalize(state, &crd_resource, crd).await {
                    tracing::warn!(crd = %name, %error, "finalizing CRD failed");
                }
            }
        }
        cleaning
    }

    /// Reads the CRDs from the watch cache, decides their names and serves the accepted ones;
    /// returns what it read and decided.
    async fn serve_stored(
        &mut self,
        state: &ApiState,
    ) -> Option<(ResourceInfo, Vec<Value>, Vec<Option<NameConflict>>)> {
        let crd_resource = crd_resource(state)?;
        let (cached, _) = state.cache.list(&objects::resource_prefix(&crd_resource));
        let crds: Vec<Value> = cached.iter().map(|c| (**c).clone()).collect();
        let decisions = naming::decide_names(&crds);
        self.serve(state, &crds, &decisions).await;
        Some((crd_resource, crds, decisions))
    }

    /// Swaps in the catalog and OpenAPI documents of the accepted CRDs, when they changed.
    async fn serve(
        &mut self,
        state: &ApiState,
        crds: &[Value],
        decisions: &[Option<NameConflict>],
    ) {
        let accepted: Vec<&Value> = crds
            .iter()
            .zip(decisions)
            .filter(|(_, conflict)| conflict.is_none())
            .map(|(crd, _)| crd)
            .collect();
        let fingerprint = Value::from(
            accepted
                .iter()
                .map(|crd| {
                    json!([
                        crd["metadata"]["uid"],
                        crd["spec"],
                        objects::is_deleting(crd)
                    ])
                })
                .collect::<Vec<_>>(),
        )
        .to_string();
        if self.fingerprint.as_deref() == Some(fingerprint.as_str()) {
            return;
        }
        let previous = state.crds();
        let plan = ServingPlan::of(&accepted, &previous);
        let ServingPlan {
            resources,
            types,
            schemas,
        } = plan;
        let openapi = if types.is_empty() {
            None
        } else {
            let all = resources.clone();
            match tokio::task::spawn_blocking(move || OpenApiDocs::build(&all, &schemas)).await {
                Ok(docs) => Some(Arc::new(docs)),
                Err(error) => {
                    tracing::warn!(%error, "building OpenAPI documents with CRDs failed");
                    None
                }
            }
        };
        tracing::info!(
            served = types.len(),
            "serving custom resources of {} CRDs",
            accepted.len()
        );
        // Types before catalog: a routed custom resource always finds its type.
        let current = ServedCrds { types, openapi };
        let withdrawn: Vec<&Arc<ServedType>> = previous
            .types
            .iter()
            .filter(|t| current.get(&t.custom.resource).is_none())
            .collect();
        for gone in &withdrawn {
            gone.withdrawn.cancel();
        }
        state.set_crds(current);
        state.set_catalog(Catalog::new(resources));
        self.fingerprint = Some(fingerprint);
    }
}

/// What the accepted CRDs make the server serve.
pub(super) struct ServingPlan {
    /// Built-ins, then each CRD's served versions (storage version first).
    pub(super) resources: Vec<ResourceInfo>,
    pub(super) types: Vec<Arc<ServedType>>,
    pub(super) schemas: CrdSchemas,
}

impl ServingPlan {
    /// `previous`: what was served so far, whose watch tokens carry over.
    pub(super) fn of(accepted: &[&Value], previous: &ServedCrds) -> ServingPlan {
        let builtins = builtin_resources();
        let mut resources = builtins.clone();
        let mut types = Vec::new();
        let mut schemas = CrdSchemas::new();
        for crd in accepted {
            let name = objects::name(crd);
            let mut served = match CustomResourceType::all_served(crd) {
                Ok(served) => served,
                Err(error) => {
                    tracing::warn!(crd = %name, %error, "CRD not served");
                    continue;
                }
            };
            let Some(storage_version) = definition::storage_version(crd) else {
                tracing::warn!(crd = %name, "CRD has no storage version; not served");
                continue;
            };
            served.sort_by_key(|t| (!t.storage, version_priority(&t.resource.version)));
            let served_before = types.len();
            for custom in served {
                let r = &custom.resource;
                let shadows_builtin = builtins.iter().any(|b| {
                    // Same storage prefix (group/plural), or a kind of the group.
                    b.group == r.group && (b.plural == r.plural || b.kind == r.kind)
                });
                if shadows_builtin {
                    tracing::warn!(crd = %name, "CRD names a built-in resource; the built-in is served");
                    continue;
                }
                let withdrawn = previous.withdrawn(&custom.resource);
                resources.push(custom.resource.clone());
                types.push(Arc::new(ServedType {
                    columns: table::crd_printer_columns(crd, &custom.resource.version),
                    custom,
                    storage_version: storage_version.clone(),
                    terminating: objects::is_deleting(crd),
                    withdrawn,
                }));
            }
            if types.len() > served_before {
                openapi::add_crd_schemas(&mut schemas, crd);
            }
        }
        ServingPlan {
            resources,
            types,
            schemas,
        }
    }
}

/// Writes the status `naming` wants on one CRD, when it differs from the stored one.
async fn write_status(
    state: &ApiState,
    crd_resource: &ResourceInfo,
    name: &str,
    conflict: Option<&NameConflict>,
) -> Result<(), ApiError> {
    let at = ObjectRef {
        resource: crd_resource,
        namespace: "",
        name,
    };
    let result = rest::guaranteed_update(
        state,
        at,
        &WriteOptions::default(),
        |current| {
            let terminating = objects::is_deleting(current);
            let desired =
                naming::desired_status(current, conflict, terminating, chrono::Utc::now());
            if current.get("status") == Some(&desired) {
                return Ok(None);
            }
            let mut wanted = current.clone();
            wanted["status"] = desired;
            Ok(Some(wanted))
        },
        "status",
    )
    .await;
    match result {
        Err(error) if error.code != 404 => Err(error),
        _ => Ok(()),
    }
}

/// Deletes the custom resources of a deleted CRD; once none is left, drops the cleanup
/// finalizer (the CRD then goes).
async fn finalize(
    state: &ApiState,
    crd_resource: &ResourceInfo,
    crd: &Value,
) -> Result<(), ApiError> {
    let resource = definition::storage_version(crd)
        .and_then(|v| definition::find_version(crd, &v).cloned())
        .map(|v| definition::resource_info(crd, &v))
        .transpose()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    // A CRD naming a built-in resource never served it: the built-in objects are not its own.
    if let Some(resource) = resource.as_ref().filter(|r| !is_builtin(r))
        && delete_all(state, resource).await? > 0
    {
        return Ok(());
    }
    let at = ObjectRef {
        resource: crd_resource,
        namespace: "",
        name: objects::name(crd),
    };
    let result = rest::guaranteed_update(
        state,
        at,
        &WriteOptions::default(),
        |current| {
            let kept: Vec<String> = objects::finalizers(current)
                .into_iter()
                .filter(|f| f != CLEANUP_FINALIZER)
                .collect();
            let mut wanted = current.clone();
            wanted["metadata"]["finalizers"] = json!(kept);
            Ok(Some(wanted))
        },
        "",
    )
    .await;
    match result {
        Err(error) if error.code != 404 => Err(error),
        _ => {
            tracing::info!(crd = %objects::name(crd), "custom resources deleted; CRD finalized");
            Ok(())
        }
    }
}

/// Deletes every object of `resource`; returns how many are still there afterwards.
async fn delete_all(state: &ApiState, resource: &ResourceInfo) -> Result<usize, ApiError> {
    let prefix = objects::resource_prefix(resource);
    let (items, _) = state.cache.list(&prefix);
    if items.is_empty() {
        return Ok(0);
    }
    for item in items.iter().filter(|o| !objects::is_deleting(o)) {
        let at = ObjectRef {
            resource,
            namespace: objects::namespace(item),
            name: objects::name(item),
        };
        match rest::delete(state, at, &DeleteOptions::default()).await {
            Ok(_) => {}
            Err(error) if error.code == 404 || error.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    let current = state
        .store
        .current_revision()
        .await
        .map_err(|e| ApiError::from_storage(e, &Default::default()))?;
    state.cache.wait_for(current, CACHE_CATCH_UP).await;
    Ok(state.cache.list(&prefix).0.len())
}
