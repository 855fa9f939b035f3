//! `state ID` (runc's JSON state on stdout) and `list [--format table|json] [--quiet]`.
//!
//! Read-only: looks at `<root>/*/state.json` through libcontainer, which also refreshes the
//! status from /proc (a dead or zombie init means `stopped`).

use std::io::Write;
use std::path::Path;

use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

use super::{Error, Global, load};

/// The shape runc prints for `state` (and for each entry of `list --format json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StateJson {
    pub oci_version: String,
    pub id: String,
    /// 0 once stopped, like runc.
    pub pid: i32,
    pub status: &'static str,
    pub bundle: String,
    pub rootfs: String,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::HashMap<String, String>>,
    pub owner: String,
}

pub fn status_name(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

pub fn to_json(c: &Container) -> StateJson {
    let status = c.status();
    let pid = match status {
        ContainerStatus::Stopped => 0,
        _ => c.pid().map(|p| p.as_raw()).unwrap_or(0),
    };
    StateJson {
        oci_version: c.state.oci_version.clone(),
        id: c.id().to_string(),
        pid,
        status: status_name(status),
        bundle: c.bundle().display().to_string(),
        rootfs: rootfs(c.bundle()),
        created: c
            .created()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_default(),
        annotations: c.state.annotations.clone(),
        owner: c
            .creator()
            .map(|o| o.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// The rootfs from the bundle's config.json, made absolute; empty when unreadable.
fn rootfs(bundle: &Path) -> String {
    let root = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
        .and_then(|v| v["root"]["path"].as_str().map(str::to_string));
    match root {
        Some(r) => bundle.join(r).display().to_string(),
        None => String::new(),
    }
}

pub fn state(global: &Global, id: &str) -> Result<(), Error> {
    let c = load(global, "state", id)?;
    let text = serde_json::to_string_pretty(&to_json(&c))
        .map_err(|e| Error::Output(std::io::Error::other(e)))?;
    writeln!(std::io::stdout(), "{text}").map_err(Error::Output)
}

pub fn list(global: &Global, json: bool, quiet: bool) -> Result<(), Error> {
    let mut states = Vec::new();
    let entries = match std::fs::read_dir(&global.root) {
        Ok(e) => e.flatten().collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(Error::Io {
                what: "listing",
                path: global.root.clone(),
                source,
            });
        }
    };
    for entry in entries {
        // Directories without a loadable state (a create in progress) are skipped, as runc does.
        if let Ok(c) = Container::load(entry.path()) {
            states.push(to_json(&c));
        }
    }
    states.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = std::io::stdout().lock();
    let res = if json {
        serde_json::to_string(&states)
            .map_err(std::io::Error::other)
            .and_then(|t| writeln!(out, "{t}"))
    } else if quiet {
        states.iter().try_for_each(|s| writeln!(out, "{}", s.id))
    } else {
        writeln!(out, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER").and_then(|()| {
            states.iter().try_for_each(|s| {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    s.id, s.pid, s.status, s.bundle, s.created, s.owner
                )
            })
        })
    };
    res.map_err(Error::Output)
}
