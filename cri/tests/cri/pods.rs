//! Pods and containers through the CRI: a two-container pod sharing its network namespace, CRI
//! logs, exit codes and reasons, ExecSync, stop timeouts, OOMKilled, and what removal leaves.

use std::collections::HashMap;
use std::time::Duration;

use k8s_cri::v1 as cri;

use super::daemon::{self, Daemon, Options};
use super::*;

async fn two_containers_share_the_pod_network_and_removal_leaves_nothing(runtime: &str) {
    if !gate(&format!(
        "{} on {runtime}",
        "two_containers_share_the_pod_network"
    )) {
        return;
    }
    let mut d = Daemon::start(Options::with_runtime(runtime)).await;
    let httpd = daemon::image("httpd:latest");
    let busybox = daemon::image("busybox:latest");
    d.pull(&httpd).await;
    d.pull(&busybox).await;
    let pc = pod_config(&d, "web");
    let pod = run_pod(&mut d, &pc).await;

    let status =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner();
    let st = status.status.expect("status");
    assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
    let ip = st.network.expect("network").ip;
    assert!(
        ip.starts_with(&format!("{}.", d.subnet)),
        "pod IP {ip} is not in {}.0/24",
        d.subnet
    );

    let server = start_container(&mut d, &pod, &pc, container_config("server", &httpd, &[])).await;
    // The second container reaches the first over the pod's loopback: one network namespace.
    let client = start_container(
        &mut d,
        &pod,
        &pc,
        container_config(
            "client",
            &busybox,
            &[
                "sh",
                "-c",
                "for i in $(seq 1 100); do wget -q -O- http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1",
            ],
        ),
    )
    .await;
    let done = wait_exited(&mut d, &client, Duration::from_secs(30)).await;
    assert_eq!(done.exit_code, 0, "client: {done:?}");
    assert_eq!(done.reason, "Completed");
    let log = read_cri_log(&d.log_dir("web").join("client/0.log"));
    assert_eq!(
        log,
        vec![(
            "stdout".to_string(),
            "hello from keel-test/httpd".to_string()
        )]
    );

    // The host reaches the pod IP through the bridge.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", &format!("http://{ip}:8080/")])
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from keel-test/httpd\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Hostname and resolv.conf from the pod config.
    let exec =
        d.rt.exec_sync(cri::ExecSyncRequest {
            container_id: server.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "hostname; cat /etc/resolv.conf".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    let text = String::from_utf8_lossy(&exec.stdout);
    assert!(text.starts_with("web\n"), "{text}");
    assert!(text.contains("nameserver 10.96.0.10"), "{text}");
    assert!(text.contains("search default.svc.cluster.local"), "{text}");
    assert!(text.contains("options ndots:5"), "{text}");

    let listed =
        d.rt.list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 2);

    // Stop and remove: nothing of the pod may remain on the host.
    let netns = netns_of(&d, &pod);
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("StopPodSandbox");
    let stopped = container_status(&mut d, &server).await;
    assert_eq!(stopped.state, cri::ContainerState::ContainerExited as i32);
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    assert_no_leftovers(&d, &netns);
    d.shutdown().await;
}

/// The pod's pinned network namespace path, from its verbose status.
fn netns_of(d: &Daemon, pod: &str) -> String {
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.root().join("sandboxes").join(pod).join("sandbox.json"))
            .expect("sandbox record"),
    )
    .expect("sandbox json");
    rec["pinned"]["netns"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// No mount under the daemon's dirs but none at all, no cgroup under the test's parent, no
/// process of the test, no veth on the bridge and no IP allocation.
fn assert_no_leftovers(d: &Daemon, netns: &str) {
    let mounts = daemon::mounts_under(d.dir.path());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    assert!(
        netns.is_empty() || !std::path::Path::new(netns).exists(),
        "pinned netns {netns} left"
    );
    let cgroups = daemon::cgroup_dirs(&d.cgroup_parent);
    let with_procs: Vec<_> = cgroups
        .iter()
        .filter(|c| {
            !std::fs::read_to_string(c.join("cgroup.procs"))
                .unwrap_or_default()
                .trim()
                .is_empty()
        })
        .collect();
    assert!(
        with_procs.is_empty(),
        "cgroups with processes: {with_procs:?}"
    );
    let mut procs = daemon::processes_under(d.dir.path());
    procs.retain(|p| Some(*p) != d.daemon_pid());
    assert!(procs.is_empty(), "processes left: {procs:?}");
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &d.bridge])
        .output()
        .expect("ip link");
    assert!(
        String::from_utf8_lossy(&links.stdout).trim().is_empty(),
        "veths left on {}: {}",
        d.bridge,
        String::from_utf8_lossy(&links.stdout)
    );
    let net_dir = d.ipam_dir().join("keel-test");
    let allocations: Vec<_> = std::fs::read_dir(&net_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert!(
        allocations.is_empty(),
        "IPs still allocated: {allocations:?}"
    );
}

