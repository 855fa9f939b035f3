//! The Node authorizer and NodeRestriction admission: a kubelet (`system:node:<name>` in
//! `system:nodes`) reads only the secrets, configmaps, PVCs, PVs and service account tokens
//! that pods bound to its node reference, and writes only its own Node, Lease, mirror pods and
//! the status of its pods.
//!
//! The server keeps a [`NodeGraph`] up to date from pod and PVC events (`apply_pod`,
//! `remove_pod`, `apply_pvc`, `remove_pvc`); the checks are lookups in it.
//!
//! Differences from kube, on purpose: evictions of another node's pods are denied here at
//! authorization already (the eviction path has no admission step); list/watch of a graph
//! resource is allowed only for a single named object (the server maps a `metadata.name` field
//! selector to `Attributes::name`). Messages of [`admit_node_write`] are kube's.

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
        // Writes to Nodes, Leases and pod status are RBAC's (`system:node`), then
        // NodeRestriction admission's ([`admit_node_write`]), as in kube.
        ("", "pods", "eviction") => own_pod_eviction(attrs, graph, node),
        _ => Decision::NoOpinion,
    }
}

/// Why the Node authorizer had no opinion on a node's request for a graph-gated object (kube
/// appends this to the 403), or `None` when it has nothing to say (not a node, not a graph
/// resource, or allowed).
pub fn no_opinion_reason(attrs: &Attributes, graph: &NodeGraph) -> Option<String> {
    let node = attrs.user.node_name()?;
    if !attrs.resource_request || !attrs.api_group.is_empty() {
        return None;
    }
    let kind = GraphKind::from_resource(&attrs.resource)?;
    if authorize(attrs, graph).allowed() {
        return None;
    }
    let reason = match kind {
        GraphKind::ServiceAccount if attrs.verb != "create" || attrs.name.is_empty() => {
            "can only create tokens for individual service accounts"
        }
        GraphKind::ServiceAccount if attrs.subresource != "token" => {
            "can only create token subresource of serviceaccount"
        }
        GraphKind::Secret | GraphKind::ConfigMap if !READ_VERBS.contains(&attrs.verb.as_str()) => {
            "can only read resources of this type"
        }
        GraphKind::Secret | GraphKind::ConfigMap if !attrs.subresource.is_empty() => {
            "cannot read subresource"
        }
        GraphKind::Secret | GraphKind::ConfigMap if attrs.namespace.is_empty() => {
            "can only read namespaced object of this type"
        }
        GraphKind::PersistentVolume | GraphKind::PersistentVolumeClaim if attrs.verb != "get" => {
            "can only get individual resources of this type"
        }
        GraphKind::PersistentVolume | GraphKind::PersistentVolumeClaim
            if !attrs.subresource.is_empty() =>
        {
            "cannot get subresource"
        }
        _ if attrs.name.is_empty() => "No Object name found",
        _ => {
            return Some(format!(
                "no relationship found between node '{node}' and this object"
            ));
        }
    };
    Some(reason.to_string())
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

fn own_pod_eviction(attrs: &Attributes, graph: &NodeGraph, node: &str) -> Decision {
    if attrs.verb == "create" && graph.pod_node(&attrs.namespace, &attrs.name) != Some(node) {
        return Decision::Deny(format!(
            "node {node:?} can only evict pods with spec.nodeName set to itself"
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
    /// The uid of the writing node's Node object, when it exists (mirror pod owner check).
    pub node_uid: Option<&'a str>,
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

/// NodeRestriction admission for writes by a node user (`Ok` for other users), with kube's
/// rules and messages (the `Err` is the detail of a 403 on the written object):
/// a node creates only mirror pods bound to and owned by itself that reference no secrets,
/// configmaps, PVCs or service account, and deletes only pods bound to it; it updates the
/// status only of its pods (without relabelling them) and evicts only its pods; it writes only
/// its own Node (no taint or config source changes, only allowed labels) and its own Lease in
/// `kube-node-lease`; it requests tokens only bound to a pod on itself (uid given and matching).
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
        ("", "pods", "status") => admit_pod_status(node, write),
        ("", "pods", "eviction") => admit_pod_eviction(node, write, graph),
        ("", "pods", other) => Err(format!(
            "unexpected pod subresource {other:?}, only 'status' and 'eviction' are allowed"
        )),
        ("", "nodes", _) => admit_node(node, write),
        ("coordination.k8s.io", "leases", "") => admit_lease(node, write),
        ("", "serviceaccounts", "token") => admit_token_request(node, write, graph),
        _ => Ok(()),
    }
}

/// kube's admission operation name of a verb.
fn operation(verb: &str) -> &'static str {
    match verb {
        "create" => "CREATE",
        "update" | "patch" => "UPDATE",
        "delete" | "deletecollection" => "DELETE",
        _ => "CONNECT",
    }
}

fn pod_node_name(pod: Option<&Value>) -> &str {
    pod.and_then(|p| p["spec"]["nodeName"].as_str())
        .unwrap_or_default()
}

fn admit_pod(node: &str, write: &NodeWrite<'_>) -> Result<(), String> {
    match operation(write.verb) {
        "CREATE" => admit_mirror_pod(node, write),
        "DELETE" if pod_node_name(write.old_object) == node => Ok(()),
        "DELETE" => Err(format!(
            "node {node:?} can only delete pods with spec.nodeName set to itself"
        )),
        op => Err(format!(
            "unexpected operation {op:?}, node {node:?} can only create and delete mirror pods"
        )),
    }
}

fn admit_mirror_pod(node: &str, write: &NodeWrite<'_>) -> Result<(), String> {
    let pod = write.object.ok_or("pod create without an object")?;
    if pod["metadata"]["annotations"][MIRROR_POD_ANNOTATION].is_null() {
        return Err(format!(
            "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
        ));
    }
    if pod_node_name(Some(pod)) != node {
        return Err(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        ));
    }
    let owners = array(&pod["metadata"]["ownerReferences"]);
    let owner = match owners {
        [] => {
            return Err(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ));
        }
        [owner] => owner,
        _ => {
            return Err(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ));
        }
    };
    if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
        return Err(format!(
            "node {node:?} can only create pods with an owner reference set to itself"
        ));
    }
    if owner["controller"] != true {
        return Err(format!(
            "node {node:?} can only create pods with a controller owner reference set to itself"
        ));
    }
    if owner["blockOwnerDeletion"] == true {
        return Err(format!(
            "node {node:?} must not set blockOwnerDeletion on an owner reference"
        ));
    }
    if let Some(uid) = write.node_uid {
        let claimed = owner["uid"].as_str().unwrap_or_default();
        if claimed != uid {
            return Err(format!(
                "node {node} UID mismatch: expected {claimed} got {uid}"
            ));
        }
    }
    let refs = pod_refs(pod);
    let named_sa = pod["spec"]["serviceAccountName"]
        .as_str()
        .is_some_and(|s| !s.is_empty());
    let what = if named_sa {
        "a service account"
    } else if !refs.secrets.is_empty() {
        "secrets"
    } else if !refs.config_maps.is_empty() {
        "configmaps"
    } else if !refs.claims.is_empty() {
        "persistentvolumeclaims"
    } else {
        return Ok(());
    };
    Err(format!(
        "node {node:?} can not create pods that reference {what}"
    ))
}

