//! The ImageService through the CRI (pull through a mirror, by digest, list, status, remove), and
//! bad input on both services: clear gRPC errors, nothing changed.

use std::time::Duration;

use k8s_cri::v1 as cri;

use super::daemon::{self, Daemon, Options};
use super::*;

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn pull_err(d: &mut Daemon, image: &str) -> tonic::Status {
    d.img
        .pull_image(cri::PullImageRequest {
            image: spec(image),
            ..Default::default()
        })
        .await
        .expect_err(image)
}

async fn image_count(d: &mut Daemon) -> usize {
    d.img
        .list_images(cri::ListImagesRequest::default())
        .await
        .expect("ListImages")
        .into_inner()
        .images
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_a_mirror_list_status_remove() {
    if !gate("pull_through_a_mirror_list_status_remove") {
        return;
    }
    let mut d = Daemon::start(Options::default()).await;
    // registry.k8s.io is mirrored to the local registry in the test config.
    let mirrored = "registry.k8s.io/keel-test/busybox:latest";
    let id = d.pull(mirrored).await;
    assert!(id.starts_with("sha256:"), "{id}");
    let status = d
        .img
        .image_status(cri::ImageStatusRequest {
            image: spec(mirrored),
            verbose: true,
        })
        .await
        .expect("ImageStatus")
        .into_inner();
    let img = status.image.expect("the pulled image has a status");
    assert_eq!(img.id, id);
    assert!(img.repo_tags.contains(&mirrored.to_string()), "{img:?}");
    assert!(
        img.repo_digests
            .iter()
            .any(|d| d.starts_with("registry.k8s.io/keel-test/busybox@sha256:")),
        "{img:?}"
    );
    assert!(img.size > 0);

    // The same image by digest and through its local name: one image, more names.
    let digest = img.repo_digests[0]
        .split_once('@')
        .map(|(_, d)| d.to_string())
        .expect("digest");
    let by_digest = format!("{}@{digest}", daemon::image("busybox"));
    assert_eq!(d.pull(&by_digest).await, id);
    assert_eq!(image_count(&mut d).await, 1);

    // A container from the mirrored name runs.
    let pc = pod_config(&d, "mirrored");
    let pod = run_pod(&mut d, &pc).await;
    let c = start_container(
        &mut d,
        &pod,
        &pc,
        container_config("c", mirrored, &["echo", "from the mirror"]),
    )
    .await;
    let st = wait_exited(&mut d, &c, Duration::from_secs(20)).await;
    assert_eq!(st.exit_code, 0);
    // As containerd: the image's repo digest when it has one, and the id beside it.
    assert!(
        st.image_ref
            .starts_with("registry.k8s.io/keel-test/busybox@sha256:"),
        "{st:?}"
    );
    assert_eq!(st.image_id, id);
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("RemovePodSandbox");

    // Remove by id removes it with every tag; unknown images are not an error.
    d.img
        .remove_image(cri::RemoveImageRequest { image: spec(&id) })
        .await
        .expect("RemoveImage by id");
    assert_eq!(image_count(&mut d).await, 0);
    let gone = d
        .img
        .image_status(cri::ImageStatusRequest {
            image: spec(mirrored),
            verbose: false,
        })
        .await
        .expect("ImageStatus of a removed image")
        .into_inner();
    assert!(gone.image.is_none());
    d.img
        .remove_image(cri::RemoveImageRequest { image: spec(&id) })
        .await
        .expect("RemoveImage of an unknown image succeeds");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    if !gate("bad_input_gets_clear_errors_and_changes_nothing") {
        return;
    }
    let mut d = Daemon::start(Options {
        extra_toml: "[registry.\"down.invalid\"]\nmirrors = [\"http://127.0.0.1:1\"]\n".to_string(),
        ..Default::default()
    })
    .await;

    // Images: malformed, missing, registry down.
    let e = pull_err(&mut d, "UPPER/Case::bad").await;
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("UPPER/Case::bad"), "{e}");
    let e = pull_err(&mut d, &daemon::image("does-not-exist:1")).await;
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    assert!(e.message().contains("does-not-exist"), "{e}");
    let e = pull_err(&mut d, "down.invalid/keel-test/busybox:latest").await;
    assert!(
        e.message().contains("127.0.0.1:1"),
        "the error names the endpoint that failed: {e}"
    );
    assert_eq!(image_count(&mut d).await, 0);

    // Unknown ids: status is NotFound, stop and remove succeed.
    let e =
        d.rt.container_status(cri::ContainerStatusRequest {
            container_id: "nope".into(),
            verbose: false,
        })
        .await
        .expect_err("status of an unknown container");
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e =
        d.rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: "nope".into(),
            verbose: false,
        })
        .await
        .expect_err("status of an unknown pod");
    assert_eq!(e.code(), tonic::Code::NotFound);
    d.rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: "nope".into(),
    })
    .await
    .expect("StopPodSandbox of an unknown id");
    d.rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: "nope".into(),
    })
    .await
    .expect("RemovePodSandbox of an unknown id");
    d.rt.stop_container(cri::StopContainerRequest {
        container_id: "nope".into(),
        timeout: 1,
    })
    .await
    .expect("StopContainer of an unknown id");
    d.rt.remove_container(cri::RemoveContainerRequest {
        container_id: "nope".into(),
    })
    .await
    .expect("RemoveContainer of an unknown id");

    // A pod without metadata; a container whose image is not pulled; an invalid mount.
    let e =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig::default()),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("a pod without metadata");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config(&d, "handler")),
            runtime_handler: "no-such-handler".into(),
        })
        .await
        .expect_err("an unknown runtime handler");
    assert!(e.message().contains("no-such-handler"), "{e}");

    let busybox = daemon::image("busybox:latest");
    let pc = pod_config(&d, "bad");
    let pod = run_pod(&mut d, &pc).await;
    let e =
        d.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("c", &busybox, &["true"])),
            sandbox_config: Some(pc.clone()),
        })
        .await
        .expect_err("an image that was not pulled");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    d.pull(&busybox).await;
    let mut bad_mount = container_config("c", &busybox, &["true"]);
    bad_mount.mounts = vec![cri::Mount {
        container_path: "/data".into(),
        host_path: "/nonexistent/keel/test/path".into(),
        ..Default::default()
    }];
    let e =
        d.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(bad_mount),
            sandbox_config: Some(pc.clone()),
        })
        .await
        .expect_err("a mount of a host path that does not exist");
    assert!(
        e.message().contains("/nonexistent/keel/test/path"),
        "the error names the path: {e}"
    );
    let containers =
        d.rt.list_containers(cri::ListContainersRequest::default())
            .await
            .expect("ListContainers")
            .into_inner()
            .containers;
    assert!(containers.is_empty(), "{containers:?}");
    let leftover: Vec<_> = std::fs::read_dir(d.root().join("containers"))
        .expect("containers dir")
        .flatten()
        .collect();
    assert!(leftover.is_empty(), "failed creations left {leftover:?}");
    // The name is free again after the failures.
    let c = start_container(
        &mut d,
        &pod,
        &pc,
        container_config("c", &busybox, &["true"]),
    )
    .await;
    let st = wait_exited(&mut d, &c, Duration::from_secs(20)).await;
    assert_eq!(st.exit_code, 0);
    // A second CreateContainer with the same name is refused, not duplicated.
    let e =
        d.rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("c", &busybox, &["true"])),
            sandbox_config: Some(pc.clone()),
        })
        .await
        .expect_err("a duplicate name");
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
    d.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_ready_follows_the_conf_dir_and_a_corrupt_config_is_refused() {
    if !gate("network_ready_follows_the_conf_dir") {
        return;
    }
    let mut d = Daemon::start(Options {
        no_network: true,
        ..Default::default()
    })
    .await;
    let network_ready = |s: cri::StatusResponse| {
        s.status
            .expect("status")
            .conditions
            .into_iter()
            .find(|c| c.r#type == "NetworkReady")
            .map(|c| c.status)
    };
    let st =
        d.rt.status(cri::StatusRequest { verbose: false })
            .await
            .expect("Status")
            .into_inner();
    assert_eq!(network_ready(st), Some(false));
    let e =
        d.rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config(&d, "nonet")),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("no pod network yet");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    std::fs::write(
        d.dir.path().join("net.d/10-loop.conflist"),
        r#"{"cniVersion":"1.0.0","name":"lo-only","plugins":[{"type":"loopback"}]}"#,
    )
    .expect("conflist");
    let mut rt = d.rt.clone();
    eventually("NetworkReady", Duration::from_secs(10), || {
        let mut rt = rt.clone();
        async move {
            let st = rt
                .status(cri::StatusRequest { verbose: false })
                .await
                .ok()?;
            network_ready(st.into_inner()).filter(|r| *r)
        }
    })
    .await;
    let cfg = rt
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .expect("RuntimeConfig")
        .into_inner();
    assert_eq!(
        cfg.linux.map(|l| l.cgroup_driver),
        Some(cri::CgroupDriver::Cgroupfs as i32)
    );
    let v = rt
        .version(cri::VersionRequest::default())
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(
        (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
        ("keel-cri", "v1")
    );

    // A corrupt config file: keel-cri refuses to start and names the problem.
    d.kill();
    std::fs::write(&d.config_path, "listen = \"unix:///x\"\nroot = [\n").expect("corrupt");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel-cri"))
        .arg("--config")
        .arg(&d.config_path)
        .output()
        .expect("keel-cri");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&d.config_path.to_string_lossy().into_owned()),
        "the error names the file: {err}"
    );
    std::fs::write(&d.config_path, "bogus_key = 1\n").expect("unknown key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keel-cri"))
        .arg("--config")
        .arg(&d.config_path)
        .output()
        .expect("keel-cri");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus_key"));
}
