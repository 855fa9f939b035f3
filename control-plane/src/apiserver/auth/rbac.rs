//! RBAC evaluation over the server's in-memory Roles, ClusterRoles and their bindings (JSON
//! objects as stored): request matching, the rules a user holds (SelfSubjectRulesReview),
//! ClusterRole aggregation, and the escalation check made before writing a role or binding.
//!
//! Semantics follow kube: a ClusterRoleBinding grants everywhere; a RoleBinding grants only in
//! its namespace (even when it references a ClusterRole), and never non-resource URLs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::authorizer::{Attributes, Decision};
use super::user::{MASTERS, UserInfo, service_account_user};

/// The API group of RBAC objects.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// One rule of a Role or ClusterRole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

/// The RBAC objects the server keeps in memory. Objects are the stored JSON.
pub trait RbacObjects {
    /// All ClusterRoleBindings.
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>>;
    /// The RoleBindings of a namespace.
    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>>;
    /// A ClusterRole by name.
    fn cluster_role(&self, name: &str) -> Option<Arc<Value>>;
    /// A Role by namespace and name.
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Value>>;
}

/// `*` on every resource of every group.
pub fn all_rule() -> PolicyRule {
    PolicyRule {
        verbs: vec!["*".into()],
        api_groups: vec!["*".into()],
        resources: vec!["*".into()],
        ..PolicyRule::default()
    }
}

/// `*` on every non-resource URL.
pub fn all_non_resource_rule() -> PolicyRule {
    PolicyRule {
        verbs: vec!["*".into()],
        non_resource_urls: vec!["*".into()],
        ..PolicyRule::default()
    }
}

/// The rules of a Role or ClusterRole object (rules that fail to parse are skipped).
pub fn rules_of(role: &Value) -> Vec<PolicyRule> {
    role.get("rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn contains_or_star(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

fn resource_matches(rule: &PolicyRule, attrs: &Attributes) -> bool {
    let combined = attrs.combined_resource();
    rule.resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!attrs.subresource.is_empty()
                && r.strip_prefix("*/") == Some(attrs.subresource.as_str()))
    })
}

fn url_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => pattern == path,
    }
}

/// True when `rule` allows the request.
pub fn rule_allows(rule: &PolicyRule, attrs: &Attributes) -> bool {
    if !contains_or_star(&rule.verbs, &attrs.verb) {
        return false;
    }
    if !attrs.resource_request {
        return rule
            .non_resource_urls
            .iter()
            .any(|u| url_matches(u, &attrs.path));
    }
    contains_or_star(&rule.api_groups, &attrs.api_group)
        && resource_matches(rule, attrs)
        && (rule.resource_names.is_empty() || rule.resource_names.contains(&attrs.name))
}

/// True when a binding's subject is `user`; `binding_namespace` defaults ServiceAccount subjects.
fn subject_matches(subject: &Value, user: &UserInfo, binding_namespace: &str) -> bool {
    let field = |k: &str| subject.get(k).and_then(Value::as_str).unwrap_or_default();
    match field("kind") {
        "User" => field("name") == user.name,
        "Group" => user.in_group(field("name")),
        "ServiceAccount" => {
            let ns = if field("namespace").is_empty() {
                binding_namespace
            } else {
                field("namespace")
            };
            !ns.is_empty() && service_account_user(ns, field("name")) == user.name
        }
        _ => false,
    }
}

