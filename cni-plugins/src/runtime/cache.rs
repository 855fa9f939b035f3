//! The on-disk result cache: one file per attachment (network + container id + ifname) under
//! `<cache_dir>/results/`, holding the final ADD result AND the config list, CNI_ARGS and
//! capability args used, so that DEL and CHECK work even after the conf dir changed or
//! disappeared.
//!
//! Layout follows libcni (`results/<network>-<container>-<ifname>`), but the config is stored as
//! plain JSON (kind `keelCniCacheV1`), not libcni's base64 bytes. Writes are atomic (temp file,
//! fsync, rename); names are validated before they reach a path.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const KIND: &str = "keelCniCacheV1";

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    /// The netns the attachment was made in.
    #[serde(default)]
    pub netns: String,
    #[serde(default)]
    pub cni_args: String,
    /// Capability name → value (e.g. `portMappings`).
    #[serde(default)]
    pub capability_args: serde_json::Map<String, Value>,
    /// The network config list used for ADD.
    pub config: Value,
    /// The final result of the chain.
    pub result: Value,
}

/// Where cache entries live.
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub fn new(cache_dir: &Path) -> ResultCache {
        ResultCache {
            dir: cache_dir.join("results"),
        }
    }

    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{network}-{container_id}-{ifname}"))
    }

    /// Writes `entry` atomically.
    pub fn save(&self, entry: &CacheEntry) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        let mut f = std::fs::File::create(&tmp)?;
        let written = f.write_all(&bytes).and_then(|()| f.sync_all());
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, &path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(path)
    }

    /// The entry for one attachment; `Ok(None)` when there is none. A corrupt file is an error
    /// (it says something was attached, and we cannot tell what).
    pub fn load(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> std::io::Result<Option<CacheEntry>> {
        read_entry(&self.path(network, container_id, ifname))
    }

    /// Removes one entry; a missing one is fine.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(network, container_id, ifname)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every readable entry (unreadable files are skipped with a warning).
    pub fn all(&self) -> Vec<CacheEntry> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            match read_entry(&p) {
                Ok(Some(entry)) => out.push(entry),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "unreadable cni cache entry")
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.network_name, &a.container_id, &a.if_name).cmp(&(
                &b.network_name,
                &b.container_id,
                &b.if_name,
            ))
        });
        out
    }
}

fn read_entry(path: &Path) -> std::io::Result<Option<CacheEntry>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let entry: CacheEntry = serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    if entry.kind != KIND {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: unknown cache kind {:?}", path.display(), entry.kind),
        ));
    }
    Ok(Some(entry))
}
