//! Generic REST semantics over storage, the same for every resource: get, list (selectors,
//! limit/continue), create (names, uid, timestamps), update with optimistic concurrency,
//! guaranteed updates for patches and subresources, and deletion (preconditions, finalizers,
//! graceful pod deletion). Resource-specific rules come from `strategy`; HTTP is elsewhere.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::crd_serving;
use super::objects::{self, collection_prefix, object_key};
use super::resources::ResourceInfo;
use super::service_rest;
use super::state::ApiState;
use super::status::{ApiError, Target};
use super::strategy;
use crate::storage::{self, Revision};

/// How many times a read-modify-write retries on a conflict before giving up.
const UPDATE_RETRIES: usize = 16;
/// How long a list waits for the watch cache to catch up with storage.
const CACHE_CATCH_UP: Duration = Duration::from_secs(3);

/// Where an object lives: resource, namespace and name.
#[derive(Clone, Copy)]
pub struct ObjectRef<'a> {
    pub resource: &'a ResourceInfo,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl ObjectRef<'_> {
    pub fn key(&self) -> String {
        object_key(self.resource, self.namespace, self.name)
    }

    pub fn target(&self) -> Target {
        Target::new(&self.resource.group, &self.resource.plural, self.name)
    }
}

/// Options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields of a custom resource are an error, not dropped.
    pub strict_fields: bool,
}

/// A filter over objects (label and field selectors).
pub type Filter<'a> = &'a (dyn Fn(&Value) -> bool + Send + Sync);

/// A page of a list.
pub struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub revision: Revision,
    /// The continue token for the next page; empty when this is the last one.
    pub continue_token: String,
    pub remaining: Option<i64>,
}

pub async fn get(state: &ApiState, at: ObjectRef<'_>) -> Result<Value, ApiError> {
    let kv = state
        .store
        .get(&at.key())
        .await
        .map_err(|e| ApiError::from_storage(e, &at.target()))?;
    match kv {
        Some(kv) => objects::decode(&kv).map(|mut object| {
            crd_serving::to_served_version(state, at.resource, &mut object);
            object
        }),
        None => Err(ApiError::not_found(&at.target())),
    }
}

/// Lists `resource` in `namespace` ("" = all namespaces). Without a limit or continue token the
/// list comes from the watch cache once it has caught up with storage (a consistent read);
/// pages come from storage at the revision of the first page.
pub async fn list(
    state: &ApiState,
    resource: &ResourceInfo,
    namespace: &str,
    filter: Filter<'_>,
    limit: usize,
    continue_token: Option<&str>,
) -> Result<ListPage, ApiError> {
    let prefix = collection_prefix(resource, namespace);
    if limit == 0 && continue_token.is_none() {
        let current = state
            .store
            .current_revision()
            .await
            .map_err(|e| ApiError::from_storage(e, &Target::default()))?;
        if state.cache.wait_for(current, CACHE_CATCH_UP).await {
            let (items, revision) = state.cache.list(&prefix);
            let items = items.into_iter().filter(|o| filter(o)).collect();
            let items = crd_serving::served_items(state, resource, items);
            return Ok(ListPage {
                items,
                revision,
                continue_token: String::new(),
                remaining: None,
            });
        }
        tracing::warn!(
            current,
            cached = state.cache.revision(),
            "watch cache behind storage; listing from storage"
        );
    }
    let mut page = list_pages(state, &prefix, filter, limit, continue_token).await?;
    page.items = crd_serving::served_items(state, resource, std::mem::take(&mut page.items));
    Ok(page)
}

async fn list_pages(
    state: &ApiState,
    prefix: &str,
    filter: Filter<'_>,
    limit: usize,
    continue_token: Option<&str>,
) -> Result<ListPage, ApiError> {
    let (mut start_after, mut revision) = match continue_token {
        Some(token) => {
            let (key, revision) = decode_continue(token)?;
            (Some(key), Some(revision))
        }
        None => (None, None),
    };
    let mut items = Vec::new();
    loop {
        let want = if limit == 0 { 0 } else { limit - items.len() };
        let page = state
            .store
            .list(prefix, start_after.as_deref(), want.max(if limit == 0 { 0 } else { 1 }), revision)
            .await
            .map_err(|e| match e {
                storage::Error::Compacted { .. } => ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                other => ApiError::from_storage(other, &Target::default()),
            })?;
        revision = Some(page.revision);
        let last_key = page.items.last().map(|kv| kv.key.clone());
        for kv in &page.items {
            let object = objects::decode(kv)?;
            if filter(&object) {
                items.push(Arc::new(object));
            }
        }
        let full = limit > 0 && items.len() >= limit;
        match (page.more, last_key) {
            (true, Some(last)) if full => {
                let token = encode_continue(&last, page.revision);
                return Ok(ListPage {
                    items,
                    revision: page.revision,
                    continue_token: token,
                    remaining: None,
                });
            }
            (true, Some(last)) => start_after = Some(last),
            _ => {
                return Ok(ListPage {
                    items,
                    revision: page.revision,
                    continue_token: String::new(),
                    remaining: None,
                });
            }
        }
    }
}

