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
use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{Error, Global, container_dir, validate_id};

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
    let pid = ContainerBuilder::new(o.id.clone(), SyscallType::default())
        .with_root_path(&global.root)
        .and_then(|b| b.with_pid_file(o.pid_file.as_ref()))
        .and_then(|b| {
            b.with_console_socket(o.console_socket.as_ref())
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
