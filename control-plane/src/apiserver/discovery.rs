//! TEMPORARY stand-in for wt-describe's discovery.
use super::resources::ResourceInfo;
use serde_json::{Value, json};
pub fn version_info() -> Value {
    json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-keel", "platform": "linux/amd64"})
}
pub fn api_versions(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}
pub fn api_group_list(rs: &[ResourceInfo]) -> Value {
    let mut groups: Vec<&str> = rs
        .iter()
        .filter(|r| !r.group.is_empty())
        .map(|r| r.group.as_str())
        .collect();
    groups.dedup();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups.iter().map(|g| json!({"name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}], "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"}})).collect::<Vec<_>>()})
}
pub fn api_group(rs: &[ResourceInfo], group: &str) -> Option<Value> {
    api_group_list(rs)["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == group)
        .cloned()
}
pub fn resource_list(rs: &[ResourceInfo], group: &str, version: &str) -> Option<Value> {
    let items: Vec<Value> = rs.iter().filter(|r| r.group == group && r.version == version).map(|r| json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": r.verbs, "shortNames": r.short_names})).collect();
    if items.is_empty() {
        return None;
    }
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }, "resources": items}),
    )
}
