//! Helpers shared by keel-cni's plugin test binaries: running one plugin binary the way a
//! runtime does (the `CNI_*` environment, the config on stdin).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `bin` with `CNI_COMMAND=command` for container `id` (ifname `eth0`) in `netns`, plugins
/// found in `path`, and `conf` on stdin; returns what it printed and how it exited.
pub fn run_plugin(
    bin: &Path,
    command: &str,
    conf: &serde_json::Value,
    netns: &Path,
    id: &str,
    path: &Path,
) -> Output {
    let mut child = Command::new(bin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.to_string().as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait plugin")
}