fn binding_applies(binding: &Value, user: &UserInfo) -> bool {
    let ns = binding["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .is_some_and(|subjects| subjects.iter().any(|s| subject_matches(s, user, ns)))
}

/// The role a binding references, looked up in `objects` (`namespace` for a Role).
fn referenced_rules(
    objects: &dyn RbacObjects,
    binding: &Value,
    namespace: &str,
) -> Vec<PolicyRule> {
    let kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
    let name = binding["roleRef"]["name"].as_str().unwrap_or_default();
    let role = match kind {
        "ClusterRole" => objects.cluster_role(name),
        "Role" if !namespace.is_empty() => objects.role(namespace, name),
        _ => None,
    };
    role.map(|r| rules_of(&r)).unwrap_or_default()
}

fn binding_name(binding: &Value) -> &str {
    binding["metadata"]["name"].as_str().unwrap_or_default()
}

/// Each applicable binding (kind, name, namespace) with its rules: cluster bindings first,
/// then the RoleBindings of `namespace` (resource rules only).
fn applicable_rules(
    objects: &dyn RbacObjects,
    user: &UserInfo,
    namespace: &str,
) -> Vec<(String, Vec<PolicyRule>)> {
    let mut out = Vec::new();
    for b in objects
        .cluster_role_bindings()
        .iter()
        .filter(|b| binding_applies(b, user))
    {
        let rules = referenced_rules(objects, b, "");
        out.push((format!("ClusterRoleBinding {:?}", binding_name(b)), rules));
    }
    if namespace.is_empty() {
        return out;
    }
    for b in objects
        .role_bindings(namespace)
        .iter()
        .filter(|b| binding_applies(b, user))
    {
        let rules = referenced_rules(objects, b, namespace)
            .into_iter()
            .filter(|r| r.non_resource_urls.is_empty())
            .collect();
        out.push((
            format!(
                "RoleBinding {:?} of namespace {namespace:?}",
                binding_name(b)
            ),
            rules,
        ));
    }
    out
}

/// RBAC's decision: Allow naming the binding, or NoOpinion.
pub fn authorize(attrs: &Attributes, objects: &dyn RbacObjects) -> Decision {
    let namespace = if attrs.resource_request {
        attrs.namespace.as_str()
    } else {
        ""
    };
    for (source, rules) in applicable_rules(objects, &attrs.user, namespace) {
        if rules.iter().any(|r| rule_allows(r, attrs)) {
            return Decision::Allow(format!("RBAC: allowed by {source}"));
        }
    }
    Decision::NoOpinion
}

/// Every rule `user` holds in `namespace` (cluster-wide rules included).
pub fn rules_for(objects: &dyn RbacObjects, user: &UserInfo, namespace: &str) -> Vec<PolicyRule> {
    let mut rules: Vec<PolicyRule> = Vec::new();
    for rule in applicable_rules(objects, user, namespace)
        .into_iter()
        .flat_map(|(_, r)| r)
    {
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    rules
}

/// One atomic permission a requested rule expands to.
enum Atom<'a> {
    Resource {
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        name: Option<&'a str>,
    },
    Url {
        verb: &'a str,
        url: &'a str,
    },
}

fn atoms(rule: &PolicyRule) -> Vec<Atom<'_>> {
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for url in &rule.non_resource_urls {
            out.push(Atom::Url { verb, url });
        }
        for group in &rule.api_groups {
            for resource in &rule.resources {
                if rule.resource_names.is_empty() {
                    out.push(Atom::Resource {
                        verb,
                        group,
                        resource,
                        name: None,
                    });
                }
                for name in &rule.resource_names {
                    out.push(Atom::Resource {
                        verb,
                        group,
                        resource,
                        name: Some(name),
                    });
                }
            }
        }
    }
    out
}

/// True when an owned resource pattern covers a requested one (`*` covers only via `*`).
fn resource_covers(owned: &str, requested: &str) -> bool {
    if owned == "*" || owned == requested {
        return true;
    }
    match (owned.strip_prefix("*/"), requested.split_once('/')) {
        (Some(sub), Some((_, req_sub))) => sub == req_sub,
        _ => false,
    }
}

fn rule_covers(owned: &PolicyRule, atom: &Atom<'_>) -> bool {
    match *atom {
        Atom::Url { verb, url } => {
            contains_or_star(&owned.verbs, verb)
                && owned
                    .non_resource_urls
                    .iter()
                    .any(|o| o == url || o.strip_suffix('*').is_some_and(|p| url.starts_with(p)))
        }
        Atom::Resource {
            verb,
            group,
            resource,
            name,
        } => {
            contains_or_star(&owned.verbs, verb)
                && contains_or_star(&owned.api_groups, group)
                && owned.resources.iter().any(|o| resource_covers(o, resource))
                && (owned.resource_names.is_empty()
                    || name.is_some_and(|n| owned.resource_names.iter().any(|o| o == n)))
        }
    }
}

