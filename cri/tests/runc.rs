//! Privileged tests of the `keel-runc` binary against a busybox bundle: create/start with
//! inherited stdio, exec exit codes, kill --all, delete cleanup, bad configs, unknown ids, and
//! the keel-cri monitor driving keel-runc end to end.
//!
//! Each test owns a `Fixture` (temp dir with bundle and `--root`, its own container id and
//! cgroup path) whose `Drop` force-deletes the container and removes its cgroup, so nothing
//! leaks when an assertion fails. Every wait has a timeout.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

const KEEL_RUNC: &str = env!("CARGO_BIN_EXE_keel-runc");
const MONITOR: &str = env!("CARGO_BIN_EXE_keel-cri-monitor");
const BUSYBOX: &str = "/bin/busybox";
const CGROUP_PARENT: &str = "keel-runc-test";
const TIMEOUT: Duration = Duration::from_secs(20);

/// A bundle with a busybox rootfs, a `--root`, and a container id, cleaned up on drop.
struct Fixture {
    dir: tempfile::TempDir,
    id: String,
}

impl Fixture {
    /// `args` is the container's process; the cgroup is `/keel-runc-test/<id>`.
    fn new(name: &str, args: &[&str]) -> Fixture {
        // Children that outlive `keel-runc create` (the container inits) become ours, so their
        // exit status can be waited for.
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes one integer and touches no memory.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let dir = tempfile::Builder::new()
            .prefix("keel-runc-test")
            .tempdir()
            .expect("tempdir");
        let id = format!("{name}-{}", std::process::id());
        let rootfs = dir.path().join("bundle/rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs");
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in ["sh", "sleep", "echo", "cat", "true", "false", "kill"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("symlink");
        }
        let f = Fixture { dir, id };
        f.write_config(&config_json(args, &f.cgroups_path()).to_string());
        f
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("runc.log")
    }
    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("pid")
    }
    fn cgroups_path(&self) -> String {
        format!("/{CGROUP_PARENT}/{}", self.id)
    }
    fn write_config(&self, text: &str) {
        std::fs::write(self.bundle().join("config.json"), text).expect("write config.json");
    }

    /// Where the container's cgroup lands: the memory controller on v1, the unified tree on v2.
    fn cgroup_dir(&self) -> PathBuf {
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let base = if v1.is_dir() {
            v1
        } else {
            Path::new("/sys/fs/cgroup")
        };
        base.join(CGROUP_PARENT).join(&self.id)
    }

    /// `keel-runc --root R --log L --log-format json ARGS...` with stdin closed.
    fn runc(&self, args: &[&str]) -> Command {
        let mut c = Command::new(KEEL_RUNC);
        c.arg("--root")
            .arg(self.root())
            .arg("--log")
            .arg(self.log())
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        output_with_timeout(self.runc(args))
    }

    /// `create` with the container's stdout/stderr in files; returns the init's pid.
    fn create(&self, stdout: &Path, stderr: &Path) -> Pid {
        let mut c = self.runc(&["create", "--pid-file"]);
        c.arg(self.pid_file())
            .arg("--bundle")
            .arg(self.bundle())
            .arg(&self.id);
        let files = (
            File::create(stdout).expect("stdout file"),
            File::create(stderr).expect("stderr file"),
        );
        let status = status_with_timeout(c, Some(files));
        assert!(
            status.success(),
            "create failed: {}; log: {}",
            std::fs::read_to_string(stderr).unwrap_or_default(),
            self.log_text()
        );
        let pid = std::fs::read_to_string(self.pid_file()).expect("pid file");
        Pid::from_raw(pid.trim().parse().expect("pid"))
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "keel-runc {args:?}: {}; log: {}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        out
    }

    fn state(&self) -> serde_json::Value {
        let out = self.ok(&["state", &self.id]);
        serde_json::from_slice(&out.stdout).expect("state json")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// The `msg` of the last `error` line of the JSON log.
    fn last_error(&self) -> String {
        self.log_text()
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "error")
            .and_then(|v| v["msg"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.root().join(&self.id).exists() {
            let _ = self.output(&["delete", "--force", &self.id]);
        }
        // Every v1 controller (or the unified tree), then the shared parent if it is empty.
        for base in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let parent = base.path().join(CGROUP_PARENT);
            let _ = std::fs::remove_dir(parent.join(&self.id));
            let _ = std::fs::remove_dir(parent);
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(CGROUP_PARENT));
    }
}

fn config_json(args: &[&str], cgroups_path: &str) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]
            },
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": true },
        "hostname": "keel-runc-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }
            ]
        }
    })
}

/// Runs `cmd` to the end, killing it after `TIMEOUT`. Output goes through anonymous files, not
/// pipes: a container init inherits them and would hold a pipe open long after the command.
fn output_with_timeout(cmd: Command) -> Output {
    let out = tempfile::tempfile().expect("stdout file");
    let err = tempfile::tempfile().expect("stderr file");
    let status = status_with_timeout(
        cmd,
        Some((
            out.try_clone().expect("dup stdout"),
            err.try_clone().expect("dup stderr"),
        )),
    );
    Output {
        status,
        stdout: read_all(out),
        stderr: read_all(err),
    }
}

