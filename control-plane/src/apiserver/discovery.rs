//! Discovery documents built from the served `ResourceInfo`s: the legacy `/api`, `/apis`,
//! `/api/v1`, `/apis/G` and `/apis/G/V` documents, the aggregated `apidiscovery.k8s.io/v2`
//! lists kubectl asks for first, and `/version`.
//!
//! Everything takes the resource slice (built-ins plus CRD-derived) so one description drives
//! every document; the HTTP layer only picks the function by path and `Accept`.

use serde_json::{Value, json};

use super::resources::{GroupVersions, ResourceInfo, preferred_versions, subresource_info};

/// The media type of aggregated discovery, v2 (kube 1.30+). Responses must carry it as their
/// `Content-Type` or clients fall back to the legacy documents.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
/// The beta media type older clients still ask for; the document shape is the same.
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version an `Accept` header asks for, if any (first match in
/// the header's order wins).
pub fn aggregated_version_accepted(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let params: Vec<String> = part.split(';').map(|p| p.trim().replace(' ', "")).collect();
        let has = |p: &str| params.iter().any(|x| x == p);
        if !has("g=apidiscovery.k8s.io") || !has("as=APIGroupDiscoveryList") {
            continue;
        }
        if has("v=v2") {
            return Some("v2");
        }
        if has("v=v2beta1") {
            return Some("v2beta1");
        }
    }
    None
}

/// The `Content-Type` of an aggregated answer for `version` ("v2" or "v2beta1"): clients
/// check it before reading the body as aggregated discovery.
pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// `/api`: the core group's versions.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

fn group_version_entry(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

fn api_group_body(g: &GroupVersions) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| group_version_entry(&g.group, v))
        .collect();
    json!({
        "name": g.group,
        "versions": versions,
        "preferredVersion": group_version_entry(&g.group, g.preferred()),
    })
}

/// `/apis`: every named group (the core group is at `/api`).
pub fn api_group_list(resources: &[ResourceInfo]) -> Value {
    let groups: Vec<Value> = preferred_versions(resources)
        .iter()
        .filter(|g| !g.group.is_empty())
        .map(api_group_body)
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, or `None` when nothing is served in that group.
pub fn api_group(resources: &[ResourceInfo], group: &str) -> Option<Value> {
    let g = preferred_versions(resources)
        .into_iter()
        .find(|g| g.group == group && !group.is_empty())?;
    let mut body = api_group_body(&g);
    if let Some(obj) = body.as_object_mut() {
        obj.insert("kind".into(), "APIGroup".into());
        obj.insert("apiVersion".into(), "v1".into());
    }
    Some(body)
}

fn in_group_version<'a>(
    resources: &'a [ResourceInfo],
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'a ResourceInfo> + 'a {
    resources
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

fn optional_list(obj: &mut serde_json::Map<String, Value>, key: &str, items: &[String]) {
    if !items.is_empty() {
        obj.insert(key.into(), json!(items));
    }
}

fn legacy_resource(r: &ResourceInfo) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("name".into(), r.plural.clone().into());
    obj.insert("singularName".into(), r.singular.clone().into());
    obj.insert("namespaced".into(), r.namespaced.into());
    obj.insert("kind".into(), r.kind.clone().into());
    obj.insert("verbs".into(), json!(r.verbs));
    optional_list(&mut obj, "shortNames", &r.short_names);
    optional_list(&mut obj, "categories", &r.categories);
    Value::Object(obj)
}

fn legacy_subresource(r: &ResourceInfo, name: &str) -> Value {
    let s = subresource_info(r, name);
    let mut obj = serde_json::Map::new();
    obj.insert("name".into(), format!("{}/{}", r.plural, name).into());
    obj.insert("singularName".into(), "".into());
    obj.insert("namespaced".into(), r.namespaced.into());
    if s.group != r.group || s.version != r.version {
        obj.insert("group".into(), s.group.into());
        obj.insert("version".into(), s.version.into());
    }
    obj.insert("kind".into(), s.kind.into());
    obj.insert("verbs".into(), json!(s.verbs));
    Value::Object(obj)
}

/// `/api/v1` or `/apis/{group}/{version}`: an APIResourceList whose entries include
/// subresources as `pods/status`. `None` when nothing is served there.
pub fn api_resource_list(resources: &[ResourceInfo], group: &str, version: &str) -> Option<Value> {
    let mut entries = Vec::new();
    for r in in_group_version(resources, group, version) {
        entries.push(legacy_resource(r));
        entries.extend(r.subresources.iter().map(|s| legacy_subresource(r, s)));
    }
    if entries.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }))
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("resource".into(), r.plural.clone().into());
    obj.insert("responseKind".into(), gvk(&r.group, &r.version, &r.kind));
    obj.insert("scope".into(), r.scope().into());
    obj.insert("singularResource".into(), r.singular.clone().into());
    obj.insert("verbs".into(), json!(r.verbs));
    optional_list(&mut obj, "shortNames", &r.short_names);
    optional_list(&mut obj, "categories", &r.categories);
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .map(|name| {
            let s = subresource_info(r, name);
            json!({
                "subresource": name,
                "responseKind": gvk(&s.group, &s.version, &s.kind),
                "verbs": s.verbs,
            })
        })
        .collect();
    if !subs.is_empty() {
        obj.insert("subresources".into(), subs.into());
    }
    Value::Object(obj)
}

