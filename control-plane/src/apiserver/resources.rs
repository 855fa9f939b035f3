//! What the apiserver serves: one `ResourceInfo` per resource (built-in or from a CRD), the
//! single description that routing, discovery, OpenAPI and Table output all read.

/// One served resource at one group/version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// URL name, lowercase plural: "pods".
    pub plural: String,
    /// Lowercase singular: "pod".
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// e.g. ["all"] for pods, services, deployments...
    pub categories: Vec<String>,
    /// Verbs on the main resource: get, list, watch, create, update, patch, delete, deletecollection.
    pub verbs: Vec<String>,
    /// Subresources served: "status", "scale", "binding", "eviction", "log", "exec", ...
    pub subresources: Vec<String>,
}

impl ResourceInfo {
    /// "apps/v1", or "v1" for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

// TEMPORARY: replaced by the full table from wt-describe.
pub fn builtin_resources() -> Vec<ResourceInfo> {
    let r = |group: &str, kind: &str, plural: &str, namespaced: bool, subs: &[&str]| ResourceInfo {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: vec![],
        categories: vec![],
        verbs: [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
        .map(String::from)
        .to_vec(),
        subresources: subs.iter().map(|s| s.to_string()).collect(),
    };
    vec![
        r(
            "",
            "Namespace",
            "namespaces",
            false,
            &["status", "finalize"],
        ),
        r("", "Pod", "pods", true, &["status", "binding", "eviction"]),
        r("", "Node", "nodes", false, &["status"]),
        r("", "ConfigMap", "configmaps", true, &[]),
        r("", "Service", "services", true, &["status"]),
        r(
            "apps",
            "Deployment",
            "deployments",
            true,
            &["status", "scale"],
        ),
    ]
}
