//! The monitor's own side: what `keel-cri-monitor` does for one container, start to exit.
//!
//! Owns the container's stdio pipes, the CRI log file, reaping (it is a child subreaper, so the
//! container's init becomes its child once the runtime's `create` exits) and the `exit` record.
//! It is deliberately small and synchronous (no async runtime): one per container, so every
//! resident byte counts. It never touches cgroups, mounts or other containers.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::log_writer::{LineSplitter, Stream};
use super::{EXIT_FILE, ExitRecord, MONITOR_LOG, PID_FILE};

/// How long output is still drained after the init exited (other processes may hold the pipes).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// The monitor's command line: `--id ID --dir DIR [--log-path FILE] --sync-fd N -- RUNTIME ARGS...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub id: String,
    pub dir: PathBuf,
    pub log_path: Option<PathBuf>,
    pub sync_fd: RawFd,
    pub runtime_argv: Vec<OsString>,
}

impl Args {
    /// Renders the arguments keel-cri passes (the inverse of [`Args::parse`]).
    pub fn to_argv(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            "--id".into(),
            self.id.clone().into(),
            "--dir".into(),
            self.dir.clone().into(),
            "--sync-fd".into(),
            self.sync_fd.to_string().into(),
        ];
        if let Some(p) = &self.log_path {
            v.push("--log-path".into());
            v.push(p.clone().into());
        }
        v.push("--".into());
        v.extend(self.runtime_argv.iter().cloned());
        v
    }

    pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
        let mut it = argv.into_iter();
        let (mut id, mut dir, mut log_path, mut sync_fd) = (None, None, None, None);
        let mut runtime_argv = Vec::new();
        while let Some(a) = it.next() {
            let a = a.to_string_lossy().into_owned();
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match a.as_str() {
                "--id" => id = Some(value("--id")?.to_string_lossy().into_owned()),
                "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
                "--log-path" => log_path = Some(PathBuf::from(value("--log-path")?)),
                "--sync-fd" => {
                    let v = value("--sync-fd")?;
                    sync_fd = Some(
                        v.to_string_lossy()
                            .parse::<RawFd>()
                            .map_err(|_| format!("--sync-fd: {v:?} is not a number"))?,
                    );
                }
                "--" => {
                    runtime_argv.extend(it.by_ref());
                    break;
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if runtime_argv.is_empty() {
            return Err("missing the runtime command after --".to_string());
        }
        Ok(Args {
            id: id.ok_or("missing --id")?,
            dir: dir.ok_or("missing --dir")?,
            log_path,
            sync_fd: sync_fd.ok_or("missing --sync-fd")?,
            runtime_argv,
        })
    }
}

/// Runs the monitor to the end of the container's life. Returns the process exit code.
pub fn run(args: Args) -> i32 {
    // SAFETY: the fd number was handed to us by keel-cri for exactly this purpose; nothing else
    // in this process owns it.
    let sync = unsafe { File::from_raw_fd(args.sync_fd) };
    let mut diag = OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.dir.join(MONITOR_LOG))
        .ok();
    match Monitor::start(&args, sync, &mut diag) {
        Ok(monitor) => monitor.run_to_exit(&args, &mut diag),
        Err(()) => 1,
    }
}

fn note(diag: &mut Option<File>, msg: &str) {
    if let Some(f) = diag {
        let _ = writeln!(
            f,
            "{} monitor: {msg}",
            super::log_writer::rfc3339_nano(SystemTime::now())
        );
    }
}

struct Monitor {
    signals: SignalFd,
    stdout: Option<File>,
    stderr: Option<File>,
    init: Pid,
    /// Statuses of children reaped before their pid was known to be the init.
    early_exits: HashMap<i32, i32>,
}

