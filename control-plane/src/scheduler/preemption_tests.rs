//! Preemption decisions on small clusters built from JSON objects: which victims, which node,
//! how budgets weigh, who may not preempt, and the "preemption: ..." messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use super::node_info::NodeInfo;
use super::nominations::Nominations;
use super::placement::FitError;
use super::pod_info::PodInfo;
use super::preemption::{
    self, Candidate, Cluster, NEVER_POLICY, Outcome, Pdb, VICTIMS_TERMINATING, pick_one,
};
use super::tests::{bind, no_namespaces, node, place_with};

/// A pod with `priority` requesting `cpu`, started at `started` (RFC 3339) when given.
fn pod(name: &str, priority: i32, cpu: &str, started: Option<&str>, labels: Value) -> PodInfo {
    let mut object = json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"priority": priority, "containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": cpu}}}]},
        "status": {}
    });
    if let Some(at) = started {
        object["status"]["startTime"] = json!(at);
    }
    let pod: Pod = serde_json::from_value(object).expect("a pod");
    PodInfo::from_pod(&pod)
}

fn plain(name: &str, cpu: &str) -> NodeInfo {
    node(name, cpu, "8Gi", json!({}), json!({}))
}

fn budget(selector: Value, allowed: i32) -> Pdb {
    let budget: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "b", "namespace": "default"},
        "spec": {"selector": selector, "minAvailable": 1},
        "status": {"disruptionsAllowed": allowed, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
    }))
    .expect("a budget");
    Pdb::from_budget(&budget)
}

/// Schedules `pod` and, as the service does when nothing fits, runs preemption.
fn run(
    pod: &PodInfo,
    nodes: &[NodeInfo],
    nominations: &Nominations,
    pdbs: &[Pdb],
) -> (FitError, Outcome) {
    let error = place_with(pod, nodes, nominations).expect_err("nothing fits without preemption");
    let cluster = Cluster {
        nodes,
        nominations,
        pdbs,
        namespaces: &no_namespaces,
    };
    let outcome = preemption::preempt(pod, &cluster, &error, &mut StdRng::seed_from_u64(3));
    (error, outcome)
}

fn victims(outcome: &Outcome) -> (String, Vec<String>) {
    match outcome {
        Outcome::Nominate(c) => (
            c.node.clone(),
            c.victims.iter().map(|v| v.name.clone()).collect(),
        ),
        other => panic!("expected a nomination, got {other:?}"),
    }
}

