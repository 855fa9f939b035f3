//! The load generator of hack/bench/scheduler.sh: creates NODES Node objects (plain objects
//! with allocatable resources; no kubelet is involved) and then PODS pods through the
//! apiserver, and watches the pods until every one is bound. Prints one line of `key=value`
//! figures: how long the creates took, and the scheduling throughput from the first pod
//! creation to the last binding seen on the watch.
//!
//! Usage: scheduler_load --kubeconfig F [--nodes N] [--pods P] [--clients C]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::PostParams;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use serde_json::json;

struct Options {
    kubeconfig: PathBuf,
    nodes: usize,
    pods: usize,
    clients: usize,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        kubeconfig: PathBuf::new(),
        nodes: 5000,
        pods: 10000,
        clients: 64,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kubeconfig" => options.kubeconfig = PathBuf::from(value()?),
            "--nodes" => options.nodes = value()?.parse().map_err(|e| format!("--nodes: {e}"))?,
            "--pods" => options.pods = value()?.parse().map_err(|e| format!("--pods: {e}"))?,
            "--clients" => {
                options.clients = value()?.parse().map_err(|e| format!("--clients: {e}"))?
            }
            // cargo bench passes --bench
            "--bench" => {}
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if options.kubeconfig.as_os_str().is_empty() {
        return Err("--kubeconfig is required".into());
    }
    Ok(options)
}

fn node(index: usize) -> Result<Node, serde_json::Error> {
    let name = format!("node-{index:05}");
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", index % 3),
        }},
        "status": {
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }))
}

fn pod(index: usize) -> Result<Pod, serde_json::Error> {
    serde_json::from_value(json!({
        "metadata": {"name": format!("pod-{index:05}"), "labels": {"app": format!("app-{}", index % 50)}},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    }))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn create_all<K, F>(
    api: Api<K>,
    count: usize,
    clients: usize,
    make: F,
) -> Result<Duration, BoxError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(usize) -> Result<K, serde_json::Error>,
{
    let objects = (0..count).map(make).collect::<Result<Vec<K>, _>>()?;
    let start = Instant::now();
    stream::iter(objects.into_iter().map(|object| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &object)
                .await
                .map(|_| ())
        }
    }))
    .buffer_unordered(clients)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(start.elapsed())
}

/// Pods seen bound, and when the last of them was first seen so.
type Bound = Arc<Mutex<(HashSet<String>, Option<Instant>)>>;

async fn run(options: Options) -> Result<(), BoxError> {
    let client: Client =
        keel_control_plane::kube_client::connect(Some(&options.kubeconfig)).await?;
    let namespace = "bench";
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;
    let nodes_took = create_all(
        Api::<Node>::all(client.clone()),
        options.nodes,
        options.clients,
        node,
    )
    .await?;

    let bound: Bound = Arc::default();
    let watch_bound = bound.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(async move {
        let mut events = watcher::watcher(pods, watcher::Config::default()).boxed();
        let mut ready = Some(ready_tx);
        while let Some(event) = events.next().await {
            let pod = match event {
                Ok(Event::InitDone) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    continue;
                }
                Ok(Event::Apply(pod) | Event::InitApply(pod)) => pod,
                _ => continue,
            };
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
            {
                let mut seen = watch_bound.lock().unwrap_or_else(|p| p.into_inner());
                if seen.0.insert(pod.metadata.name.clone().unwrap_or_default()) {
                    seen.1 = Some(Instant::now());
                }
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(30), ready_rx).await;
    let start = Instant::now();
    let pods_api = Api::<Pod>::namespaced(client.clone(), namespace);
    let pods_took = create_all(pods_api, options.pods, options.clients, pod).await?;
    let deadline = start + Duration::from_secs(600);
    loop {
        let (count, last) = {
            let seen = bound.lock().unwrap_or_else(|p| p.into_inner());
            (seen.0.len(), seen.1)
        };
        if count >= options.pods {
            let elapsed = last
                .unwrap_or_else(Instant::now)
                .duration_since(start)
                .as_secs_f64();
            println!(
                "nodes={} pods={} node_creates_s={:.2} pod_creates_s={:.2} all_bound_s={:.2} pods_per_s={:.0}",
                options.nodes,
                options.pods,
                nodes_took.as_secs_f64(),
                pods_took.as_secs_f64(),
                elapsed,
                options.pods as f64 / elapsed
            );
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {count} of {} pods were bound within 600 s",
                options.pods
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch.abort();
    Ok(())
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("scheduler_load: {message}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("scheduler_load: starting the runtime: {error}");
            std::process::exit(1);
        }
    };
    if let Err(error) = runtime.block_on(run(options)) {
        eprintln!("scheduler_load: {error}");
        std::process::exit(1);
    }
}
