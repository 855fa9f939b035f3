//! What sandboxes that keel-cri no longer knows left on the host: a crash in the middle of
//! RunPodSandbox (before its checkpoint was written) or of RemovePodSandbox (after the record was
//! removed) leaves pinned namespaces, a pod /dev/shm mount and a PID-namespace holder behind.
//!
//! Owns finding and removing those at startup, by the layout `namespaces`, `pidns` and the
//! sandbox lifecycle use under the state directory. Never touches a sandbox in `live`.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::namespaces::unpin;

/// The pin directories under `state`, one per namespace kind.
const PIN_DIRS: [&str; 4] = ["netns", "ipcns", "utsns", "pidns"];

/// Removes every pin, pod shm and PID-namespace holder of a sandbox id not in `live`.
/// Returns what was removed, for the log.
pub fn remove(state: &Path, live: &HashSet<String>) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for kind in PIN_DIRS {
        for pin in orphans_in(&state.join(kind), live) {
            if kind == "pidns" {
                kill_namespace_init(&pin);
            }
            unpin(&pin);
            removed.push(pin);
        }
    }
    for dir in orphans_in(&state.join("sandboxes"), live) {
        let _ = nix::mount::umount2(&dir.join("shm"), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&dir);
        removed.push(dir);
    }
    removed
}

/// Entries of `dir` named after a sandbox id that is not live.
fn orphans_in(dir: &Path, live: &HashSet<String>) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !live.contains(e.file_name().to_string_lossy().as_ref()))
        .map(|e| e.path())
        .collect()
}

/// Kills the init of the PID namespace pinned at `pin` (the pod's holder): every other process
/// in that namespace dies with it.
fn kill_namespace_init(pin: &Path) {
    let Ok(meta) = std::fs::metadata(pin) else {
        return;
    };
    let wanted = format!("pid:[{}]", meta.ino());
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let in_ns = std::fs::read_link(e.path().join("ns/pid"))
            .is_ok_and(|l| l.to_string_lossy() == wanted);
        if in_ns && is_namespace_init(&e.path()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// True when the process is pid 1 of its own PID namespace (the last `NSpid` field is 1).
fn is_namespace_init(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last().map(|p| p == "1"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unknown_ids_are_orphans() {
        let d = tempfile::tempdir().expect("tmp");
        for id in ["live1", "dead1"] {
            std::fs::create_dir_all(d.path().join("sandboxes").join(id)).expect("dir");
            std::fs::create_dir_all(d.path().join("netns")).expect("dir");
            std::fs::write(d.path().join("netns").join(id), "").expect("pin file");
        }
        let live = HashSet::from(["live1".to_string()]);
        let mut removed = remove(d.path(), &live);
        removed.sort();
        assert_eq!(
            removed,
            vec![
                d.path().join("netns/dead1"),
                d.path().join("sandboxes/dead1")
            ]
        );
        assert!(d.path().join("netns/live1").exists());
        assert!(d.path().join("sandboxes/live1").exists());
        assert!(!d.path().join("sandboxes/dead1").exists());
    }
}
