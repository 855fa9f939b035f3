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

impl ResourceInfo {
    /// The kind of a list of this resource: "PodList".
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// "Namespaced" or "Cluster", as aggregated discovery spells the scope.
    pub fn scope(&self) -> &'static str {
        if self.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        }
    }
}

/// What one subresource answers with: its verbs and the kind of its body, which may live in
/// another group (`deployments/scale` is `autoscaling/v1` Scale).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubresourceInfo {
    /// "status", "scale", ...
    pub name: String,
    pub group: String,
    pub version: String,
    pub kind: String,
    pub verbs: Vec<String>,
}

/// Verbs of a subresource, and the group/version/kind of its body: `None` parts mean "the
/// parent's". `"{}"` in a kind is replaced by the parent kind (`PodProxyOptions`).
struct SubresourceSpec {
    name: &'static str,
    gv: Option<(&'static str, &'static str)>,
    kind: Option<&'static str>,
    verbs: &'static [&'static str],
}

const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
const CREATE: &[&str] = &["create"];
const CREATE_GET: &[&str] = &["create", "get"];
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

const SUBRESOURCES: &[SubresourceSpec] = &[
    sub("status", None, None, GET_PATCH_UPDATE),
    sub(
        "scale",
        Some(("autoscaling", "v1")),
        Some("Scale"),
        GET_PATCH_UPDATE,
    ),
    sub("binding", None, Some("Binding"), CREATE),
    sub("eviction", Some(("policy", "v1")), Some("Eviction"), CREATE),
    sub("ephemeralcontainers", None, None, GET_PATCH_UPDATE),
    sub("log", None, None, &["get"]),
    sub("exec", None, Some("{}ExecOptions"), CREATE_GET),
    sub("attach", None, Some("{}AttachOptions"), CREATE_GET),
    sub(
        "portforward",
        None,
        Some("{}PortForwardOptions"),
        CREATE_GET,
    ),
    sub("proxy", None, Some("{}ProxyOptions"), PROXY_VERBS),
    sub("finalize", None, None, &["update"]),
    sub("approval", None, None, GET_PATCH_UPDATE),
    sub(
        "token",
        Some(("authentication.k8s.io", "v1")),
        Some("TokenRequest"),
        CREATE,
    ),
];

const fn sub(
    name: &'static str,
    gv: Option<(&'static str, &'static str)>,
    kind: Option<&'static str>,
    verbs: &'static [&'static str],
) -> SubresourceSpec {
    SubresourceSpec {
        name,
        gv,
        kind,
        verbs,
    }
}

/// The description of `parent/name`; unknown subresources get the parent kind and `get`.
pub fn subresource_info(parent: &ResourceInfo, name: &str) -> SubresourceInfo {
    let spec = SUBRESOURCES.iter().find(|s| s.name == name);
    let (group, version) = match spec.and_then(|s| s.gv) {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (parent.group.clone(), parent.version.clone()),
    };
    let kind = match spec.and_then(|s| s.kind) {
        Some(k) => k.replace("{}", &parent.kind),
        None => parent.kind.clone(),
    };
    let verbs = spec.map_or(&["get"][..], |s| s.verbs);
    SubresourceInfo {
        name: name.to_string(),
        group,
        version,
        kind,
        verbs: strings(verbs),
    }
}

/// The full verb set of an ordinary stored resource, as discovery lists it (sorted).
const CRUD: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces have no deletecollection.
const CRUD_NO_COLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// One row of the built-in table.
struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    verbs: &'static [&'static str],
    subresources: &'static [&'static str],
}

const NS: bool = true;
const CLUSTER: bool = false;
const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

