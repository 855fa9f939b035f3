//! keel-cri's image store against the local test registry (`hack/test-images.sh`: plain HTTP
//! on 127.0.0.1:5000, htpasswd auth on 127.0.0.1:5001), through the library.
//!
//! Privileged (layer ownership, device nodes, overlay mounts): every test is gated with
//! `require_root` and, when it needs the registry, `require_registry` (both fail loudly under
//! CI). Each test has its own store in a temp dir; every wait has a timeout. No traffic leaves
//! 127.0.0.0/8: unreachable upstreams are closed loopback ports, not DNS names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_cri::config::RegistryConfig;
use keel_cri::image::ImageStore;
use keel_cri::runtime::{Error, ImageProvider};
use keel_testkit::{require_registry, require_root};

const WAIT: Duration = Duration::from_secs(120);

fn reg() -> String {
    keel_testkit::registry_addr()
}

fn image(name: &str) -> String {
    format!("{}/keel-test/{name}", reg())
}

fn registries() -> BTreeMap<String, RegistryConfig> {
    let mirror = |m: &str| RegistryConfig {
        mirrors: vec![m.to_string()],
    };
    let mut r = BTreeMap::new();
    r.insert(reg(), mirror(&format!("http://{}", reg())));
    r.insert("127.0.0.1:5001".into(), mirror("http://127.0.0.1:5001"));
    r.insert(
        "example.invalid".into(),
        mirror(&format!("http://{}", reg())),
    );
    r
}

async fn open_with(
    root: &Path,
    regs: BTreeMap<String, RegistryConfig>,
    progress: Duration,
) -> Arc<ImageStore> {
    tokio::time::timeout(WAIT, ImageStore::open(root, regs, progress))
        .await
        .expect("open timed out")
        .expect("open")
}

async fn open(root: &Path) -> Arc<ImageStore> {
    open_with(root, registries(), Duration::from_secs(30)).await
}

async fn pull(store: &ImageStore, name: &str) -> Result<String, Error> {
    tokio::time::timeout(WAIT, store.pull(name, None))
        .await
        .unwrap_or_else(|_| panic!("pulling {name} timed out"))
}

/// Every blob and layer directory name in the store.
fn contents(store: &ImageStore) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for sub in ["blobs/sha256", "layers"] {
        if let Ok(rd) = std::fs::read_dir(store.root().join(sub)) {
            out.extend(
                rd.flatten()
                    .map(|e| format!("{sub}/{}", e.file_name().to_string_lossy())),
            );
        }
    }
    out
}

fn gate(test: &str) -> bool {
    require_root(test) && require_registry(test)
}

