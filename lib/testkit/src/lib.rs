//! keel-testkit: dev-only helpers shared by Keel's test suites.
//!
//! Owns the rules every privileged test follows: the gate that decides whether a test that
//! needs root (or the local registry) may run, and small RAII guards that clean up what a test
//! made on the host even when the test fails. It never touches anything a test did not create.
//! Only ever a dev-dependency.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// True when the `CI` environment variable is set to anything but empty/"0"/"false".
pub fn in_ci() -> bool {
    match std::env::var("CI") {
        Ok(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
        Err(_) => false,
    }
}

/// Gate for tests that need root. Returns `true` when the test may run.
/// Outside CI a non-root run prints why it is skipped and returns `false`;
/// under CI it panics, so a privileged test never passes silently without running.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if in_ci() {
        panic!("{test}: needs root, and CI is set: refusing to skip");
    }
    eprintln!("skipping {test}: needs root");
    false
}

/// Address of the local test registry (`KEEL_TEST_REGISTRY`, default `127.0.0.1:5000`).
pub fn registry_addr() -> String {
    std::env::var("KEEL_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".to_string())
}

/// Gate for tests that need the local registry started by `hack/test-images.sh`.
/// Same rules as [`require_root`]: fail loudly under CI, skip with a message otherwise.
pub fn require_registry(test: &str) -> bool {
    let addr = registry_addr();
    let reachable = addr
        .parse::<SocketAddr>()
        .ok()
        .map(|sa| TcpStream::connect_timeout(&sa, Duration::from_secs(2)).is_ok())
        .unwrap_or(false);
    if reachable {
        return true;
    }
    if in_ci() {
        panic!(
            "{test}: the test registry at {addr} is not reachable (run hack/test-images.sh), and CI is set"
        );
    }
    eprintln!(
        "skipping {test}: the test registry at {addr} is not reachable (run hack/test-images.sh)"
    );
    false
}

/// Polls `cond` every few milliseconds until it returns `Some`, or panics after `timeout`
/// naming `what`. Every wait in a test goes through a timeout like this one.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A named network namespace (`ip netns add`), deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `keel-test-<tag>-<pid>-<n>` so parallel tests never collide.
    pub fn new(tag: &str) -> Netns {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "kt-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, the path CNI_NETNS and OCI specs take.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Runs a command inside the namespace (`ip netns exec`), returning its output.
    pub fn exec(&self, argv: &[&str]) -> std::process::Output {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(argv);
        Command::new("ip")
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {}: {e}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A host network link made for a test (by the test or by a plugin it ran, e.g. a CNI bridge),
/// deleted on drop even when the test fails. Never touches a link it was not named for.
pub struct HostLink {
    name: String,
}

impl HostLink {
    /// A fresh name `<prefix><pid % 1000><n>` (at most 15 bytes for a prefix of up to 6), unique
    /// among parallel tests. Nothing is created.
    pub fn unique(prefix: &str) -> HostLink {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "{prefix}{}{}",
            std::process::id() % 1000,
            N.fetch_add(1, Ordering::Relaxed)
        );
        assert!(name.len() <= 15, "interface name {name} is too long");
        HostLink { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the link exists on the host.
    pub fn exists(&self) -> bool {
        Command::new("ip")
            .args(["link", "show", "dev", &self.name])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// The names of the links enslaved to this one (a bridge's ports).
    pub fn ports(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", "dev", &self.name])
            .output();
    }
}

/// Runs a host command that must succeed; panics with its stderr otherwise.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The workspace root (for finding built binaries and hack/ scripts from tests).
pub fn workspace_root() -> PathBuf {
    let mut p = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    p.pop();
    p.pop();
    p
}

/// Connects a tonic channel to a gRPC server on a unix socket (keel-cri, containerd), waiting up
/// to `timeout` for the socket to accept. The CRI clients of tests and benchmarks use this.
pub async fn connect_unix(
    socket: &Path,
    timeout: Duration,
) -> Result<tonic::transport::Channel, String> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(2);
    loop {
        let path = socket.to_path_buf();
        // The URI is required by the API but unused: every connection goes to the socket.
        let endpoint = tonic::transport::Endpoint::from_static("http://[::1]:1");
        let attempt = endpoint
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = path.clone();
                async move {
                    tokio::net::UnixStream::connect(path)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            }))
            .await;
        match attempt {
            Ok(channel) => return Ok(channel),
            Err(e) if start.elapsed() > timeout => {
                return Err(format!(
                    "connecting to {} for {timeout:?}: {e}",
                    socket.display()
                ));
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }
}
