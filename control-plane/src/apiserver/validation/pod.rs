//! Pods and pod templates: containers, ports, env, volumes and mounts, resources, restart and
//! DNS policy, tolerations; and what a Pod update or status update may change.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::super::names::{
    validate_dns1123_label, validate_env_var_name, validate_port_name, validate_qualified_name,
};
use super::super::quantity::{QUANTITY_SYNTAX, Quantity, parse_quantity};
use super::meta::validate_labels;
use super::{
    Errors, array_at, at, check_min, check_one_of, check_port, index, key, object_at, str_at,
};

pub(super) const ALL_RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const TOLERATION_OPERATORS: &[&str] = &["Equal", "Exists"];
const TAINT_EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
const POD_PHASES: &[&str] = &["Pending", "Running", "Succeeded", "Failed", "Unknown"];
const PROBES: &[&str] = &["livenessProbe", "readinessProbe", "startupProbe"];
const PROBE_COUNTERS: &[&str] = &[
    "initialDelaySeconds",
    "timeoutSeconds",
    "periodSeconds",
    "successThreshold",
    "failureThreshold",
];

/// The message of a Pod update that changes more than kube allows.
const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub(super) fn validate_pod(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(spec, "spec", ALL_RESTART_POLICIES, errors);
    if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
        validate_pod_spec_update(spec, old_spec, errors);
    }
}

/// A workload's `template`: labels, then the pod spec with the restart policies it allows.
pub(super) fn validate_pod_template(
    template: &Value,
    path: &str,
    restart_policies: &[&str],
    errors: &mut Errors,
) {
    let labels = template.pointer("/metadata/labels");
    validate_labels(labels, &at(path, "metadata.labels"), errors);
    let spec = template.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(spec, &at(path, "spec"), restart_policies, errors);
}

pub(super) fn validate_pod_spec(spec: &Value, path: &str, restarts: &[&str], errors: &mut Errors) {
    let volumes = validate_volumes(spec, path, errors);
    if array_at(spec, "containers").is_empty() {
        errors.required(&at(path, "containers"), "");
    }
    let mut names = HashSet::new();
    for list in ["initContainers", "containers"] {
        for (i, container) in array_at(spec, list).iter().enumerate() {
            let container_path = index(&at(path, list), i);
            validate_container(container, &container_path, &volumes, errors);
            let name = str_at(container, "name");
            if !name.is_empty() && !names.insert(name) {
                errors.duplicate(&at(&container_path, "name"), &Value::from(name));
            }
        }
    }
    check_restart_policy(spec, path, restarts, errors);
    check_one_of(errors, spec, "dnsPolicy", path, DNS_POLICIES);
    check_min(errors, spec, "activeDeadlineSeconds", path, 1);
    check_min(errors, spec, "terminationGracePeriodSeconds", path, 0);
    for field in ["hostname", "subdomain"] {
        let value = str_at(spec, field);
        if !value.is_empty() {
            errors.invalid_each(&at(path, field), value, validate_dns1123_label(value));
        }
    }
    validate_labels(spec.get("nodeSelector"), &at(path, "nodeSelector"), errors);
    validate_tolerations(spec, path, errors);
}

/// Any policy the kind allows; a missing one (not defaulted, e.g. a Job template) is unsupported.
fn check_restart_policy(spec: &Value, path: &str, allowed: &[&str], errors: &mut Errors) {
    let policy = spec
        .get("restartPolicy")
        .cloned()
        .unwrap_or(Value::from(""));
    if !policy.as_str().is_some_and(|p| allowed.contains(&p)) {
        errors.not_supported(&at(path, "restartPolicy"), &policy, allowed);
    }
}

/// Checks `volumes` and returns their names, for the mounts to refer to.
fn validate_volumes<'a>(spec: &'a Value, path: &str, errors: &mut Errors) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for (i, volume) in array_at(spec, "volumes").iter().enumerate() {
        let volume_path = index(&at(path, "volumes"), i);
        let name = str_at(volume, "name");
        if name.is_empty() {
            errors.required(&at(&volume_path, "name"), "");
        } else {
            errors.invalid_each(
                &at(&volume_path, "name"),
                name,
                validate_dns1123_label(name),
            );
            if !names.insert(name) {
                errors.duplicate(&at(&volume_path, "name"), &Value::from(name));
            }
        }
        let sources = volume
            .as_object()
            .map(|v| {
                v.iter()
                    .filter(|(k, v)| *k != "name" && !v.is_null())
                    .count()
            })
            .unwrap_or_default();
        match sources {
            0 => errors.required(&volume_path, "must specify a volume type"),
            1 => {}
            _ => errors.forbidden(&volume_path, "may not specify more than 1 volume type"),
        }
    }
    names
}

