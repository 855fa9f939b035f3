//! Network namespaces: open one by path (for `IFLA_NET_NS_FD`) and run a closure inside one.
//!
//! A closure runs on a dedicated thread that calls `setns(CLONE_NEWNET)` and then exits, so the
//! caller's thread (and any runtime it belongs to) never changes namespace. Sockets and
//! `/proc/sys/net` files opened by the closure belong to the target namespace.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

use crate::error::{Error, Result};

/// An open network namespace (a bind-mounted `/run/netns/<name>` or `/proc/<pid>/ns/net`).
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    file: File,
}

impl Netns {
    /// Opens the namespace file at `path`, checking that it is a network namespace.
    pub fn open(path: &Path) -> Result<Netns> {
        let file = File::open(path).map_err(|source| Error::Netns {
            path: path.to_path_buf(),
            op: "open",
            source,
        })?;
        let ns = Netns {
            path: path.to_path_buf(),
            file,
        };
        ns.check_type()?;
        Ok(ns)
    }

    fn check_type(&self) -> Result<()> {
        // NS_GET_NSTYPE = _IO(0xb7, 0x3)
        const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
        // SAFETY: the ioctl takes no argument and only reads the fd, which `self.file` keeps open.
        let t = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&self.file), NS_GET_NSTYPE) };
        if t < 0 {
            let source = std::io::Error::last_os_error();
            return Err(Error::Netns {
                path: self.path.clone(),
                op: "not a namespace file",
                source,
            });
        }
        if t != libc::CLONE_NEWNET {
            return Err(Error::Netns {
                path: self.path.clone(),
                op: "not a network namespace",
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Runs `f` on a fresh thread that has joined this namespace, and returns its value.
    /// A panic in `f` is resumed on the caller's thread.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T> {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
                    path: self.path.clone(),
                    op: "setns",
                    source: std::io::Error::from(e),
                })?;
                Ok(f())
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

/// Opens the namespace at `path` and runs `f` inside it (see [`Netns::run`]).
pub fn run_in<T: Send, F: FnOnce() -> T + Send>(path: &Path, f: F) -> Result<T> {
    Netns::open(path)?.run(f)
}
