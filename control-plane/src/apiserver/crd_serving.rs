//! Serving CustomResourceDefinitions, as kube's apiextensions-apiserver does: a controller fed
//! by the watch cache that, whenever CRDs change, decides which names are accepted, swaps in a
//! catalog and OpenAPI documents with every served version of every accepted CRD, writes the
//! CRDs' status (acceptedNames, NamesAccepted, Established, Terminating, storedVersions), and
//! finalizes deleted CRDs (deletes their custom resources, then drops the
//! `customresourcecleanup.apiextensions.k8s.io` finalizer).
//!
//! It also owns the hooks the generic REST path calls for custom resources: pruning,
//! defaulting and schema validation of writes, storage at the storage version and answers at
//! the requested version (conversion strategy None: only apiVersion changes), Tables with the
//! CRD's printer columns, and the scale subresource at the CRD's replica paths.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::body::{self, Body};
use super::catalog::Catalog;
use super::crd::naming::{self, NameConflict};
use super::crd::{self, CustomResourceType, ScaleConfig, definition};
use super::field_errors::{FieldError, FieldErrorKind};
use super::handlers::{ResourceRequest, request_body, request_write_options};
use super::objects;
use super::openapi::{self, CrdSchemas, OpenApiDocs};
use super::patch;
use super::resources::{ResourceInfo, builtin_resources, version_priority};
use super::rest::{self, DeleteOptions, ObjectRef, WriteOptions};
use super::state::ApiState;
use super::status::ApiError;
use super::table::{self, IncludeObject, PrinterColumn};

/// The finalizer a deleted CRD carries until its custom resources are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_PLURAL: &str = "customresourcedefinitions";
/// How often a CRD being deleted is rechecked while its custom resources go.
const CLEANUP_RECHECK: Duration = Duration::from_secs(1);
/// A full resync when nothing happens, in case an event was missed.
const IDLE_RESYNC: Duration = Duration::from_secs(30);
/// How long cleanup waits for the watch cache to see its own deletions.
const CACHE_CATCH_UP: Duration = Duration::from_secs(3);

/// One served version of one CRD.
#[derive(Debug)]
pub struct ServedType {
    pub custom: CustomResourceType,
    /// The Table columns after NAME (additionalPrinterColumns, or AGE).
    pub columns: Vec<PrinterColumn>,
    /// The version objects are stored at.
    pub storage_version: String,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
    /// Cancelled when this version stops being served: its watches end.
    pub withdrawn: CancellationToken,
}

/// The custom resource types served now, and the OpenAPI documents including their schemas
/// (None while no CRD is served: the built-in documents are used).
#[derive(Debug, Default)]
pub struct ServedCrds {
    types: Vec<Arc<ServedType>>,
    openapi: Option<Arc<OpenApiDocs>>,
}

impl ServedCrds {
    /// The served type behind `resource`, if it is a custom resource.
    pub fn get(&self, resource: &ResourceInfo) -> Option<Arc<ServedType>> {
        self.types
            .iter()
            .find(|t| {
                let r = &t.custom.resource;
                r.plural == resource.plural
                    && r.version == resource.version
                    && r.group == resource.group
            })
            .cloned()
    }

    /// Cancelled once `resource` stops being served; never for built-ins.
    pub fn withdrawn(&self, resource: &ResourceInfo) -> CancellationToken {
        self.get(resource)
            .map(|t| t.withdrawn.clone())
            .unwrap_or_default()
    }

    /// The OpenAPI documents of everything served.
    pub fn openapi(&self) -> OpenApiRef {
        match &self.openapi {
            Some(docs) => OpenApiRef::Built(docs.clone()),
            None => OpenApiRef::Builtin(openapi::builtin_openapi()),
        }
    }
}

/// The current OpenAPI documents: the process-wide built-in set, or one built with CRDs.
pub enum OpenApiRef {
    Builtin(&'static OpenApiDocs),
    Built(Arc<OpenApiDocs>),
}

impl Deref for OpenApiRef {
    type Target = OpenApiDocs;

