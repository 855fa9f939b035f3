//! The smaller kinds: Namespace, ConfigMap, Secret, Node, Event, Lease, EndpointSlice, RBAC
//! roles and bindings, PriorityClass and CertificateSigningRequest.

use std::collections::HashSet;

use base64::Engine;
use serde_json::Value;

use super::super::names::{validate_config_key, validate_qualified_name};
use super::{
    Errors, array_at, at, check_min, check_one_of, check_port, index, key, object_at, str_at,
};

/// kube's limit on the data of one ConfigMap or Secret.
const MAX_DATA_BYTES: usize = 1024 * 1024;
const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
const PREEMPTION_POLICIES: &[&str] = &["Never", "PreemptLowerPriority"];
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const SUBJECT_KINDS: &[&str] = &["Group", "ServiceAccount", "User"];
/// The highest priority a user-defined PriorityClass may have.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;
const MAX_ENDPOINTS_PER_SLICE: usize = 1000;

/// Keys a Secret of each type must have in `data`.
const SECRET_REQUIRED_KEYS: &[(&str, &[&str])] = &[
    ("kubernetes.io/dockercfg", &[".dockercfg"]),
    ("kubernetes.io/dockerconfigjson", &[".dockerconfigjson"]),
    ("kubernetes.io/tls", &["tls.crt", "tls.key"]),
    ("kubernetes.io/ssh-auth", &["ssh-privatekey"]),
];

pub(super) fn validate_namespace(obj: &Value, _old: Option<&Value>, errors: &mut Errors) {
    for (i, finalizer) in array_at(obj.get("spec").unwrap_or(&Value::Null), "finalizers")
        .iter()
        .enumerate()
    {
        let name = finalizer.as_str().unwrap_or_default();
        errors.invalid_each(
            &index("spec.finalizers", i),
            name,
            validate_qualified_name(name),
        );
    }
}

pub(super) fn validate_config_map(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    let mut total = 0;
    let mut keys = HashSet::new();
    for field in ["data", "binaryData"] {
        for (k, value) in object_at(obj, field).into_iter().flatten() {
            let path = key(field, k);
            errors.invalid_each(&path, k, validate_config_key(k));
            if !keys.insert(k.as_str()) {
                errors.duplicate(&path, &Value::from(k.as_str()));
            }
            total += value.as_str().map(str::len).unwrap_or_default();
            if field == "binaryData" {
                check_base64(value, &path, errors);
            }
        }
    }
    if total > MAX_DATA_BYTES {
        errors.too_long("", MAX_DATA_BYTES);
    }
    check_immutable_data(obj, old, &["data", "binaryData"], errors);
}

pub(super) fn validate_secret(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    let mut total = 0;
    let data = object_at(obj, "data");
    for (k, value) in data.into_iter().flatten() {
        let path = key("data", k);
        errors.invalid_each(&path, k, validate_config_key(k));
        total += value.as_str().map(str::len).unwrap_or_default();
        check_base64(value, &path, errors);
    }
    if total > MAX_DATA_BYTES {
        errors.too_long("data", MAX_DATA_BYTES);
    }
    let secret_type = str_at(obj, "type");
    validate_secret_type(obj, secret_type, errors);
    if let Some(old) = old
        && str_at(old, "type") != secret_type
    {
        errors.immutable("type", &Value::from(secret_type));
    }
    check_immutable_data(obj, old, &["data"], errors);
}

fn validate_secret_type(obj: &Value, secret_type: &str, errors: &mut Errors) {
    let data = object_at(obj, "data");
    let required = SECRET_REQUIRED_KEYS
        .iter()
        .find(|(t, _)| *t == secret_type)
        .map(|(_, keys)| *keys)
        .unwrap_or_default();
    for k in required {
        if !data.is_some_and(|d| d.contains_key(*k)) {
            errors.required(&key("data", k), "");
        }
    }
    if secret_type == "kubernetes.io/service-account-token" {
        let annotation = obj.pointer("/metadata/annotations/kubernetes.io~1service-account.name");
        if annotation.and_then(Value::as_str).is_none_or(str::is_empty) {
            errors.required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            );
        }
    }
}