async fn exit_codes_reasons_logs_and_exec(runtime: &str) {
    if !gate(&format!(
        "{} on {runtime}",
        "exit_codes_reasons_logs_and_exec"
    )) {
        return;
    }
    let mut d = Daemon::start(Options::with_runtime(runtime)).await;
    let busybox = daemon::image("busybox:latest");
    d.pull(&busybox).await;
    let pc = pod_config(&d, "exits");
    let pod = run_pod(&mut d, &pc).await;

    let ok = start_container(
        &mut d,
        &pod,
        &pc,
        container_config(
            "ok",
            &busybox,
            &["sh", "-c", "echo out; echo err >&2; printf partial"],
        ),
    )
    .await;
    let failing = start_container(
        &mut d,
        &pod,
        &pc,
        container_config("failing", &busybox, &["sh", "-c", "exit 3"]),
    )
    .await;
    let st = wait_exited(&mut d, &ok, Duration::from_secs(20)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    assert!(st.finished_at >= st.started_at && st.started_at >= st.created_at);
    let log_path = d.log_dir("exits").join("ok/0.log");
    assert_eq!(st.log_path, log_path.to_string_lossy());
    let mut lines = read_cri_log(&log_path);
    lines.sort();
    assert_eq!(
        lines,
        vec![
            ("stderr".to_string(), "err".to_string()),
            ("stdout".to_string(), "out".to_string()),
            ("stdout".to_string(), "partial".to_string()),
        ],
        "unterminated output ends as a final record when the stream closes"
    );
    let st = wait_exited(&mut d, &failing, Duration::from_secs(20)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));

    // List filters: by state, by label, by pod.
    let list = |filter: cri::ContainerFilter| {
        let mut rt = d.rt.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_containers(cri::ListContainersRequest {
                    filter: Some(filter),
                })
                .await
                .expect("ListContainers")
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![ok.clone(), failing.clone()];
    both.sort();
    let exited = cri::ContainerStateValue {
        state: cri::ContainerState::ContainerExited as i32,
    };
    assert_eq!(
        list(cri::ContainerFilter {
            state: Some(exited),
            ..Default::default()
        })
        .await,
        both
    );
    assert_eq!(
        list(cri::ContainerFilter {
            label_selector: HashMap::from([("container".to_string(), "ok".to_string())]),
            ..Default::default()
        })
        .await,
        vec![ok.clone()]
    );
    assert!(
        list(cri::ContainerFilter {
            pod_sandbox_id: "0000".into(),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    let pods = |app: &str| {
        let mut rt = d.rt.clone();
        let selector = HashMap::from([("app".to_string(), app.to_string())]);
        async move {
            rt.list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: selector,
                    ..Default::default()
                }),
            })
            .await
            .expect("ListPodSandbox")
            .into_inner()
            .items
            .len()
        }
    };
    assert_eq!((pods("exits").await, pods("other").await), (1, 0));

    // ExecSync: output, exit code, and the timeout.
    let sleeper = start_container(
        &mut d,
        &pod,
        &pc,
        container_config("sleeper", &busybox, &["sleep", "3600"]),
    )
    .await;
    let r =
        d.rt.exec_sync(cri::ExecSyncRequest {
            container_id: sleeper.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo hi; echo oops >&2; exit 7".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(
        (r.stdout.as_slice(), r.stderr.as_slice(), r.exit_code),
        (&b"hi\n"[..], &b"oops\n"[..], 7)
    );
    let started = std::time::Instant::now();
    let timed_out =
        d.rt.exec_sync(cri::ExecSyncRequest {
            container_id: sleeper.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await
        .expect_err("an exec past its timeout fails");
    assert_eq!(
        timed_out.code(),
        tonic::Code::DeadlineExceeded,
        "{timed_out}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let unknown =
        d.rt.exec_sync(cri::ExecSyncRequest {
            container_id: "no-such-container".into(),
            cmd: vec!["true".into()],
            timeout: 1,
        })
        .await
        .expect_err("exec in an unknown container");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    d.shutdown().await;
}

async fn stop_timeout_kills_what_ignores_sigterm_and_oom_is_reported(runtime: &str) {
    if !gate(&format!(
        "{} on {runtime}",
        "stop_timeout_kills_what_ignores_sigterm"
    )) {
        return;
    }
    let mut d = Daemon::start(Options::with_runtime(runtime)).await;
    let busybox = daemon::image("busybox:latest");
    d.pull(&busybox).await;
    let pc = pod_config(&d, "stubborn");
    let pod = run_pod(&mut d, &pc).await;
    let stubborn = start_container(
        &mut d,
        &pod,
        &pc,
        container_config(
            "stubborn",
            &busybox,
            &[
                "sh",
                "-c",
                "trap '' TERM; echo ready; while true; do sleep 0.2; done",
            ],
        ),
    )
    .await;
    let log = d.log_dir("stubborn").join("stubborn/0.log");
    eventually(
        "the stubborn container to be ready",
        Duration::from_secs(20),
        || {
            let lines = read_cri_log(&log);
            async move { (!lines.is_empty()).then_some(()) }
        },
    )
    .await;
    let started = std::time::Instant::now();
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: stubborn.clone(),
        timeout: 2,
    })
    .await
    .expect("StopContainer");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "stop took {took:?}"
    );
    let st = container_status(&mut d, &stubborn).await;
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 137, "{st:?}");
    // Stop and remove are idempotent.
    for _ in 0..2 {
        d.rt.stop_container(cri::StopContainerRequest {
            container_id: stubborn.clone(),
            timeout: 1,
        })
        .await
        .expect("StopContainer again");
    }

    // A memory limit that kills: OOMKilled, 137.
    let mut hog = container_config(
        "hog",
        &busybox,
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' x); echo survived",
        ],
    );
    hog.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 * 1024 * 1024,
            memory_swap_limit_in_bytes: 32 * 1024 * 1024,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = start_container(&mut d, &pod, &pc, hog).await;
    let st = wait_exited(&mut d, &hog, Duration::from_secs(60)).await;
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (137, "OOMKilled"),
        "{st:?}"
    );
    d.shutdown().await;
}

