//! Admission: the checks and mutations between decoding a write and storing it that depend
//! on other objects or on who is asking — namespace lifecycle (no new objects in a missing or
//! terminating namespace), and the Node restriction on what kubelets may write.

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
    let ns = rest::get(state, at).await?;
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
    _user: &UserInfo,
    _resource: &ResourceInfo,
    _object: &mut Value,
    _old: &Value,
    _subresource: &str,
) -> Result<(), ApiError> {
    Ok(())
}

pub async fn admit_delete(
    _state: &ApiState,
    _user: &UserInfo,
    at: ObjectRef<'_>,
) -> Result<(), ApiError> {
    let is_namespace = at.resource.group.is_empty() && at.resource.plural == "namespaces";
    if is_namespace && IMMORTAL_NAMESPACES.contains(&at.name) {
        return Err(ApiError::forbidden_on(
            &at.target(),
            "this namespace may not be deleted",
        ));
    }
    Ok(())
}
