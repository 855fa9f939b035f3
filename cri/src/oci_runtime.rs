//! Invoking a runc-compatible runtime binary (`keel-runc`, `runc`, `youki`): the commands
//! keel-cri needs (`create` through the monitor, `start`, `kill`, `delete`, `exec`), with the
//! binary's own error message carried in the error.
//!
//! Owns process invocation only; it knows nothing of CRI records.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{binary} {command} {id}: {message}")]
    Failed {
        binary: PathBuf,
        command: &'static str,
        id: String,
        message: String,
    },
    #[error("exec in {id} timed out after {timeout:?}")]
    Timeout { id: String, timeout: Duration },
}

impl Error {
    /// True when the runtime said the container does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Failed { message, .. } => {
                let m = message.to_ascii_lowercase();
                m.contains("does not exist") || m.contains("not found") || m.contains("no such")
            }
            _ => false,
        }
    }
}

/// Output of a finished `exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A runc-compatible binary and its state directory (`--root`).
#[derive(Debug, Clone)]
pub struct OciRuntime {
    pub binary: PathBuf,
    pub root: PathBuf,
}

impl OciRuntime {
    pub fn new(binary: PathBuf, root: PathBuf) -> OciRuntime {
        OciRuntime { binary, root }
    }

    fn global_args(&self) -> Vec<OsString> {
        vec!["--root".into(), self.root.clone().into()]
    }

    /// The `create` command line (program first), for the monitor to run with its pipes as stdio.
    pub fn create_argv(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        log: &Path,
    ) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![self.binary.clone().into()];
        v.extend(self.global_args());
        v.extend([
            "--log".into(),
            log.into(),
            "--log-format".into(),
            "json".into(),
            "create".into(),
            "--bundle".into(),
            bundle.into(),
            "--pid-file".into(),
            pid_file.into(),
            id.into(),
        ]);
        v
    }

    async fn run(&self, command: &'static str, id: &str, args: &[&str]) -> Result<(), Error> {
        let out = tokio::process::Command::new(&self.binary)
            .args(self.global_args())
            .arg(command)
            .args(args)
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| Error::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::Failed {
            binary: self.binary.clone(),
            command,
            id: id.to_string(),
            message: error_message(&out.stderr, &out.stdout),
        })
    }

    pub async fn start(&self, id: &str) -> Result<(), Error> {
        self.run("start", id, &[]).await
    }

    /// Sends `signal` (a name like `SIGTERM` or a number) to the init, or with `all` to every
    /// process of the container.
    pub async fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), Error> {
        let out = tokio::process::Command::new(&self.binary)
            .args(self.global_args())
            .arg("kill")
            .args(if all { &["--all"][..] } else { &[][..] })
            .arg(id)
            .arg(signal)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| Error::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::Failed {
            binary: self.binary.clone(),
            command: "kill",
            id: id.to_string(),
            message: error_message(&out.stderr, &out.stdout),
        })
    }

    pub async fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        self.run("delete", id, if force { &["--force"] } else { &[] })
            .await
    }

    /// Runs `process` (an OCI Process JSON) in the container and collects its output; with a
    /// timeout the process is killed when it passes and `Error::Timeout` is returned.
    pub async fn exec(
        &self,
        id: &str,
        process: &serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, Error> {
        let dir = tempfile_dir(&self.root).map_err(|source| Error::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let spec = dir.join("process.json");
        let pid_file = dir.join("pid");
        std::fs::write(&spec, process.to_string()).map_err(|source| Error::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let child = tokio::process::Command::new(&self.binary)
            .args(self.global_args())
            .arg("exec")
            .arg("--process")
            .arg(&spec)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Spawn {
                binary: self.binary.clone(),
                source,
            })?;
        let waited = match timeout {
            Some(t) => match tokio::time::timeout(t, child.wait_with_output()).await {
                Ok(r) => r,
                Err(_) => {
                    // The exec'd process is not a child of the runtime binary once it runs: kill
                    // it by the pid the runtime recorded.
                    if let Some(pid) = std::fs::read_to_string(&pid_file)
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                    {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(Error::Timeout {
                        id: id.to_string(),
                        timeout: t,
                    });
                }
            },
            None => child.wait_with_output().await,
        };
        let _ = std::fs::remove_dir_all(&dir);
        let out = waited.map_err(|source| Error::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        use std::os::unix::process::ExitStatusExt;
        let exit_code = out
            .status
            .code()
            .or_else(|| out.status.signal().map(|s| 128 + s))
            .unwrap_or(255);
        Ok(ExecOutput {
            exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

fn tempfile_dir(root: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join("exec").join(crate::store::new_id());
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The most useful line of what a runtime printed on failure (runc prints JSON or text).
fn error_message(stderr: &[u8], stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(if stderr.is_empty() { stdout } else { stderr });
    for line in text.lines().rev() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(m) = v.get("msg").and_then(|m| m.as_str())
        {
            return m.to_string();
        }
    }
    let t = text.trim();
    if t.is_empty() {
        "failed without a message".to_string()
    } else {
        t.to_string()
    }
}
