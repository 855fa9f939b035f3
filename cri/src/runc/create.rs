//! `create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] [--no-pivot]
//! [--preserve-fds N] ID`: sets up the container and leaves its init waiting for `start`.
//!
//! The init inherits this process's stdin/stdout/stderr (nothing here touches them) and becomes
//! a child of whoever is our nearest subreaper once we exit. Returns as soon as the init is
//! waiting; its pid is in `--pid-file`. Descriptors leaked by the caller are closed first (see
//! [`super::close_leaked_fds`]). On failure nothing is left behind: libcontainer removes
//! the cgroup and state directory it made when the process setup fails, and the few earlier
//! failures that leave a state directory are cleaned here.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::error::LibcontainerError;
use libcontainer::oci_spec::runtime::Spec;
use libcontainer::syscall::syscall::SyscallType;

use super::{Error, Global, container_dir, validate_id};

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub id: String,
    /// `--bundle`; the current directory when empty.
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
}

pub fn create(global: &Global, o: &Options) -> Result<(), Error> {
    validate_id(&o.id)?;
    super::close_leaked_fds(o.preserve_fds);
    let bundle = absolute_bundle(&o.bundle)?;
    let spec = load_spec(&bundle)?;
    check_oom_score_adj(&spec)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&global.root)
        .map_err(|source| Error::Io {
            what: "creating state root",
            path: global.root.clone(),
            source,
        })?;
    let dir = container_dir(&global.root, &o.id);
    if dir.exists() {
        return Err(Error::Exists { id: o.id.clone() });
    }
    let built = ContainerBuilder::new(o.id.clone(), SyscallType::default())
        .with_root_path(&global.root)
        .and_then(|b| b.with_pid_file(o.pid_file.as_ref()))
        .map(|b| {
            b.with_console_socket(o.console_socket.as_ref())
                .with_preserved_fds(o.preserve_fds)
                .as_init(&bundle)
                .with_systemd(global.systemd_cgroup)
                .with_detach(true)
                .with_no_pivot(o.no_pivot)
        })
        .and_then(|b| b.build());
    match built {
        Ok(_) => Ok(()),
        Err(e) => {
            let err = Error::runtime("create", &o.id, &e);
            // libcontainer cleans up after failures of the process setup, not after those
            // between making the state directory and forking (rootfs, console socket, config).
            if !matches!(e, LibcontainerError::Exist)
                && dir.exists()
                && let Err(rm) = std::fs::remove_dir_all(&dir)
            {
                super::log::warn(&format!("removing {}: {rm}", dir.display()));
            }
            Err(err)
        }
    }
}

fn absolute_bundle(bundle: &Path) -> Result<PathBuf, Error> {
    let b = if bundle.as_os_str().is_empty() {
        Path::new(".")
    } else {
        bundle
    };
    std::fs::canonicalize(b).map_err(|source| Error::Io {
        what: "bundle",
        path: b.to_path_buf(),
        source,
    })
}

/// Loads `config.json` and checks what libcontainer reports poorly (its error for bad JSON is
/// "oci spec error"; a missing `root` surfaces late).
fn load_spec(bundle: &Path) -> Result<Spec, Error> {
    let path = bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|source| Error::Io {
        what: "reading",
        path: path.clone(),
        source,
    })?;
    let spec: Spec = serde_json::from_slice(&text).map_err(|e| Error::Bundle {
        path: path.clone(),
        message: format!("invalid config.json: {e}"),
    })?;
    let Some(root) = spec.root() else {
        return Err(Error::Bundle {
            path,
            message: "config.json has no root (the container's rootfs)".to_string(),
        });
    };
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(Error::Bundle {
            path,
            message: format!("root path {} is not a directory", rootfs.display()),
        });
    }
    if spec.process().is_none() {
        return Err(Error::Bundle {
            path,
            message: "config.json has no process".to_string(),
        });
    }
    Ok(spec)
}

/// libcontainer writes `process.oomScoreAdj` to `/proc/self/oom_score_adj` and reports a bare
/// EPERM when lowering it is not allowed; try first and say why.
fn check_oom_score_adj(spec: &Spec) -> Result<(), Error> {
    let Some(value) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) else {
        return Ok(());
    };
    OpenOptions::new()
        .write(true)
        .open("/proc/self/oom_score_adj")
        .and_then(|mut f| f.write_all(value.to_string().as_bytes()))
        .map_err(|source| Error::OomScoreAdj { value, source })
}
