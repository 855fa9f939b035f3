//! keel-scheduler against the real apiserver: pods land on nodes that fit (nodes are plain
//! objects whose status the test writes), an unschedulable pod carries kube's condition and
//! FailedScheduling event ("0/3 nodes are available: ..."), and it is placed once a node that
//! fits appears.

use keel_control_plane::scheduler::service::{self, SchedulerConfig};

use super::harness::{
    Backend, Component, TestApiserver, require_backend, wait_for_kubectl as wait_for,
};

fn node(name: &str, cpu: &str, taint: Option<&str>) -> String {
    let taints = taint
        .map(|t| format!("  taints:\n  - key: {t}\n    value: \"true\"\n    effect: NoSchedule\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\nspec:\n{taints}status:\n  allocatable:\n    cpu: \"{cpu}\"\n    memory: 8Gi\n    pods: \"110\"\n  capacity:\n    cpu: \"{cpu}\"\n    memory: 8Gi\n    pods: \"110\"\n"
    )
}

fn pod(name: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  containers:\n  - name: main\n    image: registry.example/app:1\n    resources:\n      requests:\n        cpu: \"{cpu}\"\n"
    )
}

fn pods_land_and_unschedulable_pods_say_why(backend: Backend) {
    if !require_backend("pods_land_and_unschedulable_pods_say_why", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    for manifest in [
        node("small-1", "1", None),
        node("small-2", "1", None),
        node("tainted", "16", Some("dedicated")),
    ] {
        api.ok(&["create", "-f", "-"], Some(&manifest));
    }
    let _scheduler = Component::start(&api, |client, token| {
        service::run(client, SchedulerConfig::default(), token)
    });

    api.ok(&["create", "-f", "-"], Some(&pod("fits", "500m")));
    let placed = wait_for(
        &api,
        &["get", "pod", "fits", "-o", "jsonpath={.spec.nodeName}"],
        "pod fits to be bound",
        |n| !n.is_empty(),
    );
    assert!(
        placed.starts_with("small-"),
        "the tainted node must not take it: {placed}"
    );
    let described = wait_for(
        &api,
        &["describe", "pod", "fits"],
        "the Scheduled event",
        |d| d.contains("Scheduled"),
    );
    assert!(
        described.contains(&format!("Successfully assigned default/fits to {placed}")),
        "{described}"
    );

    api.ok(&["create", "-f", "-"], Some(&pod("huge", "4")));
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: true}, 2 Insufficient cpu.";
    let message = wait_for(
        &api,
        &[
            "get",
            "pod",
            "huge",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ],
        "the PodScheduled=False condition",
        |m| !m.is_empty(),
    );
    assert_eq!(message, expected);
    let described = wait_for(
        &api,
        &["describe", "pod", "huge"],
        "the FailedScheduling event",
        |d| d.contains("FailedScheduling"),
    );
    assert!(described.contains(expected), "{described}");
    let status = api.ok(
        &["get", "pod", "huge", "-o", "jsonpath={.spec.nodeName}"],
        None,
    );
    assert!(
        status.is_empty(),
        "an unschedulable pod stays unbound: {status}"
    );

    // A node that fits appears: the pod is placed there.
    api.ok(&["create", "-f", "-"], Some(&node("big", "8", None)));
    let placed = wait_for(
        &api,
        &["get", "pod", "huge", "-o", "jsonpath={.spec.nodeName}"],
        "pod huge to be bound",
        |n| !n.is_empty(),
    );
    assert_eq!(placed, "big");
}

crate::both_backends!(pods_land_and_unschedulable_pods_say_why);
