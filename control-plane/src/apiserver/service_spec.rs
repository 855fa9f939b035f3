//! The rules of a Service spec that need no storage: reading it (type, ports, NodePorts,
//! ClusterIPs), the IP family fields of a single-stack cluster (kube's initIPFamilyFields),
//! and the shaping of an update (the values a client left out are kept, the fields the new
//! type does not use are dropped). `service_rest` claims and releases on top of these.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Map, Value, json};

use super::field_errors::{FieldError, FieldErrorKind};

pub(super) fn field_invalid(field: &str, value: String, detail: impl Into<String>) -> FieldError {
    FieldError::new(FieldErrorKind::Invalid, field, Some(value), detail)
}

/// Go's `%#v` of a `[]string`, as kube renders the clusterIPs in messages.
pub(super) fn go_strings(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

// ---- spec helpers ----------------------------------------------------------------------------

pub(super) fn str_field<'a>(spec: &'a Map<String, Value>, key: &str) -> &'a str {
    spec.get(key).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn service_type(spec: &Map<String, Value>) -> &str {
    match str_field(spec, "type") {
        "" => "ClusterIP",
        other => other,
    }
}

pub(super) fn needs_cluster_ip(spec: &Map<String, Value>) -> bool {
    service_type(spec) != "ExternalName"
}

pub(super) fn needs_node_port(spec: &Map<String, Value>) -> bool {
    matches!(service_type(spec), "NodePort" | "LoadBalancer")
}

/// LoadBalancer Services may opt out of NodePorts (`allocateLoadBalancerNodePorts: false`).
pub(super) fn should_allocate_node_ports(spec: &Map<String, Value>) -> bool {
    match service_type(spec) {
        "NodePort" => true,
        "LoadBalancer" => spec.get("allocateLoadBalancerNodePorts") != Some(&json!(false)),
        _ => false,
    }
}

pub(super) fn needs_health_check(spec: &Map<String, Value>) -> bool {
    service_type(spec) == "LoadBalancer" && str_field(spec, "externalTrafficPolicy") == "Local"
}

pub(super) fn is_headless(spec: &Map<String, Value>) -> bool {
    str_field(spec, "clusterIP") == "None"
}

pub(super) fn has_selector(spec: &Map<String, Value>) -> bool {
    spec.get("selector")
        .and_then(Value::as_object)
        .is_some_and(|s| !s.is_empty())
}

