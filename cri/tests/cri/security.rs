//! What a container is allowed and given: the image's user, workdir, env and stop signal; the
//! security context (run as user, groups, read-only rootfs, capabilities, privileged); cgroup
//! limits as the kernel shows them; host namespaces; mounts.

use std::time::Duration;

use k8s_cri::v1 as cri;

use super::daemon::{self, Daemon, Options};
use super::*;

async fn exec(d: &mut Daemon, id: &str, script: &str) -> (i32, String) {
    let r =
        d.rt.exec_sync(cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 10,
        })
        .await
        .unwrap_or_else(|s| panic!("ExecSync {script:?}: {s}"))
        .into_inner();
    (
        r.exit_code,
        String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr),
    )
}

async fn image_config_and_stop_signal_are_honoured(runtime: &str) {
    if !gate(&format!(
        "{} on {runtime}",
        "image_config_and_stop_signal_are_honoured"
    )) {
        return;
    }
    let mut d = Daemon::start(Options::with_runtime(runtime)).await;
    let user = daemon::image("user:latest");
    let stopsignal = daemon::image("stopsignal:latest");
    d.pull(&user).await;
    d.pull(&stopsignal).await;
    let pc = pod_config(&d, "imagecfg");
    let pod = run_pod(&mut d, &pc).await;

    // USER (a name), WORKDIR, ENV and ENTRYPOINT + CMD from the image.
    let greeter = start_container(&mut d, &pod, &pc, container_config("greeter", &user, &[])).await;
    let st = wait_exited(&mut d, &greeter, Duration::from_secs(20)).await;
    assert_eq!(st.exit_code, 0);
    let log = read_cri_log(&d.log_dir("imagecfg").join("greeter/0.log"));
    assert_eq!(
        log,
        vec![(
            "stdout".to_string(),
            "hello from 1000:1000 in /home/keel".to_string()
        )]
    );
    // args replace CMD, keeping the ENTRYPOINT; env from the request overrides the image's.
    let mut cfg = container_config("args", &user, &[]);
    cfg.args = vec!["echo $GREETING".into()];
    cfg.envs = vec![cri::KeyValue {
        key: "GREETING".into(),
        value: "overridden".into(),
    }];
    let args = start_container(&mut d, &pod, &pc, cfg).await;
    wait_exited(&mut d, &args, Duration::from_secs(20)).await;
    let log = read_cri_log(&d.log_dir("imagecfg").join("args/0.log"));
    assert_eq!(log, vec![("stdout".to_string(), "overridden".to_string())]);

    // STOPSIGNAL from the image: SIGUSR1 ends it at once, cleanly.
    let trapper = start_container(
        &mut d,
        &pod,
        &pc,
        container_config("trapper", &stopsignal, &[]),
    )
    .await;
    let started = std::time::Instant::now();
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: trapper.clone(),
        timeout: 30,
    })
    .await
    .expect("StopContainer");
    assert!(started.elapsed() < Duration::from_secs(10));
    let st = container_status(&mut d, &trapper).await;
    assert_eq!(st.exit_code, 0, "{st:?}");
    let log = read_cri_log(&d.log_dir("imagecfg").join("trapper/0.log"));
    assert_eq!(log, vec![("stdout".to_string(), "got-usr1".to_string())]);
    d.shutdown().await;
}

