//! The endpoint, node-lifecycle and CSR controllers of keel-controller-manager against the real
//! apiserver, run in-process; the test plays the kubelet (pod IPs and Ready conditions through
//! the status subresource, node heartbeats through Leases and the Ready condition).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use keel_control_plane::apiserver::auth::{self, Pki};
use keel_control_plane::controllers::{self, Context, ControllerConfig};
use serde_json::Value;

use super::harness::{Component, TestApiserver, require_kubectl, wait_for_kubectl};

/// Runs the named controllers with `config` against the test apiserver.
fn start_controllers(api: &TestApiserver, names: &[&str], config: ControllerConfig) -> Component {
    let list: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let selected = controllers::select(&list).expect("known controllers");
    Component::start(api, move |client, token| async move {
        let context = Arc::new(Context { client, config });
        controllers::run(context, &selected, token).await;
    })
}

fn json_of(api: &TestApiserver, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = api.ok(&all, None);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}: {out}"))
}

/// Polls `kubectl get ... -o json` until `done` holds (30 s at most).
fn wait_json(
    api: &TestApiserver,
    args: &[&str],
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let text = wait_for_kubectl(api, &all, what, |out| {
        serde_json::from_str::<Value>(out).is_ok_and(|v| done(&v))
    });
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The kubelet's part: the pod runs with `ip`, Ready or not.
fn set_pod_status(api: &TestApiserver, pod: &str, ip: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = format!(
        r#"{{"status":{{"phase":"Running","podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}],"conditions":[{{"type":"Ready","status":"{status}","lastTransitionTime":"{}"}}]}}}}"#,
        now_rfc3339()
    );
    api.ok(
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
}

fn node_manifest(name: &str, zone: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    topology.kubernetes.io/zone: {zone}\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 192.0.2.10\n  - type: Hostname\n    address: {name}\n"
    )
}

fn pod_manifest(name: &str, node: &str, labels: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {labels}\nspec:\n  nodeName: {node}\n{extra_spec}  containers:\n  - name: main\n    image: registry.example/app:1\n"
    )
}

fn slice_endpoints(slices: &Value) -> Vec<Value> {
    slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn endpoint_for<'a>(endpoints: &'a [Value], pod: &str) -> Option<&'a Value> {
    endpoints.iter().find(|e| e["targetRef"]["name"] == pod)
}