fn read_all(mut f: File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    let _ = f.rewind().and_then(|()| f.read_to_end(&mut v));
    v
}

/// Runs `cmd` (with `stdio` as its stdout/stderr when given) and waits at most `TIMEOUT`.
fn status_with_timeout(mut cmd: Command, stdio: Option<(File, File)>) -> std::process::ExitStatus {
    if let Some((out, err)) = stdio {
        cmd.stdout(out).stderr(err);
    }
    let mut child = cmd.spawn().expect("spawn keel-runc");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took longer than {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (as the subreaper it was reparented to) for `pid` to exit; shell-style exit code.
fn wait_exit(pid: Pid) -> i32 {
    let start = Instant::now();
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => {}
            Err(e) => panic!("waitpid {pid}: {e}"),
        }
        assert!(
            start.elapsed() < TIMEOUT,
            "{pid} did not exit in {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn create_start_inherits_stdio_and_exit_is_observed() {
    if !keel_testkit::require_root("create_start_inherits_stdio_and_exit_is_observed") {
        return;
    }
    let f = Fixture::new("hello", &["sh", "-c", "echo hello; echo oops >&2; exit 7"]);
    let (out, err) = (f.dir.path().join("out"), f.dir.path().join("err"));
    let pid = f.create(&out, &err);
    assert_eq!(f.state()["status"], "created");
    assert!(f.cgroup_dir().is_dir(), "cgroup {:?}", f.cgroup_dir());
    f.ok(&["start", &f.id]);
    assert_eq!(wait_exit(pid), 7);
    assert_eq!(std::fs::read_to_string(&out).unwrap_or_default(), "hello\n");
    assert_eq!(std::fs::read_to_string(&err).unwrap_or_default(), "oops\n");
    assert_eq!(f.state()["status"], "stopped");
    f.ok(&["delete", &f.id]);
    assert!(!f.root().join(&f.id).exists(), "state dir left");
    assert!(!f.cgroup_dir().exists(), "cgroup left");
}

#[test]
fn exec_returns_exit_code_and_output() {
    if !keel_testkit::require_root("exec_returns_exit_code_and_output") {
        return;
    }
    let f = Fixture::new("exec", &["sleep", "30"]);
    let (out, err) = (f.dir.path().join("out"), f.dir.path().join("err"));
    let init = f.create(&out, &err);
    f.ok(&["start", &f.id]);
    for (script, code, text) in [
        ("echo out; exit 5", 5, "out\n"),
        ("echo $$; kill -9 $$", 137, ""),
    ] {
        let process = f.dir.path().join("process.json");
        let exec_pid = f.dir.path().join("exec.pid");
        let spec = serde_json::json!({
            "terminal": false, "user": { "uid": 0, "gid": 0 },
            "args": ["sh", "-c", script], "env": ["PATH=/bin"], "cwd": "/"
        });
        std::fs::write(&process, spec.to_string()).expect("process.json");
        let mut c = f.runc(&["exec", "--process"]);
        c.arg(&process).arg("--pid-file").arg(&exec_pid).arg(&f.id);
        let o = output_with_timeout(c);
        assert_eq!(o.status.code(), Some(code), "{script}: {o:?}");
        let written: i32 = std::fs::read_to_string(&exec_pid)
            .unwrap_or_default()
            .trim()
            .parse()
            .unwrap_or(0);
        assert!(written > 0, "exec pid file");
        if !text.is_empty() {
            assert_eq!(String::from_utf8_lossy(&o.stdout), text);
        }
    }
    // Also the runc form with the command on the command line.
    let o = f.output(&["exec", &f.id, "sh", "-c", "echo argv; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "argv\n");
    f.ok(&["kill", "--all", &f.id, "KILL"]);
    assert_eq!(wait_exit(init), 137);
}

#[test]
fn kill_all_stops_sleep_and_delete_cleans_up() {
    if !keel_testkit::require_root("kill_all_stops_sleep_and_delete_cleans_up") {
        return;
    }
    let f = Fixture::new("kill", &["sleep", "30"]);
    let (out, err) = (f.dir.path().join("out"), f.dir.path().join("err"));
    let init = f.create(&out, &err);
    f.ok(&["start", &f.id]);
    assert_eq!(f.state()["status"], "running");
    // A plain delete of a running container is refused.
    assert!(!f.output(&["delete", &f.id]).status.success());
    f.ok(&["kill", "--all", &f.id, "SIGKILL"]);
    assert_eq!(wait_exit(init), 137);
    wait_until("state stopped", || f.state()["status"] == "stopped");
    f.ok(&["delete", &f.id]);
    assert!(!f.root().join(&f.id).exists(), "state dir left");
    assert!(!f.cgroup_dir().exists(), "cgroup left");
}

#[test]
fn delete_force_removes_a_created_container() {
    if !keel_testkit::require_root("delete_force_removes_a_created_container") {
        return;
    }
    let f = Fixture::new("force", &["sleep", "30"]);
    let (out, err) = (f.dir.path().join("out"), f.dir.path().join("err"));
    let init = f.create(&out, &err);
    f.ok(&["delete", "--force", &f.id]);
    assert_eq!(wait_exit(init), 137);
    assert!(!f.root().join(&f.id).exists(), "state dir left");
    assert!(!f.cgroup_dir().exists(), "cgroup left");
}

#[test]
fn bad_config_fails_with_a_clear_message_and_leaves_nothing() {
    if !keel_testkit::require_root("bad_config_fails_with_a_clear_message_and_leaves_nothing") {
        return;
    }
    let f = Fixture::new("bad", &["true"]);
    let mut no_root = config_json(&["true"], &f.cgroups_path());
    no_root.as_object_mut().map(|o| o.remove("root"));
    let mut bad_exe = config_json(&["/nonexistent"], &f.cgroups_path());
    bad_exe["process"]["cwd"] = "/".into();
    for (config, expect) in [
        ("{not json".to_string(), "invalid config.json"),
        (no_root.to_string(), "no root"),
        (bad_exe.to_string(), "/nonexistent"),
    ] {
        f.write_config(&config);
        let mut c = f.runc(&["create", "--bundle"]);
        c.arg(f.bundle()).arg(&f.id);
        let o = output_with_timeout(c);
        assert!(!o.status.success(), "create with {expect:?} succeeded");
        let msg = f.last_error();
        assert!(msg.contains(expect), "{expect:?} not in {msg:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(expect));
        assert!(!f.root().join(&f.id).exists(), "state dir left ({expect})");
        assert!(!f.cgroup_dir().exists(), "cgroup left ({expect})");
    }
}

#[test]
fn unknown_container_does_not_exist() {
    if !keel_testkit::require_root("unknown_container_does_not_exist") {
        return;
    }
    let f = Fixture::new("unknown", &["true"]);
    for cmd in [
        &["delete", "nope"][..],
        &["delete", "--force", "nope"],
        &["kill", "nope", "KILL"],
        &["start", "nope"],
        &["state", "nope"],
    ] {
        let o = f.output(cmd);
        assert!(!o.status.success(), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("does not exist"),
            "{cmd:?}: {o:?}"
        );
        assert!(f.last_error().contains("does not exist"));
    }
}

#[tokio::test]
async fn monitor_runs_a_container_through_keel_runc() {
    use keel_cri::monitor::{ExitRecord, MONITOR_LOG, PID_FILE, client};
    use keel_cri::oci_runtime::OciRuntime;
    if !keel_testkit::require_root("monitor_runs_a_container_through_keel_runc") {
        return;
    }
    let f = Fixture::new(
        "monitor",
        &["sh", "-c", "echo hello; echo oops >&2; exit 3"],
    );
    let runtime = OciRuntime::new(PathBuf::from(KEEL_RUNC), f.root());
    let mdir = f.dir.path().join("monitor");
    std::fs::create_dir_all(&mdir).expect("monitor dir");
    let cri_log = f.dir.path().join("container.log");
    let argv = runtime.create_argv(
        &f.id,
        &f.bundle(),
        &mdir.join(PID_FILE),
        &mdir.join(MONITOR_LOG),
    );
    let started = client::spawn(client::SpawnRequest {
        monitor_binary: Path::new(MONITOR),
        id: &f.id,
        dir: &mdir,
        log_path: Some(&cri_log),
        runtime_argv: argv,
        timeout: TIMEOUT,
    })
    .await
    .expect("monitor create");
    assert!(started.init_pid > 0);
    runtime.start(&f.id).await.expect("start");
    tokio::time::timeout(TIMEOUT, started.handle.exited())
        .await
        .expect("monitor exit in time");
    let exit = ExitRecord::read(&mdir).expect("exit record");
    assert_eq!(exit.exit_code, 3);
    let log = std::fs::read_to_string(&cri_log).unwrap_or_default();
    assert!(log.contains(" stdout F hello"), "{log}");
    assert!(log.contains(" stderr F oops"), "{log}");
    runtime.delete(&f.id, false).await.expect("delete");
    let e = runtime
        .delete(&f.id, false)
        .await
        .expect_err("second delete");
    assert!(e.is_not_found(), "{e}");
    assert!(!f.cgroup_dir().exists(), "cgroup left");

    // A failing create comes back as the monitor's error, with keel-runc's message.
    f.write_config("{not json");
    let argv = runtime.create_argv(
        &f.id,
        &f.bundle(),
        &mdir.join(PID_FILE),
        &mdir.join(MONITOR_LOG),
    );
    let err = client::spawn(client::SpawnRequest {
        monitor_binary: Path::new(MONITOR),
        id: &f.id,
        dir: &mdir,
        log_path: Some(&cri_log),
        runtime_argv: argv,
        timeout: TIMEOUT,
    })
    .await
    .expect_err("create with bad config");
    assert!(err.to_string().contains("invalid config.json"), "{err}");
}