async fn security_context_limits_and_mounts(runtime: &str) {
    if !gate(&format!(
        "{} on {runtime}",
        "security_context_limits_and_mounts"
    )) {
        return;
    }
    let mut d = Daemon::start(Options::with_runtime(runtime)).await;
    let busybox = daemon::image("busybox:latest");
    d.pull(&busybox).await;
    let pc = pod_config(&d, "secure");
    let pod = run_pod(&mut d, &pc).await;

    let host_dir = d.dir.path().join("shared");
    std::fs::create_dir_all(&host_dir).expect("shared dir");
    // Writable by the container's user (1234), which is not root.
    std::fs::set_permissions(
        &host_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    std::fs::write(host_dir.join("from-host"), "host data\n").expect("host file");
    // A symlinked host path is resolved; a missing one is created (as containerd does).
    let link = d.dir.path().join("shared-link");
    std::os::unix::fs::symlink(&host_dir, &link).expect("symlink");
    let missing = d.dir.path().join("made-by-keel-cri");
    let mut cfg = container_config("locked", &busybox, &["sleep", "3600"]);
    cfg.mounts = vec![
        cri::Mount {
            container_path: "/ro".into(),
            host_path: host_dir.to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        },
        cri::Mount {
            container_path: "/rw".into(),
            host_path: host_dir.to_string_lossy().into_owned(),
            ..Default::default()
        },
        cri::Mount {
            container_path: "/linked".into(),
            host_path: link.to_string_lossy().into_owned(),
            readonly: true,
            ..Default::default()
        },
        cri::Mount {
            container_path: "/made".into(),
            host_path: missing.to_string_lossy().into_owned(),
            ..Default::default()
        },
    ];
    cfg.devices = vec![cri::Device {
        container_path: "/dev/keel-null".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    cfg.linux = Some(cri::LinuxContainerConfig {
        resources: Some(cri::LinuxContainerResources {
            cpu_shares: 512,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            memory_limit_in_bytes: 64 * 1024 * 1024,
            oom_score_adj: -998,
            ..Default::default()
        }),
        security_context: Some(cri::LinuxContainerSecurityContext {
            run_as_user: Some(cri::Int64Value { value: 1234 }),
            run_as_group: Some(cri::Int64Value { value: 2345 }),
            supplemental_groups: vec![3456],
            readonly_rootfs: true,
            no_new_privs: true,
            capabilities: Some(cri::Capability {
                drop_capabilities: vec!["ALL".into()],
                add_capabilities: vec!["NET_BIND_SERVICE".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
    });
    let locked = start_container(&mut d, &pod, &pc, cfg).await;

    let (code, out) = exec(&mut d, &locked, "id -u; id -g; id -G").await;
    assert_eq!((code, out.as_str()), (0, "1234\n2345\n2345 3456\n"));
    let (code, out) = exec(&mut d, &locked, "touch /should-fail").await;
    assert_ne!(code, 0, "the rootfs is read-only: {out}");
    let (code, _) = exec(&mut d, &locked, "touch /ro/nope").await;
    assert_ne!(code, 0, "a read-only mount refuses writes");
    let (code, out) = exec(
        &mut d,
        &locked,
        "cat /ro/from-host; echo x > /rw/from-container",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "host data\n"));
    assert_eq!(
        std::fs::read_to_string(host_dir.join("from-container")).expect("written through /rw"),
        "x\n"
    );
    // The device, with the host's major and minor (1, 3), usable by the container's user.
    let (code, out) = exec(
        &mut d,
        &locked,
        "echo x > /dev/keel-null && stat -c '%t %T' /dev/keel-null",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "1 3\n"));
    // Only NET_BIND_SERVICE (bit 10) is left in the bounding set; NoNewPrivs is set.
    let (_, status) = exec(&mut d, &locked, "cat /proc/self/status").await;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("CapBnd:"), "0000000000000400", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1");
    // keel-cri cannot lower oom_score_adj below its own: clamped, not failed.
    let (_, adj) = exec(&mut d, &locked, "cat /proc/self/oom_score_adj").await;
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .expect("own oom_score_adj")
        .trim()
        .parse()
        .expect("number");
    assert!(adj.trim().parse::<i32>().expect("adj") >= own.min(0));

    // The cgroup limits, as the kernel shows them (v1 here, v2 elsewhere).
    let (_, cgroup) = exec(&mut d, &locked, "cat /proc/self/cgroup").await;
    let v1_memory = cgroup
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()));
    match v1_memory {
        Some(path) => {
            let base =
                std::path::Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
            let limit =
                std::fs::read_to_string(base.join("memory.limit_in_bytes")).expect("memory limit");
            assert_eq!(limit.trim(), (64 * 1024 * 1024).to_string());
            // cpu may be mounted alone or together with cpuacct.
            let (controllers, cpu_path) = cgroup
                .lines()
                .filter_map(|l| {
                    let mut f = l.splitn(3, ':').skip(1);
                    f.next().zip(f.next())
                })
                .find(|(c, _)| c.split(',').any(|c| c == "cpu"))
                .expect("cpu cgroup");
            let cpu = std::path::Path::new("/sys/fs/cgroup")
                .join(controllers)
                .join(cpu_path.trim_start_matches('/'));
            let read = |f: &str| {
                std::fs::read_to_string(cpu.join(f))
                    .expect(f)
                    .trim()
                    .to_string()
            };
            assert_eq!(read("cpu.shares"), "512");
            assert_eq!(read("cpu.cfs_quota_us"), "50000");
            assert_eq!(read("cpu.cfs_period_us"), "100000");
        }
        None => {
            let path = cgroup
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("v2 cgroup");
            let base = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            let max = std::fs::read_to_string(base.join("memory.max")).expect("memory.max");
            assert_eq!(max.trim(), (64 * 1024 * 1024).to_string());
        }
    }

    // Privileged: every capability, writable /sys.
    let mut cfg = container_config("privileged", &busybox, &["sleep", "3600"]);
    cfg.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    let privileged = start_container(&mut d, &pod, &pc, cfg).await;
    let (_, status) = exec(&mut d, &privileged, "grep CapEff /proc/self/status").await;
    let own = std::fs::read_to_string("/proc/self/status").expect("own status");
    let bounding = own
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .expect("CapBnd")
        .trim();
    assert_eq!(
        status.trim().strip_prefix("CapEff:").map(str::trim),
        Some(bounding),
        "a privileged container holds every capability keel-cri holds"
    );
    d.shutdown().await;
}

async fn host_network_and_pid_namespaces(runtime: &str) {
    if !gate(&format!(
        "{} on {runtime}",
        "host_network_and_pid_namespaces"
    )) {
        return;
    }
    let mut d = Daemon::start(Options::with_runtime(runtime)).await;
    let busybox = daemon::image("busybox:latest");
    d.pull(&busybox).await;
    let mut pc = pod_config(&d, "hostns");
    if let Some(linux) = pc.linux.as_mut() {
        linux.security_context = Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                pid: cri::NamespaceMode::Node as i32,
                ipc: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let pod = run_pod(&mut d, &pc).await;
    let c = start_container(
        &mut d,
        &pod,
        &pc,
        container_config("c", &busybox, &["sleep", "3600"]),
    )
    .await;
    let host_net = std::fs::read_link("/proc/self/ns/net").expect("own netns");
    let (_, net) = exec(&mut d, &c, "readlink /proc/self/ns/net").await;
    assert_eq!(net.trim(), host_net.to_string_lossy(), "host network");
    // Host PID namespace: the host's pid 1 is visible and it is not the container's process.
    let (_, comm) = exec(&mut d, &c, "cat /proc/1/comm").await;
    assert_ne!(comm.trim(), "sleep");
    assert_eq!(
        comm.trim(),
        std::fs::read_to_string("/proc/1/comm")
            .expect("host pid 1")
            .trim()
    );

    // A pod with its own PID namespace: its containers share it, and pid 1 is not theirs.
    let pc2 = pod_config(&d, "podpid");
    let pod2 = run_pod(&mut d, &pc2).await;
    let a = start_container(
        &mut d,
        &pod2,
        &pc2,
        container_config("a", &busybox, &["sleep", "3600"]),
    )
    .await;
    let b = start_container(
        &mut d,
        &pod2,
        &pc2,
        container_config("b", &busybox, &["sleep", "3601"]),
    )
    .await;
    let (_, ps) = exec(&mut d, &a, "ps -o args").await;
    assert!(ps.contains("sleep 3601"), "a sees b's process: {ps}");
    let (_, ps) = exec(&mut d, &b, "ps -o args").await;
    assert!(ps.contains("sleep 3600"), "b sees a's process: {ps}");
    d.shutdown().await;
}

async fn seccomp_runtime_default_refuses_what_it_must(runtime: &str) {
    if !gate(&format!("seccomp_runtime_default on {runtime}")) {
        return;
    }
    let mut d = Daemon::start(Options::with_runtime(runtime)).await;
    let busybox = daemon::image("busybox:latest");
    d.pull(&busybox).await;
    let pc = pod_config(&d, "seccomp");
    let pod = run_pod(&mut d, &pc).await;
    let with_profile = |name: &str, t: cri::security_profile::ProfileType| {
        let mut cfg = container_config(
            name,
            &busybox,
            &[
                "sh",
                "-c",
                "grep Seccomp: /proc/self/status; unshare -U true && echo made || echo refused; exec sleep 3600",
            ],
        );
        cfg.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                seccomp: Some(cri::SecurityProfile {
                    profile_type: t as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        cfg
    };
    use cri::security_profile::ProfileType;
    let confined = start_container(
        &mut d,
        &pod,
        &pc,
        with_profile("confined", ProfileType::RuntimeDefault),
    )
    .await;
    let free = start_container(
        &mut d,
        &pod,
        &pc,
        with_profile("free", ProfileType::Unconfined),
    )
    .await;
    // The container's own process: filtered or not.
    for (name, want) in [
        ("confined", vec!["Seccomp:\t2", "refused"]),
        ("free", vec!["Seccomp:\t0", "made"]),
    ] {
        let log = d.log_dir("seccomp").join(format!("{name}/0.log"));
        let lines = eventually("the container's report", Duration::from_secs(20), || {
            let lines: Vec<String> = read_cri_log(&log)
                .into_iter()
                .filter(|(stream, _)| stream == "stdout")
                .map(|(_, t)| t)
                .collect();
            async move { (lines.len() >= 2).then_some(lines) }
        })
        .await;
        assert_eq!(lines, want, "{name}");
    }
    // Processes started by ExecSync get the same filter.
    // A user namespace needs no capability: only the profile stands in the way.
    let (code, out) = exec(&mut d, &free, "unshare -U true && echo made").await;
    assert_eq!((code, out.as_str()), (0, "made\n"), "unconfined");
    let (code, out) = exec(&mut d, &confined, "unshare -U true && echo made").await;
    assert_ne!(code, 0, "RuntimeDefault refuses new namespaces: {out}");
    let (code, out) = exec(
        &mut d,
        &confined,
        "grep Seccomp: /proc/self/status; echo ok",
    )
    .await;
    assert_eq!(
        (code, out.as_str()),
        (0, "Seccomp:\t2\nok\n"),
        "filter mode"
    );
    d.shutdown().await;
}

on_both_runtimes!(
    seccomp_runtime_default_refuses_what_it_must,
    image_config_and_stop_signal_are_honoured,
    security_context_limits_and_mounts,
    host_network_and_pid_namespaces
);
