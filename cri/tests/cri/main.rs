//! keel-cri end to end, as root: the real binary on a unix socket, driven through a tonic CRI
//! client, pulling from the local registry (hack/test-images.sh) and running real containers with
//! runc under keel-cri's monitor, on a real CNI bridge (Debian's reference plugins).
//!
//! One test binary with a module per area (few link steps). Every test starts its own daemon
//! (`daemon::Daemon`), which cleans up after it even when the test fails.

mod daemon;
mod images;
mod pods;
mod restart;
mod security;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use daemon::Daemon;
use k8s_cri::v1 as cri;

/// Gate for every test here: root and the registry; fails loudly under CI.
fn gate(test: &str) -> bool {
    keel_testkit::require_root(test) && keel_testkit::require_registry(test)
}

/// A pod config as the kubelet sends it, with the test's cgroup parent and log directory.
fn pod_config(d: &Daemon, name: &str) -> cri::PodSandboxConfig {
    let uid = format!("uid-{name}");
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.clone(),
            namespace: "default".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: d.log_dir(name).to_string_lossy().into_owned(),
        dns_config: Some(cri::DnsConfig {
            servers: vec!["10.96.0.10".to_string()],
            searches: vec!["default.svc.cluster.local".to_string()],
            options: vec!["ndots:5".to_string()],
        }),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/pod{uid}", d.cgroup_parent),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container config running `argv` (empty = the image's default command) from `image`.
fn container_config(name: &str, image: &str, argv: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: argv.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("container".to_string(), name.to_string())]),
        ..Default::default()
    }
}

async fn run_pod(d: &mut Daemon, config: &cri::PodSandboxConfig) -> String {
    match d
        .rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
    {
        Ok(r) => r.into_inner().pod_sandbox_id,
        Err(s) => panic!("RunPodSandbox: {s}"),
    }
}

/// Creates and starts a container; returns its id.
async fn start_container(
    d: &mut Daemon,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    let id =
        d.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await
        .unwrap_or_else(|s| panic!("CreateContainer: {s}"))
        .into_inner()
        .container_id;
    d.rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap_or_else(|s| panic!("StartContainer: {s}"));
    id
}

async fn container_status(d: &mut Daemon, id: &str) -> cri::ContainerStatus {
    d.rt.container_status(cri::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    })
    .await
    .unwrap_or_else(|s| panic!("ContainerStatus {id}: {s}"))
    .into_inner()
    .status
    .unwrap_or_else(|| panic!("ContainerStatus {id}: no status"))
}

/// Waits until the container has exited; returns its final status.
async fn wait_exited(d: &mut Daemon, id: &str, timeout: Duration) -> cri::ContainerStatus {
    let start = Instant::now();
    loop {
        let st = container_status(d, id).await;
        if st.state == cri::ContainerState::ContainerExited as i32 {
            return st;
        }
        if start.elapsed() > timeout {
            panic!("container {id} did not exit within {timeout:?}: {st:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls an async condition every 20 ms until it yields `Some`, or panics after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The text of a CRI log file's lines (`<time> <stream> <P|F> <text>`), checking the format of
/// every line; returns (stream, text) pairs with partial lines joined.
fn read_cri_log(path: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut partial: Option<(String, String)> = None;
    for line in text.lines() {
        let mut parts = line.splitn(4, ' ');
        let (time, stream, tag) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let msg = parts.next().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'),
            "bad timestamp in log line {line:?}"
        );
        assert!(
            stream == "stdout" || stream == "stderr",
            "bad stream in {line:?}"
        );
        assert!(tag == "P" || tag == "F", "bad tag in {line:?}");
        let (s, mut m) = partial
            .take()
            .unwrap_or((stream.to_string(), String::new()));
        m.push_str(msg);
        if tag == "P" {
            partial = Some((s, m));
        } else {
            out.push((s, m));
        }
    }
    out
}
