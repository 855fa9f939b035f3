//! Per-resource write rules that every create and update goes through, as kube's registry
//! strategies: what a create resets (status), what an update of the main resource may not touch
//! (status, when a status subresource exists) and what a status update may not touch
//! (everything else), the metadata the server owns (uid, creationTimestamp, generation,
//! deletion fields), then defaulting and validation.

use serde_json::{Value, json};

use super::field_errors::FieldError;
use super::objects;
use super::resources::ResourceInfo;
use super::{defaults, validation};

/// Kinds whose status is cleared on create (the controllers that own the status write it).
const STATUS_CLEARED_ON_CREATE: &[(&str, &str)] = &[
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("", "Service"),
    ("", "ResourceQuota"),
    ("policy", "PodDisruptionBudget"),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
];

pub fn has_status_subresource(resource: &ResourceInfo) -> bool {
    resource.subresources.iter().any(|s| s == "status")
}

/// Shapes a new object before defaulting and validation.
pub fn prepare_for_create(resource: &ResourceInfo, object: &mut Value) {
    let cleared = STATUS_CLEARED_ON_CREATE
        .iter()
        .any(|(group, kind)| resource.group == *group && resource.kind == *kind);
    if cleared && let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    match (resource.group.as_str(), resource.kind.as_str()) {
        ("", "Pod") => {
            let phase = object.pointer("/status/phase").cloned();
            object["status"] = json!({"phase": phase.unwrap_or_else(|| json!("Pending"))});
        }
        ("", "Namespace") => {
            object["status"] = json!({"phase": "Active"});
        }
        ("", "PersistentVolumeClaim") => {
            object["status"] = json!({"phase": "Pending"});
        }
        ("batch", "Job") => {
            let uid = objects::meta_str(object, "uid").to_string();
            defaults::generate_job_selector(object, &uid);
        }
        _ => {}
    }
    if let Some(meta) = objects::metadata_mut(object) {
        meta.insert("generation".into(), json!(1));
        for field in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
            meta.remove(field);
        }
    }
}

/// Carries over from `old` what a write of `subresource` ("" for the main resource) may not
/// change, and bumps the generation when the spec changed.
pub fn prepare_for_update(
    resource: &ResourceInfo,
    new: &mut Value,
    old: &Value,
    subresource: &str,
) {
    match subresource {
        "status" => {
            let status = new.get("status").cloned();
            let mut merged = old.clone();
            match status {
                Some(status) => merged["status"] = status,
                None => {
                    if let Some(map) = merged.as_object_mut() {
                        map.remove("status");
                    }
                }
            }
            // A status write may still carry the caller's resourceVersion precondition.
            if let Some(rv) = new.pointer("/metadata/resourceVersion").cloned()
                && let Some(meta) = objects::metadata_mut(&mut merged)
            {
                meta.insert("resourceVersion".into(), rv);
            }
            *new = merged;
        }
        // The binding handler wrote spec.nodeName and the PodScheduled condition itself.
        "binding" => {}
        // A CSR's approval writes only its conditions (Approved/Denied).
        "approval" => {
            let conditions = new.pointer("/status/conditions").cloned();
            let mut merged = old.clone();
            match conditions {
                Some(conditions) => merged["status"]["conditions"] = conditions,
                None => {
                    if let Some(status) = merged.get_mut("status").and_then(Value::as_object_mut) {
                        status.remove("conditions");
                    }
                }
            }
            if let Some(rv) = new.pointer("/metadata/resourceVersion").cloned()
                && let Some(meta) = objects::metadata_mut(&mut merged)
            {
                meta.insert("resourceVersion".into(), rv);
            }
            *new = merged;
        }
        _ if has_status_subresource(resource) => match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
            }
        },
        _ => {}
    }
    let generation = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = if objects::spec_part(new) != objects::spec_part(old) {
        generation + 1
    } else {
        generation
    };
    let Some(meta) = objects::metadata_mut(new) else {
        return;
    };
    meta.insert("generation".into(), json!(generation));
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old.pointer(&format!("/metadata/{field}")) {
            Some(value) => meta.insert(field.into(), value.clone()),
            None => meta.remove(field),
        };
    }
}

/// Defaulting, as kube applies it to every write.
pub fn default(resource: &ResourceInfo, object: &mut Value) {
    defaults::apply_defaults(&resource.group, &resource.version, &resource.kind, object);
    if resource.group == "apiextensions.k8s.io" && resource.kind == "CustomResourceDefinition" {
        super::crd::default_crd(object);
    }
}

/// The field errors of a create (`old` None) or update.
pub fn validate(resource: &ResourceInfo, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = validation::validate(
        &resource.group,
        &resource.version,
        &resource.kind,
        object,
        old,
    );
    if resource.group == "apiextensions.k8s.io" && resource.kind == "CustomResourceDefinition" {
        errors.extend(super::crd::validate_crd(object, old));
    }
    errors
}
