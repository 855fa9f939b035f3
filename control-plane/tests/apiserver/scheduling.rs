//! keel-scheduler against the real apiserver: pods land on nodes that fit (nodes are plain
//! objects whose status the test writes), an unschedulable pod carries kube's condition and
//! FailedScheduling event ("0/3 nodes are available: ..."), and it is placed once a node that
//! fits appears. Preemption: a higher-priority pod gets its nominated node, exactly the
//! lower-priority victims it needs are marked and deleted, and it is bound once they are gone;
//! preemptionPolicy Never and equal priorities preempt nothing and say so; a pod a
//! PodDisruptionBudget protects is spared when another victim will do.

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
    // Nothing could be preempted to help: the taint stays, and 4 CPUs exceed a 1-CPU node.
    let expected = "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: true}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    let message = pod_scheduled_message(&api, "huge", "the PodScheduled=False condition");
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

fn priority_class(name: &str, value: i32, policy: &str) -> String {
    format!(
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: {name}\nvalue: {value}\npreemptionPolicy: {policy}\n"
    )
}

fn pod_of_class(name: &str, class: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  priorityClassName: {class}\n  containers:\n  - name: main\n    image: registry.example/app:1\n    resources:\n      requests:\n        cpu: \"{cpu}\"\n"
    )
}

