//! The namespaces of a pod sandbox, without an infra container: network, IPC and UTS namespaces
//! made on a short-lived thread and pinned by bind mounts, and a tiny pause process that holds
//! the pod's shared PID namespace.
//!
//! Owns creating, configuring (hostname, `lo` up, namespaced sysctls) and removing those pins.
//! Never enters or changes the host's own namespaces: everything happens on a thread that has
//! unshared first.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} for sandbox {id}: {source}")]
    Sys {
        id: String,
        what: String,
        source: std::io::Error,
    },
    #[error("sysctl {key}: {message}")]
    Sysctl { key: String, message: String },
}

/// Which namespaces the sandbox gets of its own.
#[derive(Debug, Clone, Default)]
pub struct NamespaceRequest {
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
    pub hostname: String,
    /// Namespaced sysctls (`net.*`, `kernel.shm*`, ...) to set inside the new namespaces.
    pub sysctls: Vec<(String, String)>,
}

/// Paths of the pinned namespaces (None = the host's).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pinned {
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
}

/// Checks that each sysctl is namespaced, and in a namespace the sandbox owns.
pub fn validate_sysctls(
    sysctls: &[(String, String)],
    own_net: bool,
    own_ipc: bool,
) -> Result<(), Error> {
    for (key, value) in sysctls {
        let err = |message: &str| Error::Sysctl {
            key: key.clone(),
            message: message.to_string(),
        };
        if key.contains("..") || key.contains('/') && key.contains('.') || key.is_empty() {
            return Err(err("is not a sysctl name"));
        }
        if value.contains('\n') {
            return Err(err("value holds a newline"));
        }
        let k = key.replace('/', ".");
        let is_ipc = k.starts_with("kernel.shm")
            || k.starts_with("kernel.msg")
            || k == "kernel.sem"
            || k.starts_with("fs.mqueue.");
        if k.starts_with("net.") {
            if !own_net {
                return Err(err(
                    "is a network sysctl, and the sandbox uses the host network",
                ));
            }
        } else if is_ipc {
            if !own_ipc {
                return Err(err(
                    "is an IPC sysctl, and the sandbox uses the host IPC namespace",
                ));
            }
        } else {
            return Err(err("is not namespaced: it would change the host"));
        }
    }
    Ok(())
}

fn sys(id: &str, what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error + '_ {
    let what = what.into();
    move |source| Error::Sys {
        id: id.to_string(),
        what,
        source,
    }
}

fn errno_io(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from(e)
}

/// Creates the requested namespaces and pins them under `<state>/{netns,ipcns,utsns}/<id>`.
/// On failure nothing stays pinned.
pub fn create(state: &Path, id: &str, req: &NamespaceRequest) -> Result<Pinned, Error> {
    let mut flags = CloneFlags::empty();
    let mut pins: Vec<(&'static str, PathBuf)> = Vec::new();
    for (own, flag, kind, dir) in [
        (req.network, CloneFlags::CLONE_NEWNET, "net", "netns"),
        (req.ipc, CloneFlags::CLONE_NEWIPC, "ipc", "ipcns"),
        (req.uts, CloneFlags::CLONE_NEWUTS, "uts", "utsns"),
    ] {
        if own {
            flags |= flag;
            pins.push((kind, state.join(dir).join(id)));
        }
    }
    if pins.is_empty() {
        return Ok(Pinned::default());
    }
    for (_, p) in &pins {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(sys(id, format!("creating {}", parent.display())))?;
        }
    }
    let req = req.clone();
    let thread_pins = pins.clone();
    let owned_id = id.to_string();
    let result = std::thread::spawn(move || -> Result<(), Error> {
        let id = owned_id.as_str();
        nix::sched::unshare(flags).map_err(|e| sys(id, "unshare")(errno_io(e)))?;
        if req.uts && !req.hostname.is_empty() {
            nix::unistd::sethostname(&req.hostname)
                .map_err(|e| sys(id, format!("sethostname {:?}", req.hostname))(errno_io(e)))?;
        }
        if req.network {
            loopback_up().map_err(sys(id, "bringing lo up"))?;
        }
        for (key, value) in &req.sysctls {
            let path = Path::new("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&path, value).map_err(|e| Error::Sysctl {
                key: key.clone(),
                message: e.to_string(),
            })?;
        }
        let mut done: Vec<&PathBuf> = Vec::new();
        for (kind, target) in &thread_pins {
            let pinned = File::create(target)
                .map_err(sys(id, format!("creating {}", target.display())))
                .and_then(|_| {
                    let src = format!("/proc/thread-self/ns/{kind}");
                    nix::mount::mount(
                        Some(src.as_str()),
                        target,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(|e| {
                        sys(id, format!("pinning {src} at {}", target.display()))(errno_io(e))
                    })
                });
            if let Err(e) = pinned {
                for t in done {
                    unpin(t);
                }
                let _ = std::fs::remove_file(target);
                return Err(e);
            }
            done.push(target);
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Sys {
            id: id.to_string(),
            what: "namespace thread".to_string(),
            source: std::io::Error::other("panicked"),
        })
    });
    if let Err(e) = result {
        for (_, p) in &pins {
            unpin(p);
        }
        return Err(e);
    }
    let find = |kind: &str| {
        pins.iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, p)| p.clone())
    };
    Ok(Pinned {
        netns: find("net"),
        ipcns: find("ipc"),
        utsns: find("uts"),
    })
}

/// Unmounts and removes one pin; a pin that is already gone is fine.
pub fn unpin(path: &Path) {
    let _ = nix::mount::umount2(path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

/// Removes every pin of a sandbox.
pub fn remove(pinned: &Pinned) {
    for p in [&pinned.netns, &pinned.ipcns, &pinned.utsns]
        .into_iter()
        .flatten()
    {
        unpin(p);
    }
}

/// True when `path` is a mount point of an nsfs file (the pin is still there).
pub fn is_pinned(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = path.to_string_lossy();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_ref()) && l.contains(" - nsfs "))
}

/// Brings `lo` up in the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket/ioctl system calls on a zeroed `ifreq` whose name we fill in; the
    // socket is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Runs `f` on a thread that has joined the network namespace at `netns`.
pub fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let ns = File::open(netns)?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(errno_io)?;
        Ok(f())
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn sysctl_rules() {
        assert!(
            validate_sysctls(
                &[s("net.ipv4.ip_forward", "1"), s("kernel.shmmax", "1")],
                true,
                true
            )
            .is_ok()
        );
        assert!(validate_sysctls(&[s("net.ipv4.ip_forward", "1")], false, true).is_err());
        assert!(validate_sysctls(&[s("kernel.shmmax", "1")], true, false).is_err());
        assert!(validate_sysctls(&[s("vm.swappiness", "1")], true, true).is_err());
        assert!(validate_sysctls(&[s("net.ipv4.ip_forward", "1\n2")], true, true).is_err());
        assert!(validate_sysctls(&[s("net..x", "1")], true, true).is_err());
    }
}