#[rustfmt::skip]
const BUILTINS: &[Builtin] = &[
    b("", "v1", "bindings", "binding", "Binding", NS, NONE, NONE, CREATE, NONE),
    b("", "v1", "configmaps", "configmap", "ConfigMap", NS, &["cm"], NONE, CRUD, NONE),
    b("", "v1", "endpoints", "endpoints", "Endpoints", NS, &["ep"], NONE, CRUD, NONE),
    b("", "v1", "events", "event", "Event", NS, &["ev"], NONE, CRUD, NONE),
    b("", "v1", "limitranges", "limitrange", "LimitRange", NS, &["limits"], NONE, CRUD, NONE),
    b("", "v1", "namespaces", "namespace", "Namespace", CLUSTER, &["ns"], NONE, CRUD_NO_COLLECTION, &["finalize", "status"]),
    b("", "v1", "nodes", "node", "Node", CLUSTER, &["no"], NONE, CRUD, &["proxy", "status"]),
    b("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", NS, &["pvc"], NONE, CRUD, &["status"]),
    b("", "v1", "pods", "pod", "Pod", NS, &["po"], ALL, CRUD,
      &["attach", "binding", "ephemeralcontainers", "eviction", "exec", "log", "portforward", "proxy", "status"]),
    b("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", NS, &["quota"], NONE, CRUD, &["status"]),
    b("", "v1", "secrets", "secret", "Secret", NS, NONE, NONE, CRUD, NONE),
    b("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", NS, &["sa"], NONE, CRUD, &["token"]),
    b("", "v1", "services", "service", "Service", NS, &["svc"], ALL, CRUD, &["proxy", "status"]),
    b("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", NS, NONE, NONE, CRUD, NONE),
    b("apps", "v1", "daemonsets", "daemonset", "DaemonSet", NS, &["ds"], ALL, CRUD, &["status"]),
    b("apps", "v1", "deployments", "deployment", "Deployment", NS, &["deploy"], ALL, CRUD, &["scale", "status"]),
    b("apps", "v1", "replicasets", "replicaset", "ReplicaSet", NS, &["rs"], ALL, CRUD, &["scale", "status"]),
    b("apps", "v1", "statefulsets", "statefulset", "StatefulSet", NS, &["sts"], ALL, CRUD, &["scale", "status"]),
    b("events.k8s.io", "v1", "events", "event", "Event", NS, &["ev"], NONE, CRUD, NONE),
    b("authentication.k8s.io", "v1", "selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview", CLUSTER, NONE, NONE, CREATE, NONE),
    b("authentication.k8s.io", "v1", "tokenreviews", "tokenreview", "TokenReview", CLUSTER, NONE, NONE, CREATE, NONE),
    b("authorization.k8s.io", "v1", "localsubjectaccessreviews", "localsubjectaccessreview", "LocalSubjectAccessReview", NS, NONE, NONE, CREATE, NONE),
    b("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "selfsubjectaccessreview", "SelfSubjectAccessReview", CLUSTER, NONE, NONE, CREATE, NONE),
    b("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview", CLUSTER, NONE, NONE, CREATE, NONE),
    b("authorization.k8s.io", "v1", "subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview", CLUSTER, NONE, NONE, CREATE, NONE),
    b("batch", "v1", "cronjobs", "cronjob", "CronJob", NS, &["cj"], ALL, CRUD, &["status"]),
    b("batch", "v1", "jobs", "job", "Job", NS, NONE, ALL, CRUD, &["status"]),
    b("certificates.k8s.io", "v1", "certificatesigningrequests", "certificatesigningrequest", "CertificateSigningRequest", CLUSTER, &["csr"], NONE, CRUD, &["approval", "status"]),
    b("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", NS, &["pdb"], NONE, CRUD, &["status"]),
    b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", CLUSTER, NONE, NONE, CRUD, NONE),
    b("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", CLUSTER, NONE, NONE, CRUD, NONE),
    b("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", NS, NONE, NONE, CRUD, NONE),
    b("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", NS, NONE, NONE, CRUD, NONE),
    b("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition", "CustomResourceDefinition", CLUSTER, &["crd", "crds"], &["api-extensions"], CRUD, &["status"]),
    b("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", "PriorityClass", CLUSTER, &["pc"], NONE, CRUD, NONE),
    b("coordination.k8s.io", "v1", "leases", "lease", "Lease", NS, NONE, NONE, CRUD, NONE),
    b("node.k8s.io", "v1", "runtimeclasses", "runtimeclass", "RuntimeClass", CLUSTER, NONE, NONE, CRUD, NONE),
    b("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", NS, NONE, NONE, CRUD, NONE),
];

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    verbs: &'static [&'static str],
    subresources: &'static [&'static str],
) -> Builtin {
    Builtin {
        group,
        version,
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        categories,
        verbs,
        subresources,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every built-in resource the apiserver serves, groups in kube's priority order.
pub fn builtin_resources() -> Vec<ResourceInfo> {
    BUILTINS
        .iter()
        .map(|b| ResourceInfo {
            group: b.group.to_string(),
            version: b.version.to_string(),
            kind: b.kind.to_string(),
            plural: b.plural.to_string(),
            singular: b.singular.to_string(),
            namespaced: b.namespaced,
            short_names: strings(b.short_names),
            categories: strings(b.categories),
            verbs: strings(b.verbs),
            subresources: strings(b.subresources),
        })
        .collect()
}

/// Built-in groups in the order kube-apiserver lists them (its group priorities); groups not
/// here (from CRDs) come after, alphabetically.
const GROUP_ORDER: &[&str] = &[
    "",
    "apps",
    "events.k8s.io",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "batch",
    "certificates.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "apiextensions.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "node.k8s.io",
    "discovery.k8s.io",
];

/// One served group with its versions, preferred (first) version first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupVersions {
    pub group: String,
    pub versions: Vec<String>,
}

impl GroupVersions {
    /// The version clients should use: the first one.
    pub fn preferred(&self) -> &str {
        self.versions.first().map_or("", String::as_str)
    }
}

/// The groups served by `resources`, in discovery order, each with its versions ordered by
/// kube's version priority (v1 before v1beta1 before v1alpha1; GA versions higher first).
pub fn preferred_versions(resources: &[ResourceInfo]) -> Vec<GroupVersions> {
    let mut groups: Vec<GroupVersions> = Vec::new();
    for r in resources {
        match groups.iter_mut().find(|g| g.group == r.group) {
            Some(g) if !g.versions.contains(&r.version) => g.versions.push(r.version.clone()),
            Some(_) => {}
            None => groups.push(GroupVersions {
                group: r.group.clone(),
                versions: vec![r.version.clone()],
            }),
        }
    }
    for g in &mut groups {
        g.versions.sort_by_key(|v| version_priority(v));
    }
    groups.sort_by_key(|g| group_rank(&g.group));
    groups
}

fn group_rank(group: &str) -> (usize, String) {
    let rank = GROUP_ORDER
        .iter()
        .position(|g| *g == group)
        .unwrap_or(GROUP_ORDER.len());
    (rank, group.to_string())
}

/// Sort key following kube's version ordering: GA > beta > alpha > anything else, higher
/// numbers first within each level.
pub fn version_priority(version: &str) -> (u8, i64, i64, String) {
    let parsed = version.strip_prefix('v').and_then(|rest| {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, major, 0));
        }
        let (level, n) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else {
            (2, tail.strip_prefix("alpha")?)
        };
        Some((level, major, n.parse::<i64>().ok()?))
    });
    match parsed {
        Some((level, major, minor)) => (level, -major, -minor, String::new()),
        None => (3, 0, 0, version.to_string()),
    }
}