#[tokio::test]
async fn pulls_every_test_image_by_tag_and_by_digest() {
    if !gate("pulls_every_test_image_by_tag_and_by_digest") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let store = open(&d.path().join("a")).await;
    let names = [
        "busybox:latest",
        "busybox:v2s2",
        "busybox:multiarch",
        "busybox:manifestlist",
        "layers:latest",
        "user:latest",
        "httpd:latest",
        "pause:latest",
        "stopsignal:latest",
    ];
    let mut by_digest = Vec::new();
    for n in names {
        let name = image(n);
        let id = pull(&store, &name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(id.starts_with("sha256:") && id.len() == 71, "{name}: {id}");
        let st = store
            .status(&name, false)
            .expect("status")
            .expect("present");
        assert_eq!(st.record.id, id);
        assert!(
            st.record.repo_tags.contains(&name),
            "{name}: {:?}",
            st.record.repo_tags
        );
        let repo = name
            .rsplit_once(':')
            .map(|(r, _)| r.to_string())
            .expect("repo");
        let digest_ref = st
            .record
            .repo_digests
            .iter()
            .find(|d| d.starts_with(&format!("{repo}@sha256:")))
            .cloned()
            .unwrap_or_else(|| panic!("{name}: no repo digest in {:?}", st.record.repo_digests));
        let resolved = store.resolve_for_container(&name).expect("resolve");
        assert_eq!(resolved.id, id);
        assert!(!resolved.layers.is_empty() && resolved.layers.iter().all(|l| l.is_dir()));
        by_digest.push((digest_ref, id));
    }
    // By digest, into a fresh store.
    let store = open(&d.path().join("b")).await;
    for (digest_ref, id) in by_digest {
        let got = pull(&store, &digest_ref)
            .await
            .unwrap_or_else(|e| panic!("{digest_ref}: {e}"));
        assert_eq!(got, id, "{digest_ref}");
        assert_eq!(
            store
                .resolve_for_container(&digest_ref)
                .expect("resolve")
                .id,
            id
        );
    }
}

#[tokio::test]
async fn pulls_through_a_mirror_and_picks_the_host_platform() {
    if !gate("pulls_through_a_mirror_and_picks_the_host_platform") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let store = open(d.path()).await;
    // example.invalid does not exist: only the mirror can serve this.
    let name = "example.invalid/keel-test/busybox:latest";
    let id = pull(&store, name).await.expect("pull through the mirror");
    let st = store.status(name, false).expect("status").expect("present");
    assert_eq!(st.record.id, id);
    assert!(st.record.repo_digests[0].starts_with("example.invalid/keel-test/busybox@sha256:"));

    for tag in ["multiarch", "manifestlist"] {
        let name = image(&format!("busybox:{tag}"));
        pull(&store, &name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let r = store.resolve_for_container(&name).expect("resolve");
        assert_ne!(
            r.defaults.cmd,
            ["echo", "WRONG-ARCH"],
            "{name} picked the arm64 image"
        );
        let spec = store
            .status(&name, true)
            .expect("status")
            .and_then(|s| s.info)
            .expect("verbose info");
        let v: serde_json::Value = serde_json::from_str(&spec).expect("json");
        assert_eq!(v["imageSpec"]["architecture"], "amd64", "{name}");
        assert!(
            r.image_ref
                .starts_with(&format!("{}/keel-test/busybox@sha256:", reg()))
        );
    }
}

#[tokio::test]
async fn image_config_reaches_containers() {
    if !gate("image_config_reaches_containers") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let store = open(d.path()).await;
    pull(&store, &image("user:latest")).await.expect("user");
    pull(&store, &image("stopsignal:latest"))
        .await
        .expect("stopsignal");
    let u = store
        .resolve_for_container(&image("user:latest"))
        .expect("user");
    assert_eq!(u.user, "keel");
    assert_eq!(u.defaults.working_dir, "/home/keel");
    assert!(
        u.defaults.env.contains(&"GREETING=hello".to_string()),
        "{:?}",
        u.defaults.env
    );
    assert_eq!(u.defaults.entrypoint, ["/bin/sh", "-c"]);
    assert!(!u.defaults.cmd.is_empty());
    let listed = store.list(Some(&image("user:latest")));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].config.user.as_deref(), Some("keel"));
    let s = store
        .resolve_for_container(&image("stopsignal:latest"))
        .expect("stop");
    assert_eq!(s.stop_signal, "SIGUSR1");
}

/// Unmounts on drop, so a failing assertion leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn layers_merge_in_an_overlay_mount() {
    if !gate("layers_merge_in_an_overlay_mount") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let store = open(&d.path().join("root")).await;
    let name = image("layers:latest");
    pull(&store, &name).await.expect("pull");
    let r = store.resolve_for_container(&name).expect("resolve");
    assert_eq!(r.layers.len(), 4, "{:?}", r.layers);
    let merged = d.path().join("merged");
    std::fs::create_dir(&merged).expect("mkdir");
    // overlay lists the top layer first.
    let lower: Vec<String> = r
        .layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!("lowerdir={}", lower.join(":"));
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(opts.as_str()),
    )
    .expect("overlay mount");
    let _guard = Mounted(merged.clone());
    for present in ["data/keep", "data/added", "opq/new", "bin/busybox"] {
        assert!(merged.join(present).exists(), "/{present} is missing");
    }
    for absent in ["data/gone", "data/dir", "data/dir/inner", "opq/old"] {
        assert!(
            std::fs::symlink_metadata(merged.join(absent)).is_err(),
            "/{absent} shows through"
        );
    }
    let opq: BTreeSet<String> = std::fs::read_dir(merged.join("opq"))
        .expect("opq")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(opq, BTreeSet::from(["new".to_string()]));
}