fn pods_json(api: &TestApiserver) -> Vec<serde_json::Value> {
    let listed = api.ok(&["get", "pods", "-o", "json"], None);
    let list: serde_json::Value = serde_json::from_str(&listed).expect("a pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The message of the pod's PodScheduled condition, once there is one.
fn pod_scheduled_message(api: &TestApiserver, name: &str, what: &str) -> String {
    wait_for(
        api,
        &[
            "get",
            "pod",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ],
        what,
        |m| !m.is_empty(),
    )
}

fn higher_priority_pods_preempt_exactly_what_they_need(backend: Backend) {
    if !require_backend(
        "higher_priority_pods_preempt_exactly_what_they_need",
        backend,
    ) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    for manifest in [
        priority_class("high", 1000, "PreemptLowerPriority"),
        priority_class("high-polite", 1000, "Never"),
        priority_class("low", 10, "PreemptLowerPriority"),
        node("n1", "2", None),
    ] {
        api.ok(&["create", "-f", "-"], Some(&manifest));
    }
    let _scheduler = Component::start(&api, |client, token| {
        service::run(client, SchedulerConfig::default(), token)
    });
    // Four low-priority pods fill the node.
    for i in 0..4 {
        api.ok(
            &["create", "-f", "-"],
            Some(&pod_of_class(&format!("low-{i}"), "low", "500m")),
        );
    }
    wait_for(
        &api,
        &["get", "pods", "-o", "jsonpath={.items[*].spec.nodeName}"],
        "the four low pods to be bound",
        |n| n.split_whitespace().filter(|n| *n == "n1").count() == 4,
    );
    let priority = api.ok(
        &["get", "pod", "low-0", "-o", "jsonpath={.spec.priority}"],
        None,
    );
    assert_eq!(priority, "10", "the apiserver resolves the PriorityClass");
    let refused = api.fails(
        &["create", "-f", "-"],
        Some(&pod_of_class("lost", "missing", "1m")),
    );
    assert!(
        refused.contains("no PriorityClass with name missing was found"),
        "{refused}"
    );
    let system = api.ok(
        &[
            "get",
            "priorityclass",
            "system-node-critical",
            "-o",
            "jsonpath={.value}",
        ],
        None,
    );
    assert_eq!(
        system, "2000001000",
        "the system classes exist from the start"
    );

    // A high-priority pod needing 1 CPU preempts exactly two of them.
    api.ok(
        &["create", "-f", "-"],
        Some(&pod_of_class("high", "high", "1")),
    );
    wait_for(
        &api,
        &[
            "get",
            "pod",
            "high",
            "-o",
            "jsonpath={.status.nominatedNodeName}",
        ],
        "the nominated node",
        |n| n == "n1",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let victims: Vec<serde_json::Value> = loop {
        let terminating: Vec<serde_json::Value> = pods_json(&api)
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_string())
            .collect();
        if terminating.len() >= 2 || std::time::Instant::now() > deadline {
            break terminating;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(victims.len(), 2, "exactly two victims: {victims:?}");
    let high_uid = api.ok(
        &["get", "pod", "high", "-o", "jsonpath={.metadata.uid}"],
        None,
    );
    let mut victim_names = Vec::new();
    for victim in &victims {
        let name = victim["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            name.starts_with("low-"),
            "only low pods are victims: {name}"
        );
        let condition = victim["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionTarget"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(condition["status"], "True", "{victim}");
        assert_eq!(condition["reason"], "PreemptionByScheduler", "{victim}");
        let described = wait_for(
            &api,
            &["describe", "pod", &name],
            "the Preempted event",
            |d| d.contains("Preempted"),
        );
        assert!(
            described.contains(&format!("Preempted by pod {high_uid} on node n1")),
            "{described}"
        );
        victim_names.push(name);
    }
    let unbound = api.ok(
        &["get", "pod", "high", "-o", "jsonpath={.spec.nodeName}"],
        None,
    );
    assert!(
        unbound.is_empty(),
        "bound before its victims left: {unbound}"
    );

    // The kubelet's part: the victims' containers stopped, their objects go.
    for name in &victim_names {
        api.ok(
            &["delete", "pod", name, "--grace-period=0", "--force"],
            None,
        );
    }
    let placed = wait_for(
        &api,
        &["get", "pod", "high", "-o", "jsonpath={.spec.nodeName}"],
        "the preemptor to be bound",
        |n| !n.is_empty(),
    );
    assert_eq!(placed, "n1");
    let survivors: Vec<String> = pods_json(&api)
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .filter(|n| n.starts_with("low-"))
        .collect();
    assert_eq!(survivors.len(), 2, "{survivors:?}");

    // preemptionPolicy Never: no victims, and the message says why.
    api.ok(
        &["create", "-f", "-"],
        Some(&pod_of_class("polite", "high-polite", "500m")),
    );
    let message = pod_scheduled_message(&api, "polite", "polite's PodScheduled=False condition");
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    // Equal priority never preempts.
    api.ok(
        &["create", "-f", "-"],
        Some(&pod_of_class("peer", "low", "500m")),
    );
    let message = pod_scheduled_message(&api, "peer", "peer's PodScheduled=False condition");
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    let described = wait_for(
        &api,
        &["describe", "pod", "peer"],
        "peer's FailedScheduling event",
        |d| d.contains("FailedScheduling"),
    );
    assert!(
        described.contains("No preemption victims found"),
        "{described}"
    );
    let terminating = pods_json(&api)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_string())
        .count();
    assert_eq!(terminating, 0, "neither polite nor peer preempted anything");
}

crate::both_backends!(higher_priority_pods_preempt_exactly_what_they_need);

fn labelled_pod_of_class(name: &str, app: &str, class: &str, cpu: &str) -> String {
    pod_of_class(name, class, cpu).replace(
        "  namespace: default\n",
        &format!("  namespace: default\n  labels:\n    app: {app}\n"),
    )
}

fn preemption_spares_pods_a_disruption_budget_protects(backend: Backend) {
    if !require_backend(
        "preemption_spares_pods_a_disruption_budget_protects",
        backend,
    ) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    // No disruption controller runs here: the budget's status says no disruption is allowed.
    let budget = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: db\n  namespace: default\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels:\n      app: db\n";
    for manifest in [
        priority_class("high", 1000, "PreemptLowerPriority"),
        priority_class("low", 10, "PreemptLowerPriority"),
        node("n1", "2", None),
        budget.to_string(),
    ] {
        api.ok(&["create", "-f", "-"], Some(&manifest));
    }
    let _scheduler = Component::start(&api, |client, token| {
        service::run(client, SchedulerConfig::default(), token)
    });
    // "web" is placed first, so without the budget it would be the one reprieved.
    for (name, app) in [("web", "web"), ("db", "db")] {
        api.ok(
            &["create", "-f", "-"],
            Some(&labelled_pod_of_class(name, app, "low", "1")),
        );
        wait_for(
            &api,
            &["get", "pod", name, "-o", "jsonpath={.spec.nodeName}"],
            "the low pod to be bound",
            |n| n == "n1",
        );
    }
    api.ok(
        &["create", "-f", "-"],
        Some(&pod_of_class("high", "high", "1")),
    );
    wait_for(
        &api,
        &[
            "get",
            "pod",
            "high",
            "-o",
            "jsonpath={.status.nominatedNodeName}",
        ],
        "the nominated node",
        |n| n == "n1",
    );
    wait_for(
        &api,
        &[
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
        "web to be preempted",
        |t| !t.is_empty(),
    );
    let db = api.ok(
        &[
            "get",
            "pod",
            "db",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
        None,
    );
    assert!(db.is_empty(), "the protected pod is spared: {db}");
    api.ok(
        &["delete", "pod", "web", "--grace-period=0", "--force"],
        None,
    );
    wait_for(
        &api,
        &["get", "pod", "high", "-o", "jsonpath={.spec.nodeName}"],
        "the preemptor to be bound",
        |n| n == "n1",
    );
}

crate::both_backends!(preemption_spares_pods_a_disruption_budget_protects);
