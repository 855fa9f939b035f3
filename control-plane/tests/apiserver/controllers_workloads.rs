//! The workload controllers of keel-controller-manager (ReplicaSet, Deployment, DaemonSet,
//! StatefulSet), run in-process against the real apiserver with kubectl as the user: the test
//! plays the kubelet (marks pods Running/Ready through the status subresource and finishes
//! the graceful deletion of bound pods).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_control_plane::controllers::{self, Context, ControllerConfig};
use keel_control_plane::scheduler::service::{self, SchedulerConfig};
use serde_json::Value;

use super::harness::{
    Backend, Component, TestApiserver, require_backend, wait_for_kubectl as wait_for,
};

const WORKLOAD_CONTROLLERS: &[&str] = &["replicaset", "deployment", "daemonset", "statefulset"];

/// The workload controllers, as keel-controller-manager runs them, with `client`.
fn run_controllers(
    client: kube::Client,
    token: tokio_util::sync::CancellationToken,
) -> impl std::future::Future<Output = ()> {
    run_named(WORKLOAD_CONTROLLERS, client, token)
}

/// The named controllers with the default configuration.
fn run_named(
    names: &[&str],
    client: kube::Client,
    token: tokio_util::sync::CancellationToken,
) -> impl std::future::Future<Output = ()> + use<> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    async move {
        let selected = controllers::select(&names).expect("known controllers");
        let context = Arc::new(Context {
            client,
            config: ControllerConfig::default(),
        });
        controllers::run(context, &selected, token).await;
    }
}

fn start_controllers(api: &TestApiserver) -> Component {
    Component::start(api, run_controllers)
}

fn start_scheduler(api: &TestApiserver) -> Component {
    Component::start(api, |client, token| {
        service::run(client, SchedulerConfig::default(), token)
    })
}

fn node(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\nspec:\n{extra_spec}  podCIDR: 10.0.0.0/24\nstatus:\n  allocatable:\n    cpu: \"1\"\n    memory: 8Gi\n    pods: \"110\"\n  capacity:\n    cpu: \"1\"\n    memory: 8Gi\n    pods: \"110\"\n"
    )
}

fn json_of(api: &TestApiserver, args: &[&str]) -> Value {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&api.ok(&all, None)).expect("kubectl printed JSON")
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Marks a pod Running and Ready, as its kubelet would.
fn mark_ready(api: &TestApiserver, pod: &str) {
    let now = "2026-01-01T00:00:00Z";
    let patch = format!(
        r#"{{"status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"True","lastTransitionTime":"{now}"}},{{"type":"ContainersReady","status":"True","lastTransitionTime":"{now}"}},{{"type":"PodScheduled","status":"True","lastTransitionTime":"{now}"}}]}}}}"#
    );
    let output = api.kubectl(
        &[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    );
    // A pod deleted meanwhile is fine; anything else is not.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() || stderr.contains("NotFound") || stderr.contains("not found"),
        "marking {pod} ready: {stderr}"
    );
}

/// The kubelet's part for pods matching `selector`: finishes the deletion of terminating
/// pods, and marks bound (or, with `unbound_too`, all) pods Ready — at most `limit` of them.
/// Returns how many it marked.
fn play_kubelet(api: &TestApiserver, selector: &str, unbound_too: bool, limit: usize) -> usize {
    let pods = json_of(api, &["get", "pods", "-l", selector]);
    let mut marked = 0;
    for pod in items(&pods) {
        let name = name_of(&pod);
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            let _ = api.kubectl(
                &[
                    "delete",
                    "pod",
                    &name,
                    "--grace-period=0",
                    "--force",
                    "--wait=false",
                ],
                None,
            );
            continue;
        }
        let bound = pod["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        if (bound || unbound_too) && !is_ready(&pod) && marked < limit {
            mark_ready(api, &name);
            marked += 1;
        }
    }
    marked
}

/// Polls `check` (which also gets to act, e.g. play the kubelet) until it returns Some.
fn poll<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(150));
    }
}

fn replica_sets(api: &TestApiserver, selector: &str) -> Vec<Value> {
    items(&json_of(api, &["get", "rs", "-l", selector]))
}

