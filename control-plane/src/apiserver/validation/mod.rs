//! Validation on create and update: the 422 field causes kube-apiserver reports, per kind, with
//! its message texts (`spec.containers[0].image: Required value`). Pure functions of the
//! (defaulted) object and, on update, the stored object.

mod job_policies;
mod meta;
mod misc;
mod pod;
mod service;
mod volume_claims;
mod workloads;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

use super::field_errors::{FieldError, FieldErrorKind};

pub use super::cron::{CronError, CronSchedule, parse_cron};
pub use super::quantity::{Quantity, QuantityError, parse_quantity};
pub use meta::NameRule;

/// The kind-specific checks: (object, stored object on update, errors).
type KindValidator = fn(&Value, Option<&Value>, &mut Errors);

/// Kind-specific validation, by (group, kind).
const VALIDATORS: &[(&str, &str, KindValidator)] = &[
    ("", "Pod", pod::validate_pod),
    ("", "Service", service::validate_service),
    ("", "Namespace", misc::validate_namespace),
    ("", "ConfigMap", misc::validate_config_map),
    ("", "Secret", misc::validate_secret),
    ("", "Node", misc::validate_node),
    (
        "",
        "PersistentVolumeClaim",
        volume_claims::validate_persistent_volume_claim,
    ),
    ("", "Event", misc::validate_event),
    (
        "",
        "ReplicationController",
        workloads::validate_replication_controller,
    ),
    ("apps", "Deployment", workloads::validate_deployment),
    ("apps", "ReplicaSet", workloads::validate_replica_set),
    ("apps", "StatefulSet", workloads::validate_stateful_set),
    ("apps", "DaemonSet", workloads::validate_daemon_set),
    ("batch", "Job", workloads::validate_job),
    ("batch", "CronJob", workloads::validate_cron_job),
    ("coordination.k8s.io", "Lease", misc::validate_lease),
    (
        "discovery.k8s.io",
        "EndpointSlice",
        misc::validate_endpoint_slice,
    ),
    ("rbac.authorization.k8s.io", "Role", misc::validate_role),
    (
        "rbac.authorization.k8s.io",
        "ClusterRole",
        misc::validate_cluster_role,
    ),
    (
        "rbac.authorization.k8s.io",
        "RoleBinding",
        misc::validate_role_binding,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        misc::validate_cluster_role_binding,
    ),
    (
        "scheduling.k8s.io",
        "PriorityClass",
        misc::validate_priority_class,
    ),
    (
        "certificates.k8s.io",
        "CertificateSigningRequest",
        misc::validate_csr,
    ),
];

/// Validates an object (after defaulting) on create (`old` None) or update (`old` the stored
/// object). An empty result means valid; otherwise the server answers 422 with these causes.
pub fn validate(
    group: &str,
    _version: &str,
    kind: &str,
    obj: &Value,
    old: Option<&Value>,
) -> Vec<FieldError> {
    let mut errors = Errors::default();
    meta::validate_object_meta(NameRule::for_kind(group, kind), obj, old, &mut errors);
    if let Some((_, _, validator)) = VALIDATORS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
    {
        validator(obj, old, &mut errors);
    }
    errors.0
}

/// Validates a write to the `status` subresource: metadata immutability and, for Pods, the
/// phase. Spec changes are the caller's to discard (status writes keep the stored spec).
pub fn validate_status_update(
    group: &str,
    _version: &str,
    kind: &str,
    obj: &Value,
    old: &Value,
) -> Vec<FieldError> {
    let mut errors = Errors::default();
    meta::validate_object_meta(NameRule::for_kind(group, kind), obj, Some(old), &mut errors);
    if group.is_empty() && kind == "Pod" {
        pod::validate_pod_status(obj, old, &mut errors);
    }
    errors.0
}