#[test]
fn endpoints_and_slices_follow_pods() {
    if !require_kubectl("endpoints_and_slices_follow_pods") {
        return;
    }
    let api = TestApiserver::start();
    api.ok(&["create", "-f", "-"], Some(&node_manifest("n1", "zone-a")));
    let _controllers = start_controllers(
        &api,
        &["endpoint", "endpointslice"],
        ControllerConfig::default(),
    );
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\n  labels:\n    tier: front\nspec:\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: named\n  namespace: default\nspec:\n  selector:\n    app: web\n  ports:\n  - name: alt\n    port: 81\n    targetPort: web-alt\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: manual\n  namespace: default\nspec:\n  ports:\n  - port: 82\n";
    api.ok(&["create", "-f", "-"], Some(service));
    for (i, pod) in ["web-0", "web-1", "web-2"].iter().enumerate() {
        // web-2 has no container port named web-alt.
        let ports = if i < 2 {
            "  containers:\n  - name: main\n    image: registry.example/app:1\n    ports:\n    - name: web-alt\n      containerPort: 9090\n"
        } else {
            "  containers:\n  - name: main\n    image: registry.example/app:1\n"
        };
        let manifest = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: default\n  labels: {{app: web}}\nspec:\n  nodeName: n1\n{ports}"
        );
        api.ok(&["create", "-f", "-"], Some(&manifest));
        set_pod_status(&api, pod, &format!("10.1.0.{}", 10 + i), true);
    }

    let slices = wait_json(
        &api,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
        "one slice with 3 ready endpoints",
        |v| {
            let eps = slice_endpoints(v);
            eps.len() == 3 && eps.iter().all(|e| e["conditions"]["ready"] == true)
        },
    );
    let items = slices["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{slices}");
    let slice = &items[0];
    assert_eq!(slice["addressType"], "IPv4");
    assert!(
        slice["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("web-")),
        "{slice}"
    );
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["labels"]["tier"], "front");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["name"], "web");
    assert_eq!(slice["ports"][0]["name"], "http");
    assert_eq!(slice["ports"][0]["port"], 8080);
    assert_eq!(slice["ports"][0]["protocol"], "TCP");
    let eps = slice_endpoints(&slices);
    let web0 = endpoint_for(&eps, "web-0").expect("web-0 listed");
    assert_eq!(web0["addresses"][0], "10.1.0.10");
    assert_eq!(web0["nodeName"], "n1");
    assert_eq!(web0["zone"], "zone-a");
    assert_eq!(web0["targetRef"]["kind"], "Pod");
    assert_eq!(web0["conditions"]["serving"], true);
    assert_eq!(web0["conditions"]["terminating"], false);

    let endpoints = wait_json(
        &api,
        &["get", "endpoints", "web"],
        "the Endpoints object with 3 addresses",
        |v| {
            v["subsets"][0]["addresses"]
                .as_array()
                .is_some_and(|a| a.len() == 3)
        },
    );
    assert_eq!(endpoints["subsets"][0]["ports"][0]["port"], 8080);
    assert_eq!(endpoints["subsets"][0]["ports"][0]["name"], "http");
    assert_eq!(endpoints["metadata"]["labels"]["tier"], "front");
    assert!(
        endpoints["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"]
            .is_string(),
        "{endpoints}"
    );

    // A named targetPort: pods without the port are left out of that port group (kube puts
    // them in a slice of their own without ports).
    let named = wait_json(
        &api,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=named",
        ],
        "the named-port slices",
        |v| slice_endpoints(v).len() == 3,
    );
    let named_items = named["items"].as_array().cloned().unwrap_or_default();
    let with_port: Vec<&Value> = named_items
        .iter()
        .filter(|s| s["ports"][0]["port"] == 9090)
        .collect();
    assert_eq!(with_port.len(), 1, "{named}");
    assert_eq!(with_port[0]["ports"][0]["name"], "alt");
    let mut in_group: Vec<&str> = with_port[0]["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["targetRef"]["name"].as_str())
        .collect();
    in_group.sort();
    assert_eq!(in_group, ["web-0", "web-1"], "{named}");
    let named_endpoints = wait_json(
        &api,
        &["get", "endpoints", "named"],
        "the named-port Endpoints",
        |v| {
            v["subsets"][0]["addresses"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        },
    );
    assert_eq!(named_endpoints["subsets"][0]["ports"][0]["port"], 9090);
    // A Service without a selector is left alone.
    let manual = api.ok(
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=manual",
            "-o",
            "name",
        ],
        None,
    );
    assert!(manual.trim().is_empty(), "{manual}");
    assert!(
        !api.kubectl(&["get", "endpoints", "manual"], None)
            .status
            .success()
    );

    // A pod that stops being ready.
    set_pod_status(&api, "web-1", "10.1.0.11", false);
    wait_json(
        &api,
        &["get", "endpoints", "web"],
        "web-1 under notReadyAddresses",
        |v| {
            v["subsets"][0]["notReadyAddresses"][0]["ip"] == "10.1.0.11"
                && v["subsets"][0]["addresses"]
                    .as_array()
                    .is_some_and(|a| a.len() == 2)
        },
    );
    wait_json(
        &api,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
        "web-1 ready=false",
        |v| {
            let eps = slice_endpoints(v);
            endpoint_for(&eps, "web-1").is_some_and(|e| {
                e["conditions"]["ready"] == false && e["conditions"]["serving"] == false
            })
        },
    );

    // A terminating pod: still serving, not ready, terminating; gone from Endpoints.
    api.ok(&["delete", "pod", "web-2", "--wait=false"], None);
    wait_json(
        &api,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
        "web-2 serving and terminating",
        |v| {
            let eps = slice_endpoints(v);
            endpoint_for(&eps, "web-2").is_some_and(|e| {
                e["conditions"]["ready"] == false
                    && e["conditions"]["serving"] == true
                    && e["conditions"]["terminating"] == true
            })
        },
    );
    let endpoints = wait_json(
        &api,
        &["get", "endpoints", "web"],
        "web-2 left out of Endpoints",
        |v| {
            v["subsets"][0]["addresses"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
        },
    );
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["ip"], "10.1.0.10");

    // Deleting the Service removes its slices and Endpoints.
    api.ok(&["delete", "service", "web"], None);
    wait_for_kubectl(
        &api,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "name",
        ],
        "the slices to go",
        |out| out.trim().is_empty(),
    );
    wait_for_kubectl(
        &api,
        &["get", "endpoints", "-o", "name"],
        "the Endpoints object to go",
        |out| !out.contains("endpoints/web\n"),
    );
}

