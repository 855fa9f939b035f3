//! The test apiserver: started in its own thread and runtime on the embedded store or on a
//! real etcd member that the harness starts, stopped (and its data dir and etcd removed) on
//! drop; `kubectl` runs kubectl against it and returns what it printed. `both_backends!`
//! turns one test body into a test per backend.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use keel_control_plane::apiserver::{self, Config};
use tokio_util::sync::CancellationToken;

use super::etcd_process::{Cluster, etcd_available};

/// Where the test apiserver keeps its objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Etcd,
}

/// Runs a test body `fn(Backend)` once per backend: `both_backends!(crud_round_trip);` makes
/// the tests `crud_round_trip::embedded` and `crud_round_trip::etcd`.
#[macro_export]
macro_rules! both_backends {
    ($body:ident) => {
        mod $body {
            #[test]
            fn embedded() {
                super::$body($crate::harness::Backend::Embedded);
            }
            #[test]
            fn etcd() {
                super::$body($crate::harness::Backend::Etcd);
            }
        }
    };
}

pub struct TestApiserver {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub port: u16,
    etcd: Option<Cluster>,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// True when the backend's parts are installed (kubectl, and etcd for `Backend::Etcd`);
/// under CI a missing part fails the test.
pub fn require_backend(test: &str, backend: Backend) -> bool {
    require_kubectl(test) && (backend == Backend::Embedded || etcd_available(test))
}

/// True when kubectl can run; under CI a missing kubectl fails the test.
pub fn require_kubectl(test: &str) -> bool {
    if Path::new("/usr/bin/kubectl").exists() {
        return true;
    }
    assert!(
        !keel_testkit::in_ci(),
        "{test}: /usr/bin/kubectl is missing and CI is set"
    );
    eprintln!("skipping {test}: no /usr/bin/kubectl");
    false
}

impl TestApiserver {
    pub fn start() -> TestApiserver {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(dir)
    }

    /// Starts on `backend`: the embedded store in a temp dir, or a fresh one-member etcd.
    pub fn start_with(backend: Backend) -> TestApiserver {
        let dir = tempfile::tempdir().expect("temp dir");
        let etcd = (backend == Backend::Etcd).then(|| Cluster::start(1));
        Self::launch(dir, etcd, |_| {})
    }

    /// Starts on `dir` with the configuration adjusted by `configure` (etcd, ranges, ...).
    pub fn start_configured(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut Config),
    ) -> TestApiserver {
        Self::launch(dir, None, configure)
    }

    /// Starts on an existing data dir (to test what survives a restart).
    pub fn start_in(dir: tempfile::TempDir) -> TestApiserver {
        Self::launch(dir, None, |_| {})
    }

    /// Stops the server and starts it again on the same data dir and storage.
    pub fn restart(self) -> TestApiserver {
        let mut old = self;
        old.halt();
        let dir = std::mem::replace(&mut old.dir, tempfile::tempdir().expect("temp dir"));
        let etcd = old.etcd.take();
        Self::launch(dir, etcd, |_| {})
    }

