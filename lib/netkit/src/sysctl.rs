//! `/proc/sys` knobs, addressed by their path under `/proc/sys` (`net/ipv4/ip_forward`): slashes,
//! not dots, because interface names may contain dots. The namespace is the calling thread's:
//! run inside [`crate::netns::Netns::run`] to change a container's knobs.

use std::path::PathBuf;

use crate::error::{Error, Result};

fn path(key: &str) -> Result<PathBuf> {
    if key
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::Invalid(format!("invalid sysctl key {key:?}")));
    }
    Ok(PathBuf::from("/proc/sys").join(key))
}

/// Reads a knob, trimmed.
pub fn read(key: &str) -> Result<String> {
    std::fs::read_to_string(path(key)?)
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::Sysctl {
            key: key.to_string(),
            source,
        })
}

/// Writes a knob.
pub fn write(key: &str, value: &str) -> Result<()> {
    std::fs::write(path(key)?, value).map_err(|source| Error::Sysctl {
        key: key.to_string(),
        source,
    })
}

/// Writes a knob only when it differs (avoids needless writes to a read-mostly `/proc`).
pub fn ensure(key: &str, value: &str) -> Result<()> {
    if read(key)? != value {
        write(key, value)?;
    }
    Ok(())
}

/// Enables IPv4 forwarding (`net/ipv4/ip_forward = 1`).
pub fn enable_ipv4_forwarding() -> Result<()> {
    ensure("net/ipv4/ip_forward", "1")
}

/// Enables IPv6 forwarding on all interfaces (`net/ipv6/conf/all/forwarding = 1`).
pub fn enable_ipv6_forwarding() -> Result<()> {
    ensure("net/ipv6/conf/all/forwarding", "1")
}

/// Sets `net/ipv6/conf/<ifname>/accept_dad` (0 disables duplicate address detection, so new
/// addresses are usable at once). A missing IPv6 tree (ipv6 disabled) is not an error.
pub fn set_accept_dad(ifname: &str, value: u8) -> Result<()> {
    match write(
        &format!("net/ipv6/conf/{ifname}/accept_dad"),
        &value.to_string(),
    ) {
        Err(Error::Sysctl { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        other => other,
    }
}
