//! A real keel-cri for a test: the built binary, started with a config of its own in a temp dir
//! (root, state, logs, a CNI conflist over Debian's reference plugins with a bridge and subnet no
//! other test uses, the local registry as a mirror), reached through the CRI client.
//!
//! Cleanup is this module's job: `Daemon::shutdown` removes every pod through the CRI, and the
//! `Drop` of the guard kills what is left (daemon, monitors), unmounts everything under the temp
//! dir and deletes the bridge, so a failing test leaves nothing on the host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// The reference CNI plugins from Debian's containernetworking-plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The test images, as the local registry serves them (hack/test-images.sh).
pub fn image(name: &str) -> String {
    format!("{}/keel-test/{name}", keel_testkit::registry_addr())
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// What a test may change about the daemon's config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The default runtime handler: `keel-runc` (also when empty) or `runc`.
    pub runtime: String,
    /// Written as is into the config file, after the generated keys (extra tables).
    pub extra_toml: String,
    /// No CNI config in the conf dir (NetworkReady false).
    pub no_network: bool,
    /// Keel's own CNI plugins (bridge, host-local, portmap, loopback from this build) instead of
    /// Debian's reference plugins.
    pub keel_cni: bool,
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config_path: PathBuf,
    pub bridge: String,
    /// The pod subnet's first three octets, e.g. `10.251.7`.
    pub subnet: String,
    /// The cgroup parent every pod of this test uses (`/keel-test-<n>`), so that a failed test's
    /// processes and cgroups can be found and removed.
    pub cgroup_parent: String,
    child: Option<Child>,
    pub rt: RuntimeServiceClient<Channel>,
    pub img: ImageServiceClient<Channel>,
}

impl Options {
    pub fn with_runtime(runtime: &str) -> Options {
        Options {
            runtime: runtime.to_string(),
            ..Default::default()
        }
    }
}

impl Daemon {
    pub async fn start(opts: Options) -> Daemon {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = (std::process::id() % 200) * 16 + n;
        let dir = tempfile::Builder::new()
            .prefix("keel-cri-test-")
            .tempdir()
            .expect("temp dir");
        let bridge = format!("ktcri{tag}");
        let subnet = format!("10.251.{}", tag % 250);
        let conf_dir = dir.path().join("net.d");
        std::fs::create_dir_all(&conf_dir).expect("conf dir");
        if !opts.no_network {
            write_conflist(&conf_dir, &bridge, &subnet, &dir.path().join("ipam"));
        }
        let socket = dir.path().join("cri.sock");
        let registry = keel_testkit::registry_addr();
        let config = format!(
            r#"listen = "unix://{socket}"
root = "{root}"
state = "{state}"
default_runtime = "{runtime}"
[runtimes.keel-runc]
path = "{keel_runc}"
[runtimes.runc]
path = "runc"
[cni]
conf_dir = "{conf}"
bin_dirs = ["{bin}"]
[registry."{registry}"]
mirrors = ["http://{registry}"]
[registry."registry.k8s.io"]
mirrors = ["http://{registry}"]
{extra}
"#,
            socket = socket.display(),
            root = dir.path().join("root").display(),
            state = dir.path().join("state").display(),
            conf = conf_dir.display(),
            bin = if opts.keel_cni {
                keel_cni_bin_dir()
            } else {
                PathBuf::from(CNI_BIN_DIR)
            }
            .display(),
            extra = opts.extra_toml,
            keel_runc = env!("CARGO_BIN_EXE_keel-runc"),
            runtime = if opts.runtime.is_empty() {
                "keel-runc"
            } else {
                opts.runtime.as_str()
            },
        );
        let config_path = dir.path().join("cri.toml");
        std::fs::write(&config_path, config).expect("config");
        let mut d = Daemon {
            dir,
            socket: socket.clone(),
            config_path,
            bridge,
            subnet,
            cgroup_parent: format!("/keel-test-{}-{tag}", std::process::id()),
            child: None,
            rt: RuntimeServiceClient::new(lazy_channel()),
            img: ImageServiceClient::new(lazy_channel()),
        };
        d.spawn().await;
        d
    }