fn json_strings(v: Option<&serde_json::Value>) -> Vec<String> {
    v.and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The resources a CustomResourceDefinition serves: one per version with `served: true`,
/// most preferred version first. Missing names yield nothing (validation's job to refuse).
pub fn resources_from_crd(crd: &serde_json::Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let (group, kind, plural) = (
        text(&spec["group"]),
        text(&names["kind"]),
        text(&names["plural"]),
    );
    if group.is_empty() || kind.is_empty() || plural.is_empty() {
        return Vec::new();
    }
    let singular = match names["singular"].as_str() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => kind.to_lowercase(),
    };
    let mut out: Vec<ResourceInfo> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool() == Some(true))
        .filter_map(|v| {
            let version = v["name"].as_str().filter(|n| !n.is_empty())?;
            let subs = &v["subresources"];
            let subresources = ["scale", "status"]
                .into_iter()
                .filter(|s| subs.get(s).is_some_and(|x| !x.is_null()))
                .map(str::to_string)
                .collect();
            Some(ResourceInfo {
                group: group.clone(),
                version: version.to_string(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: json_strings(names.get("shortNames")),
                categories: json_strings(names.get("categories")),
                verbs: strings(CRUD),
                subresources,
            })
        })
        .collect();
    out.sort_by_key(|r| version_priority(&r.version));
    out
}

