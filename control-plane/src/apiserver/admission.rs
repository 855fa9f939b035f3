//! Admission: the checks and mutations between decoding a write and storing it that depend
//! on other objects or on who is asking — namespace lifecycle (no new objects in a missing or
//! terminating namespace), a pod's priority from its PriorityClass (`priority_admission`), and
//! (in `auth_admission`) the Node restriction on what kubelets may
//! write and RBAC escalation prevention.

use serde_json::Value;

use super::auth::UserInfo;
use super::objects;
use super::resources::ResourceInfo;
use super::rest::{self, ObjectRef};
use super::state::ApiState;
use super::status::{ApiError, Target};

/// Namespaces that always exist (created at start) and may not be deleted.
pub const IMMORTAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

pub async fn admit_create(
    state: &ApiState,
    user: &UserInfo,
    resource: &ResourceInfo,
    namespace: &str,
    object: &mut Value,
) -> Result<(), ApiError> {
    if resource.group == "certificates.k8s.io" && resource.kind == "CertificateSigningRequest" {
        record_requester(user, object);
    }
    if resource.namespaced {
        check_namespace_open(state, namespace, resource, object).await?;
    }
    super::priority_admission::admit_pod_create(state, resource, object).await?;
    super::auth_admission::admit_create(state, user, resource, namespace, object)?;
    Ok(())
}

/// A CertificateSigningRequest records who asked for it (`spec.username`, `uid`, `groups`,
/// `extra`), whatever the body claimed, as kube's CSR strategy does.
fn record_requester(user: &UserInfo, object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert("username".into(), user.name.clone().into());
    spec.insert("groups".into(), serde_json::json!(user.groups));
    for (field, present) in [
        ("uid", !user.uid.is_empty()),
        ("extra", !user.extra.is_empty()),
    ] {
        spec.remove(field);
        if present {
            let value = if field == "uid" {
                user.uid.clone().into()
            } else {
                serde_json::json!(user.extra)
            };
            spec.insert(field.into(), value);
        }
    }
}

/// A namespaced create needs its namespace to exist and not be terminating.
async fn check_namespace_open(
    state: &ApiState,
    namespace: &str,
    resource: &ResourceInfo,
    object: &Value,
) -> Result<(), ApiError> {
    let catalog = state.catalog();
    let Some(namespaces) = catalog.lookup("", "v1", "namespaces") else {
        return Ok(());
    };
    let at = ObjectRef {
        resource: namespaces,
        namespace: "",
        name: namespace,
    };
    // The watch cache answers as kube's namespace informer does; storage when it has not seen it.
    let ns = match state.cache.get(&at.key()) {
        Some(ns) => ns,
        None => std::sync::Arc::new(rest::get(state, at).await?),
    };
    if objects::is_deleting(&ns) {
        let target = Target::new(&resource.group, &resource.plural, objects::name(object));
        return Err(ApiError::forbidden_on(
            &target,
            &format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

pub fn admit_update(
    state: &ApiState,
    user: &UserInfo,
    resource: &ResourceInfo,
    object: &mut Value,
    old: &Value,
    subresource: &str,
) -> Result<(), ApiError> {
    super::auth_admission::admit_update(state, user, resource, object, old, subresource)?;
    Ok(())
}

pub async fn admit_delete(
    state: &ApiState,
    user: &UserInfo,
    at: ObjectRef<'_>,
) -> Result<(), ApiError> {
    super::auth_admission::admit_delete(state, user, at).await?;
    let is_namespace = at.resource.group.is_empty() && at.resource.plural == "namespaces";
    if is_namespace && IMMORTAL_NAMESPACES.contains(&at.name) {
        return Err(ApiError::forbidden_on(
            &at.target(),
            "this namespace may not be deleted",
        ));
    }
    Ok(())
}
