//! Resource requests: maps a parsed `RequestInfo` on a served resource to the REST operation
//! (get, list, watch, create, update, patch, delete, deletecollection) or subresource (status,
//! scale, binding, eviction, finalize, ...), checks the body against the URL, and renders the
//! answer (object, list, Table). Authorization has already happened in `server`.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::admission;
use super::auth::UserInfo;
use super::body::{self, Body, Wanted};
use super::objects;
use super::patch::{self, TypeRef};
use super::request::{Query, RequestInfo};
use super::resources::ResourceInfo;
use super::rest::{self, DeleteOptions, Deleted, ObjectRef, WriteOptions};
use super::selection::Selection;
use super::state::ApiState;
use super::status::{ApiError, Target, success_status};
use super::table::IncludeObject;
use super::watch;

/// Everything a resource handler needs about the request.
pub struct ResourceRequest<'a> {
    pub state: &'a Arc<ApiState>,
    pub info: &'a RequestInfo,
    pub query: &'a Query,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    pub user: &'a UserInfo,
}

impl ResourceRequest<'_> {
    fn write_options(&self) -> Result<WriteOptions, ApiError> {
        Ok(WriteOptions {
            dry_run: self.query.dry_run()?,
            strict_fields: self.query.get("fieldValidation") == Some("Strict"),
        })
    }

    /// The field manager of a write: `fieldManager`, else the user agent's program name.
    fn manager(&self) -> String {
        if let Some(manager) = self.query.field_manager() {
            return manager.to_string();
        }
        let agent = self
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        agent.split('/').next().unwrap_or("unknown").to_string()
    }

    fn object_body(&self) -> Result<Value, ApiError> {
        body::decode_object(&body::content_type(self.headers), &self.body)
    }
}

/// Serves a request on a resource of the catalog.
pub async fn serve(request: ResourceRequest<'_>) -> Result<Response<Body>, ApiError> {
    let info = request.info;
    let catalog = request.state.catalog();
    let resource = catalog
        .lookup(&info.group, &info.version, &info.resource)
        .ok_or_else(|| ApiError::path_not_found(&info.path))?
        .clone();
    check_scope(&resource, info)?;
    if !info.subresource.is_empty() {
        return serve_subresource(&request, &resource).await;
    }
    if super::auth_endpoints::is_review(&resource) {
        return super::auth_endpoints::serve_review(&request, &resource).await;
    }
    let at = ObjectRef {
        resource: &resource,
        namespace: &info.namespace,
        name: &info.name,
    };
    match info.verb.as_str() {
        "get" => {
            let object = rest::get(request.state, at).await?;
            render_one(&request, &resource, object, StatusCode::OK)
        }
        "list" => list(&request, &resource).await,
        "watch" => {
            watch::serve(
                request.state,
                &resource,
                info,
                request.query,
                body::wanted(request.headers),
            )
            .await
        }
        "create" => create(&request, &resource).await,
        "update" => update(&request, at, "").await,
        "patch" => patch(&request, at, "").await,
        "delete" => delete(&request, at).await,
        "deletecollection" => delete_collection(&request, &resource).await,
        verb => Err(ApiError::method_not_allowed(verb, &resource.kind)),
    }
}

/// Namespaced resources need a namespace for single objects and creates; cluster-scoped ones
/// must not have one.
fn check_scope(resource: &ResourceInfo, info: &RequestInfo) -> Result<(), ApiError> {
    let is_namespace_object = resource.group.is_empty() && resource.plural == "namespaces";
    if is_namespace_object {
        return Ok(());
    }
    let needs_namespace = !info.name.is_empty() || info.verb == "create";
    match (resource.namespaced, info.namespace.is_empty()) {
        (true, true) if needs_namespace => Err(ApiError::path_not_found(&info.path)),
        (false, false) => Err(ApiError::path_not_found(&info.path)),
        _ => Ok(()),
    }
}

fn render_one(
    request: &ResourceRequest<'_>,
    resource: &ResourceInfo,
    object: Value,
    status: StatusCode,
) -> Result<Response<Body>, ApiError> {
    match body::wanted(request.headers) {
        Wanted::Table => {
            let table = super::crd_serving::to_table(
                request.state,
                resource,
                std::slice::from_ref(&object),
                IncludeObject::from_query(request.query.get("includeObject")),
                chrono::Utc::now(),
                json!({"resourceVersion": objects::meta_str(&object, "resourceVersion")}),
            );
            Ok(body::json_response(status, &table))
        }
        _ => Ok(body::json_response(status, &object)),
    }
}

