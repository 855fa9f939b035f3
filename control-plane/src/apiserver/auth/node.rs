//! The Node authorizer and NodeRestriction admission: a kubelet (`system:node:<name>` in
//! `system:nodes`) reads only the secrets, configmaps, PVCs, PVs and service account tokens
//! that pods bound to its node reference, and writes only its own Node, Lease, mirror pods and
//! the status of its pods.
//!
//! The server keeps a [`NodeGraph`] up to date from pod and PVC events (`apply_pod`,
//! `remove_pod`, `apply_pvc`, `remove_pvc`); the checks are lookups in it.
//!
//! Differences from kube, on purpose: cross-node writes (another node's Node, Lease, pod
//! status, evictions of its pods) are denied here at authorization already, not only in
//! admission; list/watch of a graph resource is allowed only for a single named object (the
//! server maps a `metadata.name` field selector to `Attributes::name`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::authorizer::{Attributes, Decision};
use super::user::UserInfo;

/// The namespace of node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The annotation marking a mirror pod (a static pod's reflection).
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What a pod references that its node may read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct PodRefs {
    node: String,
    uid: String,
    service_account: String,
    secrets: BTreeSet<String>,
    config_maps: BTreeSet<String>,
    claims: BTreeSet<String>,
}

/// Kinds of objects a node reads through its pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphKind {
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    PersistentVolume,
    ServiceAccount,
}

impl GraphKind {
    /// The kind for a core-group resource name, if graph-gated.
    pub fn from_resource(resource: &str) -> Option<GraphKind> {
        Some(match resource {
            "secrets" => GraphKind::Secret,
            "configmaps" => GraphKind::ConfigMap,
            "persistentvolumeclaims" => GraphKind::PersistentVolumeClaim,
            "persistentvolumes" => GraphKind::PersistentVolume,
            "serviceaccounts" => GraphKind::ServiceAccount,
            _ => return None,
        })
    }
}

/// Pods by (namespace, name) with what they reference, and PVC → PV bindings.
#[derive(Clone, Debug, Default)]
pub struct NodeGraph {
    pods: BTreeMap<(String, String), PodRefs>,
    pvc_volumes: BTreeMap<(String, String), String>,
}

impl NodeGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a pod (added or updated); unscheduled pods reference nothing for any node.
    pub fn apply_pod(&mut self, pod: &Value) {
        let key = object_key(pod);
        let refs = pod_refs(pod);
        if refs.node.is_empty() {
            self.pods.remove(&key);
        } else {
            self.pods.insert(key, refs);
        }
    }

    /// Forgets a deleted pod.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        self.pods.remove(&(namespace.to_string(), name.to_string()));
    }

    /// Records a PVC's bound volume (`spec.volumeName`).
    pub fn apply_pvc(&mut self, pvc: &Value) {
        let key = object_key(pvc);
        match pvc["spec"]["volumeName"].as_str().filter(|v| !v.is_empty()) {
            Some(volume) => self.pvc_volumes.insert(key, volume.to_string()),
            None => self.pvc_volumes.remove(&key),
        };
    }

    /// Forgets a deleted PVC.
    pub fn remove_pvc(&mut self, namespace: &str, name: &str) {
        self.pvc_volumes
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// The node a pod is bound to, if known.
    pub fn pod_node(&self, namespace: &str, name: &str) -> Option<&str> {
        self.pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|p| p.node.as_str())
    }

    /// The uid of a known pod.
    pub fn pod_uid(&self, namespace: &str, name: &str) -> Option<&str> {
        self.pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|p| p.uid.as_str())
    }

    fn pods_on<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a (String, String), &'a PodRefs)> + 'a {
        self.pods.iter().filter(move |(_, p)| p.node == node)
    }

    /// True when a pod on `node` references the object (`namespace` empty for PVs).
    pub fn node_may_read(&self, node: &str, kind: GraphKind, namespace: &str, name: &str) -> bool {
        self.pods_on(node).any(|((ns, _), p)| match kind {
            GraphKind::Secret => ns == namespace && p.secrets.contains(name),
            GraphKind::ConfigMap => ns == namespace && p.config_maps.contains(name),
            GraphKind::PersistentVolumeClaim => ns == namespace && p.claims.contains(name),
            GraphKind::ServiceAccount => ns == namespace && p.service_account == name,
            GraphKind::PersistentVolume => p.claims.iter().any(|c| {
                self.pvc_volumes
                    .get(&(ns.clone(), c.clone()))
                    .is_some_and(|v| v == name)
            }),
        })
    }
}