fn admit_pod_status(node: &str, write: &NodeWrite<'_>) -> Result<(), String> {
    let op = operation(write.verb);
    if op != "UPDATE" {
        return Err(format!("unexpected operation {op:?}"));
    }
    if pod_node_name(write.old_object) != node {
        return Err(format!(
            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
        ));
    }
    let labels = |v: Option<&Value>| v.map(|o| o["metadata"]["labels"].clone());
    let empty = |v: Option<Value>| v.filter(|l| l.as_object().is_some_and(|m| !m.is_empty()));
    if empty(labels(write.object)) != empty(labels(write.old_object)) {
        return Err(format!(
            "node {node:?} cannot update labels through pod status"
        ));
    }
    Ok(())
}

fn admit_pod_eviction(node: &str, write: &NodeWrite<'_>, graph: &NodeGraph) -> Result<(), String> {
    let op = operation(write.verb);
    if op != "CREATE" {
        return Err(format!("unexpected operation {op}"));
    }
    let bound_here = graph.pod_node(write.namespace, write.name) == Some(node)
        || pod_node_name(write.old_object) == node;
    if !bound_here {
        return Err(format!(
            "node {node} can only evict pods with spec.nodeName set to itself"
        ));
    }
    Ok(())
}

/// The label keys that differ between two label maps (added, changed or removed), sorted.
fn modified_labels(new: Option<&Value>, old: Option<&Value>) -> BTreeSet<String> {
    let empty = serde_json::Map::new();
    let labels = |v: Option<&Value>| {
        v.and_then(|o| o["metadata"]["labels"].as_object())
            .unwrap_or(&empty)
            .clone()
    };
    let (new, old) = (labels(new), labels(old));
    new.iter()
        .filter(|(k, v)| old.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .chain(old.keys().filter(|k| !new.contains_key(*k)).cloned())
        .collect()
}

fn admit_node(node: &str, write: &NodeWrite<'_>) -> Result<(), String> {
    let name = if write.name.is_empty() {
        write
            .object
            .and_then(|o| o["metadata"]["name"].as_str())
            .unwrap_or_default()
    } else {
        write.name
    };
    if name != node {
        return Err(format!(
            "node {node:?} is not allowed to modify node {name:?}"
        ));
    }
    let Some(new) = write.object else {
        return Ok(());
    };
    let forbidden = |modified: BTreeSet<String>| -> Vec<String> {
        modified
            .into_iter()
            .filter(|k| !node_may_set_label(k))
            .collect()
    };
    match (operation(write.verb), write.old_object) {
        ("CREATE", _) => {
            if !new["spec"]["configSource"].is_null() {
                return Err(format!(
                    "node {node:?} is not allowed to create pods with a non-nil configSource"
                ));
            }
            let bad = forbidden(modified_labels(Some(new), None));
            if !bad.is_empty() {
                return Err(format!(
                    "node {node:?} is not allowed to set the following labels: {}",
                    bad.join(", ")
                ));
            }
        }
        ("UPDATE", Some(old)) => {
            let source = &new["spec"]["configSource"];
            if !source.is_null() && *source != old["spec"]["configSource"] {
                return Err(format!(
                    "node {node:?} is not allowed to update configSource to a new non-nil configSource"
                ));
            }
            if non_empty(&new["spec"]["taints"]) != non_empty(&old["spec"]["taints"]) {
                return Err(format!("node {node:?} is not allowed to modify taints"));
            }
            let bad = forbidden(modified_labels(Some(new), Some(old)));
            if !bad.is_empty() {
                return Err(format!(
                    "is not allowed to modify labels: {}",
                    bad.join(", ")
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// A list field, with absent and empty the same.
fn non_empty(v: &Value) -> Option<&Value> {
    (!array(v).is_empty()).then_some(v)
}

fn admit_lease(node: &str, write: &NodeWrite<'_>) -> Result<(), String> {
    if write.namespace != NODE_LEASE_NAMESPACE {
        return Err(format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        ));
    }
    let name = if operation(write.verb) == "CREATE" {
        write
            .object
            .and_then(|o| o["metadata"]["name"].as_str())
            .unwrap_or_default()
    } else {
        write.name
    };
    if name != node {
        return Err(
            "can only access node lease with the same name as the requesting node".to_string(),
        );
    }
    Ok(())
}

fn admit_token_request(node: &str, write: &NodeWrite<'_>, graph: &NodeGraph) -> Result<(), String> {
    if operation(write.verb) != "CREATE" {
        return Ok(());
    }
    let bound = write
        .object
        .map(|o| &o["spec"]["boundObjectRef"])
        .unwrap_or(&Value::Null);
    let pod = bound["name"].as_str().unwrap_or_default();
    if bound["apiVersion"] != "v1" || bound["kind"] != "Pod" || pod.is_empty() {
        return Err("node requested token not bound to a pod".to_string());
    }
    let uid = bound["uid"].as_str().unwrap_or_default();
    if uid.is_empty() {
        return Err("node requested token with a pod binding without a uid".to_string());
    }
    if graph
        .pod_uid(write.namespace, pod)
        .is_some_and(|known| known != uid)
    {
        return Err(format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        ));
    }
    if graph.pod_node(write.namespace, pod) != Some(node) {
        return Err(
            "node requested token bound to a pod scheduled on a different node".to_string(),
        );
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
    fn reasons_for_refused_node_reads() {
        let a = node_user("node-a");
        let g = graph();
        let reason = |verb: &str, resource: &str, ns: &str, name: &str| {
            no_opinion_reason(&Attributes::resource(&a, verb, "", resource, ns, name), &g)
        };
        assert_eq!(
            reason("get", "secrets", "default", "secret-b").as_deref(),
            Some("no relationship found between node 'node-a' and this object")
        );
        assert_eq!(reason("get", "secrets", "default", "secret-a"), None);
        assert_eq!(
            reason("list", "secrets", "default", "").as_deref(),
            Some("No Object name found")
        );
        assert_eq!(
            reason("delete", "configmaps", "default", "x").as_deref(),
            Some("can only read resources of this type")
        );
        assert_eq!(reason("get", "pods", "default", "x"), None);
        let alice = UserInfo::authenticated("alice", vec![]);
        let attrs = Attributes::resource(&alice, "get", "", "secrets", "default", "secret-b");
        assert_eq!(no_opinion_reason(&attrs, &g), None);
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
    fn cross_node_evictions_are_denied_and_other_writes_left_to_admission() {
        let a = node_user("node-a");
        let g = graph();
        let decide = |verb: &str, group: &str, resource: &str, ns: &str, name: &str| {
            authorize(
                &Attributes::resource(&a, verb, group, resource, ns, name),
                &g,
            )
        };
        assert!(matches!(
            decide("create", "", "pods/eviction", "default", "b1"),
            Decision::Deny(_)
        ));
        assert_eq!(
            decide("create", "", "pods/eviction", "default", "a1"),
            Decision::NoOpinion
        );
        assert_eq!(
            decide("patch", "", "nodes/status", "", "node-b"),
            Decision::NoOpinion
        );
        assert_eq!(
            decide("update", "", "pods/status", "default", "b1"),
            Decision::NoOpinion
        );
    }

    fn write<'a>(
        verb: &'a str,
        (group, resource, subresource): (&'a str, &'a str, &'a str),
        (namespace, name): (&'a str, &'a str),
        object: Option<&'a Value>,
        old_object: Option<&'a Value>,
    ) -> NodeWrite<'a> {
        NodeWrite {
            verb,
            api_group: group,
            resource,
            subresource,
            namespace,
            name,
            object,
            old_object,
            node_uid: Some("node-a-uid"),
        }
    }

    #[test]
    fn node_restriction_pods() {
        let a = node_user("node-a");
        let g = graph();
        let pods = ("", "pods", "");
        let mirror = json!({ "metadata": { "name": "m", "annotations": { MIRROR_POD_ANNOTATION: "x" },
            "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "node-a-uid", "controller": true }] },
            "spec": { "nodeName": "node-a" } });
        let admit = |w: NodeWrite<'_>| admit_node_write(&a, &w, &g);
        assert_eq!(
            admit(write("create", pods, ("default", "m"), Some(&mirror), None)),
            Ok(())
        );
        let mut elsewhere = mirror.clone();
        elsewhere["spec"]["nodeName"] = json!("node-b");
        let err = admit(write(
            "create",
            pods,
            ("default", "m"),
            Some(&elsewhere),
            None,
        ));
        assert_eq!(
            err.unwrap_err(),
            "node \"node-a\" can only create pods with spec.nodeName set to itself"
        );
        let mut orphan = mirror.clone();
        orphan["metadata"]["ownerReferences"] = json!([]);
        assert!(admit(write("create", pods, ("default", "m"), Some(&orphan), None)).is_err());
        let mut wrong_uid = mirror.clone();
        wrong_uid["metadata"]["ownerReferences"][0]["uid"] = json!("other");
        assert!(
            admit(write(
                "create",
                pods,
                ("default", "m"),
                Some(&wrong_uid),
                None
            ))
            .is_err()
        );
        let mut with_secret = mirror.clone();
        with_secret["spec"]["volumes"] = json!([{ "name": "s", "secret": { "secretName": "x" } }]);
        assert_eq!(
            admit(write(
                "create",
                pods,
                ("default", "m"),
                Some(&with_secret),
                None
            ))
            .unwrap_err(),
            "node \"node-a\" can not create pods that reference secrets"
        );
        let plain = pod("p", "node-a", "s");
        assert!(
            admit(write("create", pods, ("default", "p"), Some(&plain), None))
                .unwrap_err()
                .contains("can only create mirror pods")
        );
        let theirs = pod("b1", "node-b", "s");
        assert!(
            admit(write(
                "delete",
                pods,
                ("default", "b1"),
                None,
                Some(&theirs)
            ))
            .is_err()
        );
        let mine = pod("a1", "node-a", "s");
        assert_eq!(
            admit(write("delete", pods, ("default", "a1"), None, Some(&mine))),
            Ok(())
        );
        let status = ("", "pods", "status");
        let mut new_status = mine.clone();
        new_status["status"] = json!({ "phase": "Running" });
        assert_eq!(
            admit(write(
                "update",
                status,
                ("default", "a1"),
                Some(&new_status),
                Some(&mine)
            )),
            Ok(())
        );
        assert_eq!(
            admit(write(
                "patch",
                status,
                ("default", "b1"),
                Some(&theirs),
                Some(&theirs)
            ))
            .unwrap_err(),
            "node \"node-a\" can only update pod status for pods with spec.nodeName set to itself"
        );
        new_status["metadata"]["labels"] = json!({ "x": "y" });
        assert!(
            admit(write(
                "update",
                status,
                ("default", "a1"),
                Some(&new_status),
                Some(&mine)
            ))
            .is_err()
        );
    }

    #[test]
    fn node_restriction_nodes_leases_and_tokens() {
        let a = node_user("node-a");
        let g = graph();
        let admit = |w: NodeWrite<'_>| admit_node_write(&a, &w, &g);
        let nodes = ("", "nodes", "");
        let old = json!({ "metadata": { "name": "node-a", "labels": { "kubernetes.io/hostname": "node-a" } }, "spec": {} });
        let mut relabel = old.clone();
        relabel["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"] =
            json!("true");
        assert_eq!(
            admit(write(
                "update",
                nodes,
                ("", "node-a"),
                Some(&relabel),
                Some(&old)
            )),
            Ok(())
        );
        relabel["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] = json!("");
        assert_eq!(
            admit(write(
                "update",
                nodes,
                ("", "node-a"),
                Some(&relabel),
                Some(&old)
            ))
            .unwrap_err(),
            "is not allowed to modify labels: node-role.kubernetes.io/control-plane"
        );
        assert!(
            admit(write("create", nodes, ("", ""), Some(&relabel), None))
                .unwrap_err()
                .contains("is not allowed to set the following labels")
        );
        let mut tainted = old.clone();
        tainted["spec"]["taints"] = json!([{ "key": "k", "effect": "NoSchedule" }]);
        assert!(
            admit(write(
                "update",
                nodes,
                ("", "node-a"),
                Some(&tainted),
                Some(&old)
            ))
            .is_err()
        );
        assert_eq!(
            admit(write("update", nodes, ("", "node-b"), None, None)).unwrap_err(),
            "node \"node-a\" is not allowed to modify node \"node-b\""
        );
        let leases = ("coordination.k8s.io", "leases", "");
        let lease = |name: &str| json!({ "metadata": { "name": name } });
        let (own, other) = (lease("node-a"), lease("node-b"));
        assert_eq!(
            admit(write(
                "create",
                leases,
                (NODE_LEASE_NAMESPACE, ""),
                Some(&own),
                None
            )),
            Ok(())
        );
        assert!(
            admit(write(
                "create",
                leases,
                (NODE_LEASE_NAMESPACE, ""),
                Some(&other),
                None
            ))
            .is_err()
        );
        assert!(
            admit(write(
                "update",
                leases,
                (NODE_LEASE_NAMESPACE, "node-b"),
                Some(&other),
                Some(&other)
            ))
            .is_err()
        );
        assert!(admit(write("create", leases, ("default", ""), Some(&own), None)).is_err());
        let req = |pod: &str| json!({ "spec": { "boundObjectRef": { "apiVersion": "v1", "kind": "Pod", "name": pod, "uid": format!("{pod}-uid") } } });
        let token = ("", "serviceaccounts", "token");
        assert_eq!(
            admit(write(
                "create",
                token,
                ("default", "app"),
                Some(&req("a1")),
                None
            )),
            Ok(())
        );
        assert!(
            admit(write(
                "create",
                token,
                ("default", "app"),
                Some(&req("b1")),
                None
            ))
            .is_err()
        );
        assert!(
            admit(write(
                "create",
                token,
                ("default", "app"),
                Some(&json!({})),
                None
            ))
            .is_err()
        );
        let alice = UserInfo::authenticated("alice", vec![]);
        assert_eq!(
            admit_node_write(&alice, &write("update", nodes, ("", "x"), None, None), &g),
            Ok(())
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