fn check_base64(value: &Value, path: &str, errors: &mut Errors) {
    let decoded = value
        .as_str()
        .map(|s| base64::engine::general_purpose::STANDARD.decode(s));
    if !matches!(decoded, Some(Ok(_))) {
        errors.invalid(path, value, "must be base64-encoded data");
    }
}

/// Objects marked `immutable: true` keep their data and stay immutable.
fn check_immutable_data(obj: &Value, old: Option<&Value>, fields: &[&str], errors: &mut Errors) {
    let Some(old) = old else {
        return;
    };
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
        errors.forbidden("immutable", "field is immutable when `immutable` is set");
    }
    for field in fields {
        if obj.get(*field) != old.get(*field) {
            errors.forbidden(field, "field is immutable when `immutable` is set");
        }
    }
}

pub(super) fn validate_node(obj: &Value, _old: Option<&Value>, errors: &mut Errors) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for (i, taint) in array_at(spec, "taints").iter().enumerate() {
        let path = index("spec.taints", i);
        let taint_key = str_at(taint, "key");
        if taint_key.is_empty() {
            errors.required(&at(&path, "key"), "");
        } else {
            errors.invalid_each(
                &at(&path, "key"),
                taint_key,
                validate_qualified_name(taint_key),
            );
        }
        if str_at(taint, "effect").is_empty() {
            errors.required(&at(&path, "effect"), "");
        } else {
            check_one_of(errors, taint, "effect", &path, TAINT_EFFECTS);
        }
    }
    let pod_cidr = str_at(spec, "podCIDR");
    if !pod_cidr.is_empty() && pod_cidr.parse::<ipnet::IpNet>().is_err() {
        errors.invalid_str(
            "spec.podCIDR",
            pod_cidr,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        );
    }
}

pub(super) fn validate_event(obj: &Value, _old: Option<&Value>, errors: &mut Errors) {
    let namespace = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let involved = obj
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !involved.is_empty() && !namespace.is_empty() && involved != namespace {
        errors.invalid_str(
            "involvedObject.namespace",
            involved,
            "does not match event.namespace",
        );
    }
}

pub(super) fn validate_lease(obj: &Value, _old: Option<&Value>, errors: &mut Errors) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    check_min(errors, spec, "leaseDurationSeconds", "spec", 1);
    check_min(errors, spec, "leaseTransitions", "spec", 0);
}

pub(super) fn validate_endpoint_slice(obj: &Value, _old: Option<&Value>, errors: &mut Errors) {
    let address_type = obj.get("addressType").cloned().unwrap_or(Value::from(""));
    if address_type.as_str().is_none_or(str::is_empty) {
        errors.required("addressType", "");
    } else {
        check_one_of(errors, obj, "addressType", "", ADDRESS_TYPES);
    }
    let endpoints = array_at(obj, "endpoints");
    if endpoints.len() > MAX_ENDPOINTS_PER_SLICE {
        errors.too_long("endpoints", MAX_ENDPOINTS_PER_SLICE);
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        let addresses = array_at(endpoint, "addresses");
        if addresses.is_empty() {
            errors.required(
                &at(&index("endpoints", i), "addresses"),
                "must contain at least 1 address",
            );
        }
    }
    for (i, port) in array_at(obj, "ports").iter().enumerate() {
        let path = index("ports", i);
        check_port(errors, port, "port", &path, false);
        check_one_of(errors, port, "protocol", &path, PROTOCOLS);
    }
}

pub(super) fn validate_role(obj: &Value, _old: Option<&Value>, errors: &mut Errors) {
    validate_rules(obj, true, errors);
}

pub(super) fn validate_cluster_role(obj: &Value, _old: Option<&Value>, errors: &mut Errors) {
    validate_rules(obj, false, errors);
}