/// The atomic permissions of `requested` that `owned` does not cover, compacted as kube does:
/// plain resource rules (one group, one resource, no names) with the same group and resource
/// are merged into one rule listing their verbs.
pub fn missing_rights(owned: &[PolicyRule], requested: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut missing: Vec<PolicyRule> = Vec::new();
    for rule in requested {
        for atom in atoms(rule) {
            if owned.iter().any(|o| rule_covers(o, &atom)) {
                continue;
            }
            let atom_rule = match atom {
                Atom::Url { verb, url } => PolicyRule {
                    verbs: vec![verb.to_string()],
                    non_resource_urls: vec![url.to_string()],
                    ..PolicyRule::default()
                },
                Atom::Resource {
                    verb,
                    group,
                    resource,
                    name,
                } => PolicyRule {
                    verbs: vec![verb.to_string()],
                    api_groups: vec![group.to_string()],
                    resources: vec![resource.to_string()],
                    resource_names: name.map(|n| vec![n.to_string()]).unwrap_or_default(),
                    ..PolicyRule::default()
                },
            };
            let simple =
                atom_rule.resource_names.is_empty() && atom_rule.non_resource_urls.is_empty();
            let merged = simple
                && missing.iter_mut().any(|m| {
                    let same = m.resource_names.is_empty()
                        && m.non_resource_urls.is_empty()
                        && m.api_groups == atom_rule.api_groups
                        && m.resources == atom_rule.resources;
                    if same && !m.verbs.contains(&atom_rule.verbs[0]) {
                        m.verbs.push(atom_rule.verbs[0].clone());
                    }
                    same
                });
            if !merged && !missing.contains(&atom_rule) {
                missing.push(atom_rule);
            }
        }
    }
    missing
}

/// Go's `%q` of a string list: `["get" "list"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// A rule as kube prints it in escalation errors: `{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`.
pub fn compact_string(rule: &PolicyRule) -> String {
    let parts: Vec<String> = [
        ("APIGroups", &rule.api_groups),
        ("Resources", &rule.resources),
        ("NonResourceURLs", &rule.non_resource_urls),
        ("ResourceNames", &rule.resource_names),
        ("Verbs", &rule.verbs),
    ]
    .into_iter()
    .filter(|(_, list)| !list.is_empty())
    .map(|(label, list)| format!("{label}:{}", go_quoted(list)))
    .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Escalation prevention: `user` may grant `rules` in `namespace` ("" for cluster-wide) only
/// if it already holds them there. `system:masters` may grant anything. The error is kube's:
/// `user "alice" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC
/// permissions not currently held:` and the missing rules, one a line.
pub fn can_grant(
    objects: &dyn RbacObjects,
    user: &UserInfo,
    rules: &[PolicyRule],
    namespace: &str,
) -> Result<(), String> {
    if user.in_group(MASTERS) {
        return Ok(());
    }
    let missing = missing_rights(&rules_for(objects, user, namespace), rules);
    if missing.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = missing.iter().map(compact_string).collect();
    lines.sort();
    lines.dedup();
    Err(format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_quoted(&user.groups),
        lines.join("\n")
    ))
}

/// Checks a create/update of a Role (`namespace` set) or ClusterRole (`namespace` empty)
/// named `name` with `rules`: allowed with the `escalate` verb on it, or when
/// [`can_grant`] passes.
pub fn check_role_write(
    objects: &dyn RbacObjects,
    user: &UserInfo,
    namespace: &str,
    name: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let resource = if namespace.is_empty() {
        "clusterroles"
    } else {
        "roles"
    };
    let attrs = Attributes::resource(user, "escalate", GROUP, resource, namespace, name);
    if authorize(&attrs, objects).allowed() {
        return Ok(());
    }
    can_grant(objects, user, rules, namespace)
}

/// Checks a create/update of a RoleBinding (`namespace` set) or ClusterRoleBinding
/// referencing `role_ref` (its JSON `{kind, name}`): allowed with the `bind` verb on the
/// referenced role, or when the user holds all of its rules.
pub fn check_binding_write(
    objects: &dyn RbacObjects,
    user: &UserInfo,
    namespace: &str,
    role_ref: &Value,
) -> Result<(), String> {
    let kind = role_ref["kind"].as_str().unwrap_or_default();
    let name = role_ref["name"].as_str().unwrap_or_default();
    let resource = if kind == "Role" {
        "roles"
    } else {
        "clusterroles"
    };
    // As in kube, `bind` is asked in the binding's namespace, so a Role there may grant
    // binding a ClusterRole by name.
    let attrs = Attributes::resource(user, "bind", GROUP, resource, namespace, name);
    if authorize(&attrs, objects).allowed() || user.in_group(MASTERS) {
        return Ok(());
    }
    let binding = serde_json::json!({ "roleRef": role_ref });
    let rules = referenced_rules(objects, &binding, namespace);
    can_grant(objects, user, &rules, namespace)
}

/// True when `labels` satisfy a label selector (`matchLabels`, `matchExpressions`).
pub fn selector_matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let match_labels_ok = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| {
            m.iter()
                .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
        });
    let expressions = selector.get("matchExpressions").and_then(Value::as_array);
    match_labels_ok
        && expressions.is_none_or(|exprs| exprs.iter().all(|e| expression_matches(e, labels)))
}