    fn launch(
        dir: tempfile::TempDir,
        etcd: Option<Cluster>,
        configure: impl FnOnce(&mut Config),
    ) -> TestApiserver {
        let mut config = Config::new(dir.path().to_path_buf());
        config.secure_port = 0;
        if let Some(cluster) = &etcd {
            config.etcd_servers = cluster.endpoints();
        }
        configure(&mut config);
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let token = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let server = tokio::spawn(apiserver::run(config, token, Some(tx)));
                match rx.await {
                    Ok(serving) => {
                        let _ = ready_tx.send(Ok(serving.address.port()));
                    }
                    Err(_) => {
                        let outcome = server.await;
                        let _ = ready_tx.send(Err(format!("{outcome:?}")));
                        return;
                    }
                }
                let _ = server.await;
            });
        });
        let port = ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("apiserver did not start within 60 s")
            .expect("apiserver failed to start");
        let kubeconfig = dir.path().join("admin.kubeconfig");
        TestApiserver {
            dir,
            kubeconfig,
            port,
            etcd,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Stops the server and hands back its data dir.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.halt();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    fn halt(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    /// Runs kubectl with the admin kubeconfig; `stdin` is fed when given.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.kubectl_as(&self.kubeconfig, args, stdin)
    }

    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        self.run_kubectl(kubeconfig, args, stdin, &[])
    }

    /// kubectl with the admin kubeconfig and extra environment (KUBE_EDITOR, ...).
    pub fn kubectl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.run_kubectl(&self.kubeconfig, args, None, env)
    }

    fn run_kubectl(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut command = Command::new("kubectl");
        command
            .envs(env.iter().copied())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--request-timeout=20s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            // kubectl may refuse the input before reading all of it.
            let _ = pipe.write_all(input.as_bytes());
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// kubectl that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.kubectl(args, stdin);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// kubectl that must fail; returns stderr.
    pub fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.kubectl(args, stdin);
        assert!(
            !output.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

impl Drop for TestApiserver {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A component that is an API client (the scheduler, the controllers) running in its own
/// thread and runtime against the test apiserver with the admin kubeconfig; stopped on drop.
pub struct Component {
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Component {
    pub fn start<F, Fut>(api: &TestApiserver, run: F) -> Component
    where
        F: FnOnce(kube::Client, CancellationToken) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let kubeconfig = api.kubeconfig.clone();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let client = keel_control_plane::kube_client::connect(Some(&kubeconfig))
                    .await
                    .expect("a client from admin.kubeconfig");
                run(client, token).await;
            });
        });
        Component {
            shutdown,
            thread: Some(thread),
        }
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Polls kubectl until `done` holds for what it printed (30 s at most).
pub fn wait_for_kubectl(
    api: &TestApiserver,
    args: &[&str],
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let output = api.kubectl(args, None);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && done(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A kubeconfig for a client certificate user (CN `user`, O each of `groups`) signed by the
/// test cluster's CA, written in the data dir.
pub fn kubeconfig_for_cert(api: &TestApiserver, user: &str, groups: &[&str]) -> PathBuf {
    use keel_control_plane::apiserver::auth::{self, Pki};
    let pki = Pki::load_or_create(api.dir.path(), &[]).expect("load the PKI");
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let pair = pki
        .issue_client_cert(user, &groups, Duration::from_secs(3600))
        .expect("issue a client certificate");
    let server = auth::kubeconfig::server_url("127.0.0.1", api.port);
    let credential = auth::kubeconfig::Credential::ClientCert {
        cert_pem: pair.cert_pem.clone(),
        key_pem: pair.key_pem.clone(),
    };
    let kubeconfig = auth::kubeconfig::render(&server, pki.ca_pem(), user, &credential);
    let path = api
        .dir
        .path()
        .join(format!("{}.kubeconfig", user.replace(':', "_")));
    auth::kubeconfig::write(&path, &kubeconfig).expect("write kubeconfig");
    path
}

/// A kubeconfig that authenticates with a bearer token, written in the data dir as `name`.
pub fn kubeconfig_for_token(api: &TestApiserver, name: &str, token: &str) -> PathBuf {
    use keel_control_plane::apiserver::auth::{self, Pki};
    let pki = Pki::load_or_create(api.dir.path(), &[]).expect("load the PKI");
    let server = auth::kubeconfig::server_url("127.0.0.1", api.port);
    let credential = auth::kubeconfig::Credential::Token(token.to_string());
    let kubeconfig = auth::kubeconfig::render(&server, pki.ca_pem(), name, &credential);
    let path = api.dir.path().join(format!("{name}.kubeconfig"));
    auth::kubeconfig::write(&path, &kubeconfig).expect("write kubeconfig");
    path
}