fn encode_continue(last_key: &str, revision: Revision) -> String {
    let token = json!({"v": "keel/1", "rv": revision, "start": last_key});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Result<(String, Revision), ApiError> {
    let invalid = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let key = value
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let revision = value
        .get("rv")
        .and_then(Value::as_i64)
        .ok_or_else(invalid)?;
    Ok((key.to_string(), revision))
}

/// Creates `object` (already checked to be of `resource`'s kind) in `namespace`.
pub async fn create(
    state: &ApiState,
    resource: &ResourceInfo,
    namespace: &str,
    mut object: Value,
    options: &WriteOptions,
) -> Result<Value, ApiError> {
    prepare_new_metadata(resource, namespace, &mut object)?;
    strategy::prepare_for_create(resource, &mut object);
    let claim =
        service_rest::claim_for_create(state, resource, &mut object, options.dry_run).await?;
    let stored = create_claimed(state, resource, namespace, object, options).await;
    match &stored {
        Ok(_) if !options.dry_run => claim.commit(state).await,
        _ => claim.revert(state).await,
    }
    stored
}

async fn create_claimed(
    state: &ApiState,
    resource: &ResourceInfo,
    namespace: &str,
    mut object: Value,
    options: &WriteOptions,
) -> Result<Value, ApiError> {
    strategy::default(resource, &mut object);
    let custom_errors =
        crd_serving::prepare_custom_resource(state, resource, &mut object, None, options)?;
    let name = objects::name(&object).to_string();
    let at = ObjectRef {
        resource,
        namespace,
        name: &name,
    };
    let mut errors = strategy::validate(resource, &object, None);
    errors.extend(custom_errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(&resource.kind, &at.target(), &errors));
    }
    if options.dry_run {
        return Ok(object);
    }
    let kv = state
        .store
        .create(
            &at.key(),
            crd_serving::encode_for_storage(state, resource, &object)?,
        )
        .await
        .map_err(|e| ApiError::from_storage(e, &at.target()))?;
    objects::set_resource_version(&mut object, kv.mod_revision);
    Ok(object)
}

/// Names the object (generateName), and sets what the server owns in a new object's metadata.
fn prepare_new_metadata(
    resource: &ResourceInfo,
    namespace: &str,
    object: &mut Value,
) -> Result<(), ApiError> {
    let meta = objects::metadata_mut(object)
        .ok_or_else(|| ApiError::bad_request("the object is not a JSON object"))?;
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(base) if !base.is_empty() => {
                let name = objects::generated_name(base);
                meta.insert("name".into(), json!(name));
            }
            _ => {
                return Err(ApiError::invalid(
                    &resource.kind,
                    &Target::new(&resource.group, &resource.plural, ""),
                    &[super::field_errors::FieldError::new(
                        super::field_errors::FieldErrorKind::Required,
                        "metadata.name",
                        None,
                        "name or generateName is required",
                    )],
                ));
            }
        }
    }
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    if resource.namespaced {
        meta.insert("namespace".into(), json!(namespace));
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(objects::now()));
    meta.remove("selfLink");
    Ok(())
}