#[test]
fn the_fewest_least_important_pods_are_victims() {
    let mut nodes = vec![plain("n1", "2")];
    bind(
        &mut nodes,
        "n1",
        pod(
            "old-low",
            1,
            "500m",
            Some("2026-01-01T00:00:00Z"),
            json!({}),
        ),
    );
    bind(
        &mut nodes,
        "n1",
        pod(
            "new-low",
            1,
            "500m",
            Some("2026-01-02T00:00:00Z"),
            json!({}),
        ),
    );
    bind(
        &mut nodes,
        "n1",
        pod("mid", 5, "500m", Some("2026-01-03T00:00:00Z"), json!({})),
    );
    bind(&mut nodes, "n1", pod("above", 100, "500m", None, json!({})));
    let preemptor = pod("p", 10, "500m", None, json!({}));
    let (error, outcome) = run(&preemptor, &nodes, &Nominations::default(), &[]);
    assert_eq!(
        error.to_string(),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    assert_eq!(outcome.message(), None);
    // mid (the highest priority below 10) is reprieved first, then the longer-running low
    // pod; the pod of priority 100 is never a candidate.
    assert_eq!(
        victims(&outcome),
        ("n1".into(), vec!["new-low".to_string()])
    );
    let bigger = pod("q", 10, "1", None, json!({}));
    let (_, outcome) = run(&bigger, &nodes, &Nominations::default(), &[]);
    assert_eq!(
        victims(&outcome).1,
        ["old-low", "new-low"],
        "most important first"
    );
}

#[test]
fn budgets_are_honoured_when_choosing_victims() {
    let mut nodes = vec![plain("n1", "2")];
    bind(
        &mut nodes,
        "n1",
        pod(
            "free",
            1,
            "1",
            Some("2026-01-01T00:00:00Z"),
            json!({"app": "free"}),
        ),
    );
    bind(
        &mut nodes,
        "n1",
        pod(
            "guarded",
            1,
            "1",
            Some("2026-01-02T00:00:00Z"),
            json!({"app": "db"}),
        ),
    );
    let preemptor = pod("p", 10, "1", None, json!({}));
    // Without a budget the more recent pod goes.
    let (_, outcome) = run(&preemptor, &nodes, &Nominations::default(), &[]);
    assert_eq!(victims(&outcome).1, ["guarded"]);
    // A budget that allows no disruption protects it: the other one goes instead.
    let pdbs = [budget(json!({"matchLabels": {"app": "db"}}), 0)];
    let (_, outcome) = run(&preemptor, &nodes, &Nominations::default(), &pdbs);
    let Outcome::Nominate(candidate) = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(victims(&outcome).1, ["free"]);
    assert_eq!(candidate.pdb_violations, 0);
    // When only a protected pod frees enough, it goes, and the violation is counted.
    let big = pod("big", 10, "2", None, json!({}));
    let (_, outcome) = run(&big, &nodes, &Nominations::default(), &pdbs);
    let Outcome::Nominate(candidate) = outcome else {
        panic!("a nomination")
    };
    assert_eq!(candidate.victims.len(), 2);
    assert_eq!(candidate.pdb_violations, 1);
    // An empty selector selects nothing in preemption.
    let (_, outcome) = run(
        &preemptor,
        &nodes,
        &Nominations::default(),
        &[budget(json!({}), 0)],
    );
    assert_eq!(victims(&outcome).1, ["guarded"]);
}

#[test]
fn the_node_is_chosen_as_kube_chooses_it() {
    let victim = |name: &str, priority: i32, started: &str| {
        Arc::new(pod(name, priority, "1", Some(started), json!({})))
    };
    let candidate = |node: &str, victims: Vec<Arc<PodInfo>>, pdb_violations: usize| Candidate {
        node: node.into(),
        victims,
        pdb_violations,
    };
    let t1 = "2026-01-01T00:00:00Z";
    let t2 = "2026-01-02T00:00:00Z";
    let chosen = |candidates: Vec<Candidate>| pick_one(candidates).map(|c| c.node);
    // Fewest PDB violations first, whatever the priorities.
    assert_eq!(
        chosen(vec![
            candidate("violates", vec![victim("a", 1, t1)], 1),
            candidate("clean", vec![victim("b", 50, t1), victim("c", 40, t1)], 0),
        ]),
        Some("clean".into())
    );
    // Then the lowest highest-priority victim.
    assert_eq!(
        chosen(vec![
            candidate("high", vec![victim("a", 5, t1)], 0),
            candidate("low", vec![victim("b", 4, t1), victim("c", 4, t1)], 0),
        ]),
        Some("low".into())
    );
    // Then the smallest sum of priorities.
    assert_eq!(
        chosen(vec![
            candidate("more", vec![victim("a", 5, t1), victim("b", 5, t1)], 0),
            candidate("less", vec![victim("c", 5, t1), victim("d", -100, t1)], 0),
        ]),
        Some("less".into())
    );
    // Then the fewest victims.
    assert_eq!(
        chosen(vec![
            candidate("two", vec![victim("a", 5, t1), victim("b", 0, t1)], 0),
            candidate("one", vec![victim("c", 5, t1)], 0),
            candidate(
                "three",
                vec![victim("d", 5, t1), victim("e", -1, t1), victim("f", 1, t1)],
                0
            ),
        ]),
        Some("one".into())
    );
    // Then the latest-started highest-priority victims.
    assert_eq!(
        chosen(vec![
            candidate("older", vec![victim("a", 5, t1)], 0),
            candidate("newer", vec![victim("b", 5, t2)], 0),
        ]),
        Some("newer".into())
    );
    assert_eq!(chosen(Vec::new()), None);
}

#[test]
fn preemption_prefers_the_node_with_cheaper_victims() {
    let mut nodes = vec![plain("n1", "1"), plain("n2", "1")];
    bind(&mut nodes, "n1", pod("mid", 5, "1", None, json!({})));
    bind(&mut nodes, "n2", pod("low", 1, "1", None, json!({})));
    let (_, outcome) = run(
        &pod("p", 10, "1", None, json!({})),
        &nodes,
        &Nominations::default(),
        &[],
    );
    assert_eq!(victims(&outcome), ("n2".into(), vec!["low".to_string()]));
}

#[test]
fn never_policy_and_equal_priority_do_not_preempt() {
    let mut nodes = vec![
        plain("n1", "1"),
        plain("n2", "1"),
        node(
            "tainted",
            "8",
            "8Gi",
            json!({}),
            json!({"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}),
        ),
    ];
    bind(&mut nodes, "n1", pod("a", 10, "1", None, json!({})));
    bind(&mut nodes, "n2", pod("b", 20, "1", None, json!({})));
    let mut polite = pod("polite", 100, "1", None, json!({}));
    polite.never_preempts = true;
    let (mut error, outcome) = run(&polite, &nodes, &Nominations::default(), &[]);
    assert!(
        matches!(outcome, Outcome::NotEligible(NEVER_POLICY)),
        "{outcome:?}"
    );
    error.preemption = outcome.message();
    assert_eq!(
        error.to_string(),
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    let equal = pod("equal", 10, "1", None, json!({}));
    let (mut error, outcome) = run(&equal, &nodes, &Nominations::default(), &[]);
    assert!(matches!(outcome, Outcome::NotHelpful(_)), "{outcome:?}");
    error.preemption = outcome.message();
    assert_eq!(
        error.to_string(),
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
    );
}

#[test]
fn nodes_preemption_cannot_fix_are_skipped() {
    let mut nodes = vec![
        plain("small", "1"),
        node("labelled", "4", "8Gi", json!({"disk": "ssd"}), json!({})),
        node(
            "cordoned",
            "4",
            "8Gi",
            json!({"disk": "ssd"}),
            json!({"unschedulable": true}),
        ),
    ];
    bind(
        &mut nodes,
        "small",
        pod("low-a", 0, "500m", None, json!({})),
    );
    bind(
        &mut nodes,
        "labelled",
        pod("low-b", 0, "4", None, json!({})),
    );
    // Wants 2 CPUs on an ssd node: "small" could never hold it (its request exceeds the
    // node), "cordoned" is unschedulable; only "labelled" is worth a dry run.
    let mut wants_ssd = pod("p", 10, "2", None, json!({}));
    wants_ssd.node_selector = BTreeMap::from([("disk".to_string(), "ssd".to_string())]);
    let (_, outcome) = run(&wants_ssd, &nodes, &Nominations::default(), &[]);
    assert_eq!(
        victims(&outcome),
        ("labelled".into(), vec!["low-b".to_string()])
    );
    // Too big for any node: nothing is preempted.
    let huge = pod("huge", 10, "16", None, json!({"disk": "ssd"}));
    let (_, outcome) = run(&huge, &nodes, &Nominations::default(), &[]);
    assert_eq!(
        outcome.message().as_deref(),
        Some("preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")
    );
    // A port held by a pod of higher priority stays held: the node is no candidate.
    let port =
        json!([{"name": "c", "image": "x", "ports": [{"containerPort": 80, "hostPort": 80}]}]);
    let with_port = |name: &str, priority: i32| {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"priority": priority, "containers": port}
        }))
        .expect("a pod");
        PodInfo::from_pod(&pod)
    };
    let mut nodes = vec![plain("n1", "4")];
    bind(&mut nodes, "n1", with_port("holder", 50));
    let (_, outcome) = run(&with_port("p", 10), &nodes, &Nominations::default(), &[]);
    assert_eq!(
        outcome.message().as_deref(),
        Some(
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        )
    );
    let (_, outcome) = run(&with_port("p", 60), &nodes, &Nominations::default(), &[]);
    assert_eq!(victims(&outcome).1, ["holder"]);
}