    fn deref(&self) -> &OpenApiDocs {
        match self {
            OpenApiRef::Builtin(docs) => docs,
            OpenApiRef::Built(docs) => docs,
        }
    }
}

fn is_crd_resource(resource: &ResourceInfo) -> bool {
    resource.group == CRD_GROUP && resource.plural == CRD_PLURAL
}

fn is_builtin(resource: &ResourceInfo) -> bool {
    static BUILTINS: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
    BUILTINS
        .get_or_init(builtin_resources)
        .iter()
        .any(|b| b.group == resource.group && b.plural == resource.plural)
}

/// The served type of `resource`; None for built-ins. A resource that is neither (its CRD
/// went away between routing and now) is not found.
fn custom_type(
    state: &ApiState,
    resource: &ResourceInfo,
) -> Result<Option<Arc<ServedType>>, ApiError> {
    match state.crds().get(resource) {
        Some(found) => Ok(Some(found)),
        None if is_builtin(resource) => Ok(None),
        None => Err(ApiError::path_not_found(&format!(
            "/apis/{}/{}/{}",
            resource.group, resource.version, resource.plural
        ))),
    }
}

// ---- hooks of the generic REST path ----

/// For a write of a custom resource (`old` None on create): refuses creates while the CRD is
/// terminating, drops status on create when the status subresource is enabled, prunes unknown
/// fields (refused instead under `fieldValidation=Strict`), applies schema defaults, and
/// returns the schema violations. Nothing for built-ins.
pub fn prepare_custom_resource(
    state: &ApiState,
    resource: &ResourceInfo,
    object: &mut Value,
    old: Option<&Value>,
    options: &WriteOptions,
) -> Result<Vec<FieldError>, ApiError> {
    let Some(served) = custom_type(state, resource)? else {
        return Ok(Vec::new());
    };
    if old.is_none() {
        if served.terminating {
            let mut error = ApiError::method_not_allowed("create", &resource.kind);
            error.message =
                "create not allowed while custom resource definition is terminating".into();
            return Err(error);
        }
        if served.custom.status_subresource
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
    }
    let pruned = served.custom.prune_and_default(object);
    if options.strict_fields && !pruned.is_empty() {
        return Err(strict_decoding_error(resource, &pruned));
    }
    Ok(served.custom.validate(object))
}

/// kube's answer to unknown fields under `fieldValidation=Strict` (400).
fn strict_decoding_error(resource: &ResourceInfo, pruned: &[String]) -> ApiError {
    let fields: Vec<String> = pruned
        .iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect();
    ApiError::bad_request(format!(
        "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
        fields.join(", "),
        kind = resource.kind,
        version = resource.version,
    ))
}

/// The stored encoding of `object`: custom resources at their CRD's storage version.
pub fn encode_for_storage(
    state: &ApiState,
    resource: &ResourceInfo,
    object: &Value,
) -> Result<Vec<u8>, ApiError> {
    match state.crds().get(resource) {
        Some(served) if served.storage_version != resource.version => {
            let mut stored = object.clone();
            stored["apiVersion"] = json!(format!("{}/{}", resource.group, served.storage_version));
            objects::encode(&stored)
        }
        _ => objects::encode(object),
    }
}

/// `object` (as stored) as a read through `resource` returns it. For a custom resource: at the
/// requested version (conversion None: only apiVersion changes), pruned and defaulted by that
/// version's schema, as kube does on every read (a schema that gained a default shows it on
/// old objects). None when nothing changes, always for built-ins (`served` None).
pub fn read_form(
    served: Option<&ServedType>,
    resource: &ResourceInfo,
    object: &Value,
) -> Option<Value> {
    let served = served?;
    let mut converted = object.clone();
    let stored = object.get("apiVersion").and_then(Value::as_str);
    if !stored.is_some_and(|v| is_api_version_of(resource, v)) {
        converted["apiVersion"] = json!(resource.api_version());
    }
    served.custom.prune_and_default(&mut converted);
    (converted != *object).then_some(converted)
}

/// `api_version` is `resource`'s group/version (compared without allocating).
fn is_api_version_of(resource: &ResourceInfo, api_version: &str) -> bool {
    if resource.group.is_empty() {
        return api_version == resource.version;
    }
    api_version
        .strip_prefix(resource.group.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
        == Some(resource.version.as_str())
}

/// [`read_form`] in place.
pub fn to_served_version(state: &ApiState, resource: &ResourceInfo, object: &mut Value) {
    let served = state.crds().get(resource);
    if let Some(converted) = read_form(served.as_deref(), resource, object) {
        *object = converted;
    }
}

/// [`read_form`] of listed objects, sharing those that do not change.
pub fn served_items(
    state: &ApiState,
    resource: &ResourceInfo,
    items: Vec<Arc<Value>>,
) -> Vec<Arc<Value>> {
    let Some(served) = state.crds().get(resource) else {
        return items;
    };
    items
        .into_iter()
        .map(|item| match read_form(Some(&served), resource, &item) {
            Some(converted) => Arc::new(converted),
            None => item,
        })
        .collect()
}

/// On the first delete of a CRD, its cleanup finalizer joins `finalizers`.
pub fn add_deletion_finalizer(
    resource: &ResourceInfo,
    current: &Value,
    finalizers: &mut Vec<String>,
) {
    if is_crd_resource(resource)
        && !objects::is_deleting(current)
        && !finalizers.iter().any(|f| f == CLEANUP_FINALIZER)
    {
        finalizers.push(CLEANUP_FINALIZER.to_string());
    }
}

/// A Table of `objects`: custom resources with their CRD's printer columns, built-ins with
/// kube's.
pub fn to_table(
    state: &ApiState,
    resource: &ResourceInfo,
    objects: &[Value],
    include_object: IncludeObject,
    now: chrono::DateTime<chrono::Utc>,
    list_meta: Value,
) -> Value {
    match state.crds().get(resource) {
        Some(served) => {
            table::to_table_with_columns(&served.columns, objects, include_object, now, list_meta)
        }
        None => table::to_table(resource, objects, include_object, now, list_meta),
    }
}

/// GET/PUT/PATCH of `<resource>/scale`: custom resources at their CRD's replica paths,
/// built-in workloads as `subresources::scale` does.
pub async fn scale(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
    verb: &str,
) -> Result<Response<Body>, ApiError> {
    let served = custom_type(request.state, at.resource)?;
    let Some(config) = served.as_ref().and_then(|s| s.custom.scale.clone()) else {
        return super::subresources::scale(request, at, verb).await;
    };
    let object = match verb {
        "get" => rest::get(request.state, at).await?,
        "update" | "patch" => {
            let document = request_body(request)?;
            let content_type = body::content_type(request.headers);
            let options = request_write_options(request)?;
            rest::guaranteed_update(
                request.state,
                at,
                &options,
                |current| scaled(current, &config, verb, &content_type, &document, at).map(Some),
                "scale",
            )
            .await?
        }
        other => return Err(ApiError::method_not_allowed(other, "Scale")),
    };
    Ok(body::json_response(
        StatusCode::OK,
        &crd::scale_from(&object, &config),
    ))
}

/// `current` with the replicas of the Scale the request asks for.
fn scaled(
    current: &Value,
    config: &ScaleConfig,
    verb: &str,
    content_type: &str,
    document: &Value,
    at: ObjectRef<'_>,
) -> Result<Value, ApiError> {
    let scale = crd::scale_from(current, config);
    let bad_patch = |e: patch::PatchError| ApiError::bad_request(e.to_string());
    let wanted = match (verb, content_type) {
        ("update", _) => document.clone(),
        (_, "application/json-patch+json") => {
            patch::json_patch(&scale, document).map_err(bad_patch)?
        }
        _ => patch::merge_patch(&scale, document).map_err(bad_patch)?,
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("Scale: spec.replicas must be an integer"))?;
    if replicas < 0 {
        let error = FieldError::new(
            FieldErrorKind::Invalid,
            "spec.replicas",
            Some(replicas.to_string()),
            "must be greater than or equal to 0",
        );
        return Err(ApiError::invalid("Scale", &at.target(), &[error]));
    }
    let mut object = current.clone();
    crd::apply_scale(&mut object, replicas, config)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(object)
}

// ---- the controller ----

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
struct ServingPlan {
    /// Built-ins, then each CRD's served versions (storage version first).
    resources: Vec<ResourceInfo>,
    types: Vec<Arc<ServedType>>,
    schemas: CrdSchemas,
}

impl ServingPlan {
    /// `previous`: what was served so far, whose watch tokens carry over.
    fn of(accepted: &[&Value], previous: &ServedCrds) -> ServingPlan {
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
                    b.group == r.group
                        && b.version == r.version
                        && (b.plural == r.plural || b.kind == r.kind)
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
    if let Some(resource) = &resource
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

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(plural: &str, versions: Value) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.example.com"), "uid": plural},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": plural, "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
                "versions": versions},
        })
    }

    fn version(name: &str, served: bool, storage: bool) -> Value {
        json!({"name": name, "served": served, "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 1}}}}}},
            "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]})
    }

    #[test]
    fn plan_serves_every_served_version_storage_first() {
        let widgets = crd(
            "widgets",
            json!([
                version("v1beta1", true, true),
                version("v1", true, false),
                version("v0", false, false)
            ]),
        );
        let plan = ServingPlan::of(&[&widgets], &ServedCrds::default());
        let builtins = builtin_resources().len();
        let added: Vec<&str> = plan.resources[builtins..]
            .iter()
            .map(|r| r.version.as_str())
            .collect();
        assert_eq!(added, vec!["v1beta1", "v1"]);
        assert_eq!(plan.types.len(), 2);
        assert!(plan.types.iter().all(|t| t.storage_version == "v1beta1"));
        assert_eq!(plan.types[0].columns[0].name, "Size");
        assert_eq!(plan.resources[builtins].short_names, vec!["wd"]);
        assert_eq!(plan.resources[builtins].categories, vec!["all"]);
        assert_eq!(plan.schemas.len(), 3);
        let catalog = Catalog::new(plan.resources);
        assert!(catalog.lookup("example.com", "v1", "widgets").is_some());
        assert!(catalog.lookup("example.com", "v0", "widgets").is_none());
    }

    #[test]
    fn watch_tokens_carry_over_rebuilds() {
        let widgets = crd("widgets", json!([version("v1", true, true)]));
        let first = ServedCrds {
            types: ServingPlan::of(&[&widgets], &ServedCrds::default()).types,
            openapi: None,
        };
        let second = ServingPlan::of(&[&widgets], &first);
        let resource = &second.types[0].custom.resource;
        first.withdrawn(resource).cancel();
        assert!(second.types[0].withdrawn.is_cancelled());
        let pods = builtin_resources()
            .into_iter()
            .find(|r| r.plural == "pods")
            .expect("pods");
        assert!(!first.withdrawn(&pods).is_cancelled());
    }

    #[test]
    fn built_in_resources_win_over_crds() {
        let mut hijack = crd("deployments", json!([version("v1", true, true)]));
        hijack["spec"]["group"] = json!("apps");
        hijack["spec"]["names"]["kind"] = json!("Deployment");
        let plan = ServingPlan::of(&[&hijack], &ServedCrds::default());
        assert!(plan.types.is_empty());
        assert!(plan.schemas.is_empty());
        assert_eq!(plan.resources.len(), builtin_resources().len());
    }

    #[test]
    fn objects_are_stored_at_the_storage_version_and_read_at_the_requested_one() {
        let widgets = crd(
            "widgets",
            json!([version("v1beta1", true, true), version("v1", true, false)]),
        );
        let plan = ServingPlan::of(&[&widgets], &ServedCrds::default());
        let v1 = plan
            .types
            .iter()
            .find(|t| t.custom.resource.version == "v1")
            .expect("v1 served");
        let stored = json!({"apiVersion": "example.com/v1beta1", "kind": "Widget",
            "metadata": {"name": "a"}, "spec": {"gone": true}});
        let read = read_form(Some(v1), &v1.custom.resource, &stored).expect("converted");
        assert_eq!(read["apiVersion"], "example.com/v1");
        assert_eq!(read["metadata"], stored["metadata"]);
        assert_eq!(
            read["spec"],
            json!({"size": 1}),
            "pruned and defaulted on read"
        );
        assert!(read_form(Some(v1), &v1.custom.resource, &read).is_none());
        let pods = builtin_resources()
            .into_iter()
            .find(|r| r.plural == "pods")
            .expect("pods");
        let pod = json!({"apiVersion": "v1", "kind": "Pod"});
        assert!(read_form(None, &pods, &pod).is_none());
    }

    #[test]
    fn crds_get_the_cleanup_finalizer_on_first_delete_only() {
        let all = builtin_resources();
        let crds = all
            .iter()
            .find(|r| is_crd_resource(r))
            .expect("crd resource");
        let pods = all.iter().find(|r| r.plural == "pods").expect("pods");
        let mut finalizers = Vec::new();
        add_deletion_finalizer(crds, &json!({"metadata": {}}), &mut finalizers);
        assert_eq!(finalizers, vec![CLEANUP_FINALIZER]);
        add_deletion_finalizer(crds, &json!({"metadata": {}}), &mut finalizers);
        assert_eq!(finalizers.len(), 1);
        let mut none = Vec::new();
        add_deletion_finalizer(pods, &json!({"metadata": {}}), &mut none);
        let deleting = json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}});
        add_deletion_finalizer(crds, &deleting, &mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn scale_writes_the_spec_replicas_path() {
        let config = ScaleConfig {
            spec_replicas_path: ".spec.size".into(),
            status_replicas_path: ".status.size".into(),
            label_selector_path: None,
        };
        let all = builtin_resources();
        let resource = &all[0];
        let at = ObjectRef {
            resource,
            namespace: "default",
            name: "a",
        };
        let current = json!({"metadata": {"name": "a"}, "spec": {"size": 1}});
        let patch = json!({"spec": {"replicas": 3}});
        let out = scaled(
            &current,
            &config,
            "patch",
            "application/merge-patch+json",
            &patch,
            at,
        )
        .expect("scaled");
        assert_eq!(out["spec"]["size"], 3);
        let negative = json!({"spec": {"replicas": -1}});
        let refused = scaled(&current, &config, "update", "", &negative, at).expect_err("negative");
        assert_eq!(refused.code, 422);
    }
}
