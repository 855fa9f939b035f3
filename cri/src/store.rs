//! The sandbox and container records: what keel-cri knows about each, kept on disk as a
//! versioned checkpoint so that it survives a restart, and indexed in memory.
//!
//! Owns the record types, their (atomic) persistence, and name reservation. It does not act on
//! the host: the lifecycle modules do, and write the record after each step.
//!
//! Container states, as the CRI sees them:
//! ```text
//!   (CreateContainer) ──► Created ──StartContainer──► Running ──init exits──► Exited
//!                            │                                                 ▲
//!                            └──────────── monitor gone / StopContainer ───────┘
//! ```
//! `Unknown` is reported only when a record says Running but nothing can tell how it ended.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Version of the on-disk record format.
pub const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("name {name:?} is already reserved by {holder}")]
    NameTaken { name: String, holder: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMeta {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

/// Namespace modes as the CRI numbers them (POD=0, CONTAINER=1, NODE=2, TARGET=3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceModes {
    pub network: i32,
    pub pid: i32,
    pub ipc: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub version: u32,
    pub id: String,
    /// The unique name `<name>_<namespace>_<uid>_<attempt>`.
    pub name: String,
    pub meta: PodMeta,
    pub state: SandboxState,
    pub created_at: i64,
    pub runtime_handler: String,
    pub hostname: String,
    pub log_directory: String,
    pub cgroup_parent: String,
    pub modes: NamespaceModes,
    pub pinned: crate::sandbox::namespaces::Pinned,
    pub pid_holder: Option<crate::sandbox::pidns::PidHolder>,
    /// The pod's /dev/shm tmpfs mount point, when it has its own IPC namespace.
    pub shm: Option<PathBuf>,
    /// Pod IPs from the network setup, first the primary.
    pub ips: Vec<String>,
    /// Whether a CNI ADD succeeded and awaits its DEL.
    pub network_attached: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    pub propagation: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub version: u32,
    pub id: String,
    pub sandbox_id: String,
    /// The unique name `<container>_<pod>_<namespace>_<pod uid>_<attempt>`.
    pub name: String,
    pub meta_name: String,
    pub attempt: u32,
    /// The image as the request named it, and the resolved image id.
    pub image: String,
    pub image_id: String,
    /// A digest reference of the image (`repo@sha256:...`) when known, else the id.
    pub image_ref: String,
    pub runtime_handler: String,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub pid: i32,
    pub monitor_pid: i32,
    pub monitor_start_time: u64,
    pub log_path: String,
    pub stop_signal: String,
    pub cgroups_path: String,
    pub mounts: Vec<MountRecord>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Writes `value` as JSON to `path` atomically (temp file, fsync, rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let err = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let data = serde_json::to_vec_pretty(value).map_err(|e| err(std::io::Error::other(e)))?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&data).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read(path).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    serde_json::from_slice(&text).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reservation of unique sandbox and container names, including creations still in progress.
#[derive(Debug, Default)]
pub struct Names {
    taken: Mutex<HashMap<String, String>>,
}

impl Names {
    /// Reserves `name` for `id`; fails naming the holder if it is taken.
    pub fn reserve(&self, name: &str, id: &str) -> Result<(), Error> {
        let mut t = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(holder) = t.get(name) {
            return Err(Error::NameTaken {
                name: name.to_string(),
                holder: holder.clone(),
            });
        }
        t.insert(name.to_string(), id.to_string());
        Ok(())
    }

    pub fn release(&self, name: &str) {
        self.taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

/// A fresh 64-hex-digit id, as container runtimes use.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exclusive() {
        let n = Names::default();
        n.reserve("a", "1").expect("first");
        let e = n.reserve("a", "2").expect_err("second");
        assert!(e.to_string().contains("already reserved by 1"));
        n.release("a");
        n.reserve("a", "2").expect("after release");
    }

    #[test]
    fn json_round_trip() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("x.json");
        write_json(
            &p,
            &MountRecord {
                container_path: "/a".into(),
                ..Default::default()
            },
        )
        .expect("write");
        let back: MountRecord = read_json(&p).expect("read");
        assert_eq!(back.container_path, "/a");
        assert!(read_json::<MountRecord>(&d.path().join("missing")).is_err());
        assert_eq!(new_id().len(), 64);
    }
}