fn spec_replicas(rs: &Value) -> i64 {
    rs["spec"]["replicas"].as_i64().unwrap_or(0)
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 5
  selector:
    matchLabels:
      app: web
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 1
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: registry.example/web:1
        resources:
          requests:
            cpu: 100m
";

fn deployment_rolls_out_scales_and_undoes(backend: Backend) {
    if !require_backend("deployment_rolls_out_scales_and_undoes", backend) {
        return;
    }
    let api = TestApiserver::start_with(backend);
    for name in ["n1", "n2", "n3"] {
        api.ok(&["create", "-f", "-"], Some(&node(name, "")));
    }
    let _scheduler = start_scheduler(&api);
    let _controllers = start_controllers(&api);
    api.ok(&["create", "-f", "-"], Some(DEPLOYMENT));

    // Five pods, bound by the scheduler across the three nodes.
    let nodes = poll("5 bound pods", Duration::from_secs(30), || {
        let pods = items(&json_of(&api, &["get", "pods", "-l", "app=web"]));
        let nodes: Vec<String> = pods
            .iter()
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
        (pods.len() == 5 && nodes.len() == 5).then_some(nodes)
    });
    let distinct: BTreeSet<&String> = nodes.iter().collect();
    assert_eq!(distinct.len(), 3, "pods spread over the nodes: {nodes:?}");
    let first_rs = replica_sets(&api, "app=web");
    assert_eq!(first_rs.len(), 1);
    let first_name = name_of(&first_rs[0]);
    let hash = first_rs[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("pod-template-hash label")
        .to_string();
    assert_eq!(first_name, format!("web-{hash}"));
    assert_eq!(
        first_rs[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    let owner = &first_rs[0]["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Deployment");
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["blockOwnerDeletion"], true);

    play_kubelet(&api, "app=web", false, 5);
    let status = api.ok(
        &["rollout", "status", "deployment/web", "--timeout=30s"],
        None,
    );
    assert!(status.contains("successfully rolled out"), "{status}");
    let progressing = api.ok(
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
        None,
    );
    assert_eq!(progressing, "NewReplicaSetAvailable");

    // A new image: the rollout keeps at most 6 pods and at least 4 available.
    api.ok(
        &[
            "set",
            "image",
            "deployment/web",
            "app=registry.example/web:2",
        ],
        None,
    );
    let mut max_total = 0;
    let mut min_ready = i64::MAX;
    poll("the rollout to finish", Duration::from_secs(60), || {
        let sets = replica_sets(&api, "app=web");
        let total: i64 = sets.iter().map(spec_replicas).sum();
        let ready: i64 = items(&json_of(&api, &["get", "pods", "-l", "app=web"]))
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && is_ready(p))
            .count() as i64;
        max_total = max_total.max(total);
        min_ready = min_ready.min(ready);
        let new = sets.iter().find(|rs| name_of(rs) != first_name)?;
        let old = sets.iter().find(|rs| name_of(rs) == first_name)?;
        if new["status"]["readyReplicas"].as_i64() == Some(5) && spec_replicas(old) == 0 {
            return Some(());
        }
        // One new pod becomes ready at a time.
        play_kubelet(&api, "app=web", false, 1);
        None
    });
    assert!(max_total <= 6, "maxSurge 1 allows 6 pods, saw {max_total}");
    assert!(
        min_ready >= 4,
        "maxUnavailable 1 keeps 4 ready, saw {min_ready}"
    );
    play_kubelet(&api, "app=web", false, 0);
    let status = api.ok(
        &["rollout", "status", "deployment/web", "--timeout=30s"],
        None,
    );
    assert!(status.contains("successfully rolled out"), "{status}");
    let history = api.ok(&["rollout", "history", "deployment/web"], None);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    assert_eq!(
        api.ok(
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
            ],
            None
        ),
        "2"
    );

    // Undo: the first ReplicaSet comes back as revision 3.
    api.ok(&["rollout", "undo", "deployment/web"], None);
    poll("the undo to finish", Duration::from_secs(60), || {
        let sets = replica_sets(&api, "app=web");
        let first = sets.iter().find(|rs| name_of(rs) == first_name)?;
        let done = first["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
            && first["status"]["readyReplicas"].as_i64() == Some(5)
            && sets
                .iter()
                .filter(|rs| name_of(rs) != first_name)
                .all(|rs| spec_replicas(rs) == 0);
        if done {
            return Some(());
        }
        play_kubelet(&api, "app=web", false, 1);
        None
    });
    let image = api.ok(
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
        None,
    );
    assert_eq!(image, "registry.example/web:1");
    let history = api.ok(&["rollout", "history", "deployment/web"], None);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 "),
        "{history}"
    );

    // kubectl scale.
    api.ok(&["scale", "deployment/web", "--replicas=2"], None);
    wait_for(
        &api,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.replicas}/{.status.availableReplicas}",
        ],
        "the deployment to scale to 2",
        |s| {
            play_kubelet(&api, "app=web", false, 0);
            s == "2/2"
        },
    );
    let described = api.ok(&["describe", "deployment", "web"], None);
    assert!(
        described.contains("ScalingReplicaSet")
            && described.contains(&format!("Scaled down replica set {first_name} from 5 to 2")),
        "{described}"
    );
    api.ok(&["delete", "deployment", "web"], None);
}

crate::both_backends!(deployment_rolls_out_scales_and_undoes);

#[test]
fn deployment_whose_selector_misses_its_template_is_refused() {
    if !require_backend(
        "deployment_whose_selector_misses_its_template_is_refused",
        Backend::Embedded,
    ) {
        return;
    }
    let api = TestApiserver::start_with(Backend::Embedded);
    let bad = DEPLOYMENT.replace("      app: web\n  strategy", "      app: other\n  strategy");
    let output = api.kubectl(&["create", "-f", "-", "-v=6"], Some(&bad));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("422"), "{stderr}");
    assert!(
        stderr.contains("`selector` does not match template `labels`"),
        "{stderr}"
    );
}

const REPLICA_SET: &str = "apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: cache
  namespace: default
spec:
  replicas: 2
  selector:
    matchLabels:
      app: cache
  template:
    metadata:
      labels:
        app: cache
    spec:
      containers:
      - name: app
        image: registry.example/cache:1
";

fn pods_of(api: &TestApiserver, selector: &str) -> Vec<Value> {
    items(&json_of(api, &["get", "pods", "-l", selector]))
}

/// How many pods matching `selector` are Ready.
fn ready_count(api: &TestApiserver, selector: &str) -> usize {
    pods_of(api, selector)
        .iter()
        .filter(|p| is_ready(p))
        .count()
}