fn aggregated_group(resources: &[ResourceInfo], g: &GroupVersions) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| {
            let rs: Vec<Value> = in_group_version(resources, &g.group, v)
                .map(aggregated_resource)
                .collect();
            json!({"version": v, "resources": rs, "freshness": "Current"})
        })
        .collect();
    json!({
        "metadata": {"name": g.group, "creationTimestamp": null},
        "versions": versions,
    })
}

fn aggregated_list(resources: &[ResourceInfo], core: bool, api_version: &str) -> Value {
    let items: Vec<Value> = preferred_versions(resources)
        .iter()
        .filter(|g| g.group.is_empty() == core)
        .map(|g| aggregated_group(resources, g))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
        "metadata": {},
        "items": items,
    })
}

/// Aggregated `/api`: the core group only. `api_version` is "v2" or "v2beta1" (see
/// [`aggregated_version_accepted`]).
pub fn aggregated_core(resources: &[ResourceInfo], api_version: &str) -> Value {
    aggregated_list(resources, true, api_version)
}

/// Aggregated `/apis`: every named group, in priority order.
pub fn aggregated_apis(resources: &[ResourceInfo], api_version: &str) -> Value {
    aggregated_list(resources, false, api_version)
}

/// The Kubernetes minor version this server speaks (kubectl warns beyond one minor of skew).
pub const KUBE_MINOR: &str = "32";

/// `/version`.
pub fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0-keel"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rustc",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// Go's spelling of the build architecture, as `platform` uses it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::super::resources::builtin_resources;
    use super::*;

    #[test]
    fn accept_negotiation() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version_accepted(kubectl), Some("v2"));
        assert_eq!(
            aggregated_version_accepted(AGGREGATED_V2BETA1),
            Some("v2beta1")
        );
        assert_eq!(aggregated_version_accepted("application/json"), None);
        assert_eq!(aggregated_content_type("v2"), AGGREGATED_V2);
    }

    #[test]
    fn legacy_documents() {
        let all = builtin_resources();
        let v1 = api_resource_list(&all, "", "v1").expect("test fixture");
        let names: Vec<&str> = v1["resources"]
            .as_array()
            .expect("test fixture")
            .iter()
            .map(|r| r["name"].as_str().expect("test fixture"))
            .collect();
        assert!(names.contains(&"pods/binding"));
        let eviction = v1["resources"]
            .as_array()
            .expect("test fixture")
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .expect("test fixture");
        assert_eq!(eviction["group"], "policy");
        assert_eq!(eviction["kind"], "Eviction");
        let apps = api_group(&all, "apps").expect("test fixture");
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
        assert!(api_group(&all, "nope").is_none());
        assert!(api_resource_list(&all, "apps", "v9").is_none());
        let list = api_group_list(&all);
        assert_eq!(list["groups"][0]["name"], "apps");
    }

    #[test]
    fn aggregated_documents() {
        let all = builtin_resources();
        let core = aggregated_core(&all, "v2");
        assert_eq!(core["items"].as_array().expect("test fixture").len(), 1);
        let apis = aggregated_apis(&all, "v2");
        let apps = &apis["items"][0];
        assert_eq!(apps["metadata"]["name"], "apps");
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .expect("test fixture")
            .iter()
            .find(|r| r["resource"] == "deployments")
            .expect("test fixture");
        assert_eq!(deploy["scope"], "Namespaced");
        assert_eq!(
            deploy["subresources"][0]["responseKind"]["group"],
            "autoscaling"
        );
        assert_eq!(apps["versions"][0]["freshness"], "Current");
    }
}
