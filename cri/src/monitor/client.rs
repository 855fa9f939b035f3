//! keel-cri's side of the monitor protocol: starting a `keel-cri-monitor` for a container,
//! waiting for its answer, and watching it until it exits (also after a keel-cri restart).
//!
//! Owns no container state: it reports pids and exits to the container module.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::process::Args;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("starting monitor {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("container {id}: {message}")]
    Create { id: String, message: String },
    #[error("container {id}: the monitor gave no answer within {timeout:?}")]
    Timeout { id: String, timeout: Duration },
    #[error("container {id}: {source}")]
    Io { id: String, source: std::io::Error },
}

/// A monitor that answered `ok`: the container is created and its init waits to be started.
#[derive(Debug)]
pub struct Started {
    pub monitor_pid: i32,
    pub monitor_start_time: u64,
    pub init_pid: i32,
    pub handle: MonitorHandle,
}

/// Something to wait on until a monitor exits.
#[derive(Debug)]
pub enum MonitorHandle {
    /// A monitor this keel-cri started (its parent: waiting also reaps it).
    Child(tokio::process::Child),
    /// A monitor found alive after a restart of keel-cri.
    Pidfd(AsyncFd<OwnedFd>),
    /// The monitor is already gone.
    Gone,
}

impl MonitorHandle {
    /// Re-attaches to a monitor by pid, checking its start time so a reused pid is not mistaken
    /// for it.
    pub fn attach(pid: i32, start_time: u64) -> MonitorHandle {
        if pid <= 0 || process_start_time(pid) != Some(start_time) {
            return MonitorHandle::Gone;
        }
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return MonitorHandle::Gone;
        }
        // SAFETY: fd is a fresh descriptor returned by the kernel, owned by nobody else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the fd is owned by the AsyncFd for its whole life and never closed elsewhere.
        match unsafe { AsyncFd::register(owned) } {
            Ok(a) => MonitorHandle::Pidfd(a),
            Err(_) => MonitorHandle::Gone,
        }
    }

    /// Resolves when the monitor has exited.
    pub async fn exited(self) {
        match self {
            MonitorHandle::Child(mut c) => {
                let _ = c.wait().await;
            }
            MonitorHandle::Pidfd(fd) => {
                let _ = fd.readable().await;
            }
            MonitorHandle::Gone => {}
        }
    }
}

/// What keel-cri tells a new monitor.
#[derive(Debug, Clone)]
pub struct SpawnRequest<'a> {
    pub monitor_binary: &'a Path,
    pub id: &'a str,
    pub dir: &'a Path,
    pub log_path: Option<&'a Path>,
    /// The runtime's `create` command line (program first).
    pub runtime_argv: Vec<std::ffi::OsString>,
    pub timeout: Duration,
}

/// Starts a monitor, which creates the container through the runtime, and waits for its answer.
pub async fn spawn(req: SpawnRequest<'_>) -> Result<Started, Error> {
    let io = |source| Error::Io {
        id: req.id.to_string(),
        source,
    };
    let (sync_r, sync_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io(e.into()))?;
    let sync_fd = sync_w.as_raw_fd();
    let args = Args {
        id: req.id.to_string(),
        dir: req.dir.to_path_buf(),
        log_path: req.log_path.map(Path::to_path_buf),
        sync_fd,
        runtime_argv: req.runtime_argv.clone(),
    };
    let mut cmd = std::process::Command::new(req.monitor_binary);
    cmd.args(args.to_argv())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe system calls (setsid, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::fcntl(sync_fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(sync_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(false);
    let child = cmd.spawn().map_err(|source| Error::Spawn {
        binary: req.monitor_binary.to_path_buf(),
        source,
    })?;
    drop(sync_w);
    let monitor_pid = child.id().map(|p| p as i32).unwrap_or(-1);
    let monitor_start_time = process_start_time(monitor_pid).unwrap_or(0);
    let reader = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        let mut f = std::fs::File::from(sync_r);
        f.read_to_string(&mut answer).map(|_| answer)
    });
    let answer = match tokio::time::timeout(req.timeout, reader).await {
        Ok(Ok(Ok(a))) => a,
        Ok(Ok(Err(e))) => return Err(io(e)),
        Ok(Err(e)) => return Err(io(std::io::Error::other(e))),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(monitor_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(Error::Timeout {
                id: req.id.to_string(),
                timeout: req.timeout,
            });
        }
    };
    let answer = answer.trim();
    if let Some(pid) = answer.strip_prefix("ok ") {
        let init_pid = pid.trim().parse::<i32>().map_err(|_| Error::Create {
            id: req.id.to_string(),
            message: format!("monitor answered {answer:?}"),
        })?;
        return Ok(Started {
            monitor_pid,
            monitor_start_time,
            init_pid,
            handle: MonitorHandle::Child(child),
        });
    }
    // The monitor failed and exits by itself; reap it in the background.
    let mut child = child;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let message = answer
        .strip_prefix("err ")
        .map(str::to_string)
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(req.dir.join(super::MONITOR_LOG)).unwrap_or_default();
            format!(
                "the monitor exited without an answer; its log: {}",
                log.trim()
            )
        });
    Err(Error::Create {
        id: req.id.to_string(),
        message,
    })
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert_eq!(process_start_time(-5), None);
    }
}