async fn list(
    request: &ResourceRequest<'_>,
    resource: &ResourceInfo,
) -> Result<Response<Body>, ApiError> {
    let selection = Selection::from_query(resource, request.query)?;
    let filter = |object: &Value| selection.matches(object);
    let limit = request.query.limit()?;
    let page = rest::list(
        request.state,
        resource,
        &request.info.namespace,
        &filter,
        limit,
        request.query.get("continue"),
    )
    .await?;
    let mut list_meta = json!({"resourceVersion": page.revision.to_string()});
    if !page.continue_token.is_empty() {
        list_meta["continue"] = json!(page.continue_token);
    }
    if body::wanted(request.headers) == Wanted::Table {
        let items: Vec<Value> = page.items.iter().map(|o| (**o).clone()).collect();
        let include = IncludeObject::from_query(request.query.get("includeObject"));
        let table = super::crd_serving::to_table(
            request.state,
            resource,
            &items,
            include,
            chrono::Utc::now(),
            list_meta,
        );
        return Ok(body::json_response(StatusCode::OK, &table));
    }
    Ok(body::json_bytes(
        StatusCode::OK,
        encode_list(resource, &page.items, &list_meta),
        "application/json",
    ))
}

/// `{"kind":"PodList","apiVersion":"v1","metadata":{...},"items":[...]}`, written without
/// copying the cached objects.
fn encode_list(resource: &ResourceInfo, items: &[Arc<Value>], list_meta: &Value) -> Bytes {
    let mut out = Vec::with_capacity(64 + items.len() * 512);
    let head = json!({"kind": format!("{}List", resource.kind), "apiVersion": resource.api_version(), "metadata": list_meta});
    let head = serde_json::to_vec(&head).unwrap_or_default();
    out.extend_from_slice(&head[..head.len().saturating_sub(1)]);
    out.extend_from_slice(b",\"items\":[");
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &**item);
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// Checks apiVersion/kind (filling them when absent) and the namespace of a body against the URL.
fn check_body_identity(
    resource: &ResourceInfo,
    namespace: &str,
    object: &mut Value,
) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let api_version = resource.api_version();
    match object.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => object["apiVersion"] = json!(api_version),
        Some(found) if found == api_version => {}
        Some(found) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({found}) does not match the expected API version ({api_version})"
            )));
        }
    }
    match object.get("kind").and_then(Value::as_str) {
        None | Some("") => object["kind"] = json!(resource.kind),
        Some(found) if found == resource.kind => {}
        Some(found) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({found}) does not match the expected kind ({})",
                resource.kind
            )));
        }
    }
    if resource.namespaced {
        let in_body = objects::namespace(object);
        if !in_body.is_empty() && in_body != namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

fn type_ref(resource: &ResourceInfo) -> TypeRef {
    TypeRef {
        group: resource.group.clone(),
        version: resource.version.clone(),
        kind: resource.kind.clone(),
    }
}

async fn create(
    request: &ResourceRequest<'_>,
    resource: &ResourceInfo,
) -> Result<Response<Body>, ApiError> {
    let mut object = request.object_body()?;
    let namespace = &request.info.namespace;
    check_body_identity(resource, namespace, &mut object)?;
    admission::admit_create(
        request.state,
        request.user,
        resource,
        namespace,
        &mut object,
    )
    .await?;
    patch::track_update(
        None,
        &mut object,
        &type_ref(resource),
        &request.manager(),
        &objects::now(),
        None,
    );
    let created = rest::create(
        request.state,
        resource,
        namespace,
        object,
        &request.write_options()?,
    )
    .await?;
    render_one(request, resource, created, StatusCode::CREATED)
}

async fn update(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
    subresource: &str,
) -> Result<Response<Body>, ApiError> {
    let mut object = request.object_body()?;
    check_body_identity(at.resource, at.namespace, &mut object)?;
    let body_name = objects::name(&object);
    if !body_name.is_empty() && body_name != at.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            at.name
        )));
    }
    let manager = request.manager();
    let options = request.write_options()?;
    let precondition = objects::resource_version(&object)?;
    let updated = rest::guaranteed_update(
        request.state,
        at,
        &options,
        |current| {
            if let Some(expected) = precondition
                && objects::resource_version(current)? != Some(expected)
            {
                return Err(ApiError::stale(&at.target()));
            }
            let mut wanted = object.clone();
            admission::admit_update(
                request.state,
                request.user,
                at.resource,
                &mut wanted,
                current,
                subresource,
            )?;
            patch::track_update(
                Some(current),
                &mut wanted,
                &type_ref(at.resource),
                &manager,
                &objects::now(),
                subresource_opt(subresource),
            );
            Ok(Some(wanted))
        },
        subresource,
    )
    .await?;
    render_one(request, at.resource, updated, StatusCode::OK)
}

