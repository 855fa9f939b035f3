//! `metadata` checks shared by every kind: the name rule of the kind, labels, annotations, and
//! the fields an update may not change.

use serde_json::Value;

use super::super::names::{
    validate_dns1035_label, validate_dns1123_label, validate_dns1123_subdomain,
    validate_label_value, validate_path_segment_name, validate_qualified_name,
};
use super::{Errors, at, key, object_at, str_at};

/// kube's total size limit of `metadata.annotations`.
const TOTAL_ANNOTATION_BYTES: usize = 256 * 1024;

/// The syntax an object name must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
    /// Anything usable as one URL path segment (RBAC objects).
    PathSegment,
}

/// Kinds whose names are not DNS-1123 subdomains.
const NAME_RULES: &[(&str, &str, NameRule)] = &[
    ("", "Namespace", NameRule::Dns1123Label),
    ("", "Service", NameRule::Dns1035Label),
    ("rbac.authorization.k8s.io", "Role", NameRule::PathSegment),
    (
        "rbac.authorization.k8s.io",
        "ClusterRole",
        NameRule::PathSegment,
    ),
    (
        "rbac.authorization.k8s.io",
        "RoleBinding",
        NameRule::PathSegment,
    ),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        NameRule::PathSegment,
    ),
];

impl NameRule {
    pub fn for_kind(group: &str, kind: &str) -> NameRule {
        NAME_RULES
            .iter()
            .find(|(g, k, _)| *g == group && *k == kind)
            .map(|(_, _, rule)| *rule)
            .unwrap_or(NameRule::Dns1123Subdomain)
    }

    /// The messages for a name that breaks the rule (empty when it follows it).
    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Dns1123Subdomain => validate_dns1123_subdomain(name),
            NameRule::Dns1123Label => validate_dns1123_label(name),
            NameRule::Dns1035Label => validate_dns1035_label(name),
            NameRule::PathSegment => validate_path_segment_name(name),
        }
    }
}

pub(super) fn validate_object_meta(
    rule: NameRule,
    obj: &Value,
    old: Option<&Value>,
    errors: &mut Errors,
) {
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    validate_name(rule, meta, errors);
    if let Some(namespace) = meta.get("namespace").and_then(Value::as_str)
        && !namespace.is_empty()
    {
        errors.invalid_each(
            "metadata.namespace",
            namespace,
            validate_dns1123_label(namespace),
        );
    }
    validate_labels(meta.get("labels"), "metadata.labels", errors);
    validate_annotations(meta, errors);
    if let Some(old_meta) = old.and_then(|o| o.get("metadata")) {
        validate_meta_update(meta, old_meta, errors);
    }
}

fn validate_name(rule: NameRule, meta: &Value, errors: &mut Errors) {
    let name = str_at(meta, "name");
    let generate_name = str_at(meta, "generateName");
    if name.is_empty() {
        if generate_name.is_empty() {
            errors.required("metadata.name", "name or generateName is required");
        }
        return;
    }
    errors.invalid_each("metadata.name", name, rule.check(name));
}

/// Label keys are qualified names, values label values (also used for template and selector
/// labels).
pub(super) fn validate_labels(labels: Option<&Value>, path: &str, errors: &mut Errors) {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in labels {
        errors.invalid_each(path, k, validate_qualified_name(k));
        match v.as_str() {
            Some(value) => errors.invalid_each(&key(path, k), value, validate_label_value(value)),
            None => errors.type_invalid(&key(path, k), v, "must be a string"),
        }
    }
}

fn validate_annotations(meta: &Value, errors: &mut Errors) {
    let Some(annotations) = object_at(meta, "annotations") else {
        return;
    };
    let mut total = 0;
    for (k, v) in annotations {
        errors.invalid_each(
            "metadata.annotations",
            k,
            validate_qualified_name(&k.to_lowercase()),
        );
        total += k.len() + v.as_str().map(str::len).unwrap_or_default();
    }
    if total > TOTAL_ANNOTATION_BYTES {
        errors.too_long("metadata.annotations", TOTAL_ANNOTATION_BYTES);
    }
}

/// name and namespace never change; uid and creationTimestamp may be omitted (the server
/// carries them over) but not changed.
fn validate_meta_update(meta: &Value, old_meta: &Value, errors: &mut Errors) {
    for field in ["name", "namespace"] {
        let value = meta.get(field).cloned().unwrap_or(Value::from(""));
        let old_value = old_meta.get(field).cloned().unwrap_or(Value::from(""));
        if value != old_value {
            errors.immutable(&at("metadata", field), &value);
        }
    }
    for field in ["uid", "creationTimestamp"] {
        let value = str_at(meta, field);
        if !value.is_empty() && value != str_at(old_meta, field) {
            errors.immutable(&at("metadata", field), &Value::from(value));
        }
    }
}
