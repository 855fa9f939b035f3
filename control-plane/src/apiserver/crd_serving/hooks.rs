//! The hooks the generic REST path calls for custom resources: pruning, defaulting and schema
//! validation of writes (strict field validation included), storage at the storage version,
//! reads at the requested version, the CRD cleanup finalizer on first delete, Tables with the
//! printer columns, and the scale subresource at the CRD's replica paths. Built-ins pass
//! through untouched.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{CLEANUP_FINALIZER, ServedType, custom_type, is_crd_resource};
use crate::apiserver::body::{self, Body};
use crate::apiserver::crd::{self, ScaleConfig};
use crate::apiserver::field_errors::{FieldError, FieldErrorKind};
use crate::apiserver::handlers::{ResourceRequest, request_body, request_write_options};
use crate::apiserver::objects;
use crate::apiserver::patch;
use crate::apiserver::resources::ResourceInfo;
use crate::apiserver::rest::{self, ObjectRef, WriteOptions};
use crate::apiserver::state::ApiState;
use crate::apiserver::status::ApiError;
use crate::apiserver::table::{self, IncludeObject};

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
        return crate::apiserver::subresources::scale(request, at, verb).await;
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
pub(super) fn scaled(
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