fn validate_rules(obj: &Value, namespaced: bool, errors: &mut Errors) {
    for (i, rule) in array_at(obj, "rules").iter().enumerate() {
        let path = index("rules", i);
        if array_at(rule, "verbs").is_empty() {
            errors.required(&at(&path, "verbs"), "verbs must contain at least one value");
        }
        let urls = array_at(rule, "nonResourceURLs");
        if namespaced && !urls.is_empty() {
            errors.invalid(
                &at(&path, "nonResourceURLs"),
                &Value::from(urls.to_vec()),
                "namespaced rules cannot apply to non-resource URLs",
            );
        }
        let resources = array_at(rule, "resources");
        if !urls.is_empty() && !resources.is_empty() {
            errors.invalid(
                &path,
                rule,
                "rules cannot apply to both regular resources and non-resource URLs",
            );
        }
        if urls.is_empty() && array_at(rule, "apiGroups").is_empty() {
            errors.required(
                &at(&path, "apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if urls.is_empty() && resources.is_empty() {
            errors.required(
                &at(&path, "resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

pub(super) fn validate_role_binding(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    validate_binding(obj, old, &["ClusterRole", "Role"], false, errors);
}

pub(super) fn validate_cluster_role_binding(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    validate_binding(obj, old, &["ClusterRole"], true, errors);
}

fn validate_binding(
    obj: &Value,
    old: Option<&Value>,
    role_kinds: &[&str],
    cluster: bool,
    errors: &mut Errors,
) {
    let role_ref = obj.get("roleRef").unwrap_or(&Value::Null);
    if str_at(role_ref, "apiGroup") != RBAC_GROUP {
        errors.not_supported(
            "roleRef.apiGroup",
            role_ref.get("apiGroup").unwrap_or(&Value::from("")),
            &[RBAC_GROUP],
        );
    }
    let role_kind = role_ref.get("kind").cloned().unwrap_or(Value::from(""));
    if !role_kind.as_str().is_some_and(|k| role_kinds.contains(&k)) {
        errors.not_supported("roleRef.kind", &role_kind, role_kinds);
    }
    if str_at(role_ref, "name").is_empty() {
        errors.required("roleRef.name", "");
    }
    for (i, subject) in array_at(obj, "subjects").iter().enumerate() {
        validate_subject(subject, &index("subjects", i), cluster, errors);
    }
    if let Some(old_ref) = old.and_then(|o| o.get("roleRef"))
        && old_ref != role_ref
    {
        errors.invalid("roleRef", role_ref, "cannot change roleRef");
    }
}

fn validate_subject(subject: &Value, path: &str, cluster: bool, errors: &mut Errors) {
    if str_at(subject, "name").is_empty() {
        errors.required(&at(path, "name"), "");
    }
    check_one_of(errors, subject, "kind", path, SUBJECT_KINDS);
    match str_at(subject, "kind") {
        "ServiceAccount" => {
            if !str_at(subject, "apiGroup").is_empty() {
                errors.not_supported(
                    &at(path, "apiGroup"),
                    subject.get("apiGroup").unwrap_or(&Value::Null),
                    &[""],
                );
            }
            if cluster && str_at(subject, "namespace").is_empty() {
                errors.required(&at(path, "namespace"), "");
            }
        }
        "User" | "Group" if str_at(subject, "apiGroup") != RBAC_GROUP => {
            errors.not_supported(
                &at(path, "apiGroup"),
                subject.get("apiGroup").unwrap_or(&Value::from("")),
                &[RBAC_GROUP],
            );
        }
        _ => {}
    }
}

pub(super) fn validate_priority_class(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
    if value > HIGHEST_USER_PRIORITY && !name.starts_with("system-") {
        errors.forbidden(
            "value",
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        );
    }
    check_one_of(errors, obj, "preemptionPolicy", "", PREEMPTION_POLICIES);
    if let Some(old) = old
        && old.get("value") != obj.get("value")
    {
        errors.forbidden("value", "may not be changed in an update.");
    }
}

pub(super) fn validate_csr(obj: &Value, _old: Option<&Value>, errors: &mut Errors) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let request = spec
        .get("request")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(request)
        .unwrap_or_default();
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE REQUEST-----") {
        errors.invalid_str(
            "spec.request",
            request,
            "PEM block type must be CERTIFICATE REQUEST",
        );
    }
    let signer = str_at(spec, "signerName");
    if signer.is_empty() {
        errors.required("spec.signerName", "");
    } else if !signer_name_ok(signer) {
        errors.invalid_str(
            "spec.signerName",
            signer,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        );
    }
}

fn signer_name_ok(signer: &str) -> bool {
    let Some((domain, path)) = signer.split_once('/') else {
        return false;
    };
    !path.is_empty() && super::super::names::validate_dns1123_subdomain(domain).is_empty()
}
