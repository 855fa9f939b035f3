//! The `loopback` plugin binary: brings `lo` up (ADD) or down (DEL) inside the container's
//! network namespace, and CHECK verifies it is up. Touches nothing but the flags of `lo` in
//! `CNI_NETNS`; never the host's namespace (the work runs on a thread that entered the netns).
//!
//! The result names `lo` with the zero MAC and its addresses (127.0.0.1/8, and ::1/128 when
//! IPv6 gave it one), like the reference; a chained `prevResult` is passed through unchanged.

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use keel_cni::plugin::{INTERNAL, Invocation, Plugin, PluginError};
use keel_cni::spec::{CniResult, Interface, IpConfig};
use nix::sched::{CloneFlags, setns};

/// What went wrong with the loopback interface.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("no network namespace given (CNI_NETNS)")]
    NoNetns,
    #[error("network namespace {0} does not exist")]
    MissingNetns(PathBuf),
    #[error("entering network namespace {path}: {source}")]
    Netns { path: PathBuf, source: io::Error },
    #[error("{op} on lo: {source}")]
    Ioctl { op: &'static str, source: io::Error },
    #[error("loopback interface is down")]
    Down,
}

impl From<Error> for PluginError {
    fn from(e: Error) -> PluginError {
        // The reference reports every failure with the skeleton's catch-all code.
        PluginError::new(INTERNAL, e.to_string())
    }
}

/// Runs `f` on a thread that has entered the network namespace at `path`.
fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> Result<T, Error> + Send) -> Result<T, Error> {
    let ns = File::open(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => Error::MissingNetns(path.to_path_buf()),
        _ => Error::Netns {
            path: path.to_path_buf(),
            source,
        },
    })?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| Error::Netns {
                path: path.to_path_buf(),
                source: e.into(),
            })?;
            // This thread ends with `f`, so nothing else ever runs in the container's netns.
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Netns {
                path: path.to_path_buf(),
                source: io::Error::other("the namespace thread panicked"),
            })
        })
    })
}

/// The flags of `lo` in the calling thread's netns, and a socket to change them with.
fn lo_flags() -> Result<(OwnedFd, libc::ifreq), Error> {
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::Ioctl {
            op: "socket",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of a valid, owned ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(Error::Ioctl {
            op: "SIOCGIFFLAGS",
            source: io::Error::last_os_error(),
        });
    }
    Ok((sock, req))
}

fn is_up(req: &libc::ifreq) -> bool {
    // SAFETY: SIOCGIFFLAGS filled the union's flags member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    i32::from(flags) & libc::IFF_UP != 0
}

fn set_lo(up: bool) -> Result<(), Error> {
    let (sock, mut req) = lo_flags()?;
    if is_up(&req) == up {
        return Ok(());
    }
    // SAFETY: the flags member is the one SIOCGIFFLAGS filled and SIOCSIFFLAGS reads.
    unsafe {
        let flags = i32::from(req.ifr_ifru.ifru_flags);
        let flags = if up {
            flags | libc::IFF_UP
        } else {
            flags & !libc::IFF_UP
        };
        req.ifr_ifru.ifru_flags = flags as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads a valid, owned ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(Error::Ioctl {
            op: "SIOCSIFFLAGS",
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// True when `lo` holds ::1 in the calling thread's netns.
fn has_ipv6_loopback() -> bool {
    std::fs::read_to_string("/proc/thread-self/net/if_inet6").is_ok_and(|text| {
        text.lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.first() == Some(&"00000000000000000000000000000001")
                && fields.last() == Some(&"lo")
        })
    })
}

struct Loopback;

impl Plugin for Loopback {
    fn add(&self, inv: &Invocation) -> Result<CniResult, PluginError> {
        let netns = inv.netns.as_deref().ok_or(Error::NoNetns)?;
        let v6 = in_netns(netns, || {
            set_lo(true)?;
            Ok(has_ipv6_loopback())
        })?;
        if let Some(prev) = inv.prev_result()? {
            return Ok(prev);
        }
        let mut ips = vec![IpConfig {
            address: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::LOCALHOST, 8)),
            gateway: None,
            interface: Some(0),
        }];
        if v6 {
            ips.push(IpConfig {
                address: IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
                gateway: None,
                interface: Some(0),
            });
        }
        Ok(CniResult {
            cni_version: inv.version.to_string(),
            interfaces: vec![Interface {
                name: "lo".into(),
                mac: "00:00:00:00:00:00".into(),
                mtu: None,
                sandbox: netns.display().to_string(),
            }],
            ips,
            ..CniResult::default()
        })
    }

    fn del(&self, inv: &Invocation) -> Result<(), PluginError> {
        let Some(netns) = inv.netns.as_deref() else {
            return Ok(());
        };
        match in_netns(netns, || set_lo(false)) {
            // Nothing left to bring down.
            Ok(()) | Err(Error::MissingNetns(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn check(&self, inv: &Invocation) -> Result<(), PluginError> {
        let netns = inv.netns.as_deref().ok_or(Error::NoNetns)?;
        let up = in_netns(netns, || Ok(is_up(&lo_flags()?.1)))?;
        if up { Ok(()) } else { Err(Error::Down.into()) }
    }
}

fn main() {
    std::process::exit(keel_cni::plugin::run(
        &Loopback,
        "Keel loopback plugin (CNI 1.1): brings lo up in the container's network namespace",
    ));
}
