//! The test apiserver: started in its own thread and runtime, stopped (and its data dir
//! removed) on drop; `kubectl` runs kubectl against it and returns what it printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use keel_control_plane::apiserver::{self, Config};
use tokio_util::sync::CancellationToken;

pub struct TestApiserver {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub port: u16,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
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

    /// Starts on an existing data dir (to test what survives a restart).
    pub fn start_in(dir: tempfile::TempDir) -> TestApiserver {
        let mut config = Config::new(dir.path().to_path_buf());
        config.secure_port = 0;
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
        let mut command = Command::new("kubectl");
        command
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
