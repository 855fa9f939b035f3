//! keel-cri killed with SIGKILL mid-life and started again: running containers keep running and
//! logging, an exit that happened while it was down is reported, everything is listed again.

use std::time::Duration;

use k8s_cri::v1 as cri;

use super::daemon::{self, Daemon, Options};
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_outlive_a_sigkilled_daemon() {
    if !gate("containers_outlive_a_sigkilled_daemon") {
        return;
    }
    let mut d = Daemon::start(Options::default()).await;
    let busybox = daemon::image("busybox:latest");
    d.pull(&busybox).await;
    let pc = pod_config(&d, "survivor");
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
                "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done",
            ],
        ),
    )
    .await;
    let gate_dir = d.dir.path().join("gate");
    std::fs::create_dir_all(&gate_dir).expect("gate dir");
    let gate_file = gate_dir.join("release");
    let mut waiter = container_config(
        "waiter",
        &busybox,
        &[
            "sh",
            "-c",
            "while [ ! -e /gate/release ]; do sleep 0.05; done; exit 5",
        ],
    );
    waiter.mounts = vec![cri::Mount {
        container_path: "/gate".into(),
        host_path: gate_dir.to_string_lossy().into_owned(),
        ..Default::default()
    }];
    let waiter = start_container(&mut d, &pod, &pc, waiter).await;

    d.kill();
    // While keel-cri is down: the waiter exits, the ticker keeps logging.
    std::fs::write(&gate_file, b"").expect("gate");
    let exit_file = d.state().join("containers").join(&waiter).join("exit");
    keel_testkit::wait_for("the waiter's exit record", Duration::from_secs(20), || {
        exit_file.exists().then_some(())
    });
    let log = d.log_dir("survivor").join("ticker/0.log");
    let before = read_cri_log(&log).len();
    keel_testkit::wait_for(
        "the ticker to log while keel-cri is down",
        Duration::from_secs(20),
        || (read_cri_log(&log).len() > before + 3).then_some(()),
    );

    d.spawn().await;
    let pods =
        d.rt.list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .expect("ListPodSandbox")
            .into_inner()
            .items;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].id, pod);
    assert_eq!(pods[0].state, cri::PodSandboxState::SandboxReady as i32);
    let containers =
        d.rt.list_containers(cri::ListContainersRequest::default())
            .await
            .expect("ListContainers")
            .into_inner()
            .containers;
    assert_eq!(containers.len(), 2);

    let st = wait_exited(&mut d, &waiter, Duration::from_secs(10)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (5, "Error"), "{st:?}");
    let st = container_status(&mut d, &ticker).await;
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    let r =
        d.rt.exec_sync(cri::ExecSyncRequest {
            container_id: ticker.clone(),
            cmd: vec!["echo".into(), "still here".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync after restart")
        .into_inner();
    assert_eq!(r.stdout, b"still here\n");

    // The restarted daemon still sees the ticker's exit when it is stopped.
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: ticker.clone(),
        timeout: 5,
    })
    .await
    .expect("StopContainer after restart");
    let st = container_status(&mut d, &ticker).await;
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    let lines = read_cri_log(&log);
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, (s, t))| s == "stdout" && *t == format!("tick {i}")),
        "no tick lost or repeated across the restart: {lines:?}"
    );
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_of_sandboxes_lost_in_a_crash_are_collected_at_start() {
    if !gate("attachments_of_sandboxes_lost_in_a_crash_are_collected_at_start") {
        return;
    }
    let mut d = Daemon::start(Options::default()).await;
    let pc = pod_config(&d, "lost");
    let pod = run_pod(&mut d, &pc).await;
    let allocations = |d: &Daemon| {
        std::fs::read_dir(d.ipam_dir().join("keel-test"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .parse::<std::net::IpAddr>()
                    .is_ok()
            })
            .count()
    };
    assert_eq!(allocations(&d), 1);
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.root().join("sandboxes").join(&pod).join("sandbox.json"))
            .expect("sandbox record"),
    )
    .expect("sandbox json");
    let holder = record["pid_holder"]["pid"]
        .as_i64()
        .expect("a PID namespace holder") as i32;
    // A crash after CNI ADD but before the sandbox's checkpoint was written looks like this.
    d.kill();
    std::fs::remove_dir_all(d.root().join("sandboxes").join(&pod)).expect("drop the record");
    d.spawn().await;
    assert_eq!(allocations(&d), 0, "the lost sandbox's IP is freed");
    let veths = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", &d.bridge])
        .output()
        .expect("ip link");
    assert!(
        String::from_utf8_lossy(&veths.stdout).trim().is_empty(),
        "the lost sandbox's veth is gone"
    );
    keel_testkit::wait_for(
        "the lost sandbox's PID namespace holder to die",
        Duration::from_secs(10),
        || {
            // Dead, or a zombie of an init that does not reap.
            let stat = std::fs::read_to_string(format!("/proc/{holder}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            matches!(state, None | Some("Z") | Some("X")).then_some(())
        },
    );
    let mounts = daemon::mounts_under(&d.state());
    assert!(
        mounts.is_empty(),
        "the lost sandbox's pins are gone: {mounts:?}"
    );
    d.shutdown().await;
}