fn object_key(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    let field = |k: &str| meta[k].as_str().unwrap_or_default().to_string();
    (field("namespace"), field("name"))
}

fn pod_refs(pod: &Value) -> PodRefs {
    let spec = &pod["spec"];
    let mut refs = PodRefs {
        node: spec["nodeName"].as_str().unwrap_or_default().to_string(),
        uid: pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        service_account: spec["serviceAccountName"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        ..PodRefs::default()
    };
    for s in array(&spec["imagePullSecrets"]) {
        insert_str(&mut refs.secrets, &s["name"]);
    }
    for v in array(&spec["volumes"]) {
        volume_refs(v, &mut refs);
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in array(&spec[list]) {
            container_refs(c, &mut refs);
        }
    }
    refs
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

fn insert_str(set: &mut BTreeSet<String>, v: &Value) {
    if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
        set.insert(s.to_string());
    }
}

fn volume_refs(v: &Value, refs: &mut PodRefs) {
    insert_str(&mut refs.secrets, &v["secret"]["secretName"]);
    insert_str(&mut refs.config_maps, &v["configMap"]["name"]);
    insert_str(&mut refs.claims, &v["persistentVolumeClaim"]["claimName"]);
    for source in array(&v["projected"]["sources"]) {
        insert_str(&mut refs.secrets, &source["secret"]["name"]);
        insert_str(&mut refs.config_maps, &source["configMap"]["name"]);
    }
    // Plugins that name a secret for credentials.
    for plugin in [
        "csi",
        "cephfs",
        "rbd",
        "iscsi",
        "flexVolume",
        "azureFile",
        "scaleIO",
        "storageos",
    ] {
        insert_str(&mut refs.secrets, &v[plugin]["secretRef"]["name"]);
        insert_str(
            &mut refs.secrets,
            &v[plugin]["nodePublishSecretRef"]["name"],
        );
    }
    insert_str(&mut refs.secrets, &v["azureFile"]["secretName"]);
}

fn container_refs(c: &Value, refs: &mut PodRefs) {
    for e in array(&c["envFrom"]) {
        insert_str(&mut refs.secrets, &e["secretRef"]["name"]);
        insert_str(&mut refs.config_maps, &e["configMapRef"]["name"]);
    }
    for e in array(&c["env"]) {
        insert_str(&mut refs.secrets, &e["valueFrom"]["secretKeyRef"]["name"]);
        insert_str(
            &mut refs.config_maps,
            &e["valueFrom"]["configMapKeyRef"]["name"],
        );
    }
}

const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
const WRITE_VERBS: [&str; 4] = ["update", "patch", "delete", "deletecollection"];

/// The Node authorizer: NoOpinion for users that are not nodes, and for what RBAC's
/// `system:node` role decides.
pub fn authorize(attrs: &Attributes, graph: &NodeGraph) -> Decision {
    let Some(node) = attrs.user.node_name() else {
        return Decision::NoOpinion;
    };
    if !attrs.resource_request {
        return Decision::NoOpinion;
    }
    match (
        attrs.api_group.as_str(),
        attrs.resource.as_str(),
        attrs.subresource.as_str(),
    ) {
        ("", "serviceaccounts", "token") => token_request(attrs, graph, node),
        ("", resource, "")
            if GraphKind::from_resource(resource)
                .is_some_and(|k| k != GraphKind::ServiceAccount) =>
        {
            graph_read(attrs, graph, node)
        }
        ("", "nodes", _) => own_node(attrs, node),
        ("coordination.k8s.io", "leases", "") if attrs.namespace == NODE_LEASE_NAMESPACE => {
            own_lease(attrs, node)
        }
        ("", "pods", "status") | ("", "pods", "eviction") => own_pod(attrs, graph, node),
        _ => Decision::NoOpinion,
    }
}

fn graph_read(attrs: &Attributes, graph: &NodeGraph, node: &str) -> Decision {
    let Some(kind) = GraphKind::from_resource(&attrs.resource) else {
        return Decision::NoOpinion;
    };
    if !READ_VERBS.contains(&attrs.verb.as_str()) || attrs.name.is_empty() {
        return Decision::NoOpinion;
    }
    if graph.node_may_read(node, kind, &attrs.namespace, &attrs.name) {
        return Decision::Allow(format!(
            "node {node:?} has a pod referencing {} {:?}",
            attrs.resource, attrs.name
        ));
    }
    Decision::NoOpinion
}

fn token_request(attrs: &Attributes, graph: &NodeGraph, node: &str) -> Decision {
    if attrs.verb == "create"
        && graph.node_may_read(
            node,
            GraphKind::ServiceAccount,
            &attrs.namespace,
            &attrs.name,
        )
    {
        return Decision::Allow(format!(
            "node {node:?} has a pod using service account {:?}",
            attrs.name
        ));
    }
    Decision::NoOpinion
}

fn own_node(attrs: &Attributes, node: &str) -> Decision {
    if WRITE_VERBS.contains(&attrs.verb.as_str()) && attrs.name != node {
        return Decision::Deny(format!(
            "node {node:?} may not modify node {:?}",
            attrs.name
        ));
    }
    Decision::NoOpinion
}

fn own_lease(attrs: &Attributes, node: &str) -> Decision {
    let writes = WRITE_VERBS.contains(&attrs.verb.as_str()) || attrs.verb == "create";
    if writes && attrs.name != node && !(attrs.verb == "create" && attrs.name.is_empty()) {
        return Decision::Deny(format!(
            "node {node:?} may not modify the lease of {:?}",
            attrs.name
        ));
    }
    Decision::NoOpinion
}

fn own_pod(attrs: &Attributes, graph: &NodeGraph, node: &str) -> Decision {
    if READ_VERBS.contains(&attrs.verb.as_str()) {
        return Decision::NoOpinion;
    }
    if graph.pod_node(&attrs.namespace, &attrs.name) != Some(node) {
        return Decision::Deny(format!(
            "node {node:?} may not {} {}/{} of pod {:?}, which is not bound to it",
            attrs.verb, attrs.resource, attrs.subresource, attrs.name
        ));
    }
    Decision::NoOpinion
}

/// A write a node makes, for [`admit_node_write`].
#[derive(Clone, Copy, Debug)]
pub struct NodeWrite<'a> {
    pub verb: &'a str,
    pub api_group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The new object (create/update/patched result), if any.
    pub object: Option<&'a Value>,
    /// The stored object (update/patch/delete), if any.
    pub old_object: Option<&'a Value>,
}