fn subresource_opt(subresource: &str) -> Option<&str> {
    (!subresource.is_empty()).then_some(subresource)
}

/// The patch types kube accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

fn patch_type(headers: &HeaderMap) -> Result<PatchType, ApiError> {
    match body::content_type(headers).as_str() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

async fn patch(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
    subresource: &str,
) -> Result<Response<Body>, ApiError> {
    let kind = patch_type(request.headers)?;
    let types = type_ref(at.resource);
    if kind == PatchType::Strategic && !patch::supports_strategic_merge(&types) {
        return Err(ApiError::unsupported_media_type(
            "application/strategic-merge-patch+json",
        ));
    }
    let document = body::decode_object(&body::content_type(request.headers), &request.body)?;
    let manager = request.manager();
    if kind == PatchType::Apply && request.query.field_manager().is_none() {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml: fieldManager is required for apply requests",
        ));
    }
    let options = request.write_options()?;
    if kind == PatchType::Apply {
        match rest::get(request.state, at).await {
            Err(error) if error.code == 404 && subresource.is_empty() => {
                return apply_create(request, at, &document, &manager).await;
            }
            Err(error) => return Err(error),
            Ok(_) => {}
        }
    }
    let force = request.query.force();
    let patched = rest::guaranteed_update(
        request.state,
        at,
        &options,
        |current| {
            let now = objects::now();
            let mut wanted = match kind {
                PatchType::Json => patch::json_patch(current, &document).map_err(patch_error)?,
                PatchType::Merge => patch::merge_patch(current, &document).map_err(patch_error)?,
                PatchType::Strategic => {
                    patch::strategic_merge_patch(current, &document, &types).map_err(patch_error)?
                }
                PatchType::Apply => {
                    let apply = patch::ApplyOptions {
                        manager: &manager,
                        force,
                        now: &now,
                        subresource: subresource_opt(subresource),
                    };
                    patch::server_side_apply(Some(current), &document, &types, &apply)
                        .map_err(|e| apply_error(e, at))?
                }
            };
            check_body_identity(at.resource, at.namespace, &mut wanted)?;
            if objects::name(&wanted) != at.name {
                return Err(ApiError::bad_request(
                    "a patch may not change metadata.name",
                ));
            }
            admission::admit_update(
                request.state,
                request.user,
                at.resource,
                &mut wanted,
                current,
                subresource,
            )?;
            if kind != PatchType::Apply {
                patch::track_update(
                    Some(current),
                    &mut wanted,
                    &types,
                    &manager,
                    &now,
                    subresource_opt(subresource),
                );
            }
            Ok(Some(wanted))
        },
        subresource,
    )
    .await?;
    render_one(request, at.resource, patched, StatusCode::OK)
}

/// Server-side apply of an object that does not exist yet: a create.
async fn apply_create(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
    document: &Value,
    manager: &str,
) -> Result<Response<Body>, ApiError> {
    let now = objects::now();
    let options = patch::ApplyOptions {
        manager,
        force: request.query.force(),
        now: &now,
        subresource: None,
    };
    let mut object = patch::server_side_apply(None, document, &type_ref(at.resource), &options)
        .map_err(|e| apply_error(e, at))?;
    check_body_identity(at.resource, at.namespace, &mut object)?;
    if objects::name(&object) != at.name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            objects::name(&object),
            at.name
        )));
    }
    admission::admit_create(
        request.state,
        request.user,
        at.resource,
        at.namespace,
        &mut object,
    )
    .await?;
    let created = rest::create(
        request.state,
        at.resource,
        at.namespace,
        object,
        &request.write_options()?,
    )
    .await?;
    render_one(request, at.resource, created, StatusCode::CREATED)
}

fn patch_error(error: patch::PatchError) -> ApiError {
    let mut api_error = ApiError::bad_request(error.to_string());
    api_error.code = 422;
    api_error.reason = "Invalid";
    api_error
}