impl Monitor {
    /// Sets up the subreaper, the signals and the pipes, runs the runtime's `create`, and answers
    /// on the sync pipe. On failure the answer is `err ...` and `Err(())` is returned.
    fn start(args: &Args, mut sync: File, diag: &mut Option<File>) -> Result<Monitor, ()> {
        let fail = |sync: &mut File, diag: &mut Option<File>, msg: String| {
            note(diag, &msg);
            let _ = writeln!(sync, "err {}", msg.replace('\n', " "));
        };
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument and touches no memory.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            fail(
                &mut sync,
                diag,
                format!("prctl(PR_SET_CHILD_SUBREAPER): {}", Errno::last()),
            );
            return Err(());
        }
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGUSR1,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ] {
            mask.add(s);
        }
        if let Err(e) = mask.thread_block() {
            fail(&mut sync, diag, format!("blocking signals: {e}"));
            return Err(());
        }
        let signals =
            match SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
                Ok(s) => s,
                Err(e) => {
                    fail(&mut sync, diag, format!("signalfd: {e}"));
                    return Err(());
                }
            };
        let pipes = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .and_then(|o| nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map(|e| (o, e)));
        let ((out_r, out_w), (err_r, err_w)) = match pipes {
            Ok(p) => p,
            Err(e) => {
                fail(&mut sync, diag, format!("pipe: {e}"));
                return Err(());
            }
        };
        let _ = std::fs::remove_file(args.dir.join(PID_FILE));
        let mut cmd = Command::new(&args.runtime_argv[0]);
        cmd.args(&args.runtime_argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w));
        // The monitor blocks the signals its signalfd reads; the runtime and so the container
        // would inherit that mask (a blocked SIGTERM or stop signal never arrives): clear it.
        // SAFETY: runs between fork and exec and only calls sigemptyset and sigprocmask, which
        // are async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
                libc::sigemptyset(set.as_mut_ptr());
                if libc::sigprocmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                fail(
                    &mut sync,
                    diag,
                    format!("starting runtime {:?}: {e}", args.runtime_argv[0]),
                );
                return Err(());
            }
        };
        drop(cmd);
        let create_pid = Pid::from_raw(child.id() as i32);
        let mut monitor = Monitor {
            signals,
            stdout: Some(nonblocking(out_r)),
            stderr: Some(nonblocking(err_r)),
            init: Pid::from_raw(0),
            early_exits: HashMap::new(),
        };
        // Wait for `create` to finish, keeping what it printed for an error message.
        let mut early_output = Vec::new();
        let create_status = loop {
            if let Some(st) = monitor.early_exits.remove(&create_pid.as_raw()) {
                break st;
            }
            monitor.wait_readable(None);
            monitor.read_raw(&mut early_output);
            monitor.reap();
        };
        if create_status != 0 {
            let runtime_log =
                std::fs::read_to_string(args.dir.join(MONITOR_LOG)).unwrap_or_default();
            let printed = String::from_utf8_lossy(&early_output);
            let detail = last_runtime_error(&runtime_log)
                .or_else(|| (!printed.trim().is_empty()).then(|| printed.trim().to_string()))
                .unwrap_or_else(|| "no message".to_string());
            fail(
                &mut sync,
                diag,
                format!("runtime create exited with status {create_status}: {detail}"),
            );
            return Err(());
        }
        let pid = std::fs::read_to_string(args.dir.join(PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        let Some(pid) = pid else {
            fail(
                &mut sync,
                diag,
                "runtime create left no pid file".to_string(),
            );
            return Err(());
        };
        monitor.init = Pid::from_raw(pid);
        if !early_output.is_empty() {
            note(
                diag,
                &format!(
                    "runtime printed: {}",
                    String::from_utf8_lossy(&early_output).trim()
                ),
            );
        }
        let _ = writeln!(sync, "ok {pid}");
        drop(sync);
        Ok(monitor)
    }

    /// Copies output into the log until the init exits and the pipes drain; writes `exit`.
    fn run_to_exit(mut self, args: &Args, diag: &mut Option<File>) -> i32 {
        let mut log = open_log(args.log_path.as_deref(), diag);
        let mut out_lines = LineSplitter::new(Stream::Stdout);
        let mut err_lines = LineSplitter::new(Stream::Stderr);
        let mut exit_code: Option<i32> = self.early_exits.remove(&self.init.as_raw());
        let mut exited_at: Option<Instant> = None;
        let mut buf = vec![0u8; 32 * 1024];
        let mut records = Vec::with_capacity(4096);
        loop {
            if exit_code.is_some() && exited_at.is_none() {
                exited_at = Some(Instant::now());
            }
            let open = self.stdout.is_some() || self.stderr.is_some();
            if exit_code.is_some() && !open {
                break;
            }
            let timeout = match exited_at {
                Some(t) => {
                    let left = DRAIN_AFTER_EXIT.saturating_sub(t.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    Some(left)
                }
                None => None,
            };
            let (sig_ready, out_ready, err_ready) = self.wait_readable(timeout);
            let now = SystemTime::now();
            for (ready, which) in [(out_ready, Stream::Stdout), (err_ready, Stream::Stderr)] {
                if !ready {
                    continue;
                }
                let slot = match which {
                    Stream::Stdout => &mut self.stdout,
                    Stream::Stderr => &mut self.stderr,
                };
                let splitter = match which {
                    Stream::Stdout => &mut out_lines,
                    Stream::Stderr => &mut err_lines,
                };
                match read_some(slot, &mut buf) {
                    Some(n) if n > 0 => splitter.feed(&buf[..n], now, &mut records),
                    Some(_) => {}
                    None => splitter.finish(now, &mut records),
                }
            }
            if !records.is_empty() {
                if let Some(f) = &mut log
                    && let Err(e) = f.write_all(&records)
                {
                    note(diag, &format!("writing log: {e}"));
                }
                records.clear();
            }
            if sig_ready {
                while let Ok(Some(info)) = self.signals.read_signal() {
                    if info.ssi_signo == Signal::SIGUSR1 as u32 {
                        log = open_log(args.log_path.as_deref(), diag);
                    }
                }
                self.reap();
                if exit_code.is_none() {
                    exit_code = self.early_exits.remove(&self.init.as_raw());
                }
            }
        }
        let now = SystemTime::now();
        out_lines.finish(now, &mut records);
        err_lines.finish(now, &mut records);
        if let (Some(f), false) = (&mut log, records.is_empty()) {
            let _ = f.write_all(&records);
        }
        let record = ExitRecord {
            exit_code: exit_code.unwrap_or(255),
            finished_at: SystemTime::now(),
        };
        let tmp = args.dir.join(format!("{EXIT_FILE}.tmp"));
        let written = std::fs::write(&tmp, record.encode())
            .and_then(|_| File::open(&tmp).and_then(|f| f.sync_all()))
            .and_then(|_| std::fs::rename(&tmp, args.dir.join(EXIT_FILE)));
        if let Err(e) = written {
            note(diag, &format!("writing exit record: {e}"));
            return 1;
        }
        0
    }

    /// Blocks until a signal or output is ready (or the timeout passes).
    /// Returns (signal ready, stdout ready, stderr ready).
    fn wait_readable(&self, timeout: Option<Duration>) -> (bool, bool, bool) {
        let flags = PollFlags::POLLIN;
        let mut fds = vec![PollFd::new(self.signals.as_fd(), flags)];
        let out_idx = self.stdout.as_ref().map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), flags));
            fds.len() - 1
        });
        let err_idx = self.stderr.as_ref().map(|fd| {
            fds.push(PollFd::new(fd.as_fd(), flags));
            fds.len() - 1
        });
        let timeout = match timeout {
            Some(d) => PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1)
                .unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return (false, false, false),
            Err(_) => return (true, false, false),
        }
        let ready = |i: Option<usize>| {
            i.and_then(|i| fds[i].revents())
                .is_some_and(|r| !r.is_empty())
        };
        (ready(Some(0)), ready(out_idx), ready(err_idx))
    }

    /// Reads what is available on both pipes without formatting it (used before the init runs).
    fn read_raw(&mut self, into: &mut Vec<u8>) {
        let mut buf = [0u8; 4096];
        for slot in [&mut self.stdout, &mut self.stderr] {
            if let Some(n) = read_some(slot, &mut buf)
                && into.len() < 64 * 1024
            {
                into.extend_from_slice(&buf[..n]);
            }
        }
        while let Ok(Some(_)) = self.signals.read_signal() {}
    }

    /// Reaps every exited child, remembering each status.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    self.early_exits.insert(pid.as_raw(), code);
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.early_exits.insert(pid.as_raw(), 128 + sig as i32);
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Reads once from a pipe. `None` means end of stream (the slot is emptied); `Some(0)` means
/// nothing was there right now.
fn read_some(slot: &mut Option<File>, buf: &mut [u8]) -> Option<usize> {
    let file = slot.as_mut()?;
    match file.read(buf) {
        Ok(0) => {
            *slot = None;
            None
        }
        Ok(n) => Some(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Some(0),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Some(0),
        Err(_) => {
            *slot = None;
            None
        }
    }
}

fn nonblocking(fd: OwnedFd) -> File {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    unsafe {
        let raw: RawFd = fd.as_raw_fd();
        let flags = libc::fcntl(raw, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    File::from(fd)
}

fn open_log(path: Option<&Path>, diag: &mut Option<File>) -> Option<File> {
    let path = path?;
    match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            note(diag, &format!("opening log {}: {e}", path.display()));
            None
        }
    }
}

/// The last error message a runc-compatible runtime wrote to its `--log` (JSON lines with
/// `"level":"error"` and a `"msg"`), if any.
fn last_runtime_error(log: &str) -> Option<String> {
    log.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let level = v.get("level")?.as_str()?;
        (level == "error" || level == "fatal")
            .then(|| v.get("msg")?.as_str().map(str::to_string))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = Args {
            id: "abc".into(),
            dir: "/run/keel/cri/containers/abc".into(),
            log_path: Some("/var/log/pods/x/c/0.log".into()),
            sync_fd: 3,
            runtime_argv: vec!["runc".into(), "create".into(), "abc".into()],
        };
        assert_eq!(Args::parse(a.to_argv()), Ok(a));
    }

    #[test]
    fn args_errors() {
        assert!(Args::parse(vec!["--id".into()]).is_err());
        assert!(Args::parse(vec!["--bogus".into()]).is_err());
        let no_runtime: Vec<OsString> = ["--id", "a", "--dir", "/x", "--sync-fd", "3"]
            .map(OsString::from)
            .to_vec();
        assert!(Args::parse(no_runtime).is_err());
    }

    #[test]
    fn runtime_error_from_json_log() {
        let log = "{\"level\":\"warning\",\"msg\":\"meh\"}\n{\"level\":\"error\",\"msg\":\"container_linux.go: no such file\"}\n";
        assert_eq!(
            last_runtime_error(log).as_deref(),
            Some("container_linux.go: no such file")
        );
        assert_eq!(last_runtime_error("plain text"), None);
    }
}