#[test]
fn nominated_pods_hold_their_room_against_lower_priorities() {
    let nodes = vec![plain("n1", "2")];
    let mut nominations = Nominations::default();
    nominations.nominate(pod("preemptor", 10, "2", None, json!({})), "n1");
    let place = |p: &PodInfo| place_with(p, &nodes, &nominations);
    let low = pod("low", 1, "1", None, json!({}));
    assert_eq!(
        place(&low).expect_err("the room is held").to_string(),
        "0/1 nodes are available: 1 Insufficient cpu."
    );
    assert_eq!(
        place(&pod("higher", 20, "1", None, json!({}))).as_deref(),
        Ok("n1")
    );
    assert_eq!(
        place(&pod("preemptor", 10, "2", None, json!({}))).as_deref(),
        Ok("n1"),
        "its own room"
    );
}

#[test]
fn a_preemptor_waits_for_its_victims_to_terminate() {
    let mut nodes = vec![plain("n1", "1"), plain("n2", "1")];
    bind(&mut nodes, "n1", pod("going", 1, "1", None, json!({})));
    bind(&mut nodes, "n2", pod("other", 1, "1", None, json!({})));
    let preemptor = pod("p", 10, "1", None, json!({}));
    let mut nominations = Nominations::default();
    nominations.nominate(preemptor.clone(), "n1");
    nominations.mark_victim("uid-going");
    let (_, outcome) = run(&preemptor, &nodes, &nominations, &[]);
    assert!(
        matches!(outcome, Outcome::NotEligible(VICTIMS_TERMINATING)),
        "{outcome:?}"
    );
    // Once the victim is gone from the books, preemption may run again.
    nominations.unmark_victim("uid-going");
    let (_, outcome) = run(&preemptor, &nodes, &nominations, &[]);
    assert!(matches!(outcome, Outcome::Nominate(_)), "{outcome:?}");
}