fn validate_container(container: &Value, path: &str, volumes: &HashSet<&str>, errors: &mut Errors) {
    let name = str_at(container, "name");
    if name.is_empty() {
        errors.required(&at(path, "name"), "");
    } else {
        errors.invalid_each(&at(path, "name"), name, validate_dns1123_label(name));
    }
    if str_at(container, "image").trim().is_empty() {
        errors.required(&at(path, "image"), "");
    }
    check_one_of(errors, container, "imagePullPolicy", path, PULL_POLICIES);
    check_one_of(
        errors,
        container,
        "terminationMessagePolicy",
        path,
        TERMINATION_MESSAGE_POLICIES,
    );
    validate_container_ports(container, path, errors);
    validate_env(container, path, errors);
    validate_volume_mounts(container, path, volumes, errors);
    validate_resources(container.get("resources"), &at(path, "resources"), errors);
    for probe in PROBES {
        if let Some(probe_value) = container.get(*probe).filter(|p| p.is_object()) {
            for counter in PROBE_COUNTERS {
                check_min(errors, probe_value, counter, &at(path, probe), 0);
            }
        }
    }
}

fn validate_container_ports(container: &Value, path: &str, errors: &mut Errors) {
    let mut names = HashSet::new();
    for (i, port) in array_at(container, "ports").iter().enumerate() {
        let port_path = index(&at(path, "ports"), i);
        check_port(errors, port, "containerPort", &port_path, true);
        check_port(errors, port, "hostPort", &port_path, false);
        check_one_of(errors, port, "protocol", &port_path, PROTOCOLS);
        let name = str_at(port, "name");
        if !name.is_empty() {
            errors.invalid_each(&at(&port_path, "name"), name, validate_port_name(name));
            if !names.insert(name) {
                errors.duplicate(&at(&port_path, "name"), &Value::from(name));
            }
        }
    }
}

fn validate_env(container: &Value, path: &str, errors: &mut Errors) {
    for (i, env) in array_at(container, "env").iter().enumerate() {
        let env_path = index(&at(path, "env"), i);
        let name = str_at(env, "name");
        if name.is_empty() {
            errors.required(&at(&env_path, "name"), "");
        } else {
            errors.invalid_each(&at(&env_path, "name"), name, validate_env_var_name(name));
        }
        let has_value = !str_at(env, "value").is_empty();
        if has_value && env.get("valueFrom").is_some_and(|v| !v.is_null()) {
            errors.invalid_str(
                &at(&env_path, "valueFrom"),
                "",
                "may not be specified when `value` is not empty",
            );
        }
    }
}

fn validate_volume_mounts(
    container: &Value,
    path: &str,
    volumes: &HashSet<&str>,
    errors: &mut Errors,
) {
    let mut mount_paths = HashSet::new();
    for (i, mount) in array_at(container, "volumeMounts").iter().enumerate() {
        let mount_path = index(&at(path, "volumeMounts"), i);
        let name = str_at(mount, "name");
        if name.is_empty() {
            errors.required(&at(&mount_path, "name"), "");
        } else if !volumes.contains(name) {
            errors.invalid_str(
                &at(&mount_path, "name"),
                name,
                "not found in the pod's volumes",
            );
        }
        let target = str_at(mount, "mountPath");
        if target.is_empty() {
            errors.required(&at(&mount_path, "mountPath"), "");
        } else if !mount_paths.insert(target) {
            errors.invalid_str(&at(&mount_path, "mountPath"), target, "must be unique");
        }
    }
}

/// Quantities parse and are not negative; each request is at most its limit.
pub(super) fn validate_resources(resources: Option<&Value>, path: &str, errors: &mut Errors) {
    let Some(resources) = resources.filter(|r| r.is_object()) else {
        return;
    };
    let limits = parsed_quantities(resources, "limits", path, errors);
    let requests = parsed_quantities(resources, "requests", path, errors);
    for (name, request, text) in &requests {
        let limit = limits.iter().find(|(n, _, _)| n == name);
        if let Some((_, limit, limit_text)) = limit
            && request > limit
        {
            errors.invalid_str(
                &key(&at(path, "requests"), name),
                text,
                &format!("must be less than or equal to {name} limit of {limit_text}"),
            );
        }
    }
}

