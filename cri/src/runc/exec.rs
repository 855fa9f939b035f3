//! `exec [--process FILE | ARGS...] [--pid-file FILE] [--detach] [--cwd DIR] [--env K=V] ID`:
//! runs an extra process in a running container's namespaces and cgroup.
//!
//! The process inherits this process's stdio. Its pid is written to `--pid-file` before it
//! execs (keel-cri kills it by that pid on a timeout). Without `--detach` we wait for it and our
//! exit status is its own: its exit code, or 128 + the signal that killed it. libcontainer
//! clones it as our direct child (`CLONE_PARENT` from the intermediate process), so a plain
//! `waitpid` sees it.

use std::collections::HashMap;
use std::path::PathBuf;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError};
use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{Error, Global, container_dir, load, validate_id};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub id: String,
    /// `--process`: an OCI `process` JSON; when absent, `args` (with `cwd`/`env`) is run.
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: i32,
}

pub fn exec(global: &Global, o: &Options) -> Result<i32, Error> {
    validate_id(&o.id)?;
    if !container_dir(&global.root, &o.id).exists() {
        return Err(Error::NotFound { id: o.id.clone() });
    }
    if o.process.is_none() && o.args.is_empty() {
        return Err(Error::Runtime {
            op: "exec",
            id: o.id.clone(),
            message: "nothing to run: give --process or a command".to_string(),
        });
    }
    let env: HashMap<String, String> = o
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    // libcontainer 0.7 builds an exec'd process's spec without the container's seccomp filter:
    // the executor below loads it into the process just before its exec.
    let seccomp = load(global, "exec", &o.id)
        .ok()
        .and_then(|c| oci_spec::runtime::Spec::load(c.bundle().join("config.json")).ok())
        .and_then(|spec| spec.linux().as_ref().and_then(|l| l.seccomp().clone()));
    let executor = SeccompExecutor { seccomp };
    let pid = ContainerBuilder::new(o.id.clone(), SyscallType::default())
        .with_root_path(&global.root)
        .and_then(|b| b.with_pid_file(o.pid_file.as_ref()))
        .and_then(|b| {
            b.with_executor(executor)
                .with_console_socket(o.console_socket.as_ref())
                .with_preserved_fds(o.preserve_fds)
                .as_tenant()
                .with_detach(o.detach)
                .with_process(o.process.as_ref())
                .with_container_args(o.args.clone())
                .with_cwd(o.cwd.as_ref())
                .with_env(env)
                .build()
        })
        .map_err(|e| Error::runtime("exec", &o.id, &e))?;
    if o.detach {
        return Ok(0);
    }
    wait_exit_code(pid)
}

/// Runs an exec'd process like libcontainer's default executor, after loading the container's
/// seccomp filter into it (the filter every process of the container must live under).
/// Loading a filter needs CAP_SYS_ADMIN or no_new_privs; a process without the first gets the
/// second, which is stricter than runc (set-user-ID programs do not gain privileges in it).
#[derive(Clone)]
struct SeccompExecutor {
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), ExecutorError> {
        if let Some(profile) = &self.seccomp {
            if libcontainer::seccomp::is_notify(profile) {
                return Err(ExecutorError::Other(
                    "seccomp notify profiles are not supported by keel-runc exec".into(),
                ));
            }
            if libcontainer::seccomp::initialize_seccomp(profile).is_err() {
                nix::sys::prctl::set_no_new_privs()
                    .map_err(|e| ExecutorError::Other(format!("setting no_new_privs: {e}")))?;
                libcontainer::seccomp::initialize_seccomp(profile).map_err(|e| {
                    ExecutorError::Other(format!("loading the seccomp filter: {e}"))
                })?;
            }
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Waits for `pid` and turns its end into a shell-style exit code.
fn wait_exit_code(pid: Pid) -> Result<i32, Error> {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(source) => {
                return Err(Error::Wait {
                    pid: pid.as_raw(),
                    source,
                });
            }
        }
    }
}
