//! Real etcd members for the storage tests: a single member or a three-member cluster on
//! loopback, each in its own temporary data dir, waited for through `/health` with a timeout
//! and killed (and its dir removed) when the guard drops, even when a test panics.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ETCD: &str = "/usr/bin/etcd";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// True when etcd is installed; under CI a missing etcd fails the test instead of skipping it.
pub fn etcd_available(test: &str) -> bool {
    if Path::new(ETCD).exists() {
        return true;
    }
    if keel_testkit::in_ci() {
        panic!(
            "{test}: {ETCD} is missing (hack/install-deps.sh installs etcd-server), and CI is set"
        );
    }
    eprintln!("skipping {test}: {ETCD} is missing");
    false
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// One etcd member process; killed on drop.
pub struct Member {
    pub name: String,
    pub client_url: String,
    peer_url: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Member {
    fn planned(name: &str) -> Member {
        Member {
            name: name.to_string(),
            client_url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            child: None,
            dir: tempfile::tempdir().expect("etcd data dir"),
        }
    }

    fn start(&mut self, initial_cluster: &str, token: &str) {
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log file");
        let child = Command::new(ETCD)
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &self.client_url,
                "--advertise-client-urls",
                &self.client_url,
            ])
            .args([
                "--listen-peer-urls",
                &self.peer_url,
                "--initial-advertise-peer-urls",
                &self.peer_url,
            ])
            .args([
                "--initial-cluster",
                initial_cluster,
                "--initial-cluster-token",
                token,
            ])
            .args([
                "--initial-cluster-state",
                "new",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    fn healthy(&self) -> bool {
        let addr = self.client_url.trim_start_matches("http://");
        let Ok(mut stream) = TcpStream::connect(addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }

    /// Kills the member (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The member's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of `size` members started together and waited for.
pub struct Cluster {
    pub members: Vec<Member>,
}

impl Cluster {
    pub fn start(size: usize) -> Cluster {
        let mut members: Vec<Member> = (0..size)
            .map(|i| Member::planned(&format!("m{i}")))
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("keel-test-{}-{}", std::process::id(), free_port());
        for member in &mut members {
            member.start(&initial_cluster, &token);
        }
        let cluster = Cluster { members };
        for member in &cluster.members {
            let what = format!(
                "etcd member {} at {} to be healthy",
                member.name, member.client_url
            );
            let ready = std::time::Instant::now();
            while !member.healthy() {
                if ready.elapsed() > READY_TIMEOUT {
                    panic!("timed out waiting for {what}; log:\n{}", member.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }
}