/// The resource at `group/version` named `plural`.
pub fn find_by_plural<'a>(
    resources: &'a [ResourceInfo],
    group: &str,
    version: &str,
    plural: &str,
) -> Option<&'a ResourceInfo> {
    resources
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource at `group/version` serving `kind`.
pub fn find_by_kind<'a>(
    resources: &'a [ResourceInfo],
    group: &str,
    version: &str,
    kind: &str,
) -> Option<&'a ResourceInfo> {
    resources
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_unique_and_sorted_by_group_priority() {
        let all = builtin_resources();
        for (i, r) in all.iter().enumerate() {
            let dup = all[i + 1..]
                .iter()
                .any(|o| o.group == r.group && o.version == r.version && o.plural == r.plural);
            assert!(!dup, "duplicate {}/{}", r.api_version(), r.plural);
        }
        let groups: Vec<String> = preferred_versions(&all)
            .into_iter()
            .map(|g| g.group)
            .collect();
        assert_eq!(groups[0], "");
        assert_eq!(groups[1], "apps");
        assert_eq!(groups.len(), GROUP_ORDER.len());
    }

    #[test]
    fn lookups() {
        let all = builtin_resources();
        let d = find_by_plural(&all, "apps", "v1", "deployments").expect("test fixture");
        assert_eq!(d.short_names, vec!["deploy"]);
        assert_eq!(
            find_by_kind(&all, "", "v1", "Pod")
                .expect("test fixture")
                .plural,
            "pods"
        );
        let scale = subresource_info(d, "scale");
        assert_eq!(
            (scale.group.as_str(), scale.kind.as_str()),
            ("autoscaling", "Scale")
        );
        let pods = find_by_plural(&all, "", "v1", "pods").expect("test fixture");
        assert_eq!(subresource_info(pods, "exec").kind, "PodExecOptions");
        assert_eq!(
            subresource_info(pods, "status").verbs,
            vec!["get", "patch", "update"]
        );
    }

    #[test]
    fn crd_resources() {
        let crd = serde_json::json!({"spec": {"group": "stable.example.com", "scope": "Namespaced",
        "names": {"plural": "crontabs", "kind": "CronTab", "shortNames": ["ct"]},
        "versions": [
            {"name": "v1beta1", "served": true, "storage": false},
            {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
            {"name": "v0", "served": false},
        ]}});
        let rs = resources_from_crd(&crd);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].version, "v1");
        assert_eq!(rs[0].subresources, vec!["status"]);
        assert_eq!(rs[0].singular, "crontab");
        assert_eq!(rs[0].short_names, vec!["ct"]);
        assert!(rs[0].namespaced);
        assert!(resources_from_crd(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn version_ordering() {
        let mut v = vec!["v1alpha1", "v1beta1", "v2", "v1", "v1beta2", "foo"];
        v.sort_by_key(|s| version_priority(s));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }
}