fn apply_error(error: patch::ApplyError, at: ObjectRef<'_>) -> ApiError {
    match error {
        patch::ApplyError::Conflicts(conflicts) => {
            let lines: Vec<String> = conflicts
                .iter()
                .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
                .collect();
            let noun = if conflicts.len() == 1 {
                "conflict"
            } else {
                "conflicts"
            };
            let mut error = ApiError::conflict(&at.target(), "");
            error.message = format!(
                "Apply failed with {} {noun}: {}",
                conflicts.len(),
                lines.join("\n")
            );
            error.causes = conflicts
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field}))
                .collect();
            error
        }
        patch::ApplyError::Invalid(message) => ApiError::bad_request(message),
    }
}

fn delete_options(request: &ResourceRequest<'_>) -> Result<DeleteOptions, ApiError> {
    let body = if request.body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(body::decode_object(
            &body::content_type(request.headers),
            &request.body,
        )?)
    };
    let mut options = DeleteOptions::from_body(body.as_ref())?;
    if let Some(grace) = request.query.get("gracePeriodSeconds") {
        options.grace_period_seconds =
            Some(grace.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid gracePeriodSeconds {grace:?}"))
            })?);
    }
    if let Some(policy) = request.query.get("propagationPolicy") {
        options.propagation_policy = Some(policy.to_string());
    }
    options.dry_run |= request.query.dry_run()?;
    Ok(options)
}

async fn delete(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
) -> Result<Response<Body>, ApiError> {
    let options = delete_options(request)?;
    admission::admit_delete(request.state, request.user, at).await?;
    match rest::delete(request.state, at, &options).await? {
        Deleted::Gone(object) => Ok(body::json_response(StatusCode::OK, &object)),
        Deleted::Marked(object) => Ok(body::json_response(StatusCode::ACCEPTED, &object)),
    }
}

async fn delete_collection(
    request: &ResourceRequest<'_>,
    resource: &ResourceInfo,
) -> Result<Response<Body>, ApiError> {
    let options = delete_options(request)?;
    let selection = Selection::from_query(resource, request.query)?;
    let filter = |object: &Value| selection.matches(object);
    let page = rest::list(
        request.state,
        resource,
        &request.info.namespace,
        &filter,
        0,
        None,
    )
    .await?;
    for object in &page.items {
        let at = ObjectRef {
            resource,
            namespace: objects::namespace(object),
            name: objects::name(object),
        };
        match rest::delete(request.state, at, &options).await {
            Ok(_) => {}
            Err(error) if error.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    let target = Target::new(&resource.group, &resource.plural, "");
    Ok(body::json_response(
        StatusCode::OK,
        &success_status(&target),
    ))
}

async fn serve_subresource(
    request: &ResourceRequest<'_>,
    resource: &ResourceInfo,
) -> Result<Response<Body>, ApiError> {
    let info = request.info;
    if !resource.subresources.contains(&info.subresource) {
        return Err(ApiError::path_not_found(&info.path));
    }
    let at = ObjectRef {
        resource,
        namespace: &info.namespace,
        name: &info.name,
    };
    let subresource = info.subresource.as_str();
    match (subresource, info.verb.as_str()) {
        ("status" | "approval" | "finalize" | "ephemeralcontainers", "get") => {
            let object = rest::get(request.state, at).await?;
            render_one(request, resource, object, StatusCode::OK)
        }
        ("status" | "approval" | "finalize" | "ephemeralcontainers", "update") => {
            update(request, at, subresource).await
        }
        ("status" | "approval" | "ephemeralcontainers", "patch") => {
            patch(request, at, subresource).await
        }
        ("scale", verb) => super::crd_serving::scale(request, at, verb).await,
        ("binding", "create") => super::subresources::bind(request, at).await,
        ("eviction", "create") => super::subresources::evict(request, at).await,
        ("token", "create") => super::auth_endpoints::token_request(request, at).await,
        ("log" | "exec" | "attach" | "portforward" | "proxy", _) => {
            Err(ApiError::unavailable(format!(
                "{}/{subresource} is not served yet: keel-apiserver does not proxy to kubelets until keel-kubelet serves :10250",
                resource.plural
            )))
        }
        (_, verb) => Err(ApiError::method_not_allowed(
            verb,
            &format!("{}/{subresource}", resource.plural),
        )),
    }
}

/// Exposed for subresources: decode the body of a request.
pub fn request_body(request: &ResourceRequest<'_>) -> Result<Value, ApiError> {
    request.object_body()
}

/// Exposed for subresources: write options of a request.
pub fn request_write_options(request: &ResourceRequest<'_>) -> Result<WriteOptions, ApiError> {
    request.write_options()
}

/// Exposed for subresources: the delete options of an eviction body.
pub fn delete_options_of(body: Option<&Value>) -> Result<DeleteOptions, ApiError> {
    DeleteOptions::from_body(body)
}
