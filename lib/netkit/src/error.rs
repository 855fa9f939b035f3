//! The error type of keel-netkit: every variant says which operation failed on what (interface,
//! namespace, sysctl or table), and keeps the kernel's errno so callers can branch on it
//! (for example "no such device" on a delete that should be idempotent).

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A netlink request was refused (or the socket failed): `op` names the request and its object.
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
    },
    /// The kernel's answer could not be decoded.
    #[error("{op}: cannot decode the kernel's answer: {msg}")]
    Decode { op: String, msg: String },
    /// A link looked up by name does not exist.
    #[error("no interface named {name:?}{}", in_netns(.netns))]
    NoSuchLink {
        name: String,
        netns: Option<PathBuf>,
    },
    /// A link exists but is not what the caller needs (e.g. not a bridge).
    #[error("interface {name:?} {problem}")]
    WrongLink { name: String, problem: String },
    /// A network namespace could not be opened or entered.
    #[error("network namespace {}: {op}: {source}", .path.display())]
    Netns {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A `/proc/sys` knob could not be read or written.
    #[error("sysctl {key}: {source}")]
    Sysctl {
        key: String,
        #[source]
        source: io::Error,
    },
    /// An invalid argument given by the caller (a name too long, a prefix that does not fit).
    #[error("{0}")]
    Invalid(String),
}

fn in_netns(netns: &Option<PathBuf>) -> String {
    match netns {
        Some(p) => format!(" in network namespace {}", p.display()),
        None => String::new(),
    }
}

impl Error {
    /// The errno behind a kernel refusal, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Netlink { source, .. }
            | Error::Netns { source, .. }
            | Error::Sysctl { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the object was not there (ENODEV, ENOENT, ESRCH, EADDRNOTAVAIL, or a lookup miss).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NoSuchLink { .. })
            || matches!(
                self.errno(),
                Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
            )
    }

    /// True when the object already existed (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