#[test]
fn replicaset_adopts_orphans_replaces_and_releases() {
    if !require_backend(
        "replicaset_adopts_orphans_replaces_and_releases",
        Backend::Embedded,
    ) {
        return;
    }
    let api = TestApiserver::start_with(Backend::Embedded);
    let orphan = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: orphan\n  labels:\n    app: cache\nspec:\n  containers:\n  - name: app\n    image: registry.example/cache:1\n";
    api.ok(&["create", "-f", "-"], Some(orphan));
    let _controllers = start_controllers(&api);
    api.ok(&["create", "-f", "-"], Some(REPLICA_SET));
    let pods = poll(
        "the orphan adopted and one pod created",
        Duration::from_secs(30),
        || {
            let pods = pods_of(&api, "app=cache");
            let owned = pods
                .iter()
                .filter(|p| p["metadata"]["ownerReferences"][0]["name"] == "cache")
                .count();
            (pods.len() == 2 && owned == 2).then_some(pods)
        },
    );
    let created: Vec<String> = pods.iter().map(name_of).filter(|n| n != "orphan").collect();
    assert!(created[0].starts_with("cache-"), "{created:?}");
    // Nothing more is created once the count is right.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pods_of(&api, "app=cache").len(), 2);

    // A deleted pod is replaced.
    api.ok(&["delete", "pod", "orphan", "--wait=false"], None);
    poll("a replacement", Duration::from_secs(30), || {
        let names: Vec<String> = pods_of(&api, "app=cache").iter().map(name_of).collect();
        (names.len() == 2 && !names.contains(&"orphan".to_string())).then_some(())
    });

    // A pod relabelled out of the selector is released and replaced.
    let released = created[0].clone();
    api.ok(
        &["label", "pod", &released, "app=gone", "--overwrite"],
        None,
    );
    poll("the release", Duration::from_secs(30), || {
        let pod = json_of(&api, &["get", "pod", &released]);
        let refs = pod["metadata"]["ownerReferences"]
            .as_array()
            .map_or(0, Vec::len);
        (refs == 0 && pods_of(&api, "app=cache").len() == 2).then_some(())
    });

    for pod in pods_of(&api, "app=cache") {
        mark_ready(&api, &name_of(&pod));
    }
    wait_for(
        &api,
        &[
            "get",
            "rs",
            "cache",
            "-o",
            "jsonpath={.status.replicas}/{.status.readyReplicas}/{.status.availableReplicas}/{.status.fullyLabeledReplicas}/{.status.observedGeneration}",
        ],
        "the ReplicaSet status",
        |s| s == "2/2/2/2/1",
    );
    let described = api.ok(&["describe", "rs", "cache"], None);
    assert!(described.contains("SuccessfulCreate"), "{described}");
    api.ok(&["scale", "rs", "cache", "--replicas=1"], None);
    wait_for(
        &api,
        &["get", "rs", "cache", "-o", "jsonpath={.status.replicas}"],
        "scale down",
        |s| s == "1",
    );
    let described = api.ok(&["describe", "rs", "cache"], None);
    assert!(described.contains("SuccessfulDelete"), "{described}");
    api.ok(&["delete", "rs", "cache"], None);
}

/// A client certificate kubeconfig for `user`.
fn kubeconfig_for(api: &TestApiserver, user: &str) -> std::path::PathBuf {
    use keel_control_plane::apiserver::auth::{self, Pki};
    let pki = Pki::load_or_create(api.dir.path(), &[]).expect("load the PKI");
    let pair = pki
        .issue_client_cert(user, &[], Duration::from_secs(3600))
        .expect("issue a client certificate");
    let server = auth::kubeconfig::server_url("127.0.0.1", api.port);
    let credential = auth::kubeconfig::Credential::ClientCert {
        cert_pem: pair.cert_pem.clone(),
        key_pem: pair.key_pem.clone(),
    };
    let kubeconfig = auth::kubeconfig::render(&server, pki.ca_pem(), user, &credential);
    let path = api.dir.path().join(format!("{user}.kubeconfig"));
    auth::kubeconfig::write(&path, &kubeconfig).expect("write kubeconfig");
    path
}

const LIMITED_ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: limited-controller
rules:
- apiGroups: [apps]
  resources: [replicasets, replicasets/status, deployments, deployments/status, daemonsets, daemonsets/status, statefulsets, statefulsets/status, controllerrevisions]
  verbs: ['*']
- apiGroups: ['']
  resources: [pods]
  verbs: [get, list, watch, patch, update, delete]
- apiGroups: ['']
  resources: [nodes]
  verbs: [get, list, watch]
- apiGroups: ['']
  resources: [events]
  verbs: ['*']
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: limited-controller
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: limited-controller
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: limited-controller
";