pub(super) fn strings(spec: &Map<String, Value>, key: &str) -> Vec<String> {
    spec.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn cluster_ips(spec: &Map<String, Value>) -> Vec<String> {
    let ips = strings(spec, "clusterIPs");
    if ips.is_empty() {
        let ip = str_field(spec, "clusterIP");
        if !ip.is_empty() {
            return vec![ip.to_string()];
        }
    }
    ips
}

pub(super) fn set_strings(spec: &mut Map<String, Value>, key: &str, values: &[String]) {
    if values.is_empty() {
        spec.remove(key);
    } else {
        spec.insert(key.into(), json!(values));
    }
}

pub(super) fn ports(spec: &Map<String, Value>) -> &[Value] {
    spec.get("ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(super) fn node_port(port: &Value) -> Option<u16> {
    port.get("nodePort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
}

pub(super) fn health_check_port(spec: &Map<String, Value>) -> Option<u16> {
    spec.get("healthCheckNodePort")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
}

pub(super) fn family_of(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

pub(super) fn other_family(family: &str) -> &'static str {
    if family == "IPv4" { "IPv6" } else { "IPv4" }
}

// ---- IP families -----------------------------------------------------------------------------

/// Fills `ipFamilyPolicy`, `ipFamilies` and keeps `clusterIP`/`clusterIPs` in step, refusing
/// what a single-stack cluster of `family` cannot serve (kube's initIPFamilyFields).
pub(super) fn init_ip_family_fields(
    spec: &mut Map<String, Value>,
    old: Option<&Map<String, Value>>,
    family: &'static str,
) -> Result<(), Vec<FieldError>> {
    if !needs_cluster_ip(spec) {
        return Ok(());
    }
    let mut errors = Vec::new();
    // clusterIP and clusterIPs[0] are one value.
    let ip = str_field(spec, "clusterIP").to_string();
    let mut ips = strings(spec, "clusterIPs");
    match (ip.is_empty(), ips.is_empty()) {
        (false, true) => ips = vec![ip.clone()],
        (true, false) => {
            if let Some(first) = ips.first().filter(|f| !f.is_empty()) {
                spec.insert("clusterIP".into(), json!(first));
            }
        }
        (false, false) if ips[0] != ip => errors.push(field_invalid(
            "spec.clusterIPs",
            go_strings(&ips),
            "first value must match `clusterIP`",
        )),
        _ => {}
    }
    set_strings(spec, "clusterIPs", &ips);
    if !errors.is_empty() {
        return Err(errors);
    }
    // A malformed address is validation's to report; allocation leaves it alone.
    if ips
        .iter()
        .enumerate()
        .any(|(i, ip)| !(i == 0 && ip == "None") && family_of(ip).is_none())
    {
        return Ok(());
    }
    let policy = match str_field(spec, "ipFamilyPolicy") {
        "" => match old.map(|o| str_field(o, "ipFamilyPolicy")) {
            Some(previous) if !previous.is_empty() => previous.to_string(),
            _ if is_headless(spec) && !has_selector(spec) => "RequireDualStack".to_string(),
            _ => "SingleStack".to_string(),
        },
        given => given.to_string(),
    };
    spec.insert("ipFamilyPolicy".into(), json!(policy));
    let mut families = strings(spec, "ipFamilies");
    if let Some(old) = old {
        if policy == "SingleStack" {
            if strings(old, "clusterIPs") == ips && ips.len() > 1 {
                ips.truncate(1);
            }
            if strings(old, "ipFamilies") == families && families.len() > 1 {
                families.truncate(1);
            }
        } else {
            let policy_error =
                |detail: &str| field_invalid("spec.ipFamilyPolicy", format!("{policy:?}"), detail);
            if ips.len() < strings(old, "clusterIPs").len() {
                errors.push(policy_error(
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if families.len() < strings(old, "ipFamilies").len() {
                errors.push(policy_error(
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if policy == "SingleStack" {
        let policy_error =
            |detail: &str| field_invalid("spec.ipFamilyPolicy", format!("{policy:?}"), detail);
        if ips.len() == 2 {
            errors.push(policy_error(
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if families.len() == 2 {
            errors.push(policy_error(
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    for (i, ip) in ips.iter().enumerate() {
        if ip == "None" {
            break;
        }
        let Some(ip_family) = family_of(ip) else {
            continue;
        };
        match families.get(i) {
            None if ip_family != family => errors.push(field_invalid(
                &format!("spec.clusterIPs[{i}]"),
                go_strings(&ips),
                format!("{ip_family} is not configured on this cluster"),
            )),
            None => families.push(ip_family.to_string()),
            Some(given) if given != ip_family => errors.push(field_invalid(
                &format!("spec.clusterIPs[{i}]"),
                format!("{ip:?}"),
                format!("expected an {given} value as indicated by `ipFamilies[{i}]`"),
            )),
            Some(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    set_strings(spec, "clusterIPs", &ips);
    if is_headless(spec) && !has_selector(spec) {
        if families.is_empty() {
            families.push(family.to_string());
        }
        if families.len() < 2 && policy != "SingleStack" {
            let alt = other_family(&families[0]);
            families.push(alt.to_string());
        }
        set_strings(spec, "ipFamilies", &families);
        return Ok(());
    }
    if policy == "RequireDualStack" {
        errors.push(field_invalid(
            "spec.ipFamilyPolicy",
            format!("{policy:?}"),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, given) in families.iter().enumerate() {
        if given != family {
            errors.push(field_invalid(
                &format!("spec.ipFamilies[{i}]"),
                format!("{given:?}"),
                "not configured on this cluster",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if families.is_empty() {
        families.push(family.to_string());
    }
    set_strings(spec, "ipFamilies", &families);
    Ok(())
}

// ---- update shaping --------------------------------------------------------------------------

/// Keeps what the client left out of an update but the Service still needs: the ClusterIPs,
/// each port's NodePort (matched by port name) and the health-check NodePort.
pub(super) fn patch_allocated_values(spec: &mut Map<String, Value>, old: &Map<String, Value>) {
    if needs_cluster_ip(old) && needs_cluster_ip(spec) {
        if str_field(spec, "clusterIP").is_empty()
            && let Some(ip) = old.get("clusterIP")
        {
            spec.insert("clusterIP".into(), ip.clone());
        }
        if strings(spec, "clusterIPs").is_empty()
            && let Some(ips) = old.get("clusterIPs")
        {
            spec.insert("clusterIPs".into(), ips.clone());
        }
    }
    if needs_node_port(old) && needs_node_port(spec) {
        let new_used: BTreeSet<u16> = ports(spec).iter().filter_map(node_port).collect();
        let old_used: BTreeSet<u16> = ports(old).iter().filter_map(node_port).collect();
        let used: BTreeSet<u16> = new_used.intersection(&old_used).copied().collect();
        let by_name: Vec<(String, Option<u16>)> = ports(old)
            .iter()
            .map(|p| {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                (name.to_string(), node_port(p))
            })
            .collect();
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut() {
                if node_port(port).is_some() {
                    continue;
                }
                let name = port.get("name").and_then(Value::as_str).unwrap_or("");
                let previous = by_name
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .and_then(|(_, p)| *p);
                if let (Some(previous), Some(port)) = (previous, port.as_object_mut())
                    && !used.contains(&previous)
                {
                    port.insert("nodePort".into(), json!(previous));
                }
            }
        }
    }
    if needs_health_check(old)
        && needs_health_check(spec)
        && health_check_port(spec).is_none()
        && let Some(port) = old.get("healthCheckNodePort")
    {
        spec.insert("healthCheckNodePort".into(), port.clone());
    }
}

/// Clears fields the new type does not use when the client left them as they were (a patch
/// that only changes `type` keeps the old NodePorts in the merged object): kube's
/// dropTypeDependentFields.
pub(super) fn drop_type_dependent_fields(spec: &mut Map<String, Value>, old: &Map<String, Value>) {
    if needs_cluster_ip(old) && !needs_cluster_ip(spec) {
        if cluster_ips(spec) == cluster_ips(old) {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        if strings(spec, "ipFamilies") == strings(old, "ipFamilies") {
            spec.remove("ipFamilies");
        }
        if spec.get("ipFamilyPolicy") == old.get("ipFamilyPolicy") {
            spec.remove("ipFamilyPolicy");
        }
    }
    if needs_node_port(old) && !needs_node_port(spec) {
        let old_ports: BTreeSet<u16> = ports(old).iter().filter_map(node_port).collect();
        let new_ports: BTreeSet<u16> = ports(spec).iter().filter_map(node_port).collect();
        if new_ports.is_subset(&old_ports)
            && let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut)
        {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.remove("nodePort");
            }
        }
    }
    if needs_health_check(old)
        && !needs_health_check(spec)
        && spec.get("healthCheckNodePort") == old.get("healthCheckNodePort")
    {
        spec.remove("healthCheckNodePort");
    }
    if service_type(spec) != "LoadBalancer" {
        spec.remove("allocateLoadBalancerNodePorts");
        if spec.get("loadBalancerClass") == old.get("loadBalancerClass") {
            spec.remove("loadBalancerClass");
        }
    }
    if !needs_node_port(spec) {
        spec.remove("externalTrafficPolicy");
    }
    if service_type(spec) == "ExternalName" {
        spec.remove("internalTrafficPolicy");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn families_default_to_the_cluster_family() {
        let mut s = spec(json!({"ports": [{"port": 80}]}));
        init_ip_family_fields(&mut s, None, "IPv6").expect("ok");
        assert_eq!(s["ipFamilies"], json!(["IPv6"]));
        assert_eq!(s["ipFamilyPolicy"], json!("SingleStack"));
        let mut s = spec(json!({"clusterIP": "10.96.0.5"}));
        init_ip_family_fields(&mut s, None, "IPv4").expect("ok");
        assert_eq!(s["clusterIPs"], json!(["10.96.0.5"]));
        assert_eq!(s["ipFamilies"], json!(["IPv4"]));
        let mut s = spec(json!({"clusterIPs": ["10.96.0.5"]}));
        init_ip_family_fields(&mut s, None, "IPv4").expect("ok");
        assert_eq!(s["clusterIP"], json!("10.96.0.5"));
        // headless without selector: both families asked for, as kube answers
        let mut s = spec(json!({"clusterIP": "None"}));
        init_ip_family_fields(&mut s, None, "IPv4").expect("ok");
        assert_eq!(s["ipFamilyPolicy"], json!("RequireDualStack"));
        assert_eq!(s["ipFamilies"], json!(["IPv4", "IPv6"]));
    }

    #[test]
    fn families_the_cluster_lacks_are_refused() {
        let mut s = spec(json!({"clusterIP": "fd00::5"}));
        let errors = init_ip_family_fields(&mut s, None, "IPv4").expect_err("v6");
        assert_eq!(
            errors[0].to_string(),
            "spec.clusterIPs[0]: Invalid value: []string{\"fd00::5\"}: IPv6 is not configured on this cluster"
        );
        let mut s = spec(json!({"ipFamilyPolicy": "RequireDualStack", "selector": {"a": "b"}}));
        let errors = init_ip_family_fields(&mut s, None, "IPv4").expect_err("dual");
        assert!(
            errors[0]
                .to_string()
                .contains("not configured for dual-stack")
        );
        let mut s = spec(json!({"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.6"]}));
        let errors = init_ip_family_fields(&mut s, None, "IPv4").expect_err("mismatch");
        assert!(
            errors[0]
                .to_string()
                .contains("first value must match `clusterIP`")
        );
    }

    #[test]
    fn updates_keep_and_drop_allocated_fields() {
        let old = spec(json!({"type": "NodePort", "clusterIP": "10.96.0.9",
            "clusterIPs": ["10.96.0.9"], "externalTrafficPolicy": "Cluster",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}));
        // a replace without the allocated values keeps them
        let mut replaced = spec(json!({"type": "NodePort",
            "ports": [{"name": "http", "port": 80}]}));
        patch_allocated_values(&mut replaced, &old);
        assert_eq!(replaced["clusterIP"], json!("10.96.0.9"));
        assert_eq!(replaced["ports"][0]["nodePort"], json!(30080));
        // a patch to ClusterIP carries the old nodePort: it is dropped
        let mut patched = old.clone();
        patched.insert("type".into(), json!("ClusterIP"));
        drop_type_dependent_fields(&mut patched, &old);
        assert!(patched["ports"][0].get("nodePort").is_none());
        assert!(patched.get("externalTrafficPolicy").is_none());
        assert_eq!(patched["clusterIP"], json!("10.96.0.9"));
        // to ExternalName: the cluster IP goes too
        let mut external = old.clone();
        external.insert("type".into(), json!("ExternalName"));
        drop_type_dependent_fields(&mut external, &old);
        assert!(external.get("clusterIP").is_none() && external.get("clusterIPs").is_none());
    }
}
