//! Loading the network config from a conf dir the way libcni/containerd do: the first file in
//! lexical order ending in `.conflist`, `.conf` or `.json` that parses and validates. Files that
//! fail are skipped with a logged reason; when none is valid the error lists every file tried
//! and why it was rejected.
//!
//! [`ConfDir`] re-reads the directory only when it changed (by the mtimes, sizes and inodes of
//! the directory and its candidate files), so it is cheap enough to call on every
//! RunPodSandbox and CRI Status. It never writes to the directory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::spec::{ConfigError, NetworkConfigList};

/// Why no network config could be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("cni config dir {dir} does not exist")]
    Missing { dir: PathBuf },
    #[error("cannot read cni config dir {dir}: {reason}")]
    Unreadable { dir: PathBuf, reason: String },
    #[error("no network config found in {dir} (no .conflist, .conf or .json file)")]
    Empty { dir: PathBuf },
    #[error("no valid network config in {dir}: {}", rejected_list(.rejected))]
    NoneValid {
        dir: PathBuf,
        /// Every file tried, with why it was rejected.
        rejected: Vec<(PathBuf, String)>,
    },
}

fn rejected_list(r: &[(PathBuf, String)]) -> String {
    r.iter()
        .map(|(p, why)| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            format!("{name}: {why}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A loaded config and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub path: PathBuf,
    pub list: NetworkConfigList,
}

const EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

/// The candidate files of `dir`, in lexical order.
fn candidates(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::Missing {
                dir: dir.to_path_buf(),
            });
        }
        Err(e) => {
            return Err(LoadError::Unreadable {
                dir: dir.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| EXTENSIONS.contains(&x))
        })
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Parses one file by its extension: `.conflist` as a list, `.conf`/`.json` as a plugin config.
pub fn load_file(path: &Path) -> Result<NetworkConfigList, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let parsed = if path.extension().and_then(|x| x.to_str()) == Some("conflist") {
        NetworkConfigList::from_list_bytes(&bytes)
    } else {
        NetworkConfigList::from_conf_bytes(&bytes)
    };
    parsed.map_err(|e: ConfigError| e.to_string())
}

/// Loads the first valid config of `dir` (see the module doc).
pub fn load_dir(dir: &Path) -> Result<Loaded, LoadError> {
    let files = candidates(dir)?;
    if files.is_empty() {
        return Err(LoadError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    let mut rejected: Vec<(PathBuf, String)> = Vec::new();
    for path in files {
        match load_file(&path) {
            Ok(list) => {
                for (p, why) in &rejected {
                    tracing::warn!(file = %p.display(), reason = %why, "skipped invalid cni config");
                }
                return Ok(Loaded { path, list });
            }
            Err(why) => rejected.push((path, why)),
        }
    }
    Err(LoadError::NoneValid {
        dir: dir.to_path_buf(),
        rejected,
    })
}

/// What the directory looked like when it was last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signature(Vec<(PathBuf, Option<Stamp>)>);

/// A file's mtime, size and inode.
type Stamp = (SystemTime, u64, u64);

fn signature(dir: &Path) -> Signature {
    use std::os::unix::fs::MetadataExt;
    let stamp = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| {
            (
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.len(),
                m.ino(),
            )
        })
    };
    let mut entries = vec![(dir.to_path_buf(), stamp(dir))];
    if let Ok(files) = candidates(dir) {
        entries.extend(files.into_iter().map(|f| {
            let s = stamp(&f);
            (f, s)
        }));
    }
    Signature(entries)
}

/// A conf dir whose current config is re-read only when the directory changed.
#[derive(Debug)]
pub struct ConfDir {
    dir: PathBuf,
    last: Mutex<Option<(Signature, Result<Loaded, LoadError>)>>,
}

impl ConfDir {
    pub fn new(dir: PathBuf) -> ConfDir {
        ConfDir {
            dir,
            last: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current config, read again if anything in the directory changed.
    pub fn current(&self) -> Result<Loaded, LoadError> {
        let sig = signature(&self.dir);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, loaded)) = last.as_ref()
            && *s == sig
        {
            return loaded.clone();
        }
        let loaded = load_dir(&self.dir);
        *last = Some((sig, loaded.clone()));
        loaded
    }
}