/// Pods the apiserver refuses: a FailedCreate event (repeats counted on it, with backoff,
/// not a busy loop) and the ReplicaFailure condition; once allowed, the pods come and the
/// condition goes.
#[test]
fn refused_pod_creates_report_failed_create_without_a_busy_loop() {
    if !require_backend(
        "refused_pod_creates_report_failed_create_without_a_busy_loop",
        Backend::Embedded,
    ) {
        return;
    }
    let api = TestApiserver::start_with(Backend::Embedded);
    api.ok(&["apply", "-f", "-"], Some(LIMITED_ROLE));
    let limited = kubeconfig_for(&api, "limited-controller");
    let _controllers = Component::start(&api, move |_, token| async move {
        let client = keel_control_plane::kube_client::connect(Some(&limited))
            .await
            .expect("a client for the limited identity");
        run_controllers(client, token).await;
    });
    api.ok(&["create", "-f", "-"], Some(REPLICA_SET));
    let message = wait_for(
        &api,
        &[
            "get",
            "rs",
            "cache",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ReplicaFailure\")].reason}|{.status.conditions[?(@.type==\"ReplicaFailure\")].message}",
        ],
        "the ReplicaFailure condition",
        |s| s.starts_with("FailedCreate|"),
    );
    assert!(message.contains("forbidden"), "{message}");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let events = json_of(
        &api,
        &["get", "events", "--field-selector", "reason=FailedCreate"],
    );
    let events = items(&events);
    let attempts: i64 = events
        .iter()
        .map(|e| e["count"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(
        events.len(),
        1,
        "repeats are counted on one event: {events:?}"
    );
    assert!(
        (1..=10).contains(&attempts),
        "{attempts} attempts in {:?}: the retries must back off",
        started.elapsed()
    );
    let message = events[0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("Error creating: pods"), "{message}");
    assert!(message.contains("limited-controller"), "{message}");
    assert!(pods_of(&api, "app=cache").is_empty());

    // Allowed now: the next retry creates the pods and the condition goes.
    let allow = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: limited-create\nrules:\n- apiGroups: ['']\n  resources: [pods]\n  verbs: [create]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: limited-create\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: limited-create\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: limited-controller\n";
    api.ok(&["apply", "-f", "-"], Some(allow));
    poll("the pods after the grant", Duration::from_secs(40), || {
        (pods_of(&api, "app=cache").len() == 2).then_some(())
    });
    wait_for(
        &api,
        &["get", "rs", "cache", "-o", "jsonpath={.status.conditions}"],
        "the ReplicaFailure condition to go",
        |s| !s.contains("ReplicaFailure"),
    );
    // A template the apiserver refuses never reaches the controller.
    let refused = api.fails(
        &["patch", "rs", "cache", "--type=json", "-p", r#"[{"op":"replace","path":"/spec/template/spec/containers/0/name","value":"Bad_Name"}]"#],
        None,
    );
    assert!(refused.contains("Invalid value: \"Bad_Name\""), "{refused}");
    api.ok(&["delete", "rs", "cache"], None);
}

const DAEMON_SET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  namespace: default
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      containers:
      - name: agent
        image: registry.example/agent:1
";

fn agent_nodes(api: &TestApiserver) -> BTreeMap<String, String> {
    pods_of(api, "app=agent")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                name_of(p),
            )
        })
        .collect()
}

#[test]
fn daemonset_runs_one_pod_per_eligible_node() {
    if !require_backend(
        "daemonset_runs_one_pod_per_eligible_node",
        Backend::Embedded,
    ) {
        return;
    }
    let api = TestApiserver::start_with(Backend::Embedded);
    api.ok(&["create", "-f", "-"], Some(&node("plain-1", "")));
    api.ok(&["create", "-f", "-"], Some(&node("plain-2", "")));
    api.ok(
        &["create", "-f", "-"],
        Some(&node(
            "tainted",
            "  taints:\n  - key: dedicated\n    value: gpu\n    effect: NoSchedule\n",
        )),
    );
    api.ok(
        &["create", "-f", "-"],
        Some(&node("cordoned", "  unschedulable: true\n")),
    );
    let _scheduler = start_scheduler(&api);
    let _controllers = start_controllers(&api);
    api.ok(&["create", "-f", "-"], Some(DAEMON_SET));
    // kube's DaemonSet pods tolerate node.kubernetes.io/unschedulable: a cordoned node keeps
    // its daemon (that is why `kubectl drain` needs --ignore-daemonsets); a tainted one
    // gets none.
    let placed = poll(
        "a bound agent on each eligible node",
        Duration::from_secs(30),
        || {
            let nodes = agent_nodes(&api);
            (nodes.len() == 3 && !nodes.contains_key("")).then_some(nodes)
        },
    );
    let on: Vec<&String> = placed.keys().collect();
    assert_eq!(on, ["cordoned", "plain-1", "plain-2"]);
    let pod = json_of(&api, &["get", "pod", &placed["plain-1"]]);
    let term = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchFields"][0];
    assert_eq!(term["key"], "metadata.name");
    assert_eq!(term["values"][0], "plain-1");
    let tolerations = pod["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains("node.kubernetes.io/unschedulable"),
        "{tolerations}"
    );
    assert!(pod["metadata"]["labels"]["controller-revision-hash"].is_string());

    api.ok(&["create", "-f", "-"], Some(&node("late", "")));
    poll("the new node's agent", Duration::from_secs(30), || {
        agent_nodes(&api).contains_key("late").then_some(())
    });
    play_kubelet(&api, "app=agent", false, 10);
    wait_for(
        &api,
        &[
            "get",
            "ds",
            "agent",
            "-o",
            "jsonpath={.status.desiredNumberScheduled}/{.status.currentNumberScheduled}/{.status.numberReady}/{.status.updatedNumberScheduled}/{.status.numberMisscheduled}",
        ],
        "the DaemonSet status",
        |s| s == "4/4/4/4/0",
    );
    let status = api.ok(
        &["rollout", "status", "daemonset/agent", "--timeout=30s"],
        None,
    );
    assert!(status.contains("successfully rolled out"), "{status}");

    // A new template rolls out one node at a time (maxUnavailable 1).
    api.ok(
        &[
            "set",
            "image",
            "daemonset/agent",
            "agent=registry.example/agent:2",
        ],
        None,
    );
    poll("the DaemonSet rollout", Duration::from_secs(60), || {
        play_kubelet(&api, "app=agent", false, 10);
        let pods = pods_of(&api, "app=agent");
        let live: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        let updated = live
            .iter()
            .filter(|p| {
                p["spec"]["containers"][0]["image"] == "registry.example/agent:2" && is_ready(p)
            })
            .count();
        (updated == 4 && live.len() == 4).then_some(())
    });
    let history = api.ok(&["rollout", "history", "daemonset/agent"], None);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    // kubectl rollout undo patches the template from the older ControllerRevision.
    api.ok(&["rollout", "undo", "daemonset/agent"], None);
    poll("the DaemonSet undo", Duration::from_secs(60), || {
        play_kubelet(&api, "app=agent", false, 10);
        let images = images_of(&api, "app=agent");
        let ready = pods_of(&api, "app=agent")
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && is_ready(p))
            .count();
        (images.len() == 1 && images.contains("registry.example/agent:1") && ready == 4)
            .then_some(())
    });
    let history = api.ok(&["rollout", "history", "daemonset/agent"], None);
    assert!(
        history.contains("\n2 ") && history.contains("\n3 "),
        "{history}"
    );
    api.ok(&["delete", "ds", "agent"], None);
}

