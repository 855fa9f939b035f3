//! The default ClusterRoles and ClusterRoleBindings the server creates at start (when absent,
//! or when labelled for auto-update), as JSON objects labelled
//! `kubernetes.io/bootstrapping: rbac-defaults` and annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"`.
//!
//! The roles follow kube's defaults. Keel differences: `system:node` is bound to the group
//! `system:nodes` and leaves out secrets, configmaps, PVCs, PVs and service account tokens,
//! which only the Node authorizer grants (per pod); `system:kube-controller-manager` is broad
//! because keel's controllers run under that one identity; the bootstrap-token CSR bindings
//! kubeadm creates (`system:bootstrappers` may create and auto-approve node client CSRs,
//! nodes may renew their own) are included under `keel:` names.

use serde_json::{Value, json};

use super::rbac::{GROUP, PolicyRule, aggregate};
use super::user::{AUTHENTICATED, MASTERS, NODES, SERVICE_ACCOUNTS, UNAUTHENTICATED};

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const ALL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const AGGREGATE_PREFIX: &str = "rbac.authorization.k8s.io/aggregate-to-";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A resource rule.
fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: strings(groups),
        resources: strings(resources),
        ..PolicyRule::default()
    }
}

/// A resource rule limited to names.
fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        resource_names: strings(names),
        ..rule(verbs, groups, resources)
    }
}

/// A non-resource rule.
fn urls(verbs: &[&str], paths: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        non_resource_urls: strings(paths),
        ..PolicyRule::default()
    }
}

fn metadata(name: &str, extra_labels: &[(&str, &str)]) -> Value {
    let mut labels = json!({ "kubernetes.io/bootstrapping": "rbac-defaults" });
    for (k, v) in extra_labels {
        labels[*k] = json!(v);
    }
    json!({
        "name": name,
        "labels": labels,
        "annotations": { "rbac.authorization.kubernetes.io/autoupdate": "true" },
    })
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> Value {
    labelled_role(name, &[], rules)
}

fn labelled_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(name, labels),
        "rules": rules,
    })
}

/// A user-facing role aggregating `aggregate-to-<target>` roles.
fn aggregating_role(name: &str, labels: &[(&str, &str)]) -> Value {
    let mut role = labelled_role(name, labels, Vec::new());
    role["aggregationRule"] = json!({ "clusterRoleSelectors": [
        { "matchLabels": { format!("{AGGREGATE_PREFIX}{name}"): "true" } }
    ]});
    role
}

/// A subject: ("Group" | "User", name).
fn binding(name: &str, role: &str, subjects: &[(&str, &str)]) -> Value {
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|(kind, n)| json!({ "kind": kind, "apiGroup": GROUP, "name": n }))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": metadata(name, &[]),
        "roleRef": { "apiGroup": GROUP, "kind": "ClusterRole", "name": role },
        "subjects": subjects,
    })
}

fn user_facing_roles() -> Vec<Value> {
    let to = |t: &str| format!("{AGGREGATE_PREFIX}{t}");
    let (to_admin, to_edit, to_view) = (to("admin"), to("edit"), to("view"));
    vec![
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        aggregating_role("admin", &[]),
        aggregating_role("edit", &[(&to_admin, "true")]),
        aggregating_role("view", &[(&to_admin, "true"), (&to_edit, "true")]),
        labelled_role(
            "system:aggregate-to-admin",
            &[(&to_admin, "true")],
            admin_rules(),
        ),
        labelled_role(
            "system:aggregate-to-edit",
            &[(&to_admin, "true"), (&to_edit, "true")],
            edit_rules(),
        ),
        labelled_role(
            "system:aggregate-to-view",
            &[(&to_admin, "true"), (&to_edit, "true"), (&to_view, "true")],
            view_rules(),
        ),
    ]
}

fn admin_rules() -> Vec<PolicyRule> {
    vec![
        rule(ALL, &[GROUP], &["roles", "rolebindings"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
    ]
}

fn edit_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            WRITE,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
        ),
        rule(
            &["create"],
            &[""],
            &["pods/eviction", "serviceaccounts/token"],
        ),
        rule(
            WRITE,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
        ),
        rule(READ, &[""], &["secrets"]),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            WRITE,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
        ),
        rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
        rule(
            WRITE,
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
        ),
        rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
        rule(WRITE, &["discovery.k8s.io"], &["endpointslices"]),
    ]
}

fn view_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "pods",
                "pods/log",
                "pods/status",
                "configmaps",
                "endpoints",
                "events",
                "limitranges",
                "namespaces",
                "namespaces/status",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
                "serviceaccounts",
                "services",
                "services/status",
                "bindings",
            ],
        ),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        rule(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(READ, &["events.k8s.io"], &["events"]),
    ]
}