/// Read-modify-write: `mutate` turns the current object into the wanted one (None = no change);
/// retried on conflicts. The result goes through the update strategy, defaulting and validation.
pub async fn guaranteed_update<F>(
    state: &ApiState,
    at: ObjectRef<'_>,
    options: &WriteOptions,
    mutate: F,
    subresource: &str,
) -> Result<Value, ApiError>
where
    F: Fn(&Value) -> Result<Option<Value>, ApiError>,
{
    for _ in 0..UPDATE_RETRIES {
        let current = get(state, at).await?;
        let Some(mut wanted) = mutate(&current)? else {
            return Ok(current);
        };
        let revision = objects::resource_version(&current)?.unwrap_or(0);
        prepare_update_metadata(at, &mut wanted);
        strategy::prepare_for_update(at.resource, &mut wanted, &current, subresource);
        let claim = service_rest::claim_for_update(
            state,
            at.resource,
            &mut wanted,
            &current,
            options.dry_run,
        )
        .await?;
        strategy::default(at.resource, &mut wanted);
        let custom_errors = match crd_serving::prepare_custom_resource(
            state,
            at.resource,
            &mut wanted,
            Some(&current),
            options,
        ) {
            Ok(errors) => errors,
            Err(error) => {
                claim.revert(state).await;
                return Err(error);
            }
        };
        // A binding sets spec.nodeName, which updates of the pod may not change: it is
        // checked as a whole pod.
        let old = (subresource != "binding").then_some(&current);
        let mut errors = strategy::validate(at.resource, &wanted, old);
        errors.extend(custom_errors);
        if !errors.is_empty() {
            claim.revert(state).await;
            return Err(ApiError::invalid(&at.resource.kind, &at.target(), &errors));
        }
        if without_rv(&wanted) == without_rv(&current) {
            claim.revert(state).await;
            return Ok(current);
        }
        if options.dry_run {
            claim.revert(state).await;
            return Ok(wanted);
        }
        let encoded = match crd_serving::encode_for_storage(state, at.resource, &wanted) {
            Ok(encoded) => encoded,
            Err(error) => {
                claim.revert(state).await;
                return Err(error);
            }
        };
        // An object being deleted whose last finalizer is gone is deleted now.
        let written = if ready_to_delete(&wanted) {
            state.store.delete(&at.key(), Some(revision)).await
        } else {
            state.store.update(&at.key(), encoded, revision).await
        };
        match written {
            Ok(kv) => {
                claim.commit(state).await;
                if ready_to_delete(&wanted) {
                    service_rest::release_deleted(state, at.resource, &wanted).await;
                }
                objects::set_resource_version(&mut wanted, kv.mod_revision);
                return Ok(wanted);
            }
            Err(storage::Error::Conflict { .. }) => claim.revert(state).await,
            Err(error) => {
                claim.revert(state).await;
                return Err(ApiError::from_storage(error, &at.target()));
            }
        }
    }
    Err(ApiError::conflict(
        &at.target(),
        "too many concurrent updates; try again",
    ))
}

fn without_rv(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    object
}

/// The body of an update names the object it replaces; the URL wins for namespace.
fn prepare_update_metadata(at: ObjectRef<'_>, object: &mut Value) {
    if let Some(meta) = objects::metadata_mut(object) {
        if at.resource.namespaced {
            meta.insert("namespace".into(), json!(at.namespace));
        }
        meta.insert("name".into(), json!(at.name));
    }
}

/// An object marked for deletion whose finalizers are all gone (for a namespace, also those of
/// spec.finalizers) and whose grace period is over is deleted by the write that clears them.
fn ready_to_delete(object: &Value) -> bool {
    let spec_finalizers = object
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
        && object.get("kind").and_then(Value::as_str) == Some("Namespace");
    objects::is_deleting(object)
        && objects::finalizers(object).is_empty()
        && !spec_finalizers
        && deletion_is_due(object)
}

/// True when an object marked for deletion has no grace period left to wait for (graceful
/// pod deletion waits for the kubelet's final delete with grace 0).
fn deletion_is_due(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_none_or(|grace| grace == 0)
}

/// DeleteOptions, as sent in a DELETE body or query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<Revision>,
    /// Orphan, Background or Foreground.
    pub propagation_policy: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn from_body(body: Option<&Value>) -> Result<DeleteOptions, ApiError> {
        let Some(body) = body else {
            return Ok(DeleteOptions::default());
        };
        let precondition_rv = match body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            Some(rv) => Some(rv.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid precondition resourceVersion {rv:?}"))
            })?),
            None => None,
        };
        let propagation_policy = body
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(policy) = &propagation_policy
            && !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {policy:?}: supported values are \"Orphan\", \"Background\", \"Foreground\""
            )));
        }
        let orphan = body.get("orphanDependents").and_then(Value::as_bool);
        Ok(DeleteOptions {
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            precondition_uid: body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_rv,
            propagation_policy: propagation_policy
                .or(orphan.map(|o| if o { "Orphan" } else { "Background" }.to_string())),
            dry_run: body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| d.iter().any(|v| v == "All")),
        })
    }
}

/// What a delete did.
pub enum Deleted {
    /// The object is gone; its last state.
    Gone(Value),
    /// The object remains, marked for deletion (finalizers or a grace period).
    Marked(Value),
}