fn lease_manifest(node: &str) -> String {
    format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {node}\n  namespace: kube-node-lease\nspec:\n  holderIdentity: {node}\n  leaseDurationSeconds: 40\n  renewTime: \"{}\"\n",
        now_micro()
    )
}

fn renew_lease(api: &TestApiserver, node: &str) {
    let patch = format!(r#"{{"spec":{{"renewTime":"{}"}}}}"#, now_micro());
    api.ok(
        &[
            "patch",
            "lease",
            node,
            "-n",
            "kube-node-lease",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    );
}

/// The kubelets of `nodes`, as far as heartbeats go: their Leases renewed every 500 ms from
/// a thread, until dropped.
struct Heartbeats {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeats {
    fn start(api: &TestApiserver, nodes: &[&str]) -> Heartbeats {
        use std::sync::atomic::Ordering;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let kubeconfig = api.kubeconfig.clone();
        let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                for node in &nodes {
                    let patch = format!(r#"{{"spec":{{"renewTime":"{}"}}}}"#, now_micro());
                    let _ = std::process::Command::new("kubectl")
                        .arg("--kubeconfig")
                        .arg(&kubeconfig)
                        .args(["--request-timeout=5s", "patch", "lease", node])
                        .args(["-n", "kube-node-lease", "--type=merge", "-p", &patch])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status();
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        Heartbeats {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn post_ready(api: &TestApiserver, node: &str) {
    let now = now_rfc3339();
    let patch = format!(
        r#"{{"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status","lastHeartbeatTime":"{now}","lastTransitionTime":"{now}"}}]}}}}"#
    );
    api.ok(
        &[
            "patch",
            "node",
            node,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    );
}

fn taint_keys(node: &Value) -> Vec<String> {
    node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}:{}",
                t["key"].as_str().unwrap_or(""),
                t["effect"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn deletion_time(api: &TestApiserver, pod: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let out = api.kubectl(
        &[
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    chrono::DateTime::parse_from_rfc3339(&text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[test]
fn silent_node_is_tainted_and_its_pods_evicted() {
    if !require_kubectl("silent_node_is_tainted_and_its_pods_evicted") {
        return;
    }
    let api = TestApiserver::start();
    let node = "n-lost";
    api.ok(&["create", "-f", "-"], Some(&node_manifest(node, "zone-a")));
    api.ok(&["create", "-f", "-"], Some(&lease_manifest(node)));
    post_ready(&api, node);
    // A healthy node in another zone: with every node down the controller would evict nothing
    // (master disruption).
    api.ok(
        &["create", "-f", "-"],
        Some(&node_manifest("n-fine", "zone-b")),
    );
    api.ok(&["create", "-f", "-"], Some(&lease_manifest("n-fine")));
    post_ready(&api, "n-fine");
    let _fine = Heartbeats::start(&api, &["n-fine"]);
    let toleration = |seconds: &str| {
        format!(
            "  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n{seconds}"
        )
    };
    // "plain" does not tolerate the unreachable taint: its toleration wants a value the taint
    // does not have, and it keeps kube's DefaultTolerationSeconds admission from adding the
    // 300 s one.
    let pods = [
        (
            "plain",
            "  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Equal\n    value: never\n    effect: NoExecute\n".to_string(),
        ),
        ("tolerates-2s", toleration("    tolerationSeconds: 2\n")),
        ("tolerates-forever", toleration("")),
    ];
    for (i, (name, spec)) in pods.iter().enumerate() {
        api.ok(
            &["create", "-f", "-"],
            Some(&pod_manifest(name, node, "{app: lost}", spec)),
        );
        set_pod_status(&api, name, &format!("10.2.0.{}", 10 + i), true);
    }
    let config = ControllerConfig {
        node_monitor_grace_period: Duration::from_secs(3),
        ..ControllerConfig::default()
    };
    let _controllers = start_controllers(
        &api,
        &["nodelifecycle", "taint-eviction-controller"],
        config,
    );

    // While the kubelet renews its Lease, the node stays Ready past the grace period.
    let healthy_until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < healthy_until {
        renew_lease(&api, node);
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = json_of(&api, &["get", "node", node]);
    assert_eq!(
        status["status"]["conditions"][0]["status"], "True",
        "{status}"
    );
    assert!(taint_keys(&status).is_empty(), "{status}");

    // The kubelet goes silent.
    let lost = wait_json(
        &api,
        &["get", "node", node],
        "the node to become Unknown and tainted",
        |v| {
            let ready = v["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned());
            let keys = taint_keys(v);
            ready.is_some_and(|r| r["status"] == "Unknown")
                && keys.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
                && keys.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
        },
    );
    let ready = lost["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or_default();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");

    wait_for_kubectl(
        &api,
        &["get", "pod", "plain", "-o", "name", "--ignore-not-found"],
        "plain to be evicted",
        |_| {
            deletion_time(&api, "plain").is_some()
                || !api.kubectl(&["get", "pod", "plain"], None).status.success()
        },
    );
    wait_for_kubectl(
        &api,
        &[
            "get",
            "pod",
            "tolerates-2s",
            "-o",
            "name",
            "--ignore-not-found",
        ],
        "tolerates-2s to be evicted",
        |_| deletion_time(&api, "tolerates-2s").is_some(),
    );
    if let (Some(first), Some(later)) = (
        deletion_time(&api, "plain"),
        deletion_time(&api, "tolerates-2s"),
    ) {
        let gap = (later - first).num_milliseconds();
        assert!(
            (1000..10_000).contains(&gap),
            "tolerates-2s must go about 2 s after plain, went {gap} ms later"
        );
    }
    let forever = json_of(&api, &["get", "pod", "tolerates-forever"]);
    assert!(
        forever["metadata"]["deletionTimestamp"].is_null(),
        "{forever}"
    );
    let pod_ready = forever["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or_default();
    assert_eq!(
        pod_ready["status"], "False",
        "pods of a lost node are not ready: {forever}"
    );
    let events = api.ok(&["get", "events", "-o", "json"], None);
    assert!(
        events.contains("Marking for deletion Pod default/plain"),
        "{events}"
    );

    // The kubelet comes back.
    renew_lease(&api, node);
    post_ready(&api, node);
    wait_json(
        &api,
        &["get", "node", node],
        "the taints to be removed",
        |v| taint_keys(v).is_empty(),
    );
    let forever = json_of(&api, &["get", "pod", "tolerates-forever"]);
    assert!(
        forever["metadata"]["deletionTimestamp"].is_null(),
        "{forever}"
    );
}

/// A pod that does not tolerate the NoExecute taints (its toleration wants a value they do
/// not have, which keeps the DefaultTolerationSeconds admission from adding 300 s ones).
fn intolerant_pod(name: &str, node: &str) -> String {
    pod_manifest(
        name,
        node,
        "{app: zoned}",
        "  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Equal\n    value: never\n    effect: NoExecute\n",
    )
}

fn add_node_with_pod(api: &TestApiserver, node: &str, zone: &str) {
    api.ok(&["create", "-f", "-"], Some(&node_manifest(node, zone)));
    api.ok(&["create", "-f", "-"], Some(&lease_manifest(node)));
    post_ready(api, node);
    let pod = format!("{node}-pod");
    api.ok(&["create", "-f", "-"], Some(&intolerant_pod(&pod, node)));
    set_pod_status(api, &pod, "10.3.0.1", true);
}

/// `key:effect` → timeAdded of every NoExecute taint, by node.
fn no_execute_taints(
    api: &TestApiserver,
) -> Vec<(String, String, Option<chrono::DateTime<chrono::Utc>>)> {
    let nodes = json_of(api, &["get", "nodes"]);
    let mut found = Vec::new();
    for node in nodes["items"].as_array().into_iter().flatten() {
        for taint in node["spec"]["taints"].as_array().into_iter().flatten() {
            if taint["effect"] == "NoExecute" {
                let added = taint["timeAdded"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc));
                found.push((
                    node["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    taint["key"].as_str().unwrap_or("").to_string(),
                    added,
                ));
            }
        }
    }
    found
}

fn ready_of(node: &Value) -> String {
    node["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
        .map(|r| r["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn zone_disruption_limits_evictions() {
    if !require_kubectl("zone_disruption_limits_evictions") {
        return;
    }
    let api = TestApiserver::start();
    for node in ["a1", "a2", "a3"] {
        add_node_with_pod(&api, node, "zone-a");
    }
    let config = ControllerConfig {
        node_monitor_grace_period: Duration::from_secs(3),
        node_eviction_rate: 0.5,
        ..ControllerConfig::default()
    };
    let _controllers = start_controllers(
        &api,
        &["nodelifecycle", "taint-eviction-controller"],
        config,
    );

    // Every node of the only zone loses its Lease: full disruption everywhere, so nothing is
    // tainted NoExecute and nothing is evicted, while the NoSchedule taints still follow.
    wait_json(&api, &["get", "nodes"], "zone-a to go Unknown", |v| {
        let nodes = v["items"].as_array().cloned().unwrap_or_default();
        nodes.len() == 3
            && nodes.iter().all(|n| {
                ready_of(n) == "Unknown"
                    && taint_keys(n)
                        .contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string())
            })
    });
    let watch_until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < watch_until {
        let tainted = no_execute_taints(&api);
        assert!(
            tainted.is_empty(),
            "master disruption taints nothing: {tainted:?}"
        );
        for pod in ["a1-pod", "a2-pod", "a3-pod"] {
            assert!(deletion_time(&api, pod).is_none(), "{pod} was evicted");
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    // zone-b comes up healthy, then one of its three nodes goes silent: zone-b stays Normal
    // and its lost node is evicted; zone-a, fully disrupted while another zone is fine, is
    // evicted at the normal rate, one node every 2 s.
    let _kubelets = Heartbeats::start(&api, &["b1", "b2"]);
    for node in ["b1", "b2", "b3"] {
        add_node_with_pod(&api, node, "zone-b");
    }
    let evicted = |pod: &str| {
        deletion_time(&api, pod).is_some()
            || !api.kubectl(&["get", "pod", pod], None).status.success()
    };
    wait_for_kubectl(&api, &["get", "pods"], "b3-pod to be evicted", |_| {
        evicted("b3-pod")
    });
    wait_for_kubectl(
        &api,
        &["get", "pods"],
        "zone-a's pods to be evicted",
        |_| ["a1-pod", "a2-pod", "a3-pod"].iter().all(|p| evicted(p)),
    );
    let tainted = no_execute_taints(&api);
    let zone_a: Vec<chrono::DateTime<chrono::Utc>> = tainted
        .iter()
        .filter(|(node, key, _)| node.starts_with('a') && key == "node.kubernetes.io/unreachable")
        .filter_map(|(_, _, added)| *added)
        .collect();
    assert_eq!(zone_a.len(), 3, "{tainted:?}");
    let spread = zone_a
        .iter()
        .max()
        .zip(zone_a.iter().min())
        .map(|(l, f)| (*l - *f).num_seconds());
    assert!(
        spread.is_some_and(|s| s >= 3),
        "zone-a's three taints at 0.5 nodes/s span about 4 s: {tainted:?}"
    );
    assert!(
        !tainted
            .iter()
            .any(|(node, _, _)| node == "b1" || node == "b2"),
        "{tainted:?}"
    );
    for pod in ["b1-pod", "b2-pod"] {
        assert!(!evicted(pod), "{pod} on a healthy node was evicted");
    }
    let b = json_of(&api, &["get", "node", "b1"]);
    assert_eq!(ready_of(&b), "True", "{b}");
}

/// A kubeconfig for a user with a client certificate from the cluster CA.
fn kubeconfig_for(api: &TestApiserver, user: &str, group: &str) -> PathBuf {
    let pki = Pki::load_or_create(api.dir.path(), &[]).expect("load the PKI");
    let pair = pki
        .issue_client_cert(user, &[group.to_string()], Duration::from_secs(3600))
        .expect("issue a client certificate");
    let server = auth::kubeconfig::server_url("127.0.0.1", api.port);
    let credential = auth::kubeconfig::Credential::ClientCert {
        cert_pem: pair.cert_pem.clone(),
        key_pem: pair.key_pem.clone(),
    };
    let kubeconfig = auth::kubeconfig::render(&server, pki.ca_pem(), user, &credential);
    let path = api
        .dir
        .path()
        .join(format!("{}.kubeconfig", user.replace(':', "_")));
    auth::kubeconfig::write(&path, &kubeconfig).expect("write kubeconfig");
    path
}

/// A CertificateSigningRequest manifest for a fresh key with subject `cn`/`org`.
fn csr_manifest(name: &str, cn: &str, org: &str, signer: &str, usages: &[&str]) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, org);
    let key = rcgen::KeyPair::generate().expect("key");
    let pem = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    let usages: String = usages.iter().map(|u| format!("  - {u}\n")).collect();
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {request}\n  signerName: {signer}\n  expirationSeconds: 3600\n  usages:\n{usages}"
    )
}

fn csr_conditions(csr: &Value) -> Vec<(String, String)> {
    csr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn bootstrap_csr_is_approved_and_signed() {
    if !require_kubectl("bootstrap_csr_is_approved_and_signed") {
        return;
    }
    let api = TestApiserver::start();
    let pki_dir = api.dir.path().join("pki");
    let config = ControllerConfig {
        cluster_signing_cert_file: Some(pki_dir.join("ca.crt")),
        cluster_signing_key_file: Some(pki_dir.join("ca.key")),
        ..ControllerConfig::default()
    };
    let _controllers = start_controllers(&api, &["csrapproving", "csrsigning"], config);
    let bootstrap = kubeconfig_for(&api, "system:bootstrap:abcdef", "system:bootstrappers");
    let create = |manifest: &str| {
        let out = api.kubectl_as(&bootstrap, &["create", "-f", "-"], Some(manifest));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let client_usages = ["digital signature", "client auth"];
    create(&csr_manifest(
        "other-signer",
        "system:node:worker-1",
        "system:nodes",
        "kubernetes.io/kube-apiserver-client",
        &client_usages,
    ));
    create(&csr_manifest(
        "wrong-usages",
        "system:node:worker-1",
        "system:nodes",
        "kubernetes.io/kube-apiserver-client-kubelet",
        &["digital signature", "server auth"],
    ));
    create(&csr_manifest(
        "node-csr-worker-1",
        "system:node:worker-1",
        "system:nodes",
        "kubernetes.io/kube-apiserver-client-kubelet",
        &client_usages,
    ));

    let signed = wait_json(
        &api,
        &["get", "csr", "node-csr-worker-1"],
        "the kubelet CSR to be approved and signed",
        |v| v["status"]["certificate"].is_string(),
    );
    assert_eq!(signed["spec"]["username"], "system:bootstrap:abcdef");
    assert!(
        csr_conditions(&signed).contains(&("Approved".into(), "AutoApproved".into())),
        "{signed}"
    );
    let pem = base64::engine::general_purpose::STANDARD
        .decode(signed["status"]["certificate"].as_str().unwrap_or_default())
        .expect("base64 certificate");
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).expect("a PEM certificate");
    let cert = block.parse_x509().expect("an X.509 certificate");
    let ca_pem = std::fs::read(pki_dir.join("ca.crt")).expect("ca.crt");
    let (_, ca_block) = x509_parser::pem::parse_x509_pem(&ca_pem).expect("the CA PEM");
    let ca = ca_block.parse_x509().expect("the CA");
    cert.verify_signature(Some(ca.public_key()))
        .expect("the certificate is signed by the cluster CA");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(cn, "system:node:worker-1");
    let lifetime = cert.validity().not_after.timestamp() - chrono::Utc::now().timestamp();
    assert!(
        (3000..=3700).contains(&lifetime),
        "expirationSeconds 3600 is honoured: {lifetime}"
    );

    // Neither the other signer's request nor the wrong usages were approved.
    for name in ["other-signer", "wrong-usages"] {
        let csr = json_of(&api, &["get", "csr", name]);
        assert!(csr_conditions(&csr).is_empty(), "{name}: {csr}");
    }
    // A person approves them: the client one is signed, the wrong one fails validation.
    api.ok(
        &["certificate", "approve", "other-signer", "wrong-usages"],
        None,
    );
    wait_json(
        &api,
        &["get", "csr", "other-signer"],
        "the approved client CSR to be signed",
        |v| v["status"]["certificate"].is_string(),
    );
    let failed = wait_json(
        &api,
        &["get", "csr", "wrong-usages"],
        "the wrong-usage CSR to fail",
        |v| csr_conditions(v).iter().any(|(t, _)| t == "Failed"),
    );
    assert!(
        csr_conditions(&failed).contains(&("Failed".into(), "SignerValidationFailure".into())),
        "{failed}"
    );
    assert!(failed["status"]["certificate"].is_null(), "{failed}");
}

/// The apiserver side the CSR controllers rely on: a request records who made it, whatever
/// the body claimed, and `kubectl certificate approve` (the approval subresource) stores the
/// Approved condition without touching the spec.
#[test]
fn csr_records_requester_and_approval_sticks() {
    if !require_kubectl("csr_records_requester_and_approval_sticks") {
        return;
    }
    let api = TestApiserver::start();
    let bootstrap = kubeconfig_for(&api, "system:bootstrap:abcdef", "system:bootstrappers");
    let manifest = csr_manifest(
        "claimed",
        "system:node:worker-2",
        "system:nodes",
        "kubernetes.io/kube-apiserver-client",
        &["digital signature", "client auth"],
    )
    .replace(
        "spec:\n",
        "spec:\n  username: kubernetes-admin\n  groups: [system:masters]\n",
    );
    let out = api.kubectl_as(&bootstrap, &["create", "-f", "-"], Some(&manifest));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csr = json_of(&api, &["get", "csr", "claimed"]);
    assert_eq!(csr["spec"]["username"], "system:bootstrap:abcdef", "{csr}");
    let groups = csr["spec"]["groups"].to_string();
    assert!(
        groups.contains("system:bootstrappers") && !groups.contains("system:masters"),
        "{csr}"
    );
    api.ok(&["certificate", "approve", "claimed"], None);
    let approved = json_of(&api, &["get", "csr", "claimed"]);
    assert!(
        csr_conditions(&approved)
            .iter()
            .any(|(t, _)| t == "Approved"),
        "{approved}"
    );
    assert_eq!(approved["spec"]["username"], "system:bootstrap:abcdef");
}