#[tokio::test]
async fn concurrent_pulls_download_once() {
    if !gate("concurrent_pulls_download_once") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let store = open(d.path()).await;
    let name = image("layers:latest");
    let pulls = (0..8).map(|_| {
        let store = store.clone();
        let name = name.clone();
        tokio::spawn(async move { pull(&store, &name).await })
    });
    let ids: Vec<String> = futures::future::join_all(pulls)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("pull"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    let r = store.resolve_for_container(&name).expect("resolve");
    // The config and each layer, once.
    assert_eq!(store.blobs_downloaded(), 1 + r.layers.len() as u64);
    // Pulling again downloads nothing new.
    pull(&store, &name).await.expect("again");
    assert_eq!(store.blobs_downloaded(), 1 + r.layers.len() as u64);
}

#[tokio::test]
async fn list_status_remove_and_garbage() {
    if !gate("list_status_remove_and_garbage") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let store = open(d.path()).await;
    let bb = pull(&store, &image("busybox:latest"))
        .await
        .expect("busybox");
    let bb2 = pull(&store, &image("busybox:v2s2")).await.expect("v2s2");
    let user = pull(&store, &image("user:latest")).await.expect("user");
    assert_ne!(bb, user);
    let all: BTreeSet<String> = store.list(None).into_iter().map(|r| r.id).collect();
    assert_eq!(all, BTreeSet::from([bb.clone(), bb2.clone(), user.clone()]));
    assert!(store.list(Some("nope:latest")).is_empty());
    assert!(
        store
            .status("nope:latest", false)
            .expect("status")
            .is_none()
    );
    let short = &bb[7..19];
    assert_eq!(
        store
            .status(short, false)
            .expect("status")
            .expect("by prefix")
            .record
            .id,
        bb
    );

    let fs = store.fs_info().await.expect("fs info");
    assert!(fs.used_bytes > 0 && fs.inodes_used > 0, "{fs:?}");
    assert!(store.root().starts_with(&fs.mountpoint), "{fs:?}");

    let busybox = store
        .status(&bb, false)
        .expect("status")
        .expect("present")
        .record;
    let user_rec = store
        .status(&user, false)
        .expect("status")
        .expect("present")
        .record;
    // Removing by a tag removes the whole image, all tags (containerd's CRI does the same).
    assert!(store.remove(&image("busybox:latest")).expect("remove"));
    assert!(store.status(&bb, false).expect("status").is_none());
    assert!(
        store
            .status(&image("busybox:latest"), false)
            .expect("status")
            .is_none()
    );
    if bb2 == bb {
        assert!(
            store
                .status(&image("busybox:v2s2"), false)
                .expect("status")
                .is_none()
        );
    } else {
        assert!(store.remove(&bb2).expect("remove v2s2"));
    }
    assert!(
        !store.remove(&bb).expect("remove again"),
        "unknown image: nothing to do"
    );
    let files = contents(&store);
    for l in &busybox.layers {
        let kept = user_rec.layers.contains(l);
        let present = files.contains(&format!("layers/{}", &l[7..]));
        assert_eq!(present, kept, "layer {l}: shared with user:latest = {kept}");
    }
    for b in &busybox.blobs {
        let kept = user_rec.blobs.contains(b);
        let present = files.contains(&format!("blobs/sha256/{}", &b[7..]));
        assert_eq!(present, kept, "blob {b}: shared = {kept}");
    }
    assert!(store.remove(&user).expect("remove user"));
    assert_eq!(contents(&store), BTreeSet::new());
}

#[tokio::test]
async fn held_layers_outlive_their_image_and_a_restart() {
    if !gate("held_layers_outlive_their_image_and_a_restart") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let store = open(d.path()).await;
    let id = pull(&store, &image("busybox:latest")).await.expect("pull");
    let resolved = store.resolve_for_container(&id).expect("resolve");
    store.hold("container-1", &id).expect("hold");
    assert!(store.hold("container-2", "sha256:nope").is_err());
    drop(store);

    let store = open(d.path()).await;
    assert_eq!(store.list(None).len(), 1, "reopened store lists the image");
    assert!(
        store.remove(&id).expect("remove"),
        "an image in use can be removed"
    );
    assert!(store.list(None).is_empty());
    assert!(
        resolved.layers.iter().all(|l| l.is_dir()),
        "held layers stay"
    );
    drop(store);

    let store = open(d.path()).await;
    assert!(
        resolved.layers.iter().all(|l| l.is_dir()),
        "held layers survive a restart"
    );
    store.release("container-1");
    assert!(
        resolved.layers.iter().all(|l| !l.exists()),
        "released layers go"
    );
    assert_eq!(contents(&store), BTreeSet::new());
}

#[tokio::test]
async fn restart_keeps_images_and_drops_half_pulls() {
    if !gate("restart_keeps_images_and_drops_half_pulls") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let store = open(d.path()).await;
    pull(&store, &image("layers:latest")).await.expect("layers");
    pull(&store, &image("pause:latest")).await.expect("pause");
    let before = store.list(None);
    let files = contents(&store);
    // What a killed pull leaves: a temp blob, a half layer, an orphan blob and layer.
    let images = store.root().to_path_buf();
    drop(store);
    let orphan = "f".repeat(64);
    std::fs::write(images.join("blobs/sha256/.tmp-abc"), b"half").expect("tmp");
    std::fs::write(images.join("blobs/sha256").join(&orphan), b"orphan").expect("orphan");
    std::fs::create_dir_all(images.join("layers/.tmp-abc/etc")).expect("half layer");
    std::fs::create_dir_all(images.join("layers").join(&orphan).join("etc")).expect("orphan");

    let store = open(d.path()).await;
    assert_eq!(store.list(None), before);
    assert_eq!(contents(&store), files);
    let r = store
        .resolve_for_container(&image("layers:latest"))
        .expect("resolve");
    assert!(r.layers.iter().all(|l| l.is_dir()));
}

#[tokio::test]
async fn failed_pulls_say_why_and_leave_nothing() {
    if !gate("failed_pulls_say_why_and_leave_nothing") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let mut regs = registries();
    // Nothing listens on 127.0.0.1:1, nor on the registry host's own port.
    regs.insert(
        "127.0.0.9:1".into(),
        RegistryConfig {
            mirrors: vec!["http://127.0.0.1:1".into()],
        },
    );
    let store = open_with(d.path(), regs, Duration::from_secs(30)).await;
    pull(&store, &image("busybox:latest"))
        .await
        .expect("busybox");
    let files = contents(&store);

    let missing = image("nope:latest");
    match pull(&store, &missing).await {
        Err(Error::NotFound(m)) => {
            assert!(
                m.contains(&missing) && m.contains(&format!("http://{}", reg())),
                "{m}"
            );
        }
        other => panic!("{missing}: {other:?}"),
    }
    let missing_tag = image("busybox:no-such-tag");
    assert!(matches!(
        pull(&store, &missing_tag).await,
        Err(Error::NotFound(_))
    ));

    let down = "127.0.0.9:1/keel-test/busybox:latest";
    match pull(&store, down).await {
        Err(Error::Unavailable(m)) => {
            for needle in [down, "http://127.0.0.1:1", "https://127.0.0.9:1", "refused"] {
                assert!(m.contains(needle), "{m:?} does not mention {needle:?}");
            }
        }
        other => panic!("{down}: {other:?}"),
    }
    for bad in [
        "Bad/Ref",
        "busybox::latest",
        "",
        "a b",
        "busybox@sha256:123",
    ] {
        match pull(&store, bad).await {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("invalid image reference"), "{m}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(contents(&store), files, "failed pulls left files behind");
    assert_eq!(store.list(None).len(), 1);
}

#[tokio::test]
async fn credentials_reach_the_registry() {
    if !gate("credentials_reach_the_registry") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let store = open(d.path()).await;
    let name = "127.0.0.1:5001/keel-test/busybox:latest";
    match tokio::time::timeout(WAIT, store.pull(name, None))
        .await
        .expect("timeout")
    {
        Err(Error::FailedPrecondition(m)) => assert!(m.contains(name), "{m}"),
        other => panic!("anonymous pull: {other:?}"),
    }
    let auth = k8s_cri::v1::AuthConfig {
        username: "keel".into(),
        password: "keelpass".into(),
        ..Default::default()
    };
    tokio::time::timeout(WAIT, store.pull(name, Some(&auth)))
        .await
        .expect("timeout")
        .expect("pull with credentials");
}

/// A registry that accepts connections and never answers: the pull fails after the progress
/// timeout. Needs neither root nor the registry.
#[tokio::test]
async fn a_stalled_registry_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let d = tempfile::tempdir().expect("tempdir");
    let mut regs = BTreeMap::new();
    regs.insert(
        "127.0.0.9:1".to_string(),
        RegistryConfig {
            mirrors: vec![format!("http://127.0.0.1:{port}")],
        },
    );
    let store = open_with(d.path(), regs, Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        store.pull("127.0.0.9:1/stalled:latest", None),
    )
    .await
    .expect("the pull itself hung");
    match r {
        Err(Error::DeadlineExceeded(m)) => {
            assert!(m.contains(&format!("http://127.0.0.1:{port}")), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    server.abort();
}

/// The CRI ImageService over the store, called directly (no socket).
#[tokio::test]
async fn image_service_speaks_cri() {
    use k8s_cri::v1 as cri;
    use k8s_cri::v1::image_service_server::ImageService;
    use keel_cri::server::image::ImageServiceImpl;
    use tonic::Request;
    if !gate("image_service_speaks_cri") {
        return;
    }
    let d = tempfile::tempdir().expect("tempdir");
    let svc = ImageServiceImpl::new(open(d.path()).await);
    let spec = |s: &str| {
        Some(cri::ImageSpec {
            image: s.to_string(),
            ..Default::default()
        })
    };
    let name = image("user:latest");
    let pulled = tokio::time::timeout(
        WAIT,
        svc.pull_image(Request::new(cri::PullImageRequest {
            image: spec(&name),
            ..Default::default()
        })),
    )
    .await
    .expect("timeout")
    .expect("pull")
    .into_inner();
    assert!(
        pulled.image_ref.starts_with("sha256:"),
        "image_ref is the id"
    );

    let listed = svc
        .list_images(Request::new(cri::ListImagesRequest {
            filter: Some(cri::ImageFilter { image: spec(&name) }),
        }))
        .await
        .expect("list")
        .into_inner()
        .images;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, pulled.image_ref);
    assert_eq!(listed[0].username, "keel");
    assert!(listed[0].size > 0 && !listed[0].pinned);

    let st = svc
        .image_status(Request::new(cri::ImageStatusRequest {
            image: spec(&pulled.image_ref),
            verbose: true,
        }))
        .await
        .expect("status")
        .into_inner();
    assert_eq!(st.image.map(|i| i.repo_tags), Some(vec![name.clone()]));
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).expect("info json");
    assert_eq!(info["imageSpec"]["config"]["User"], "keel");

    let unknown = svc
        .image_status(Request::new(cri::ImageStatusRequest {
            image: spec("nope:latest"),
            verbose: false,
        }))
        .await
        .expect("status of an unknown image")
        .into_inner();
    assert!(unknown.image.is_none());

    let fs = svc
        .image_fs_info(Request::new(cri::ImageFsInfoRequest {}))
        .await
        .expect("fs info")
        .into_inner();
    assert_eq!(fs.image_filesystems.len(), 1);
    assert!(
        fs.image_filesystems[0]
            .used_bytes
            .as_ref()
            .is_some_and(|u| u.value > 0)
    );

    for target in [name.as_str(), "nope:latest"] {
        svc.remove_image(Request::new(cri::RemoveImageRequest {
            image: spec(target),
        }))
        .await
        .unwrap_or_else(|e| panic!("remove {target}: {e}"));
    }
    let bad = svc
        .pull_image(Request::new(cri::PullImageRequest {
            image: spec("Bad/Ref"),
            ..Default::default()
        }))
        .await
        .expect_err("malformed");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}
