//! Scheduling decisions on small clusters built from JSON objects: each filter's verdict and
//! message, the "0/N nodes are available" summary, and what the scores prefer.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use super::node_info::NodeInfo;
use super::nominations::Nominations;
use super::placement::{FitError, SearchStart, feasible_nodes_to_find, schedule};
use super::pod_info::PodInfo;

pub(super) fn node(name: &str, cpu: &str, memory: &str, labels: Value, spec: Value) -> NodeInfo {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}
    }))
    .expect("a node");
    NodeInfo::from_node(&node)
}

fn pod(name: &str, labels: Value, spec: Value) -> PodInfo {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    }
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
        "spec": spec
    }))
    .expect("a pod");
    PodInfo::from_pod(&pod)
}

fn requesting(cpu: &str, memory: &str) -> Value {
    json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]})
}

pub(super) fn no_namespaces(_: &str) -> Option<BTreeMap<String, String>> {
    None
}

fn place(pod: &PodInfo, nodes: &[NodeInfo]) -> Result<String, FitError> {
    place_with(pod, nodes, &Nominations::default())
}

/// Places `pod` with the room held for `nominations` counted.
pub(super) fn place_with(
    pod: &PodInfo,
    nodes: &[NodeInfo],
    nominations: &Nominations,
) -> Result<String, FitError> {
    let mut rng = StdRng::seed_from_u64(7);
    schedule(
        pod,
        nodes,
        nominations,
        &mut SearchStart::default(),
        &no_namespaces,
        &mut rng,
    )
    .map(|i| nodes[i].name.clone())
}

pub(super) fn bind(nodes: &mut [NodeInfo], node_name: &str, mut placed: PodInfo) {
    placed.node_name = node_name.to_string();
    let node = nodes
        .iter_mut()
        .find(|n| n.name == node_name)
        .expect("the node");
    node.add_pod(Arc::new(placed));
}

#[test]
fn insufficient_resources_and_taints_are_summarized_as_kube_does() {
    let nodes = vec![
        node("small-1", "1", "1Gi", json!({}), json!({})),
        node("small-2", "1", "1Gi", json!({}), json!({})),
        node("small-3", "1", "1Gi", json!({}), json!({})),
        node(
            "tainted-1",
            "8",
            "16Gi",
            json!({}),
            json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
        ),
        node(
            "tainted-2",
            "8",
            "16Gi",
            json!({}),
            json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
        ),
    ];
    let big = pod("big", json!({}), requesting("2", "512Mi"));
    let error = place(&big, &nodes).expect_err("nothing fits");
    assert_eq!(
        error.to_string(),
        "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
    );
    // With the toleration, a tainted node takes it.
    let tolerant = pod(
        "tolerant",
        json!({}),
        json!({"containers": requesting("2", "512Mi")["containers"], "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}),
    );
    assert!(
        place(&tolerant, &nodes)
            .expect("fits")
            .starts_with("tainted-")
    );
}

#[test]
fn unschedulable_selector_affinity_and_ports() {
    let mut nodes = vec![
        node(
            "cordoned",
            "4",
            "8Gi",
            json!({"disk": "ssd"}),
            json!({"unschedulable": true}),
        ),
        node("hdd", "4", "8Gi", json!({"disk": "hdd"}), json!({})),
        node(
            "ssd",
            "4",
            "8Gi",
            json!({"disk": "ssd", "zone": "a"}),
            json!({}),
        ),
    ];
    let wants_ssd = pod("p", json!({}), json!({"nodeSelector": {"disk": "ssd"}}));
    assert_eq!(place(&wants_ssd, &nodes).expect("fits"), "ssd");
    let with_port = json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]}], "nodeSelector": {"disk": "ssd"}});
    bind(
        &mut nodes,
        "ssd",
        pod("first", json!({}), with_port.clone()),
    );
    let error = place(&pod("second", json!({}), with_port), &nodes).expect_err("port taken");
    assert_eq!(
        error.to_string(),
        "0/3 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable."
    );
    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["hdd"]}]}
    ]}}}});
    assert_eq!(
        place(&pod("p", json!({}), affinity), &nodes).expect("fits"),
        "hdd"
    );
}

#[test]
fn sidecars_and_init_containers_count_as_kube_counts_them() {
    let nodes = vec![node("n", "1", "4Gi", json!({}), json!({}))];
    // 600m running + a 300m sidecar = 900m: fits in 1 CPU.
    let fits = pod(
        "fits",
        json!({}),
        json!({
            "initContainers": [{"name": "side", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "300m"}}}],
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "600m"}}}]
        }),
    );
    assert!(place(&fits, &nodes).is_ok());
    // An init container of 800m after a 300m sidecar peaks at 1100m: does not fit.
    let peaks = pod(
        "peaks",
        json!({}),
        json!({
            "initContainers": [
                {"name": "side", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "300m"}}},
                {"name": "init", "image": "x", "resources": {"requests": {"cpu": "800m"}}}
            ],
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "100m"}}}]
        }),
    );
    assert_eq!(
        place(&peaks, &nodes).expect_err("too big").to_string(),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
}