/// Deletes one object: immediately, or by marking it (deletionTimestamp) when finalizers or a
/// pod's grace period must run first.
pub async fn delete(
    state: &ApiState,
    at: ObjectRef<'_>,
    options: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    for _ in 0..UPDATE_RETRIES {
        let current = get(state, at).await?;
        check_preconditions(at, &current, options)?;
        let revision = objects::resource_version(&current)?.unwrap_or(0);
        match deletion_plan(at.resource, &current, options) {
            DeletionPlan::Now => {
                if options.dry_run {
                    return Ok(Deleted::Gone(current));
                }
                match state.store.delete(&at.key(), Some(revision)).await {
                    Ok(kv) => {
                        service_rest::release_deleted(state, at.resource, &current).await;
                        let mut last = current;
                        objects::set_resource_version(&mut last, kv.mod_revision);
                        return Ok(Deleted::Gone(last));
                    }
                    Err(storage::Error::Conflict { .. }) => continue,
                    Err(error) => return Err(ApiError::from_storage(error, &at.target())),
                }
            }
            DeletionPlan::Mark(marked) => {
                if options.dry_run || marked == current {
                    return Ok(Deleted::Marked(marked));
                }
                let mut marked = marked;
                match state
                    .store
                    .update(
                        &at.key(),
                        crd_serving::encode_for_storage(state, at.resource, &marked)?,
                        revision,
                    )
                    .await
                {
                    Ok(kv) => {
                        objects::set_resource_version(&mut marked, kv.mod_revision);
                        return Ok(Deleted::Marked(marked));
                    }
                    Err(storage::Error::Conflict { .. }) => continue,
                    Err(error) => return Err(ApiError::from_storage(error, &at.target())),
                }
            }
        }
    }
    Err(ApiError::conflict(
        &at.target(),
        "too many concurrent updates; try again",
    ))
}

fn check_preconditions(
    at: ObjectRef<'_>,
    current: &Value,
    options: &DeleteOptions,
) -> Result<(), ApiError> {
    if let Some(uid) = &options.precondition_uid
        && objects::uid(current) != uid
    {
        return Err(ApiError::conflict(
            &at.target(),
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                objects::uid(current)
            ),
        ));
    }
    if let Some(rv) = options.precondition_rv {
        let actual = objects::resource_version(current)?.unwrap_or(0);
        if actual != rv {
            return Err(ApiError::conflict(
                &at.target(),
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                ),
            ));
        }
    }
    Ok(())
}

enum DeletionPlan {
    Now,
    Mark(Value),
}

/// Decides between deleting now and marking: finalizers (including those the propagation
/// policy adds) and graceful pod termination keep the object, with a deletionTimestamp.
fn deletion_plan(
    resource: &ResourceInfo,
    current: &Value,
    options: &DeleteOptions,
) -> DeletionPlan {
    let mut finalizers = objects::finalizers(current);
    crd_serving::add_deletion_finalizer(resource, current, &mut finalizers);
    let policy_finalizer = match options.propagation_policy.as_deref() {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        _ => None,
    };
    let grace = pod_grace_period(resource, current, options);
    let is_namespace = resource.group.is_empty() && resource.kind == "Namespace";
    let namespace_finalizers = current
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if finalizers.is_empty()
        && policy_finalizer.is_none()
        && grace == 0
        && !(is_namespace && namespace_finalizers)
    {
        return DeletionPlan::Now;
    }
    let mut marked = current.clone();
    if let Some(finalizer) = policy_finalizer
        && !finalizers.iter().any(|f| f == finalizer)
        && !objects::is_deleting(current)
    {
        finalizers.push(finalizer.to_string());
    }
    let now = chrono::Utc::now();
    let Some(meta) = objects::metadata_mut(&mut marked) else {
        return DeletionPlan::Now;
    };
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), json!(finalizers));
    }
    let existing_grace = meta
        .get("deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    let shorter = existing_grace.is_none_or(|existing| grace < existing);
    if !meta.contains_key("deletionTimestamp") || shorter {
        let deadline = now + chrono::Duration::seconds(grace);
        meta.insert(
            "deletionTimestamp".into(),
            json!(objects::timestamp(deadline)),
        );
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(1);
        meta.insert("generation".into(), json!(generation + 1));
    }
    if is_namespace {
        marked["status"]["phase"] = json!("Terminating");
    }
    DeletionPlan::Mark(marked)
}

/// Seconds a pod gets to terminate: pods bound to a node and still running get their grace
/// period (the request's, else spec.terminationGracePeriodSeconds); others go at once.
fn pod_grace_period(resource: &ResourceInfo, pod: &Value, options: &DeleteOptions) -> i64 {
    if !(resource.group.is_empty() && resource.kind == "Pod") {
        return 0;
    }
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !bound || matches!(phase, "Succeeded" | "Failed") {
        return 0;
    }
    let requested = options
        .grace_period_seconds
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    // kube turns a negative request into 1 second, and 0 means "now".
    requested.max(0)
}