/// With maxSurge the updated pod starts beside the old one, which is deleted only once the new
/// one is available: a node never goes without a ready daemon, and no more than maxSurge
/// nodes run two at a time.
#[test]
fn daemonset_surges_the_new_pod_before_deleting_the_old() {
    if !require_backend(
        "daemonset_surges_the_new_pod_before_deleting_the_old",
        Backend::Embedded,
    ) {
        return;
    }
    let api = TestApiserver::start_with(Backend::Embedded);
    // maxUnavailable defaults to 1: a surge needs it set to 0.
    let surge_only = DAEMON_SET.replace(
        "spec:\n  selector:",
        "spec:\n  updateStrategy:\n    rollingUpdate:\n      maxSurge: 1\n  selector:",
    );
    let refused = api.fails(&["create", "-f", "-"], Some(&surge_only));
    assert!(
        refused.contains("spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"),
        "{refused}"
    );
    for name in ["surge-1", "surge-2", "surge-3"] {
        api.ok(&["create", "-f", "-"], Some(&node(name, "")));
    }
    let _scheduler = start_scheduler(&api);
    let _controllers = start_controllers(&api);
    let surging = surge_only.replace("maxSurge: 1\n", "maxSurge: 1\n      maxUnavailable: 0\n");
    api.ok(&["create", "-f", "-"], Some(&surging));
    poll(
        "a ready agent on each node",
        Duration::from_secs(30),
        || {
            play_kubelet(&api, "app=agent", false, 10);
            let ready = ready_count(&api, "app=agent");
            (ready == 3).then_some(())
        },
    );
    api.ok(
        &[
            "set",
            "image",
            "daemonset/agent",
            "agent=registry.example/agent:2",
        ],
        None,
    );
    let image = |p: &Value| {
        p["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // One node gets its new pod next to the old one, which stays while the new is not ready.
    let first = poll("the first surge pod", Duration::from_secs(30), || {
        let pods = pods_of(&api, "app=agent");
        let new: Vec<&Value> = pods.iter().filter(|p| image(p).ends_with(":2")).collect();
        match new.as_slice() {
            [pod] if pod["spec"]["nodeName"].is_string() => Some((*pod).clone()),
            _ => None,
        }
    });
    let node_of = |p: &Value| {
        p["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let surged_node = node_of(&first);
    std::thread::sleep(Duration::from_millis(500));
    let pods = pods_of(&api, "app=agent");
    assert_eq!(pods.len(), 4, "one surge pod at a time: {pods:?}");
    let old_beside = pods
        .iter()
        .find(|p| node_of(p) == surged_node && image(p).ends_with(":1"))
        .expect("the old pod still runs beside the new one");
    assert!(old_beside["metadata"]["deletionTimestamp"].is_null());
    assert!(is_ready(old_beside));

    // Playing the kubelet one pod at a time: every node always keeps a ready agent, and at
    // most one node at a time waits for its new pod.
    poll("the surging rollout", Duration::from_secs(60), || {
        play_kubelet(&api, "app=agent", false, 1);
        let pods = pods_of(&api, "app=agent");
        let live: Vec<&Value> = pods
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .collect();
        // A node whose new pod is ready is done (its old pod is being deleted); at most one
        // node waits for a new pod next to its old one.
        let waiting: BTreeSet<String> = live
            .iter()
            .filter(|p| image(p).ends_with(":2") && !is_ready(p))
            .map(|p| node_of(p))
            .filter(|n| {
                live.iter()
                    .any(|o| node_of(o) == *n && image(o).ends_with(":1"))
            })
            .collect();
        assert!(
            waiting.len() <= 1,
            "more than maxSurge nodes surging: {waiting:?}"
        );
        let ready_nodes: BTreeSet<String> = live
            .iter()
            .filter(|p| is_ready(p))
            .map(|p| node_of(p))
            .collect();
        assert_eq!(
            ready_nodes.len(),
            3,
            "a node lost its ready agent: {live:?}"
        );
        let updated = live
            .iter()
            .filter(|p| image(p).ends_with(":2") && is_ready(p))
            .count();
        (updated == 3 && live.len() == 3).then_some(())
    });
    let status = api.ok(
        &["rollout", "status", "daemonset/agent", "--timeout=30s"],
        None,
    );
    assert!(status.contains("successfully rolled out"), "{status}");
    let described = api.ok(&["describe", "ds", "agent"], None);
    assert!(described.contains("SuccessfulDelete"), "{described}");
}

const STATEFUL_SET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: default
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels:
      app: sts
  template:
    metadata:
      labels:
        app: sts
    spec:
      containers:
      - name: app
        image: registry.example/sts:1
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
";

fn sts_pods(api: &TestApiserver) -> Vec<String> {
    let mut names: Vec<String> = pods_of(api, "app=sts").iter().map(name_of).collect();
    names.sort();
    names
}

#[test]
fn statefulset_creates_in_order_and_scales_down_from_the_top() {
    if !require_backend(
        "statefulset_creates_in_order_and_scales_down_from_the_top",
        Backend::Embedded,
    ) {
        return;
    }
    let api = TestApiserver::start_with(Backend::Embedded);
    let _controllers = start_controllers(&api);
    api.ok(&["create", "-f", "-"], Some(STATEFUL_SET));
    for (ordinal, expected) in [
        (0, vec!["web-0"]),
        (1, vec!["web-0", "web-1"]),
        (2, vec!["web-0", "web-1", "web-2"]),
    ] {
        poll(&format!("web-{ordinal}"), Duration::from_secs(30), || {
            (sts_pods(&api) == expected).then_some(())
        });
        // The next one waits for this one to be Ready.
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(
            sts_pods(&api),
            expected,
            "OrderedReady waits for web-{ordinal}"
        );
        mark_ready(&api, &format!("web-{ordinal}"));
    }
    let pod = json_of(&api, &["get", "pod", "web-1"]);
    assert_eq!(pod["spec"]["hostname"], "web-1");
    assert_eq!(pod["spec"]["subdomain"], "web");
    assert_eq!(
        pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-1"
    );
    assert_eq!(
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "1"
    );
    assert_eq!(
        pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "data-web-1"
    );
    let revision = pod["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(revision.starts_with("web-"), "{revision}");
    wait_for(
        &api,
        &[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.replicas}/{.status.readyReplicas}/{.status.currentReplicas}/{.status.updatedReplicas}/{.status.currentRevision}/{.status.updateRevision}",
        ],
        "the StatefulSet status",
        |s| s == format!("3/3/3/3/{revision}/{revision}"),
    );
    // One claim per pod, made before it, owned by nobody (the default policy retains them).
    let claims = json_of(&api, &["get", "pvc"]);
    let mut names: Vec<String> = items(&claims).iter().map(name_of).collect();
    names.sort();
    assert_eq!(names, ["data-web-0", "data-web-1", "data-web-2"]);
    for claim in items(&claims) {
        assert_eq!(claim["status"]["phase"], "Pending", "{claim}");
        assert!(claim["metadata"]["ownerReferences"].is_null(), "{claim}");
        assert_eq!(claim["metadata"]["labels"]["app"], "sts", "{claim}");
    }

    // A rolling update with partition 1: web-2 then web-1 move to the new revision, web-0
    // stays.
    api.ok(
        &["patch", "sts", "web", "--type=merge", "-p", r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":1}},"template":{"spec":{"containers":[{"name":"app","image":"registry.example/sts:2","volumeMounts":[{"name":"data","mountPath":"/data"}]}]}}}}"#],
        None,
    );
    let images = poll("the partitioned rollout", Duration::from_secs(30), || {
        play_kubelet(&api, "app=sts", true, 3);
        let pods = pods_of(&api, "app=sts");
        let images: Vec<String> = ["web-0", "web-1", "web-2"]
            .iter()
            .map(|n| {
                pods.iter()
                    .find(|p| name_of(p) == *n && is_ready(p))
                    .map(|p| {
                        p["spec"]["containers"][0]["image"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string()
                    })
                    .unwrap_or_default()
            })
            .collect();
        (images[1].ends_with(":2") && images[2].ends_with(":2") && !images[0].is_empty())
            .then_some(images)
    });
    assert_eq!(
        images[0], "registry.example/sts:1",
        "the partition keeps web-0"
    );
    let revisions = wait_for(
        &api,
        &[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.currentRevision} {.status.updateRevision} {.status.updatedReplicas} {.status.currentReplicas}",
        ],
        "the partitioned status",
        |s| s.ends_with(" 2 1"),
    );
    let parts: Vec<&str> = revisions.split_whitespace().collect();
    assert_eq!(parts[0], revision);
    assert_ne!(parts[1], revision);

    // Scale down: web-2 goes before web-1.
    api.ok(&["scale", "sts", "web", "--replicas=1"], None);
    poll("the scale down", Duration::from_secs(30), || {
        let names = sts_pods(&api);
        assert!(
            !names.contains(&"web-2".to_string()) || names.contains(&"web-1".to_string()),
            "web-1 went before web-2: {names:?}"
        );
        (names == ["web-0"]).then_some(())
    });
    api.ok(&["delete", "sts", "web"], None);
}

const RECREATE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: batch
  namespace: default
spec:
  replicas: 3
  progressDeadlineSeconds: 3
  revisionHistoryLimit: 1
  selector:
    matchLabels:
      app: batch
  strategy:
    type: Recreate
  template:
    metadata:
      labels:
        app: batch
    spec:
      containers:
      - name: app
        image: registry.example/batch:1
";

fn images_of(api: &TestApiserver, selector: &str) -> BTreeSet<String> {
    pods_of(api, selector)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Recreate never runs old and new pods together; a paused deployment scales but does not
/// roll out; a rollout that makes no progress for progressDeadlineSeconds is reported as
/// ProgressDeadlineExceeded, which `kubectl rollout status` fails on.
#[test]
fn deployment_recreate_pause_and_progress_deadline() {
    if !require_backend(
        "deployment_recreate_pause_and_progress_deadline",
        Backend::Embedded,
    ) {
        return;
    }
    let api = TestApiserver::start_with(Backend::Embedded);
    let _controllers = start_controllers(&api);
    api.ok(&["create", "-f", "-"], Some(RECREATE));
    poll("3 ready pods", Duration::from_secs(30), || {
        play_kubelet(&api, "app=batch", true, 3);
        let ready = ready_count(&api, "app=batch");
        (ready == 3).then_some(())
    });
    api.ok(
        &["rollout", "status", "deployment/batch", "--timeout=30s"],
        None,
    );

    api.ok(
        &[
            "set",
            "image",
            "deployment/batch",
            "app=registry.example/batch:2",
        ],
        None,
    );
    poll("the recreate", Duration::from_secs(30), || {
        let images = images_of(&api, "app=batch");
        assert!(images.len() <= 1, "old and new pods together: {images:?}");
        play_kubelet(&api, "app=batch", true, 3);
        let ready = ready_count(&api, "app=batch");
        (images.iter().all(|i| i.ends_with(":2")) && ready == 3).then_some(())
    });
    api.ok(
        &["rollout", "status", "deployment/batch", "--timeout=30s"],
        None,
    );

    // revisionHistoryLimit 1 keeps the one old ReplicaSet.
    assert_eq!(replica_sets(&api, "app=batch").len(), 2);
    api.ok(&["rollout", "pause", "deployment/batch"], None);
    wait_for(
        &api,
        &[
            "get",
            "deploy",
            "batch",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
        "the paused condition",
        |r| r == "DeploymentPaused",
    );
    api.ok(
        &[
            "set",
            "image",
            "deployment/batch",
            "app=registry.example/batch:3",
        ],
        None,
    );
    api.ok(&["scale", "deployment/batch", "--replicas=4"], None);
    wait_for(
        &api,
        &[
            "get",
            "rs",
            "-l",
            "app=batch",
            "-o",
            "jsonpath={.items[*].spec.replicas}",
        ],
        "a paused deployment to scale",
        // With the template changed, both ReplicaSets are old: revisionHistoryLimit 1 prunes
        // the empty first one; no new one is made while paused.
        |r| r == "4",
    );

    // Resumed, the new pods never become ready: the deadline passes.
    api.ok(&["rollout", "resume", "deployment/batch"], None);
    let failed = api.fails(
        &["rollout", "status", "deployment/batch", "--timeout=30s"],
        None,
    );
    assert!(
        failed.contains("exceeded its progress deadline"),
        "{failed}"
    );
    let message = api.ok(
        &[
            "get",
            "deploy",
            "batch",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].message}",
        ],
        None,
    );
    assert!(message.ends_with("has timed out progressing."), "{message}");
    assert_eq!(replica_sets(&api, "app=batch").len(), 2);
    api.ok(&["delete", "deployment", "batch"], None);
}

const PROPORTIONAL: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: wide
  namespace: default
spec:
  replicas: 10
  selector:
    matchLabels:
      app: wide
  strategy:
    rollingUpdate:
      maxSurge: 3
      maxUnavailable: 2
  template:
    metadata:
      labels:
        app: wide
    spec:
      containers:
      - name: app
        image: registry.example/wide:1
";

/// Scaling in the middle of a rollout shares the change between the ReplicaSets in
/// proportion to their sizes (kube's numbers: 8+5 of 13 become 14+9 of 23).
#[test]
fn deployment_scales_proportionally_mid_rollout() {
    if !require_backend(
        "deployment_scales_proportionally_mid_rollout",
        Backend::Embedded,
    ) {
        return;
    }
    let api = TestApiserver::start_with(Backend::Embedded);
    let _controllers = start_controllers(&api);
    api.ok(&["create", "-f", "-"], Some(PROPORTIONAL));
    poll("10 ready pods", Duration::from_secs(30), || {
        play_kubelet(&api, "app=wide", true, 10);
        let ready = ready_count(&api, "app=wide");
        (ready == 10).then_some(())
    });
    api.ok(
        &["rollout", "status", "deployment/wide", "--timeout=30s"],
        None,
    );
    let old_name = name_of(&replica_sets(&api, "app=wide")[0]);
    api.ok(
        &[
            "set",
            "image",
            "deployment/wide",
            "app=registry.example/wide:2",
        ],
        None,
    );
    let sizes = |api: &TestApiserver| -> (i64, i64) {
        let sets = replica_sets(api, "app=wide");
        let old = sets
            .iter()
            .find(|rs| name_of(rs) == old_name)
            .map_or(-1, spec_replicas);
        let new = sets
            .iter()
            .find(|rs| name_of(rs) != old_name)
            .map_or(-1, spec_replicas);
        (old, new)
    };
    poll(
        "the stuck rollout (new pods never ready)",
        Duration::from_secs(30),
        || (sizes(&api) == (8, 5)).then_some(()),
    );
    api.ok(&["scale", "deployment/wide", "--replicas=20"], None);
    poll("proportional scaling", Duration::from_secs(30), || {
        (sizes(&api) == (14, 9)).then_some(())
    });
    api.ok(&["delete", "deployment", "wide"], None);
}

const CLAIMED_SET: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: default
spec:
  serviceName: db
  replicas: 3
  podManagementPolicy: Parallel
  ordinals:
    start: 5
  persistentVolumeClaimRetentionPolicy:
    whenDeleted: Retain
    whenScaled: Delete
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: app
        image: registry.example/db:1
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
";

fn claim_names(api: &TestApiserver) -> Vec<String> {
    let mut names: Vec<String> = items(&json_of(api, &["get", "pvc"]))
        .iter()
        .map(name_of)
        .collect();
    names.sort();
    names
}

#[test]
fn statefulset_claim_retention_and_start_ordinal() {
    if !require_backend(
        "statefulset_claim_retention_and_start_ordinal",
        Backend::Embedded,
    ) {
        return;
    }
    let api = TestApiserver::start_with(Backend::Embedded);
    let _controllers = Component::start(&api, |client, token| {
        run_named(&["statefulset", "garbagecollector"], client, token)
    });

    // Bad values are refused with kube's field errors.
    let refused = api.fails(
        &["create", "-f", "-"],
        Some(
            &CLAIMED_SET
                .replace("start: 5", "start: -1")
                .replace("whenScaled: Delete", "whenScaled: Sometimes"),
        ),
    );
    assert!(
        refused
            .contains("spec.ordinals.start: Invalid value: -1: must be greater than or equal to 0"),
        "{refused}"
    );
    assert!(
        refused.contains(r#"spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value: "Sometimes": supported values: "Retain", "Delete""#),
        "{refused}"
    );
    let refused = api.fails(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: bad\nspec:\n  accessModes: [ReadWriteSometimes]\n"),
    );
    assert!(
        refused.contains(r#"spec.accessModes[0]: Unsupported value: "ReadWriteSometimes""#)
            && refused.contains("spec.resources[storage]: Required value"),
        "{refused}"
    );

    // Ordinals 5, 6 and 7, each with its claim; rollout status follows them.
    api.ok(&["create", "-f", "-"], Some(CLAIMED_SET));
    poll("db-5, db-6 and db-7", Duration::from_secs(30), || {
        play_kubelet(&api, "app=db", true, 3);
        let mut names: Vec<String> = pods_of(&api, "app=db").iter().map(name_of).collect();
        names.sort();
        (names == ["db-5", "db-6", "db-7"] && ready_count(&api, "app=db") == 3).then_some(())
    });
    assert_eq!(claim_names(&api), ["data-db-5", "data-db-6", "data-db-7"]);
    let table = api.ok(&["get", "pvc", "data-db-5"], None);
    assert!(
        table.contains("STATUS") && table.contains("STORAGECLASS") && table.contains("Pending"),
        "{table}"
    );
    let pod = json_of(&api, &["get", "pod", "db-6"]);
    assert_eq!(
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "6"
    );
    let status = api.ok(&["rollout", "status", "sts", "db", "--timeout=30s"], None);
    assert!(status.contains("roll out complete"), "{status}");
    let claim = json_of(&api, &["get", "pvc", "data-db-7"]);
    assert!(
        claim["metadata"]["ownerReferences"].is_null(),
        "whenDeleted=Retain leaves claims in range unowned: {claim}"
    );

    // Scaling down hands db-7's claim to db-7 (whenScaled=Delete): it goes with the pod.
    api.ok(&["scale", "sts", "db", "--replicas=2"], None);
    poll("data-db-7 to go", Duration::from_secs(30), || {
        play_kubelet(&api, "app=db", true, 0);
        (claim_names(&api) == ["data-db-5", "data-db-6"]).then_some(())
    });
    let mut names: Vec<String> = pods_of(&api, "app=db").iter().map(name_of).collect();
    names.sort();
    assert_eq!(names, ["db-5", "db-6"]);
    // Back up: db-7 returns with a fresh claim of its own.
    api.ok(&["scale", "sts", "db", "--replicas=3"], None);
    poll("db-7 and data-db-7 again", Duration::from_secs(30), || {
        play_kubelet(&api, "app=db", true, 3);
        let back = pods_of(&api, "app=db").iter().any(|p| name_of(p) == "db-7");
        (back && claim_names(&api).len() == 3).then_some(())
    });
    let claim = json_of(&api, &["get", "pvc", "data-db-7"]);
    assert!(claim["metadata"]["ownerReferences"].is_null(), "{claim}");

    // Deleting the set (whenDeleted=Retain) takes the pods and keeps the claims.
    api.ok(&["delete", "sts", "db", "--wait=false"], None);
    poll("db's pods to go", Duration::from_secs(30), || {
        play_kubelet(&api, "app=db", true, 0);
        pods_of(&api, "app=db").is_empty().then_some(())
    });
    assert_eq!(claim_names(&api), ["data-db-5", "data-db-6", "data-db-7"]);

    // whenDeleted=Delete: the set owns its claims, and they go with it.
    let cache = CLAIMED_SET
        .replace("name: db", "name: cache")
        .replace("app: db", "app: cache")
        .replace("replicas: 3", "replicas: 1")
        .replace("whenDeleted: Retain", "whenDeleted: Delete")
        .replace("whenScaled: Delete", "whenScaled: Retain");
    api.ok(&["create", "-f", "-"], Some(&cache));
    let owner = poll(
        "data-cache-5 owned by the set",
        Duration::from_secs(30),
        || {
            let claim = api.kubectl(&["get", "pvc", "data-cache-5", "-o", "json"], None);
            let claim: Value = serde_json::from_slice(&claim.stdout).ok()?;
            claim["metadata"]["ownerReferences"][0]["kind"]
                .as_str()
                .map(str::to_string)
        },
    );
    assert_eq!(owner, "StatefulSet");
    api.ok(&["delete", "sts", "cache", "--wait=false"], None);
    poll(
        "data-cache-5 to go with its set",
        Duration::from_secs(30),
        || {
            play_kubelet(&api, "app=cache", true, 0);
            (!claim_names(&api).contains(&"data-cache-5".to_string())).then_some(())
        },
    );
    assert_eq!(claim_names(&api), ["data-db-5", "data-db-6", "data-db-7"]);
}