fn expression_matches(expr: &Value, labels: &BTreeMap<String, String>) -> bool {
    let key = expr["key"].as_str().unwrap_or_default();
    let values: Vec<&str> = expr["values"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let value = labels.get(key).map(String::as_str);
    match expr["operator"].as_str().unwrap_or_default() {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// ClusterRole aggregation: for every role with `aggregationRule.clusterRoleSelectors`, its
/// rules become the union of the rules of the other roles its selectors match (by role name
/// order, repeated until stable so aggregated roles can feed each other). Returns the
/// aggregated roles whose rules changed, ready to store.
pub fn aggregate(cluster_roles: &[Value]) -> Vec<Value> {
    let mut roles: BTreeMap<String, Value> = cluster_roles
        .iter()
        .map(|r| {
            (
                r["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r.clone(),
            )
        })
        .collect();
    let aggregated: Vec<String> = roles
        .iter()
        .filter(|(_, r)| r["aggregationRule"]["clusterRoleSelectors"].is_array())
        .map(|(n, _)| n.clone())
        .collect();
    for _ in 0..=aggregated.len() {
        let mut changed = false;
        for name in &aggregated {
            let rules = union_for(&roles, name);
            if let Some(role) = roles.get_mut(name)
                && rules_of(role) != rules
            {
                role["rules"] = serde_json::to_value(&rules).unwrap_or_default();
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let originals: BTreeMap<&str, &Value> = cluster_roles
        .iter()
        .map(|r| (r["metadata"]["name"].as_str().unwrap_or_default(), r))
        .collect();
    aggregated
        .iter()
        .filter_map(|n| roles.get(n))
        .filter(|r| {
            originals
                .get(r["metadata"]["name"].as_str().unwrap_or_default())
                .is_none_or(|o| rules_of(o) != rules_of(r))
        })
        .cloned()
        .collect()
}

fn union_for(roles: &BTreeMap<String, Value>, name: &str) -> Vec<PolicyRule> {
    let selectors = roles
        .get(name)
        .and_then(|r| {
            r["aggregationRule"]["clusterRoleSelectors"]
                .as_array()
                .cloned()
        })
        .unwrap_or_default();
    let mut rules: Vec<PolicyRule> = Vec::new();
    for (other, role) in roles {
        if other == name {
            continue;
        }
        let labels = labels_of(role);
        if selectors.iter().any(|s| selector_matches(s, &labels)) {
            for rule in rules_of(role) {
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
    }
    rules
}

/// RBAC objects held in plain vectors: for tests and for callers that have no cache yet.
#[derive(Clone, Debug, Default)]
pub struct InMemory {
    pub cluster_roles: Vec<Arc<Value>>,
    pub cluster_role_bindings: Vec<Arc<Value>>,
    pub roles: Vec<Arc<Value>>,
    pub role_bindings: Vec<Arc<Value>>,
}

impl InMemory {
    /// Sorts objects by `kind` into the four lists (other kinds are ignored).
    pub fn from_objects(objects: impl IntoIterator<Item = Value>) -> Self {
        let mut out = InMemory::default();
        for o in objects {
            let list = match o["kind"].as_str().unwrap_or_default() {
                "ClusterRole" => &mut out.cluster_roles,
                "ClusterRoleBinding" => &mut out.cluster_role_bindings,
                "Role" => &mut out.roles,
                "RoleBinding" => &mut out.role_bindings,
                _ => continue,
            };
            list.push(Arc::new(o));
        }
        out
    }
}

fn in_namespace<'a>(
    list: &'a [Arc<Value>],
    namespace: &'a str,
) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
    list.iter()
        .filter(move |o| o["metadata"]["namespace"].as_str() == Some(namespace))
}

fn named_object(list: &[Arc<Value>], name: &str) -> Option<Arc<Value>> {
    list.iter()
        .find(|o| o["metadata"]["name"].as_str() == Some(name))
        .cloned()
}

impl RbacObjects for InMemory {
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>> {
        self.cluster_role_bindings.clone()
    }

    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>> {
        in_namespace(&self.role_bindings, namespace)
            .cloned()
            .collect()
    }

    fn cluster_role(&self, name: &str) -> Option<Arc<Value>> {
        named_object(&self.cluster_roles, name)
    }

    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let in_ns: Vec<Arc<Value>> = in_namespace(&self.roles, namespace).cloned().collect();
        named_object(&in_ns, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo::authenticated(name, groups.iter().map(|g| g.to_string()).collect())
    }

    fn objects() -> InMemory {
        InMemory::from_objects([
            json!({"kind": "ClusterRole", "metadata": {"name": "pod-reader"},
                   "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "scaler"},
                   "rules": [{"verbs": ["update"], "apiGroups": ["*"], "resources": ["*/scale"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "one-secret"},
                   "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "health"},
                   "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/logs/*"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "everything"},
                   "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}),
            json!({"kind": "Role", "metadata": {"name": "cm-writer", "namespace": "dev"},
                   "rules": [{"verbs": ["create", "update"], "apiGroups": [""], "resources": ["configmaps"]}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "readers"},
                   "roleRef": {"kind": "ClusterRole", "name": "pod-reader"},
                   "subjects": [{"kind": "Group", "name": "readers"}]}),
            json!({"kind": "ClusterRoleBinding", "metadata": {"name": "health"},
                   "roleRef": {"kind": "ClusterRole", "name": "health"},
                   "subjects": [{"kind": "User", "name": "alice"}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "scale", "namespace": "dev"},
                   "roleRef": {"kind": "ClusterRole", "name": "scaler"},
                   "subjects": [{"kind": "User", "name": "alice"}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "secret", "namespace": "dev"},
                   "roleRef": {"kind": "ClusterRole", "name": "one-secret"},
                   "subjects": [{"kind": "ServiceAccount", "name": "app"}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "cm", "namespace": "dev"},
                   "roleRef": {"kind": "Role", "name": "cm-writer"},
                   "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "dev"}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "all-in-dev", "namespace": "dev"},
                   "roleRef": {"kind": "ClusterRole", "name": "everything"},
                   "subjects": [{"kind": "User", "name": "dev-admin"}]}),
            json!({"kind": "RoleBinding", "metadata": {"name": "health-ns", "namespace": "dev"},
                   "roleRef": {"kind": "ClusterRole", "name": "health"},
                   "subjects": [{"kind": "User", "name": "bob"}]}),
        ])
    }

    #[test]
    fn table_of_decisions() {
        let o = objects();
        let reader = user("carol", &["readers"]);
        let alice = user("alice", &[]);
        let sa = user("system:serviceaccount:dev:app", &["system:serviceaccounts"]);
        let other_sa = user("system:serviceaccount:prod:app", &[]);
        let dev_admin = user("dev-admin", &[]);
        let bob = user("bob", &[]);
        let res = Attributes::resource;
        let cases: Vec<(&str, Attributes, bool)> = vec![
            (
                "group binding, any namespace",
                res(&reader, "get", "", "pods", "prod", "p"),
                true,
            ),
            (
                "subresource listed",
                res(&reader, "get", "", "pods/log", "prod", "p"),
                true,
            ),
            (
                "subresource not listed",
                res(&reader, "get", "", "pods/exec", "prod", "p"),
                false,
            ),
            (
                "verb not listed",
                res(&reader, "delete", "", "pods", "prod", "p"),
                false,
            ),
            (
                "other group",
                res(&reader, "get", "apps", "pods", "prod", "p"),
                false,
            ),
            (
                "*/scale in bound namespace",
                res(&alice, "update", "apps", "deployments/scale", "dev", "d"),
                true,
            ),
            (
                "*/scale outside namespace",
                res(&alice, "update", "apps", "deployments/scale", "prod", "d"),
                false,
            ),
            (
                "*/scale is not the resource",
                res(&alice, "update", "apps", "deployments", "dev", "d"),
                false,
            ),
            (
                "resourceNames match",
                res(&sa, "get", "", "secrets", "dev", "s1"),
                true,
            ),
            (
                "resourceNames mismatch",
                res(&sa, "get", "", "secrets", "dev", "s2"),
                false,
            ),
            (
                "resourceNames need a name",
                res(&sa, "get", "", "secrets", "dev", ""),
                false,
            ),
            (
                "SA subject with explicit namespace",
                res(&sa, "create", "", "configmaps", "dev", ""),
                true,
            ),
            (
                "SA of another namespace",
                res(&other_sa, "get", "", "secrets", "dev", "s1"),
                false,
            ),
            (
                "wildcard ClusterRole via RoleBinding",
                res(&dev_admin, "delete", "apps", "deployments", "dev", "x"),
                true,
            ),
            (
                "wildcard limited to namespace",
                res(&dev_admin, "delete", "apps", "deployments", "prod", "x"),
                false,
            ),
            (
                "wildcard not cluster-scoped",
                res(&dev_admin, "get", "", "nodes", "", "n"),
                false,
            ),
            (
                "non-resource exact",
                Attributes::non_resource(&alice, "get", "/healthz"),
                true,
            ),
            (
                "non-resource prefix",
                Attributes::non_resource(&alice, "get", "/logs/kubelet.log"),
                true,
            ),
            (
                "non-resource miss",
                Attributes::non_resource(&alice, "get", "/metrics"),
                false,
            ),
            (
                "non-resource verb",
                Attributes::non_resource(&alice, "post", "/healthz"),
                false,
            ),
            (
                "non-resource via RoleBinding ignored",
                Attributes::non_resource(&bob, "get", "/healthz"),
                false,
            ),
        ];
        for (what, attrs, want) in cases {
            assert_eq!(authorize(&attrs, &o).allowed(), want, "{what}");
        }
    }

    #[test]
    fn rules_for_lists_cluster_and_namespace_rules() {
        let o = objects();
        let alice = user("alice", &[]);
        let rules = rules_for(&o, &alice, "dev");
        assert_eq!(rules.len(), 2);
        assert!(rules.iter().any(|r| r.resources == ["*/scale"]));
        assert_eq!(rules_for(&o, &alice, "prod").len(), 1);
    }

    #[test]
    fn escalation_is_prevented() {
        let o = objects();
        let dev_admin = user("dev-admin", &[]);
        let pods = rule_json(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}));
        assert!(can_grant(&o, &dev_admin, std::slice::from_ref(&pods), "dev").is_ok());
        assert!(can_grant(&o, &dev_admin, std::slice::from_ref(&pods), "prod").is_err());
        assert!(can_grant(&o, &dev_admin, std::slice::from_ref(&pods), "").is_err());
        let reader = user("carol", &["readers"]);
        let wide = rule_json(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["*"]}));
        assert!(
            can_grant(&o, &reader, &[wide], "dev").is_err(),
            "* is covered only by *"
        );
        let named = rule_json(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]}),
        );
        assert!(can_grant(&o, &reader, &[named], "dev").is_ok());
        let sa = user("system:serviceaccount:dev:app", &[]);
        let any_secret =
            rule_json(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}));
        assert!(can_grant(&o, &sa, &[any_secret], "dev").is_err());
        let two_verbs = rule_json(
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["secrets"]}),
        );
        assert_eq!(
            can_grant(&o, &sa, &[two_verbs], "dev").unwrap_err(),
            "user \"system:serviceaccount:dev:app\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"
        );
        assert!(can_grant(&o, &user("root", &[MASTERS]), &[all_rule()], "").is_ok());
        let role_ref = json!({"kind": "ClusterRole", "name": "scaler"});
        assert!(check_binding_write(&o, &dev_admin, "dev", &role_ref).is_ok());
        assert!(check_binding_write(&o, &reader, "dev", &role_ref).is_err());
        assert!(check_role_write(&o, &dev_admin, "dev", "r", &[pods]).is_ok());
    }

    fn rule_json(v: Value) -> PolicyRule {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn aggregation_unions_matching_roles_transitively() {
        let roles = vec![
            json!({"kind": "ClusterRole", "metadata": {"name": "top"},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg/top": "true"}}]}}),
            json!({"kind": "ClusterRole", "metadata": {"name": "mid", "labels": {"agg/top": "true"}},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "agg/mid", "operator": "Exists"}]}]}}),
            json!({"kind": "ClusterRole", "metadata": {"name": "leaf", "labels": {"agg/mid": "x"}},
                   "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "direct", "labels": {"agg/top": "true"}},
                   "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]}),
            json!({"kind": "ClusterRole", "metadata": {"name": "unrelated"},
                   "rules": [{"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}]}),
        ];
        let out = aggregate(&roles);
        let by_name = |n: &str| {
            out.iter()
                .find(|r| r["metadata"]["name"] == n)
                .map(rules_of)
                .unwrap()
        };
        assert_eq!(by_name("mid").len(), 1);
        let top = by_name("top");
        assert_eq!(top.len(), 2);
        assert!(!top.iter().any(|r| r.verbs == ["delete"]));
        assert!(
            aggregate(
                &out.iter()
                    .chain(roles.iter().skip(2))
                    .cloned()
                    .collect::<Vec<_>>()
            )
            .is_empty(),
            "stable"
        );
    }
}
