//! The runtime core behind the CRI RuntimeService: owns the in-memory index of sandboxes and
//! containers (backed by their checkpoints in `store`), and the collaborators every operation
//! needs (images, pod network, runtime binaries, the monitor binary).
//!
//! Sandbox operations live in `sandbox::lifecycle`, container operations in
//! `container::lifecycle`; both are `impl Runtime` blocks so that stopping a sandbox can stop its
//! containers. Each record has its own async lock: operations on one pod never wait for another.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::{Mutex, watch};

use crate::config::Config;
use crate::container::spec::ImageDefaults;
use crate::oci_runtime::OciRuntime;
use crate::store::{ContainerRecord, Names, SandboxRecord};

/// How an operation failed, as the CRI caller should see it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn internal(context: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
        Error::Internal(format!("{context}: {e}"))
    }
}

/// An image resolved for a container: what the rootfs and the spec need.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The image id (config digest).
    pub id: String,
    /// A digest reference, or the id when none is known.
    pub image_ref: String,
    /// Unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    pub defaults: ImageDefaults,
    pub user: String,
    pub stop_signal: String,
}

/// What containers need from the image store (a narrow seam so lifecycle tests can run on a
/// prepared rootfs; production uses `image::ImageStore`).
pub trait ImageProvider: Send + Sync {
    fn resolve_for_container(&self, reference: &str) -> Result<ResolvedImage, Error>;
    /// Keeps the image's layers while `owner` (a container id) uses them.
    fn hold(&self, owner: &str, image_id: &str) -> Result<(), Error>;
    fn release(&self, owner: &str);
}

/// What a sandbox asks of the pod network.
#[derive(Debug, Clone)]
pub struct NetworkAttachment {
    pub sandbox_id: String,
    pub netns: PathBuf,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub port_mappings: Vec<PortMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    pub host_port: i32,
    pub container_port: i32,
    pub protocol: String,
    pub host_ip: String,
}

/// The pod network (CNI in production).
pub trait PodNetwork: Send + Sync {
    /// `Ok` while a valid network config exists (NetworkReady); the error says what is missing.
    fn ready(&self) -> Result<(), String>;
    /// Attaches the pod; returns its IPs, primary first. Undoes itself on failure.
    fn setup(&self, att: &NetworkAttachment) -> Result<Vec<String>, Error>;
    /// Detaches the pod; succeeds when nothing is attached.
    fn teardown(&self, att: &NetworkAttachment) -> Result<(), Error>;
}

pub(crate) struct SandboxEntry {
    pub record: Mutex<SandboxRecord>,
}

pub(crate) struct ContainerEntry {
    pub record: Mutex<ContainerRecord>,
    /// Becomes true once the container's init has exited and the record says so.
    pub exited: watch::Sender<bool>,
}

/// The runtime: configuration, collaborators and the record index.
pub struct Runtime {
    pub(crate) config: Config,
    pub(crate) monitor_binary: PathBuf,
    pub(crate) images: Arc<dyn ImageProvider>,
    pub(crate) network: Arc<dyn PodNetwork>,
    pub(crate) sandboxes: RwLock<HashMap<String, Arc<SandboxEntry>>>,
    pub(crate) containers: RwLock<HashMap<String, Arc<ContainerEntry>>>,
    pub(crate) names: Names,
    /// keel-cri's own oom_score_adj: containers are not given a lower one.
    pub(crate) daemon_oom_score_adj: i32,
    /// keel-cri's own capability bounding set: privileged containers get these.
    pub(crate) daemon_capabilities: u64,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("root", &self.config.root)
            .finish()
    }
}