/// Label keys a node may set on itself: outside the `kubernetes.io`/`k8s.io` namespaces, the
/// `kubelet.kubernetes.io/` and `node.kubernetes.io/` prefixes, and the well-known labels.
pub fn node_may_set_label(key: &str) -> bool {
    const WELL_KNOWN: [&str; 12] = [
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "node.kubernetes.io/windows-build",
    ];
    let prefix = key.split_once('/').map(|(p, _)| p).unwrap_or_default();
    if WELL_KNOWN.contains(&key)
        || prefix == "kubelet.kubernetes.io"
        || prefix.ends_with(".kubelet.kubernetes.io")
        || prefix == "node.kubernetes.io"
        || prefix.ends_with(".node.kubernetes.io")
    {
        return true;
    }
    let restricted = |ns: &str| prefix == ns || prefix.ends_with(&format!(".{ns}"));
    !restricted("kubernetes.io") && !restricted("k8s.io")
}

/// NodeRestriction admission for writes by a node user (`Ok` for other users). Main rules:
/// a node creates only mirror pods bound to itself that reference no secrets, configmaps,
/// PVCs or service account; deletes and updates status only of pods bound to it; evicts only
/// its pods; writes only its own Node (no taint changes on update, only allowed labels) and
/// Lease; requests tokens only for service accounts of its pods, bound to such a pod.
pub fn admit_node_write(
    user: &UserInfo,
    write: &NodeWrite<'_>,
    graph: &NodeGraph,
) -> Result<(), String> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    match (write.api_group, write.resource, write.subresource) {
        ("", "pods", "") => admit_pod(node, write),
        ("", "pods", "status") | ("", "pods", "eviction") => {
            admit_pod_subresource(node, write, graph)
        }
        ("", "nodes", _) => admit_node(node, write),
        ("coordination.k8s.io", "leases", "") => admit_lease(node, write),
        ("", "serviceaccounts", "token") => admit_token_request(node, write, graph),
        _ => Ok(()),
    }
}

