//! The on-disk allocation store of host-local, in the reference plugin's layout so that either
//! plugin reads the other's allocations:
//!
//! ```text
//! <dataDir>/<network>/lock                  flock(2)ed exclusively while a store is open
//! <dataDir>/<network>/<ip>                  "<containerID>\r\n<ifname>" (one file per address)
//! <dataDir>/<network>/last_reserved_ip.<i>  the address last handed out from range set i
//! ```
//!
//! A [`Store`] holds the lock from [`Store::open`] until it is dropped, so every operation of one
//! plugin run is atomic with respect to other runs (of ours or of the reference). Files whose
//! name is not an address are never touched.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use fs2::FileExt;

use super::Error;

/// The separator between container id and ifname in an allocation file, as the reference writes.
const LINE_BREAK: &str = "\r\n";
const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";

/// One allocation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub container_id: String,
    /// Empty for files written by old plugins that stored only the container id.
    pub ifname: String,
}

impl Allocation {
    /// True when the allocation belongs to this attachment (an old id-only file matches any
    /// ifname of its container).
    pub fn is_for(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && (self.ifname.is_empty() || self.ifname == ifname)
    }
}

/// An open, locked store directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Creates `dir` if needed and takes its lock (blocking until other runs release it).
    pub fn open(dir: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.lock_exclusive().map_err(io_err(&lock_path))?;
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// Records `ip` for the attachment; `false` when the address is already taken.
    pub fn reserve(
        &self,
        container_id: &str,
        ifname: &str,
        ip: IpAddr,
        range_set: usize,
    ) -> Result<bool, Error> {
        let path = self.ip_path(ip);
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_err(&path)(e)),
        };
        if let Err(e) = file.write_all(format!("{container_id}{LINE_BREAK}{ifname}").as_bytes()) {
            let _ = std::fs::remove_file(&path);
            return Err(io_err(&path)(e));
        }
        let last = self.dir.join(format!("{LAST_RESERVED_PREFIX}{range_set}"));
        if let Err(e) = std::fs::write(&last, ip.to_string()) {
            let _ = std::fs::remove_file(&path);
            return Err(io_err(&last)(e));
        }
        Ok(true)
    }

    /// The address last handed out from range set `range_set`, if recorded and readable.
    pub fn last_reserved(&self, range_set: usize) -> Option<IpAddr> {
        let path = self.dir.join(format!("{LAST_RESERVED_PREFIX}{range_set}"));
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// True when an allocation file exists for `ip`.
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        self.ip_path(ip).exists()
    }

    /// Every allocation in the store (files named by an address; others are skipped).
    pub fn allocations(&self) -> Result<Vec<Allocation>, Error> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                // Released by someone not honouring the lock: nothing to report.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path)(e)),
            };
            let mut lines = text.trim().lines().map(str::trim);
            out.push(Allocation {
                ip,
                container_id: lines.next().unwrap_or_default().to_string(),
                ifname: lines.next().unwrap_or_default().to_string(),
            });
        }
        out.sort_by_key(|a| a.ip);
        Ok(out)
    }

    /// The addresses held by the attachment.
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, Error> {
        Ok(self
            .allocations()?
            .into_iter()
            .filter(|a| a.is_for(container_id, ifname))
            .map(|a| a.ip)
            .collect())
    }

    /// Removes the allocation file of `ip` (absent is fine).
    pub fn release(&self, ip: IpAddr) -> Result<(), Error> {
        let path = self.ip_path(ip);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Frees everything the attachment holds; returns what was freed.
    pub fn release_attachment(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<IpAddr>, Error> {
        let ips = self.find(container_id, ifname)?;
        for ip in &ips {
            self.release(*ip)?;
        }
        Ok(ips)
    }
}