/// Finds a helper binary: an absolute path as is; a bare name next to the running executable,
/// then on `$PATH`.
pub fn find_binary(name: &Path) -> PathBuf {
    if name.is_absolute() || name.components().count() > 1 {
        return name.to_path_buf();
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
        // Test binaries live in target/<profile>/deps; the daemons one level up.
        if let Some(up) = dir.parent() {
            let candidate = up.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    name.to_path_buf()
}

impl Runtime {
    /// Opens the runtime over `config`'s directories and reloads every checkpoint: containers that
    /// kept running are watched again; exits that happened meanwhile are recorded.
    pub async fn open(
        config: Config,
        images: Arc<dyn ImageProvider>,
        network: Arc<dyn PodNetwork>,
    ) -> Result<Arc<Runtime>, Error> {
        for dir in [
            config.root.join("sandboxes"),
            config.root.join("containers"),
            config.state.join("containers"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| Error::internal(dir.display(), e))?;
        }
        let monitor_binary = if config.monitor_path.as_os_str().is_empty() {
            find_binary(Path::new("keel-cri-monitor"))
        } else {
            config.monitor_path.clone()
        };
        let daemon_oom_score_adj = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let daemon_capabilities = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(u64::MAX);
        let rt = Arc::new(Runtime {
            config,
            monitor_binary,
            images,
            network,
            sandboxes: RwLock::new(HashMap::new()),
            containers: RwLock::new(HashMap::new()),
            names: Names::default(),
            daemon_oom_score_adj,
            daemon_capabilities,
        });
        rt.recover().await;
        Ok(rt)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn network_ready(&self) -> Result<(), String> {
        self.network.ready()
    }

    /// The runtime binary for a handler name ("" = the default handler).
    pub(crate) fn oci_runtime(&self, handler: &str) -> Result<OciRuntime, Error> {
        let name = if handler.is_empty() {
            self.config.default_runtime.as_str()
        } else {
            handler
        };
        let h = self.config.runtimes.get(name).ok_or_else(|| {
            Error::InvalidArgument(format!("runtime handler {name:?} is not configured"))
        })?;
        Ok(OciRuntime::new(
            find_binary(&h.path),
            self.config.runtime_root(name),
        ))
    }

    pub(crate) fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.config.root.join("sandboxes").join(id)
    }

    pub(crate) fn container_dir(&self, id: &str) -> PathBuf {
        self.config.root.join("containers").join(id)
    }

    /// The monitor's directory for a container (volatile state).
    pub(crate) fn monitor_dir(&self, id: &str) -> PathBuf {
        self.config.state.join("containers").join(id)
    }

    pub(crate) fn sandbox(&self, id: &str) -> Option<Arc<SandboxEntry>> {
        let map = self.sandboxes.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned().or_else(|| unique_prefix(&map, id))
    }

    pub(crate) fn container(&self, id: &str) -> Option<Arc<ContainerEntry>> {
        let map = self.containers.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned().or_else(|| unique_prefix(&map, id))
    }

    pub(crate) fn all_sandboxes(&self) -> Vec<Arc<SandboxEntry>> {
        let map = self.sandboxes.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// The ids of every sandbox keel-cri knows (ready or not).
    pub fn sandbox_ids(&self) -> Vec<String> {
        let map = self.sandboxes.read().unwrap_or_else(|p| p.into_inner());
        map.keys().cloned().collect()
    }

    pub(crate) fn all_containers(&self) -> Vec<Arc<ContainerEntry>> {
        let map = self.containers.read().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    async fn recover(self: &Arc<Self>) {
        let read_dir = |dir: PathBuf| -> Vec<PathBuf> {
            std::fs::read_dir(dir)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        };
        for dir in read_dir(self.config.root.join("sandboxes")) {
            match crate::store::read_json::<SandboxRecord>(&dir.join("sandbox.json")) {
                Ok(rec) => {
                    let _ = self.names.reserve(&rec.name, &rec.id);
                    let entry = Arc::new(SandboxEntry {
                        record: Mutex::new(rec.clone()),
                    });
                    self.sandboxes
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(rec.id.clone(), entry);
                }
                Err(e) => tracing::warn!("skipping sandbox {}: {e}", dir.display()),
            }
        }
        let live: std::collections::HashSet<String> = self.sandbox_ids().into_iter().collect();
        let state = self.config.state.clone();
        if let Ok(removed) =
            tokio::task::spawn_blocking(move || crate::sandbox::orphans::remove(&state, &live))
                .await
        {
            for path in removed {
                tracing::warn!(path = %path.display(), "removed what a lost sandbox left");
            }
        }
        for dir in read_dir(self.config.root.join("containers")) {
            match crate::store::read_json::<ContainerRecord>(&dir.join("container.json")) {
                Ok(rec) => {
                    let _ = self.names.reserve(&rec.name, &rec.id);
                    let done = matches!(
                        rec.state,
                        crate::store::ContainerState::Exited
                            | crate::store::ContainerState::Unknown
                    );
                    let (tx, _) = watch::channel(done);
                    let handle = (!done).then(|| {
                        crate::monitor::client::MonitorHandle::attach(
                            rec.monitor_pid,
                            rec.monitor_start_time,
                        )
                    });
                    let id = rec.id.clone();
                    let entry = Arc::new(ContainerEntry {
                        record: Mutex::new(rec),
                        exited: tx,
                    });
                    self.containers
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id.clone(), entry);
                    if let Some(h) = handle {
                        self.watch_monitor(id, h);
                    }
                }
                Err(e) => tracing::warn!("skipping container {}: {e}", dir.display()),
            }
        }
        tracing::info!(
            sandboxes = self.all_sandboxes().len(),
            containers = self.all_containers().len(),
            "recovered checkpoints"
        );
    }
}

fn unique_prefix<T: Clone>(map: &HashMap<String, T>, prefix: &str) -> Option<T> {
    if prefix.is_empty() {
        return None;
    }
    let mut hits = map.iter().filter(|(k, _)| k.starts_with(prefix));
    let first = hits.next()?;
    hits.next().is_none().then(|| first.1.clone())
}
