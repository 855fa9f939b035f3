//! keel-runc: a runc-compatible command-line runtime built on youki's `libcontainer`.
//!
//! One file per command (`create`, `start`, `kill`, `delete`, `exec`, `state` with `list`), plus
//! [`log`] for runc-style logging. The binary (`src/bin/keel-runc.rs`) only parses argv into a
//! [`Global`] and a [`Command`] and calls [`run`].
//!
//! ```text
//!  caller (keel-cri-monitor, subreaper)
//!    └─ keel-runc create ──clone──► intermediate ──clone(CLONE_PARENT)──► init
//!         writes --pid-file, exits        exits                   waits on the notify socket
//!    init is reparented to the caller and keeps the caller's stdio
//!  keel-runc start  ── connects to <root>/<id>/notify.sock ──► init execs the process
//! ```
//!
//! State lives in `<root>/<id>/` (libcontainer's `state.json`, `config.json`, notify socket).
//! This module owns that directory and the container's cgroup; it never touches the caller's
//! stdio (the container inherits it) and knows nothing of CRI.

pub mod create;
pub mod delete;
pub mod exec;
pub mod kill;
pub mod log;
pub mod start;
pub mod state;

use std::path::{Path, PathBuf};

use libcontainer::container::Container;

pub use log::LogFormat;

/// Where `--root` points when it is not given.
pub const DEFAULT_ROOT: &str = "/run/keel-runc";

/// Options that come before the command, as runc spells them.
#[derive(Debug, Clone)]
pub struct Global {
    /// `--root`: the directory holding one state directory per container.
    pub root: PathBuf,
    /// `--log`: where logs and the final error go (stderr when absent).
    pub log: Option<PathBuf>,
    /// `--log-format`.
    pub log_format: LogFormat,
    /// `--systemd-cgroup`: cgroupsPath is `slice:prefix:name` and systemd manages the cgroup.
    pub systemd_cgroup: bool,
    /// `--debug` (or `--log-level debug`): log libcontainer's debug events too.
    pub debug: bool,
}

/// One command line, after parsing.
#[derive(Debug, Clone)]
pub enum Command {
    Create(create::Options),
    Start { id: String },
    Kill(kill::Options),
    Delete(delete::Options),
    Exec(exec::Options),
    State { id: String },
    List { json: bool, quiet: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {id} does not exist")]
    NotFound { id: String },
    #[error("container {id} already exists")]
    Exists { id: String },
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("bundle {path}: {message}")]
    Bundle { path: PathBuf, message: String },
    #[error(
        "setting oom_score_adj to {value}: {source} (lowering it needs CAP_SYS_RESOURCE; clamp it in the spec)"
    )]
    OomScoreAdj { value: i32, source: std::io::Error },
    #[error("invalid signal {signal:?}")]
    InvalidSignal { signal: String },
    #[error("{op} {id}: {message}")]
    Runtime {
        op: &'static str,
        id: String,
        message: String,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("waiting for exec'd process {pid}: {source}")]
    Wait { pid: i32, source: nix::Error },
    #[error("writing output: {0}")]
    Output(std::io::Error),
}

impl Error {
    /// Wraps a libcontainer error, keeping its whole chain of causes in the message.
    fn runtime(op: &'static str, id: &str, err: &(dyn std::error::Error + 'static)) -> Error {
        Error::Runtime {
            op,
            id: id.to_string(),
            message: error_chain(err),
        }
    }
}

/// `outer: inner: innermost`, skipping causes whose text the outer one already carries.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// Runs one command; the result is the process exit code (only `exec` returns non-zero).
pub fn run(global: &Global, command: Command) -> Result<i32, Error> {
    match command {
        Command::Create(o) => create::create(global, &o).map(|()| 0),
        Command::Start { id } => start::start(global, &id).map(|()| 0),
        Command::Kill(o) => kill::kill(global, &o).map(|()| 0),
        Command::Delete(o) => delete::delete(global, &o).map(|()| 0),
        Command::Exec(o) => exec::exec(global, &o),
        Command::State { id } => state::state(global, &id).map(|()| 0),
        Command::List { json, quiet } => state::list(global, json, quiet).map(|()| 0),
    }
}

/// Checks an id the way runc does, so it can never name a path outside `--root`.
pub fn validate_id(id: &str) -> Result<(), Error> {
    let bad = |reason| Error::InvalidId {
        id: id.to_string(),
        reason,
    };
    if id.is_empty() {
        return Err(bad("empty"));
    }
    if id == "." || id == ".." {
        return Err(bad("not a file name"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
    {
        return Err(bad("only letters, digits and _ + - . are allowed"));
    }
    Ok(())
}

/// Closes the descriptors our caller leaked to us (open, not close-on-exec, numbered at or above
/// `3 + preserve_fds`).
///
/// runc's init is a fresh exec that gets only stdio and the preserved fds. libcontainer's init is
/// a clone of this process and keeps every descriptor until it execs the user process after
/// `start`, so a leaked one (a monitor's sync pipe, say) would stay open in the waiting init and
/// its reader would never see EOF. Our own descriptors are all close-on-exec and are kept.
pub fn close_leaked_fds(preserve_fds: i32) {
    let first = 3 + preserve_fds.max(0);
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd >= first)
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        // The directory's own descriptor is closed by now: F_GETFD fails on it (EBADF).
        if let Ok(flags) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD)
            && !nix::fcntl::FdFlag::from_bits_truncate(flags)
                .contains(nix::fcntl::FdFlag::FD_CLOEXEC)
        {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// The state directory of container `id`.
pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Loads container `id`'s state, with `NotFound` when it has no state directory.
pub fn load(global: &Global, op: &'static str, id: &str) -> Result<Container, Error> {
    validate_id(id)?;
    let dir = container_dir(&global.root, id);
    if !dir.exists() {
        return Err(Error::NotFound { id: id.to_string() });
    }
    Container::load(dir).map_err(|e| Error::runtime(op, id, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_3+x").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn chain_skips_repeats() {
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Error::Io {
            what: "reading",
            path: "/x".into(),
            source: inner,
        };
        assert_eq!(error_chain(&e), "reading /x: no such file");
    }
}
