//! The pod's shared PID namespace (NamespaceMode POD): a PID namespace stays usable only while
//! its init lives, so a tiny holder process (`keel-cri-monitor --pause`) is that init, and the
//! namespace is pinned at `<state>/pidns/<sandbox id>` for the containers to join.
//!
//! Owns spawning, finding again after a restart, and stopping the holder. The holder does
//! nothing but reap orphans and wait for SIGTERM/SIGKILL.

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{SigSet, Signal};

use crate::monitor::client::process_start_time;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("starting the PID namespace holder {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("the PID namespace holder: {0}")]
    Holder(String),
}

/// A running holder of a pod's PID namespace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PidHolder {
    pub pid: i32,
    pub start_time: u64,
    pub path: PathBuf,
}

/// Starts a holder and pins its PID namespace at `<state>/pidns/<id>`.
pub fn spawn(monitor_binary: &Path, state: &Path, id: &str) -> Result<PidHolder, Error> {
    let mut cmd = Command::new(monitor_binary);
    cmd.arg("--pause")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: runs between fork and exec: only setsid and unshare, both async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            if libc::unshare(libc::CLONE_NEWPID) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| Error::Spawn {
        binary: monitor_binary.to_path_buf(),
        source,
    })?;
    // One line: the holder's init keeps nothing of stdout open, but reading to EOF would also
    // wait on anything it inherited.
    let mut out = String::new();
    if let Some(o) = child.stdout.take() {
        let _ = std::io::BufReader::new(o).read_line(&mut out);
    }
    let _ = child.wait();
    let pid: i32 = out
        .trim()
        .parse()
        .map_err(|_| Error::Holder(format!("answered {:?} instead of a pid", out.trim())))?;
    let start_time = process_start_time(pid)
        .ok_or_else(|| Error::Holder(format!("pid {pid} exited at once")))?;
    let holder = PidHolder {
        pid,
        start_time,
        path: state.join("pidns").join(id),
    };
    let pin = || -> std::io::Result<()> {
        if let Some(dir) = holder.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::File::create(&holder.path)?;
        let src = format!("/proc/{pid}/ns/pid");
        nix::mount::mount(
            Some(src.as_str()),
            &holder.path,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(std::io::Error::from)
    };
    if let Err(e) = pin() {
        stop(&holder);
        return Err(Error::Holder(format!("pinning its namespace: {e}")));
    }
    Ok(holder)
}

/// True while the holder process still runs (same pid and start time).
pub fn alive(holder: &PidHolder) -> bool {
    process_start_time(holder.pid) == Some(holder.start_time)
}

/// Kills the holder (which kills every process left in the namespace) and removes the pin.
pub fn stop(holder: &PidHolder) {
    if alive(holder) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(holder.pid), Signal::SIGKILL);
    }
    super::namespaces::unpin(&holder.path);
}

/// The holder's own code, run by `keel-cri-monitor --pause` (already in a new PID namespace's
/// parent): forks the namespace's init, prints its pid (as the host sees it), and returns.
pub fn run_holder() -> i32 {
    // SAFETY: the process is single-threaded here (just exec'd), so fork is safe.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            println!("{child}");
            0
        }
        Ok(nix::unistd::ForkResult::Child) => holder_loop(),
        Err(e) => {
            eprintln!("fork: {e}");
            1
        }
    }
}

fn holder_loop() -> i32 {
    // Let go of the pipe keel-cri reads the pid from, so that its reader sees the end of it.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors of this single-threaded process.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        return 1;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                while let Ok(st) = nix::sys::wait::waitpid(
                    nix::unistd::Pid::from_raw(-1),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                ) {
                    if st == nix::sys::wait::WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(_) => return 0,
            Err(_) => {}
        }
    }
}