/// The same pod on Keel's own CNI plugins (bridge, host-local, portmap, loopback): reachable
/// from the host by its IP and through a hostPort on 127.0.0.1, nothing left after removal.
async fn pods_run_on_keels_own_cni_plugins(runtime: &str) {
    if !gate(&format!("pods_run_on_keels_own_cni_plugins on {runtime}")) {
        return;
    }
    let mut d = Daemon::start(Options {
        runtime: runtime.to_string(),
        keel_cni: true,
        ..Default::default()
    })
    .await;
    let httpd = daemon::image("httpd:latest");
    d.pull(&httpd).await;
    let mut pc = pod_config(&d, "keelnet");
    let host_port = 31000 + (std::process::id() % 500) as i32 * 2 + i32::from(runtime == "runc");
    pc.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port,
        host_ip: String::new(),
    }];
    let pod = run_pod(&mut d, &pc).await;
    let ip =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .expect("PodSandboxStatus")
        .into_inner()
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    assert!(ip.starts_with(&format!("{}.", d.subnet)), "pod IP {ip:?}");
    start_container(&mut d, &pod, &pc, container_config("server", &httpd, &[])).await;
    let body = eventually(
        "the pod's server through the bridge",
        Duration::from_secs(20),
        || {
            let ip = ip.clone();
            async move {
                let out = std::process::Command::new("curl")
                    .args(["-sS", "--max-time", "2", &format!("http://{ip}:8080/")])
                    .output()
                    .ok()?;
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            }
        },
    )
    .await;
    assert_eq!(body, "hello from keel-test/httpd\n");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{host_port}/"),
        ])
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from keel-test/httpd\n",
        "through hostPort {host_port}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let netns = netns_of(&d, &pod);
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("StopPodSandbox");
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    assert_no_leftovers(&d, &netns);
    d.shutdown().await;
}

/// Log rotation as the kubelet does it: rename the file, ReopenContainerLog, and the output goes
/// on in a new file at the same path, no line lost between the two.
async fn logs_rotate_with_reopen_container_log(runtime: &str) {
    if !gate(&format!(
        "logs_rotate_with_reopen_container_log on {runtime}"
    )) {
        return;
    }
    let mut d = Daemon::start(Options::with_runtime(runtime)).await;
    let busybox = daemon::image("busybox:latest");
    d.pull(&busybox).await;
    let pc = pod_config(&d, "rotate");
    let pod = run_pod(&mut d, &pc).await;
    let ticker = start_container(
        &mut d,
        &pod,
        &pc,
        container_config(
            "ticker",
            &busybox,
            &[
                "sh",
                "-c",
                "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.02; done",
            ],
        ),
    )
    .await;
    let log = d.log_dir("rotate").join("ticker/0.log");
    let rotated = d.log_dir("rotate").join("ticker/0.log.1");
    keel_testkit::wait_for("a few ticks", Duration::from_secs(20), || {
        (read_cri_log(&log).len() >= 3).then_some(())
    });
    std::fs::rename(&log, &rotated).expect("rotate");
    d.rt.reopen_container_log(cri::ReopenContainerLogRequest {
        container_id: ticker.clone(),
    })
    .await
    .expect("ReopenContainerLog");
    keel_testkit::wait_for("ticks in the new file", Duration::from_secs(20), || {
        (read_cri_log(&log).len() >= 3).then_some(())
    });
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: ticker.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    let mut lines = read_cri_log(&rotated);
    let old = lines.len();
    lines.extend(read_cri_log(&log));
    assert!(old >= 3, "the rotated file keeps what was written before");
    for (i, (_, text)) in lines.iter().enumerate() {
        assert_eq!(text, &format!("tick {i}"), "no tick lost or repeated");
    }
    let e =
        d.rt.reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: ticker.clone(),
        })
        .await
        .expect_err("an exited container's log cannot be reopened");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    let e =
        d.rt.reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: "nope".into(),
        })
        .await
        .expect_err("unknown container");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    d.shutdown().await;
}

on_both_runtimes!(
    logs_rotate_with_reopen_container_log,
    pods_run_on_keels_own_cni_plugins,
    two_containers_share_the_pod_network_and_removal_leaves_nothing,
    exit_codes_reasons_logs_and_exec,
    stop_timeout_kills_what_ignores_sigterm_and_oom_is_reported
);
