//! keel-scheduler against the real apiserver: pods land on nodes that fit (nodes are plain
//! objects whose status the test writes), an unschedulable pod carries kube's condition and
//! FailedScheduling event ("0/3 nodes are available: ..."), and it is placed once a node that
//! fits appears.

use std::time::{Duration, Instant};

use keel_control_plane::kube_client;
use keel_control_plane::scheduler::service::{self, SchedulerConfig};
use tokio_util::sync::CancellationToken;

use super::harness::{Backend, TestApiserver, require_backend};

/// The scheduler in its own thread and runtime; stopped on drop.
struct RunningScheduler {
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningScheduler {
    fn start(api: &TestApiserver) -> RunningScheduler {
        let kubeconfig = api.kubeconfig.clone();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let client = kube_client::connect(Some(&kubeconfig))
                    .await
                    .expect("a client from admin.kubeconfig");
                service::run(client, SchedulerConfig::default(), token).await;
            });
        });
        RunningScheduler {
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for RunningScheduler {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

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

/// Polls `kubectl get` with `jsonpath` until `done` holds for its output.
fn wait_for(api: &TestApiserver, args: &[&str], what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = api.kubectl(args, None);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let _scheduler = RunningScheduler::start(&api);

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