fn discovery_roles() -> Vec<Value> {
    let health = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    vec![
        cluster_role(
            "system:discovery",
            vec![urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role("system:public-info-viewer", vec![urls(&["get"], &health)]),
        cluster_role(
            "system:basic-user",
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:monitoring",
            vec![urls(
                &["get"],
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/readyz",
                    "/readyz/*",
                    "/metrics",
                    "/metrics/slis",
                ],
            )],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![urls(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
        cluster_role(
            "system:auth-delegator",
            vec![
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
    ]
}

fn events_rules() -> Vec<PolicyRule> {
    vec![rule(
        &["create", "patch", "update"],
        &["", "events.k8s.io"],
        &["events"],
    )]
}

fn node_rules() -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(
            &[
                "create", "delete", "get", "list", "watch", "update", "patch",
            ],
            &[""],
            &["nodes"],
        ),
        rule(&["patch", "update"], &[""], &["nodes/status"]),
        rule(
            &["create", "delete", "get", "list", "watch"],
            &[""],
            &["pods"],
        ),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(READ, &[""], &["services", "endpoints"]),
        rule(
            &["create", "delete", "get", "patch", "update"],
            &["coordination.k8s.io"],
            &["leases"],
        ),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews", "subjectaccessreviews"],
        ),
        rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
        rule(READ, &["node.k8s.io"], &["runtimeclasses"]),
        rule(
            &["create", "delete", "get", "patch", "update"],
            &["storage.k8s.io"],
            &["csinodes"],
        ),
        rule(READ, &["storage.k8s.io"], &["csidrivers"]),
        rule(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
    ];
    rules.extend(events_rules());
    rules
}

fn proxier_rules() -> Vec<PolicyRule> {
    let mut rules = vec![
        rule(&["list", "watch"], &[""], &["endpoints", "services"]),
        rule(READ, &[""], &["nodes"]),
        rule(
            &["list", "watch"],
            &["discovery.k8s.io"],
            &["endpointslices"],
        ),
    ];
    rules.extend(events_rules());
    rules
}

fn scheduler_rules() -> Vec<PolicyRule> {
    let mut rules = events_rules();
    rules.extend([
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named(
            &["get", "update"],
            &["coordination.k8s.io"],
            &["leases"],
            &["kube-scheduler"],
        ),
        rule(READ, &[""], &["nodes", "namespaces"]),
        rule(&["delete", "get", "list", "watch"], &[""], &["pods"]),
        rule(&["create"], &[""], &["bindings", "pods/binding"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(
            &["list", "watch"],
            &[""],
            &[
                "replicationcontrollers",
                "services",
                "persistentvolumeclaims",
                "persistentvolumes",
            ],
        ),
        rule(
            &["list", "watch"],
            &["apps"],
            &["replicasets", "statefulsets"],
        ),
        rule(&["list", "watch"], &["policy"], &["poddisruptionbudgets"]),
        rule(
            &["list", "watch"],
            &["storage.k8s.io"],
            &[
                "csinodes",
                "csidrivers",
                "csistoragecapacities",
                "storageclasses",
            ],
        ),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
    ]);
    rules
}

fn component_roles() -> Vec<Value> {
    let csr = "certificatesigningrequests";
    vec![
        cluster_role("system:node", node_rules()),
        cluster_role("system:node-proxier", proxier_rules()),
        cluster_role("system:kube-scheduler", scheduler_rules()),
        cluster_role(
            "system:kube-controller-manager",
            vec![
                rule(ALL, &["*"], &["*"]),
                rule(&["approve", "sign"], &["certificates.k8s.io"], &["signers"]),
                rule(&["create"], &[""], &["serviceaccounts/token"]),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            vec![rule(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &[csr],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
    ]
}

/// The default ClusterRoles, aggregated roles (admin, edit, view) already filled in.
pub fn cluster_roles() -> Vec<Value> {
    let mut roles = user_facing_roles();
    roles.extend(discovery_roles());
    roles.extend(component_roles());
    let aggregated = aggregate(&roles);
    for role in roles.iter_mut() {
        if let Some(filled) = aggregated
            .iter()
            .find(|a| a["metadata"]["name"] == role["metadata"]["name"])
        {
            *role = filled.clone();
        }
    }
    roles
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    let group = |n| ("Group", n);
    let user = |n| ("User", n);
    vec![
        binding("cluster-admin", "cluster-admin", &[group(MASTERS)]),
        binding(
            "system:basic-user",
            "system:basic-user",
            &[group(AUTHENTICATED)],
        ),
        binding(
            "system:discovery",
            "system:discovery",
            &[group(AUTHENTICATED)],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[group(AUTHENTICATED), group(UNAUTHENTICATED)],
        ),
        binding(
            "system:monitoring",
            "system:monitoring",
            &[group("system:monitoring")],
        ),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            &[group(SERVICE_ACCOUNTS)],
        ),
        binding("system:node", "system:node", &[group(NODES)]),
        binding(
            "system:node-proxier",
            "system:node-proxier",
            &[user("system:kube-proxy")],
        ),
        binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            &[user("system:kube-scheduler")],
        ),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            &[user("system:kube-controller-manager")],
        ),
        binding(
            "keel:kubelet-bootstrap",
            "system:node-bootstrapper",
            &[group("system:bootstrappers")],
        ),
        binding(
            "keel:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[group("system:bootstrappers")],
        ),
        binding(
            "keel:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            &[group(NODES)],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::auth::authorizer::{self, Attributes};
    use crate::apiserver::auth::node::NodeGraph;
    use crate::apiserver::auth::rbac::{InMemory, rules_of};
    use crate::apiserver::auth::user::UserInfo;

    fn policy() -> InMemory {
        InMemory::from_objects(cluster_roles().into_iter().chain(cluster_role_bindings()))
    }

    fn allowed(attrs: Attributes) -> bool {
        authorizer::authorize(&attrs, &NodeGraph::new(), &policy()).allowed()
    }

    #[test]
    fn every_object_is_labelled_and_every_binding_resolves() {
        let roles = cluster_roles();
        for o in roles.iter().chain(cluster_role_bindings().iter()) {
            assert_eq!(
                o["metadata"]["labels"]["kubernetes.io/bootstrapping"],
                "rbac-defaults"
            );
            assert_eq!(
                o["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
                "true"
            );
        }
        for b in cluster_role_bindings() {
            assert!(
                roles
                    .iter()
                    .any(|r| r["metadata"]["name"] == b["roleRef"]["name"]),
                "{}",
                b["metadata"]["name"]
            );
        }
        let cab = cluster_role_bindings()
            .into_iter()
            .find(|b| b["metadata"]["name"] == "cluster-admin")
            .unwrap();
        assert_eq!(cab["subjects"][0]["name"], MASTERS);
        assert_eq!(cab["subjects"][0]["kind"], "Group");
    }

    #[test]
    fn admin_edit_view_are_aggregated() {
        let roles = cluster_roles();
        let count =
            |n: &str| rules_of(roles.iter().find(|r| r["metadata"]["name"] == n).unwrap()).len();
        assert!(count("view") > 0);
        assert!(count("edit") > count("view"));
        assert!(count("admin") > count("edit"));
    }

    #[test]
    fn default_roles_grant_what_components_need() {
        let node = UserInfo::authenticated("system:node:n1", vec![NODES.into()]);
        assert!(allowed(Attributes::resource(
            &node, "get", "", "nodes", "", "n1"
        )));
        assert!(allowed(Attributes::resource(
            &node,
            "create",
            "coordination.k8s.io",
            "leases",
            "kube-node-lease",
            "n1"
        )));
        assert!(
            !allowed(Attributes::resource(
                &node, "get", "", "secrets", "default", "s"
            )),
            "secrets only via the Node authorizer"
        );
        let sched = UserInfo::authenticated("system:kube-scheduler", vec![]);
        assert!(allowed(Attributes::resource(
            &sched,
            "create",
            "",
            "pods/binding",
            "default",
            "p"
        )));
        assert!(!allowed(Attributes::resource(
            &sched, "create", "", "secrets", "default", ""
        )));
        let anyone = UserInfo::authenticated("someone", vec![]);
        assert!(allowed(Attributes::non_resource(&anyone, "get", "/api")));
        assert!(allowed(Attributes::non_resource(
            &anyone,
            "get",
            "/apis/apps/v1"
        )));
        assert!(allowed(Attributes::resource(
            &anyone,
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "",
            ""
        )));
        assert!(!allowed(Attributes::resource(
            &anyone, "list", "", "pods", "default", ""
        )));
        let proxy = UserInfo::authenticated("system:kube-proxy", vec![]);
        assert!(allowed(Attributes::resource(
            &proxy,
            "watch",
            "discovery.k8s.io",
            "endpointslices",
            "",
            ""
        )));
        let bootstrap = UserInfo::authenticated(
            "system:bootstrap:abcdef",
            vec!["system:bootstrappers".into()],
        );
        assert!(allowed(Attributes::resource(
            &bootstrap,
            "create",
            "certificates.k8s.io",
            "certificatesigningrequests",
            "",
            ""
        )));
        let master = UserInfo::authenticated("kubernetes-admin", vec![MASTERS.into()]);
        assert!(allowed(Attributes::resource(
            &master, "delete", "", "nodes", "", "n1"
        )));
        let sa = UserInfo::authenticated(
            "system:serviceaccount:default:x",
            vec![SERVICE_ACCOUNTS.into()],
        );
        assert!(allowed(Attributes::non_resource(
            &sa,
            "get",
            "/openid/v1/jwks"
        )));
    }
}