fn pod_node_name(pod: Option<&Value>) -> &str {
    pod.and_then(|p| p["spec"]["nodeName"].as_str())
        .unwrap_or_default()
}

fn admit_pod(node: &str, write: &NodeWrite<'_>) -> Result<(), String> {
    match write.verb {
        "create" => {
            let pod = write.object.ok_or("pod create without an object")?;
            if pod["metadata"]["annotations"][MIRROR_POD_ANNOTATION].is_null() {
                return Err(format!("node {node:?} can only create mirror pods"));
            }
            if pod_node_name(Some(pod)) != node {
                return Err(format!(
                    "node {node:?} can only create pods bound to itself"
                ));
            }
            let refs = pod_refs(pod);
            let named_sa = pod["spec"]["serviceAccountName"]
                .as_str()
                .is_some_and(|s| !s.is_empty());
            if !refs.secrets.is_empty()
                || !refs.config_maps.is_empty()
                || !refs.claims.is_empty()
                || named_sa
            {
                return Err(format!(
                    "node {node:?} can not create pods that reference secrets, configmaps, persistentvolumeclaims or service accounts"
                ));
            }
            Ok(())
        }
        "delete" if pod_node_name(write.old_object) == node => Ok(()),
        "delete" => Err(format!(
            "node {node:?} can only delete pods bound to itself"
        )),
        verb => Err(format!("node {node:?} may not {verb} pods")),
    }
}

fn admit_pod_subresource(
    node: &str,
    write: &NodeWrite<'_>,
    graph: &NodeGraph,
) -> Result<(), String> {
    let bound_here = graph.pod_node(write.namespace, write.name) == Some(node)
        || pod_node_name(write.old_object) == node;
    if !bound_here {
        return Err(format!(
            "node {node:?} can only {} {} of pods bound to itself",
            write.verb, write.subresource
        ));
    }
    if write.subresource == "status" && write.object.is_some_and(|o| pod_node_name(Some(o)) != node)
    {
        return Err(format!("node {node:?} may not move a pod to another node"));
    }
    Ok(())
}

fn admit_node(node: &str, write: &NodeWrite<'_>) -> Result<(), String> {
    let name = write
        .object
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap_or(write.name);
    if name != node {
        return Err(format!(
            "node {node:?} is not allowed to modify node {name:?}"
        ));
    }
    let (Some(new), old) = (write.object, write.old_object) else {
        return Ok(());
    };
    if let Some(old) = old
        && new["spec"]["taints"] != old["spec"]["taints"]
    {
        return Err(format!("node {node:?} is not allowed to modify taints"));
    }
    let empty = serde_json::Map::new();
    let labels = |v: Option<&Value>| {
        v.and_then(|o| o["metadata"]["labels"].as_object())
            .unwrap_or(&empty)
            .clone()
    };
    let (new_labels, old_labels) = (labels(Some(new)), labels(old));
    let changed = new_labels
        .iter()
        .filter(|(k, v)| old_labels.get(*k) != Some(v))
        .map(|(k, _)| k)
        .chain(old_labels.keys().filter(|k| !new_labels.contains_key(*k)));
    for key in changed {
        if !node_may_set_label(key) {
            return Err(format!(
                "node {node:?} is not allowed to set or remove the label {key:?}"
            ));
        }
    }
    Ok(())
}

fn admit_lease(node: &str, write: &NodeWrite<'_>) -> Result<(), String> {
    let name = write
        .object
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap_or(write.name);
    if write.namespace != NODE_LEASE_NAMESPACE || name != node {
        return Err(format!(
            "node {node:?} can only access its own lease in {NODE_LEASE_NAMESPACE}"
        ));
    }
    Ok(())
}

