//! Running one plugin binary: finding it in the bin dirs, the `CNI_*` environment, the config on
//! stdin, the result or error object on stdout, and a kill after a timeout.
//!
//! Knows nothing of chains, caches or networks: `runtime::chain` adds that context to the
//! errors returned here. The plugin runs in its own process group so that a plugin that hangs
//! is killed together with whatever it started.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use crate::spec::{ErrorObject, code};

/// The operations of `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How one plugin execution failed.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("binary not found in {dirs}")]
    NotFound { dirs: String },
    #[error("cannot run {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("killed after {0:?} without finishing")]
    Timeout(Duration),
    #[error("{} (code {}){}", .0.msg, .0.code, details(&.0.details))]
    Failed(ErrorObject),
    #[error("exited with {status} without an error object{}", stderr_suffix(.stderr))]
    Exit { status: String, stderr: String },
    #[error("unreadable output: {reason}")]
    Output { reason: String },
}

fn details(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(": {d}")
    }
}

fn stderr_suffix(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

impl InvokeError {
    /// Worth retrying later: the plugin said "try again later" (code 11) or did not finish.
    pub fn is_transient(&self) -> bool {
        match self {
            InvokeError::Failed(e) => e.code == code::TRY_AGAIN_LATER,
            InvokeError::Timeout(_) => true,
            _ => false,
        }
    }

    /// The CNI error code, when the plugin gave one.
    pub fn code(&self) -> Option<u32> {
        match self {
            InvokeError::Failed(e) => Some(e.code),
            _ => None,
        }
    }
}

/// The per-call environment (`CNI_PATH` comes from the [`Invoker`]).
#[derive(Debug, Clone, Default)]
pub struct Env<'a> {
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    /// `K=V;K=V`.
    pub args: &'a str,
}

/// Finds and runs plugin binaries.
#[derive(Debug, Clone)]
pub struct Invoker {
    pub bin_dirs: Vec<PathBuf>,
    pub timeout: Duration,
}

/// How long a plugin may run before it is killed, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Invoker {
    pub fn new(bin_dirs: Vec<PathBuf>) -> Invoker {
        Invoker {
            bin_dirs,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The first executable file named `plugin_type` in the bin dirs, in order.
    pub fn find(&self, plugin_type: &str) -> Result<PathBuf, InvokeError> {
        use std::os::unix::fs::PermissionsExt;
        for dir in &self.bin_dirs {
            let p = dir.join(plugin_type);
            if let Ok(md) = std::fs::metadata(&p)
                && md.is_file()
                && md.permissions().mode() & 0o111 != 0
            {
                return Ok(p);
            }
        }
        Err(InvokeError::NotFound {
            dirs: self.cni_path(),
        })
    }

    fn cni_path(&self) -> String {
        self.bin_dirs
            .iter()
            .map(|d| d.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Runs `path` with `command`; returns stdout on exit 0. A non-zero exit yields the error
    /// object from stdout ([`InvokeError::Failed`]) or, without one, the exit status and stderr.
    pub fn exec(
        &self,
        path: &Path,
        command: Command,
        env: &Env<'_>,
        stdin: &[u8],
    ) -> Result<Vec<u8>, InvokeError> {
        let mut cmd = Process::new(path);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CNI_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("CNI_COMMAND", command.as_str())
            .env("CNI_PATH", self.cni_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if !matches!(command, Command::Status | Command::Gc | Command::Version) {
            cmd.env("CNI_CONTAINERID", env.container_id)
                .env("CNI_NETNS", env.netns)
                .env("CNI_IFNAME", env.ifname)
                .env("CNI_ARGS", env.args);
        }
        let mut child = cmd.spawn().map_err(|source| InvokeError::Spawn {
            path: path.to_path_buf(),
            source,
        })?;
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);

        // Feed stdin and drain stdout/stderr on threads so that no pipe can block us.
        let input = stdin.to_vec();
        let mut child_stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(w) = child_stdin.as_mut() {
                let _ = w.write_all(&input);
            }
        });
        let out = child.stdout.take().map(drain);
        let err = child.stderr.take().map(drain);

        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    // The leader is not reaped yet, so the group id is still ours.
                    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                    let _ = child.wait();
                    let _ = writer.join();
                    return Err(InvokeError::Timeout(self.timeout));
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(source) => {
                    return Err(InvokeError::Spawn {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        };
        // No killpg here: the group leader is reaped, so its id may already be reused.
        let _ = writer.join();
        let stdout = out.and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = err.and_then(|h| h.join().ok()).unwrap_or_default();
        if status.success() {
            return Ok(stdout);
        }
        if let Some(e) = ErrorObject::from_bytes(&stdout) {
            return Err(InvokeError::Failed(e));
        }
        Err(InvokeError::Exit {
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}
