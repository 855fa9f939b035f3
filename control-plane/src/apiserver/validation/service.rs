//! Services: type, ports (names, numbers, protocols, node ports), clusterIP syntax and its
//! immutability, ExternalName, session affinity, selector labels.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use super::super::names::{validate_dns1123_label, validate_dns1123_subdomain, validate_port_name};
use super::meta::validate_labels;
use super::{Errors, array_at, at, check_one_of, check_port, index, str_at};

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const SESSION_AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const IP_FAMILY_POLICIES: &[&str] = &["SingleStack", "PreferDualStack", "RequireDualStack"];
const IP_FAMILIES: &[&str] = &["IPv4", "IPv6"];

pub(super) fn validate_service(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let service_type = str_at(spec, "type");
    check_one_of(errors, spec, "type", "spec", SERVICE_TYPES);
    check_one_of(errors, spec, "sessionAffinity", "spec", SESSION_AFFINITIES);
    check_one_of(errors, spec, "ipFamilyPolicy", "spec", IP_FAMILY_POLICIES);
    check_one_of(
        errors,
        spec,
        "internalTrafficPolicy",
        "spec",
        TRAFFIC_POLICIES,
    );
    check_one_of(
        errors,
        spec,
        "externalTrafficPolicy",
        "spec",
        TRAFFIC_POLICIES,
    );
    for (i, family) in array_at(spec, "ipFamilies").iter().enumerate() {
        if !family.as_str().is_some_and(|f| IP_FAMILIES.contains(&f)) {
            errors.not_supported(&index("spec.ipFamilies", i), family, IP_FAMILIES);
        }
    }
    let headless = str_at(spec, "clusterIP") == "None";
    if array_at(spec, "ports").is_empty() && !headless && service_type != "ExternalName" {
        errors.required("spec.ports", "");
    }
    validate_ports(spec, service_type, errors);
    validate_cluster_ip(spec, service_type, errors);
    if service_type == "ExternalName" {
        validate_external_name(spec, errors);
    }
    validate_labels(spec.get("selector"), "spec.selector", errors);
    if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
        validate_service_update(spec, old_spec, errors);
    }
}

fn validate_ports(spec: &Value, service_type: &str, errors: &mut Errors) {
    let ports = array_at(spec, "ports");
    let mut names = HashSet::new();
    let mut port_protocols = HashSet::new();
    let node_ports_allowed = service_type == "NodePort" || service_type == "LoadBalancer";
    for (i, port) in ports.iter().enumerate() {
        let path = index("spec.ports", i);
        validate_port_name_field(port, &path, ports.len() > 1, &mut names, errors);
        check_port(errors, port, "port", &path, true);
        check_one_of(errors, port, "protocol", &path, PROTOCOLS);
        validate_target_port(port, &path, errors);
        if port
            .get("nodePort")
            .is_some_and(|n| n.as_i64().unwrap_or(0) != 0)
        {
            if node_ports_allowed {
                check_port(errors, port, "nodePort", &path, false);
            } else {
                errors.forbidden(
                    &at(&path, "nodePort"),
                    &format!("may not be used when `type` is '{service_type}'"),
                );
            }
        }
        let identity = (
            port.get("port").and_then(Value::as_i64),
            str_at(port, "protocol"),
        );
        if !port_protocols.insert(identity) {
            errors.duplicate(&path, port);
        }
    }
}

fn validate_port_name_field<'a>(
    port: &'a Value,
    path: &str,
    required: bool,
    names: &mut HashSet<&'a str>,
    errors: &mut Errors,
) {
    let name = str_at(port, "name");
    if name.is_empty() {
        if required {
            errors.required(&at(path, "name"), "");
        }
        return;
    }
    errors.invalid_each(&at(path, "name"), name, validate_dns1123_label(name));
    if !names.insert(name) {
        errors.duplicate(&at(path, "name"), &Value::from(name));
    }
}

/// A port number, or the name of a container port.
fn validate_target_port(port: &Value, path: &str, errors: &mut Errors) {
    let Some(target) = port.get("targetPort").filter(|t| !t.is_null()) else {
        return;
    };
    match target {
        Value::String(name) => {
            errors.invalid_each(&at(path, "targetPort"), name, validate_port_name(name))
        }
        _ => check_port(errors, port, "targetPort", path, false),
    }
}

fn validate_cluster_ip(spec: &Value, service_type: &str, errors: &mut Errors) {
    let cluster_ip = str_at(spec, "clusterIP");
    if cluster_ip.is_empty() {
        return;
    }
    if cluster_ip == "None" {
        if service_type != "ClusterIP" && service_type != "ExternalName" {
            errors.invalid_str(
                "spec.clusterIPs[0]",
                cluster_ip,
                &format!("may not be set to 'None' for {service_type} services"),
            );
        }
        return;
    }
    if cluster_ip.parse::<IpAddr>().is_err() {
        errors.invalid_str(
            "spec.clusterIPs[0]",
            cluster_ip,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        );
    }
}

fn validate_external_name(spec: &Value, errors: &mut Errors) {
    let name = str_at(spec, "externalName");
    if name.is_empty() {
        errors.required("spec.externalName", "");
        return;
    }
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    errors.invalid_each(
        "spec.externalName",
        name,
        validate_dns1123_subdomain(trimmed),
    );
}

/// A set clusterIP never changes (unless the Service becomes or stops being ExternalName).
fn validate_service_update(spec: &Value, old_spec: &Value, errors: &mut Errors) {
    let old_ip = str_at(old_spec, "clusterIP");
    let new_ip = str_at(spec, "clusterIP");
    let external_name = |s: &Value| str_at(s, "type") == "ExternalName";
    if external_name(spec) || external_name(old_spec) {
        return;
    }
    if !old_ip.is_empty() && old_ip != new_ip {
        errors.immutable("spec.clusterIP", &Value::from(new_ip));
    }
}
