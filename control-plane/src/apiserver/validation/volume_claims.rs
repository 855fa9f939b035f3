//! PersistentVolumeClaims, and the claim templates of StatefulSets: access modes, the storage
//! request, the volume mode, and what an update may not change.

use serde_json::Value;

use super::super::quantity::{QUANTITY_SYNTAX, parse_quantity};
use super::{Errors, array_at, at, check_one_of, index, key};

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const SPEC_IMMUTABLE: &str = "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";

pub(super) fn validate_persistent_volume_claim(
    obj: &Value,
    old: Option<&Value>,
    errors: &mut Errors,
) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_claim_spec(spec, "spec", errors);
    if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
        let frozen = |s: &Value| {
            let mut s = s.clone();
            if let Some(map) = s.as_object_mut() {
                map.remove("volumeAttributesClassName");
                if let Some(resources) = map.get_mut("resources").and_then(Value::as_object_mut) {
                    resources.remove("requests");
                }
                // The binder fills in the volume once.
                if old_spec.get("volumeName").is_none() {
                    map.remove("volumeName");
                }
            }
            s
        };
        if frozen(spec) != frozen(old_spec) {
            errors.forbidden("spec", SPEC_IMMUTABLE);
        }
    }
}

/// A claim's spec at `path` (`spec`, or `spec.volumeClaimTemplates[0].spec`).
pub(super) fn validate_claim_spec(spec: &Value, path: &str, errors: &mut Errors) {
    let modes = array_at(spec, "accessModes");
    let modes_path = at(path, "accessModes");
    if modes.is_empty() {
        errors.required(&modes_path, "at least 1 access mode is required");
    }
    for (i, mode) in modes.iter().enumerate() {
        if !mode.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)) {
            errors.not_supported(&index(&modes_path, i), mode, ACCESS_MODES);
        }
    }
    if modes.len() > 1 && modes.iter().any(|m| m == "ReadWriteOncePod") {
        errors.forbidden(
            &modes_path,
            "may not use ReadWriteOncePod with other access modes",
        );
    }
    check_one_of(errors, spec, "volumeMode", path, VOLUME_MODES);
    let resources = at(path, "resources");
    let storage_path = key(&resources, "storage");
    match spec.pointer("/resources/requests/storage") {
        None | Some(Value::Null) => errors.required(&storage_path, ""),
        Some(value) => {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match parse_quantity(&text) {
                Ok(q) if q.is_negative() || q.as_f64() == 0.0 => {
                    errors.invalid_str(&storage_path, &text, "must be greater than zero")
                }
                Ok(_) => {}
                Err(_) => errors.invalid_str(&storage_path, &text, QUANTITY_SYNTAX),
            }
        }
    }
}