    /// Starts (or restarts) the daemon process and connects the clients.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("keel-cri.log"))
            .expect("daemon log");
        let child = Command::new(env!("CARGO_BIN_EXE_keel-cri"))
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", "keel_cri=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("starting keel-cri");
        self.child = Some(child);
        let channel = match keel_testkit::connect_unix(&self.socket, Duration::from_secs(20)).await
        {
            Ok(c) => c,
            Err(e) => panic!("{e}\nkeel-cri's log:\n{}", self.log()),
        };
        self.rt = RuntimeServiceClient::new(channel.clone());
        self.img = ImageServiceClient::new(channel);
    }

    /// The daemon's pid while it runs.
    pub fn daemon_pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Kills the daemon with SIGKILL (containers and their monitors keep running).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The daemon's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("keel-cri.log")).unwrap_or_default()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn log_dir(&self, pod: &str) -> PathBuf {
        self.dir.path().join("pods").join(pod)
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// Pulls an image (panics with the status on failure) and returns its ref.
    pub async fn pull(&mut self, image: &str) -> String {
        self.img
            .pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("pulling {image}: {s}"))
            .into_inner()
            .image_ref
    }

    /// Stops and removes every pod through the CRI, then stops the daemon: what a clean test
    /// ends with. Panics (with the daemon's log) if the CRI refuses.
    pub async fn shutdown(mut self) {
        let pods = self
            .rt
            .list_pod_sandbox(cri::ListPodSandboxRequest::default())
            .await
            .expect("ListPodSandbox")
            .into_inner()
            .items;
        for p in pods {
            self.rt
                .stop_pod_sandbox(cri::StopPodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                })
                .await
                .unwrap_or_else(|s| panic!("StopPodSandbox: {s}\n{}", self.log()));
            self.rt
                .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: p.id.clone(),
                })
                .await
                .unwrap_or_else(|s| panic!("RemovePodSandbox: {s}\n{}", self.log()));
        }
        self.kill();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        let dir = self.dir.path().to_path_buf();
        kill_processes_under(&dir);
        kill_pid_holders(&self.root());
        remove_cgroups(&self.cgroup_parent);
        unmount_under(&dir);
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .stderr(Stdio::null())
            .status();
        if std::thread::panicking() {
            eprintln!("keel-cri's log:\n{}", self.log());
        }
    }
}

fn lazy_channel() -> Channel {
    tonic::transport::Endpoint::from_static("http://[::1]:1").connect_lazy()
}

/// Where this build's CNI plugin binaries are: beside the test binary's `deps` directory
/// (`cargo test --workspace` builds every package's binaries).
pub fn keel_cni_bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        assert!(
            dir.join(plugin).is_file(),
            "{} is missing: build the workspace's binaries (cargo build --workspace --bins)",
            dir.join(plugin).display()
        );
    }
    dir
}

fn write_conflist(conf_dir: &Path, bridge: &str, subnet: &str, ipam_dir: &Path) {
    let plugins = vec![
        serde_json::json!({
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "dataDir": ipam_dir,
                "ranges": [[{"subnet": format!("{subnet}.0/24")}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }),
        serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}}),
    ];
    let conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "keel-test",
        "plugins": plugins
    });
    std::fs::write(conf_dir.join("10-keel-test.conflist"), conf.to_string()).expect("conflist");
}

/// Every mount point at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

fn unmount_under(dir: &Path) {
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Processes whose command line mentions `dir` (monitors, runtimes, PID-namespace holders are
/// started with paths under it): killed, so that a failed test leaves none running.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

fn kill_processes_under(dir: &Path) {
    for pid in processes_under(dir) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Kills the PID-namespace holders recorded in the sandbox checkpoints under `root`.
fn kill_pid_holders(root: &Path) {
    for e in std::fs::read_dir(root.join("sandboxes"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let rec: serde_json::Value = std::fs::read(e.path().join("sandbox.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        if let Some(pid) = rec["pid_holder"]["pid"].as_i64() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The cgroup directories of `parent` in every hierarchy (v1 controllers and the v2 mount),
/// deepest first.
pub fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let rel = parent.trim_start_matches('/');
    let mut dirs = Vec::new();
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        roots.push(e.path());
    }
    for root in roots {
        let top = root.join(rel);
        if top.join("cgroup.procs").exists() {
            collect_dirs(&top, &mut dirs);
        }
    }
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    dirs
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_dirs(&e.path(), out);
        }
    }
}

/// Kills every process in the cgroups under `parent` and removes them.
fn remove_cgroups(parent: &str) {
    let dirs = cgroup_dirs(parent);
    for d in &dirs {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    for d in &dirs {
        for _ in 0..50 {
            if std::fs::remove_dir(d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