/// The parsable entries of `requests` or `limits`, reporting the others.
fn parsed_quantities(
    resources: &Value,
    list: &str,
    path: &str,
    errors: &mut Errors,
) -> Vec<(String, Quantity, String)> {
    let mut parsed = Vec::new();
    for (name, value) in object_at(resources, list).into_iter().flatten() {
        let field = key(&at(path, list), name);
        errors.invalid_each(&field, name, resource_name_problems(name));
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => other.to_string(),
        };
        match parse_quantity(&text) {
            Ok(q) if q.is_negative() => {
                errors.invalid_str(&field, &text, "must be greater than or equal to 0")
            }
            Ok(q) => parsed.push((name.clone(), q, text)),
            Err(_) => errors.invalid_str(&field, &text, QUANTITY_SYNTAX),
        }
    }
    parsed
}

/// Resource names are standard (`cpu`) or qualified with a domain (`nvidia.com/gpu`).
fn resource_name_problems(name: &str) -> Vec<String> {
    validate_qualified_name(name)
}

fn validate_tolerations(spec: &Value, path: &str, errors: &mut Errors) {
    for (i, toleration) in array_at(spec, "tolerations").iter().enumerate() {
        let tol_path = index(&at(path, "tolerations"), i);
        let key_name = str_at(toleration, "key");
        if !key_name.is_empty() {
            errors.invalid_each(
                &at(&tol_path, "key"),
                key_name,
                validate_qualified_name(key_name),
            );
        }
        check_one_of(
            errors,
            toleration,
            "operator",
            &tol_path,
            TOLERATION_OPERATORS,
        );
        let operator = str_at(toleration, "operator");
        if key_name.is_empty() && operator != "Exists" {
            errors.invalid_str(
                &at(&tol_path, "operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        if operator == "Exists" && !str_at(toleration, "value").is_empty() {
            errors.invalid_str(
                &at(&tol_path, "operator"),
                str_at(toleration, "value"),
                "value must be empty when `operator` is 'Exists'",
            );
        }
        if !str_at(toleration, "effect").is_empty() {
            check_one_of(errors, toleration, "effect", &tol_path, TAINT_EFFECTS);
        }
    }
}

/// Only images, activeDeadlineSeconds, added tolerations and terminationGracePeriodSeconds may
/// change: copy those from the new spec onto the old one and the two must then be equal.
fn validate_pod_spec_update(spec: &Value, old_spec: &Value, errors: &mut Errors) {
    let mut allowed = old_spec.clone();
    for list in ["containers", "initContainers"] {
        let images: Vec<Value> = array_at(spec, list)
            .iter()
            .map(|c| c.get("image").cloned().unwrap_or(Value::Null))
            .collect();
        if let Some(containers) = allowed.get_mut(list).and_then(Value::as_array_mut)
            && containers.len() == images.len()
        {
            for (container, image) in containers.iter_mut().zip(images) {
                container["image"] = image;
            }
        }
    }
    for field in ["activeDeadlineSeconds", "terminationGracePeriodSeconds"] {
        copy_field(spec, &mut allowed, field);
    }
    let old_tolerations = array_at(old_spec, "tolerations");
    let new_tolerations = array_at(spec, "tolerations");
    if old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        copy_field(spec, &mut allowed, "tolerations");
    }
    remove_scheduling_gates_allowed(spec, &mut allowed);
    if &allowed != spec {
        errors.forbidden("spec", POD_UPDATE_FORBIDDEN);
    }
}

fn copy_field(from: &Value, to: &mut Value, field: &str) {
    if let Some(target) = to.as_object_mut() {
        match from.get(field) {
            Some(value) => target.insert(field.to_string(), value.clone()),
            None => target.remove(field),
        };
    }
}

/// Scheduling gates may be removed (never added).
fn remove_scheduling_gates_allowed(spec: &Value, allowed: &mut Value) {
    let old_gates = array_at(allowed, "schedulingGates").to_vec();
    let new_gates = array_at(spec, "schedulingGates");
    if new_gates.iter().all(|g| old_gates.contains(g)) {
        copy_field(spec, allowed, "schedulingGates");
    }
}

/// Status writes: a known phase, and never out of Succeeded or Failed.
pub(super) fn validate_pod_status(obj: &Value, old: &Value, errors: &mut Errors) {
    let status = obj.get("status").unwrap_or(&Value::Null);
    check_one_of(errors, status, "phase", "status", POD_PHASES);
    let old_phase = old.pointer("/status/phase").and_then(Value::as_str);
    let new_phase = status.get("phase").and_then(Value::as_str);
    let terminal = matches!(old_phase, Some("Succeeded" | "Failed"));
    if terminal && new_phase != old_phase {
        errors.forbidden(
            "status.phase",
            &format!(
                "cannot transition from a terminal phase {}",
                json!(old_phase)
            ),
        );
    }
}