fn admit_token_request(node: &str, write: &NodeWrite<'_>, graph: &NodeGraph) -> Result<(), String> {
    let bound = write
        .object
        .map(|o| &o["spec"]["boundObjectRef"])
        .filter(|b| !b.is_null());
    let Some(bound) = bound else {
        return Err(format!(
            "node {node:?} can only request tokens bound to a pod"
        ));
    };
    let pod = bound["name"].as_str().unwrap_or_default();
    if bound["kind"].as_str() != Some("Pod") || graph.pod_node(write.namespace, pod) != Some(node) {
        return Err(format!(
            "node {node:?} can only request tokens bound to pods on itself"
        ));
    }
    let uid = bound["uid"].as_str().unwrap_or_default();
    if !uid.is_empty() && graph.pod_uid(write.namespace, pod) != Some(uid) {
        return Err(format!(
            "the uid of pod {pod:?} does not match the token request"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node_user(name: &str) -> UserInfo {
        UserInfo::authenticated(format!("system:node:{name}"), vec!["system:nodes".into()])
    }

    fn pod(name: &str, node: &str, secret: &str) -> Value {
        json!({
            "metadata": { "namespace": "default", "name": name, "uid": format!("{name}-uid") },
            "spec": {
                "nodeName": node,
                "serviceAccountName": "app",
                "volumes": [
                    { "name": "s", "secret": { "secretName": secret } },
                    { "name": "p", "projected": { "sources": [{ "configMap": { "name": "projected-cm" } }] } },
                    { "name": "c", "persistentVolumeClaim": { "claimName": "data" } },
                ],
                "containers": [{ "name": "c", "env": [{ "name": "X", "valueFrom": { "secretKeyRef": { "name": "env-secret", "key": "k" } } }] }],
            }
        })
    }

    fn graph() -> NodeGraph {
        let mut g = NodeGraph::new();
        g.apply_pod(&pod("a1", "node-a", "secret-a"));
        g.apply_pod(&pod("b1", "node-b", "secret-b"));
        g.apply_pvc(&json!({ "metadata": { "namespace": "default", "name": "data" }, "spec": { "volumeName": "pv-1" } }));
        g
    }

    fn get(user: &UserInfo, resource: &str, ns: &str, name: &str) -> Decision {
        authorize(
            &Attributes::resource(user, "get", "", resource, ns, name),
            &graph(),
        )
    }

    #[test]
    fn node_reads_only_what_its_pods_reference() {
        let a = node_user("node-a");
        assert!(get(&a, "secrets", "default", "secret-a").allowed());
        assert!(get(&a, "secrets", "default", "env-secret").allowed());
        assert!(get(&a, "configmaps", "default", "projected-cm").allowed());
        assert!(get(&a, "persistentvolumeclaims", "default", "data").allowed());
        assert!(get(&a, "persistentvolumes", "", "pv-1").allowed());
        assert_eq!(
            get(&a, "secrets", "default", "secret-b"),
            Decision::NoOpinion
        );
        assert_eq!(
            get(&a, "secrets", "default", "unreferenced"),
            Decision::NoOpinion
        );
        assert_eq!(get(&a, "secrets", "other", "secret-a"), Decision::NoOpinion);
        let token =
            Attributes::resource(&a, "create", "", "serviceaccounts/token", "default", "app");
        assert!(authorize(&token, &graph()).allowed());
        let user = UserInfo::authenticated("alice", vec![]);
        assert_eq!(
            get(&user, "secrets", "default", "secret-a"),
            Decision::NoOpinion
        );
    }

    #[test]
    fn removing_a_pod_revokes_access() {
        let mut g = graph();
        g.remove_pod("default", "a1");
        let attrs = Attributes::resource(
            &node_user("node-a"),
            "get",
            "",
            "secrets",
            "default",
            "secret-a",
        );
        assert_eq!(authorize(&attrs, &g), Decision::NoOpinion);
    }

    #[test]
    fn cross_node_writes_are_denied() {
        let a = node_user("node-a");
        let g = graph();
        let deny = |attrs: Attributes| matches!(authorize(&attrs, &g), Decision::Deny(_));
        assert!(deny(Attributes::resource(
            &a,
            "patch",
            "",
            "nodes/status",
            "",
            "node-b"
        )));
        assert!(!deny(Attributes::resource(
            &a,
            "patch",
            "",
            "nodes/status",
            "",
            "node-a"
        )));
        assert!(deny(Attributes::resource(
            &a,
            "update",
            "coordination.k8s.io",
            "leases",
            NODE_LEASE_NAMESPACE,
            "node-b"
        )));
        assert!(!deny(Attributes::resource(
            &a,
            "update",
            "coordination.k8s.io",
            "leases",
            NODE_LEASE_NAMESPACE,
            "node-a"
        )));
        assert!(deny(Attributes::resource(
            &a,
            "update",
            "",
            "pods/status",
            "default",
            "b1"
        )));
        assert!(!deny(Attributes::resource(
            &a,
            "update",
            "",
            "pods/status",
            "default",
            "a1"
        )));
        assert!(deny(Attributes::resource(
            &a,
            "create",
            "",
            "pods/eviction",
            "default",
            "b1"
        )));
    }

    #[test]
    fn node_restriction_admission() {
        let a = node_user("node-a");
        let g = graph();
        let write = |verb, resource, ns, name, object: Option<&Value>, old: Option<&Value>| {
            let w = NodeWrite {
                verb,
                api_group: "",
                resource,
                subresource: "",
                namespace: ns,
                name,
                object,
                old_object: old,
            };
            admit_node_write(&a, &w, &g)
        };
        let mirror = json!({ "metadata": { "name": "m", "annotations": { MIRROR_POD_ANNOTATION: "x" } }, "spec": { "nodeName": "node-a" } });
        assert!(write("create", "pods", "default", "m", Some(&mirror), None).is_ok());
        let mut elsewhere = mirror.clone();
        elsewhere["spec"]["nodeName"] = json!("node-b");
        assert!(write("create", "pods", "default", "m", Some(&elsewhere), None).is_err());
        assert!(
            write(
                "create",
                "pods",
                "default",
                "p",
                Some(&pod("p", "node-a", "s")),
                None
            )
            .is_err()
        );
        let old = json!({ "metadata": { "name": "node-a", "labels": { "kubernetes.io/hostname": "node-a" } }, "spec": {} });
        let mut relabel = old.clone();
        relabel["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"] =
            json!("true");
        assert!(write("update", "nodes", "", "node-a", Some(&relabel), Some(&old)).is_ok());
        relabel["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
        assert!(write("update", "nodes", "", "node-a", Some(&relabel), Some(&old)).is_err());
        let mut tainted = old.clone();
        tainted["spec"]["taints"] = json!([{ "key": "k", "effect": "NoSchedule" }]);
        assert!(write("update", "nodes", "", "node-a", Some(&tainted), Some(&old)).is_err());
        assert!(write("update", "nodes", "", "node-b", None, None).is_err());
        let req = |pod: &str| json!({ "spec": { "boundObjectRef": { "kind": "Pod", "name": pod, "uid": format!("{pod}-uid") } } });
        let token = |object: &Value| {
            let w = NodeWrite {
                verb: "create",
                api_group: "",
                resource: "serviceaccounts",
                subresource: "token",
                namespace: "default",
                name: "app",
                object: Some(object),
                old_object: None,
            };
            admit_node_write(&a, &w, &g)
        };
        assert!(token(&req("a1")).is_ok());
        assert!(token(&req("b1")).is_err());
        assert!(
            admit_node_write(
                &UserInfo::authenticated("alice", vec![]),
                &NodeWrite {
                    verb: "update",
                    api_group: "",
                    resource: "nodes",
                    subresource: "",
                    namespace: "",
                    name: "x",
                    object: None,
                    old_object: None
                },
                &g
            )
            .is_ok()
        );
    }

    #[test]
    fn label_prefixes() {
        assert!(node_may_set_label("kubelet.kubernetes.io/foo"));
        assert!(node_may_set_label("example.com/rack"));
        assert!(node_may_set_label("topology.kubernetes.io/zone"));
        assert!(!node_may_set_label("node-restriction.kubernetes.io/x"));
        assert!(!node_may_set_label("foo.k8s.io/x"));
    }
}