#[test]
fn least_allocated_spreads_pods() {
    let mut nodes = vec![
        node("a", "4", "8Gi", json!({}), json!({})),
        node("b", "4", "8Gi", json!({}), json!({})),
    ];
    bind(
        &mut nodes,
        "a",
        pod("busy", json!({}), requesting("3", "6Gi")),
    );
    assert_eq!(
        place(&pod("new", json!({}), requesting("500m", "1Gi")), &nodes).expect("fits"),
        "b"
    );
}

#[test]
fn inter_pod_affinity_and_anti_affinity() {
    let mut nodes = vec![
        node("a1", "4", "8Gi", json!({"zone": "a"}), json!({})),
        node("a2", "4", "8Gi", json!({"zone": "a"}), json!({})),
        node("b1", "4", "8Gi", json!({"zone": "b"}), json!({})),
    ];
    let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}
    ]}}});
    bind(
        &mut nodes,
        "a1",
        pod("db-0", json!({"app": "db"}), anti.clone()),
    );
    // A second db must leave zone a.
    assert_eq!(
        place(&pod("db-1", json!({"app": "db"}), anti.clone()), &nodes).expect("fits"),
        "b1"
    );
    bind(
        &mut nodes,
        "b1",
        pod("db-1", json!({"app": "db"}), anti.clone()),
    );
    let error = place(&pod("db-2", json!({"app": "db"}), anti), &nodes).expect_err("no zone left");
    assert_eq!(
        error.to_string(),
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules."
    );
    // A pod without terms of its own is kept out of the zones by the existing pods' rules
    // only if it is selected by them: a web pod goes anywhere, and its affinity to db holds.
    let near_db = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}
    ]}}});
    let chosen = place(&pod("web", json!({"app": "web"}), near_db), &nodes).expect("fits");
    assert!(chosen == "a1" || chosen == "b1", "{chosen}");
    // Affinity to pods that exist nowhere fails, unless the pod matches its own term.
    let lonely = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "zone"}
    ]}}});
    let error = place(&pod("x", json!({}), lonely.clone()), &nodes).expect_err("no cache pod");
    assert_eq!(
        error.to_string(),
        "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."
    );
    assert!(place(&pod("cache-0", json!({"app": "cache"}), lonely), &nodes).is_ok());
}

#[test]
fn topology_spread_do_not_schedule() {
    let mut nodes = vec![
        node("a1", "8", "16Gi", json!({"zone": "a"}), json!({})),
        node("b1", "8", "16Gi", json!({"zone": "b"}), json!({})),
        node("nozone", "8", "16Gi", json!({}), json!({})),
    ];
    let spread = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
    bind(
        &mut nodes,
        "a1",
        pod("w0", json!({"app": "web"}), json!({})),
    );
    // Zone a has 1, zone b 0: the next must go to b.
    assert_eq!(
        place(&pod("w1", json!({"app": "web"}), spread.clone()), &nodes).expect("fits"),
        "b1"
    );
    let cordon_b = |nodes: &mut Vec<NodeInfo>| nodes[1].unschedulable = true;
    cordon_b(&mut nodes);
    let error = place(&pod("w1", json!({"app": "web"}), spread), &nodes).expect_err("skew");
    assert_eq!(
        error.to_string(),
        "0/3 nodes are available: 1 node(s) didn't match pod topology spread constraints, 1 node(s) didn't match pod topology spread constraints (missing required label), 1 node(s) were unschedulable."
    );
}

#[test]
fn preferred_node_affinity_and_prefer_no_schedule_steer_the_choice() {
    let nodes = vec![
        node("plain", "4", "8Gi", json!({}), json!({})),
        node("fast", "4", "8Gi", json!({"cpu": "fast"}), json!({})),
        node(
            "soft-tainted",
            "4",
            "8Gi",
            json!({"cpu": "fast"}),
            json!({"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}),
        ),
    ];
    let prefers_fast = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "preference": {"matchExpressions": [{"key": "cpu", "operator": "In", "values": ["fast"]}]}}
    ]}}});
    assert_eq!(
        place(&pod("p", json!({}), prefers_fast), &nodes).expect("fits"),
        "fast"
    );
}

#[test]
fn the_search_examines_a_share_of_large_clusters() {
    assert_eq!(feasible_nodes_to_find(50), 50);
    assert_eq!(feasible_nodes_to_find(100), 100);
    assert_eq!(feasible_nodes_to_find(1000), 420);
    assert_eq!(feasible_nodes_to_find(5000), 500);
    assert_eq!(feasible_nodes_to_find(100_000), 5000);
}