/// The errors found so far, with constructors named after kube's `field.*` helpers.
#[derive(Default, Debug)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, kind: FieldErrorKind, field: &str, value: Option<String>, detail: &str) {
        self.0.push(FieldError::new(kind, field, value, detail));
    }

    fn required(&mut self, field: &str, detail: &str) {
        self.push(FieldErrorKind::Required, field, None, detail);
    }

    fn invalid(&mut self, field: &str, value: &Value, detail: &str) {
        self.push(FieldErrorKind::Invalid, field, Some(render(value)), detail);
    }

    fn invalid_str(&mut self, field: &str, value: &str, detail: &str) {
        self.invalid(field, &Value::from(value), detail);
    }

    /// One Invalid per message (a name can break several rules).
    fn invalid_each(&mut self, field: &str, value: &str, messages: Vec<String>) {
        for message in messages {
            self.invalid_str(field, value, &message);
        }
    }

    fn not_supported(&mut self, field: &str, value: &Value, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let detail = format!("supported values: {}", list.join(", "));
        self.push(
            FieldErrorKind::NotSupported,
            field,
            Some(render(value)),
            &detail,
        );
    }

    fn duplicate(&mut self, field: &str, value: &Value) {
        self.push(FieldErrorKind::Duplicate, field, Some(render(value)), "");
    }

    fn forbidden(&mut self, field: &str, detail: &str) {
        self.push(FieldErrorKind::Forbidden, field, None, detail);
    }

    fn too_long(&mut self, field: &str, max_bytes: usize) {
        let detail = format!("must have at most {max_bytes} bytes");
        self.push(FieldErrorKind::TooLong, field, None, &detail);
    }

    fn too_many(&mut self, field: &str, actual: usize, max_items: usize) {
        let detail = format!("must have at most {max_items} items");
        self.push(
            FieldErrorKind::TooMany,
            field,
            Some(actual.to_string()),
            &detail,
        );
    }

    /// Invalid, with the value left out of the message (kube's `field.OmitValueType`).
    fn invalid_omitted(&mut self, field: &str, detail: &str) {
        self.push(FieldErrorKind::Invalid, field, None, detail);
    }

    fn type_invalid(&mut self, field: &str, value: &Value, detail: &str) {
        self.push(
            FieldErrorKind::TypeInvalid,
            field,
            Some(render(value)),
            detail,
        );
    }

    fn immutable(&mut self, field: &str, value: &Value) {
        self.invalid(field, value, "field is immutable");
    }
}

/// How a value appears in a message: JSON (strings quoted, numbers bare).
fn render(value: &Value) -> String {
    value.to_string()
}

/// `path.child`, or `child` at the root.
fn at(path: &str, child: &str) -> String {
    if path.is_empty() {
        child.to_string()
    } else {
        format!("{path}.{child}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

fn str_at<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get(field).and_then(Value::as_str).unwrap_or_default()
}

fn array_at<'a>(obj: &'a Value, field: &str) -> &'a [Value] {
    obj.get(field)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn object_at<'a>(obj: &'a Value, field: &str) -> Option<&'a Map<String, Value>> {
    obj.get(field).and_then(Value::as_object)
}

/// Present and not null.
fn is_set(obj: &Value, field: &str) -> bool {
    obj.get(field).is_some_and(|v| !v.is_null())
}

/// An optional integer field that must be ≥ `min` (the message names the bound as kube does).
fn check_min(errors: &mut Errors, obj: &Value, field: &str, path: &str, min: i64) {
    let Some(value) = obj.get(field).filter(|v| !v.is_null()) else {
        return;
    };
    match value.as_i64() {
        Some(n) if n < min && min == 1 => {
            errors.invalid(&at(path, field), value, "must be greater than 0")
        }
        Some(n) if n < min => errors.invalid(
            &at(path, field),
            value,
            &format!("must be greater than or equal to {min}"),
        ),
        Some(_) => {}
        None => errors.type_invalid(&at(path, field), value, "must be an integer"),
    }
}

/// An optional string field restricted to `supported` values.
fn check_one_of(errors: &mut Errors, obj: &Value, field: &str, path: &str, supported: &[&str]) {
    if let Some(value) = obj.get(field).filter(|v| !v.is_null())
        && !value.as_str().is_some_and(|s| supported.contains(&s))
    {
        errors.not_supported(&at(path, field), value, supported);
    }
}

/// A TCP/UDP port number field: Required when 0 or missing (if `required`), else 1-65535.
fn check_port(errors: &mut Errors, obj: &Value, field: &str, path: &str, required: bool) {
    let value = obj.get(field).filter(|v| !v.is_null());
    match value.map(|v| (v, v.as_i64())) {
        None | Some((_, Some(0))) if required => errors.required(&at(path, field), ""),
        None | Some((_, Some(0))) => {}
        Some((_, Some(n))) if (1..=65535).contains(&n) => {}
        Some((v, _)) => errors.invalid(
            &at(path, field),
            v,
            "must be between 1 and 65535, inclusive",
        ),
    }
}
