//! The per-container monitor (the conmon role): the protocol between keel-cri and
//! `keel-cri-monitor`, and both of its sides.
//!
//! ```text
//! keel-cri                                   keel-cri-monitor (own session, survives keel-cri)
//!   spawn(args, sync pipe as --sync-fd) ───►  subreaper; stdout/stderr pipes
//!                                              runs `<runtime> create ... <id>` with the pipes as stdio
//!   read sync pipe ◄── "ok <init pid>\n"  or  "err <message>\n", then the pipe closes
//!                                              copies output into the CRI log (SIGUSR1: reopen it)
//!                                              reaps init; writes `exit` atomically; exits
//!   pidfd on the monitor fires ──► read `exit`
//! ```
//!
//! Files in the container's monitor directory (`<state>/containers/<id>/`): `pid` (the init's pid,
//! written by the runtime), `monitor.log` (the monitor's own diagnostics and the runtime's log),
//! `exit` (`exit_code=N`, `finished_at=<unix ns>`, written last, by rename).
//!
//! [`process`] is the monitor's side (used only by the binary); [`client`] is keel-cri's side.

pub mod client;
pub mod log_writer;
pub mod process;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Name of the file holding the container's exit record.
pub const EXIT_FILE: &str = "exit";
/// Name of the file the runtime writes the init pid to.
pub const PID_FILE: &str = "pid";
/// Name of the monitor's own log (and the runtime's `--log`).
pub const MONITOR_LOG: &str = "monitor.log";

/// How a container's init process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    /// The exit status, or 128 + signal number when killed by a signal.
    pub exit_code: i32,
    pub finished_at: SystemTime,
}

impl ExitRecord {
    pub fn encode(&self) -> String {
        let ns = self
            .finished_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("exit_code={}\nfinished_at={ns}\n", self.exit_code)
    }

    pub fn decode(text: &str) -> Option<ExitRecord> {
        let mut exit_code = None;
        let mut finished = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("exit_code", v)) => exit_code = v.parse::<i32>().ok(),
                Some(("finished_at", v)) => finished = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        Some(ExitRecord {
            exit_code: exit_code?,
            finished_at: UNIX_EPOCH + Duration::from_nanos(finished?),
        })
    }

    /// Reads `<dir>/exit`; `None` when it does not exist (yet) or is unreadable.
    pub fn read(dir: &Path) -> Option<ExitRecord> {
        std::fs::read_to_string(dir.join(EXIT_FILE))
            .ok()
            .and_then(|t| ExitRecord::decode(&t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_record_round_trips() {
        let r = ExitRecord {
            exit_code: 137,
            finished_at: UNIX_EPOCH + Duration::from_nanos(1_795_346_191_000_000_123),
        };
        assert_eq!(ExitRecord::decode(&r.encode()), Some(r));
        assert_eq!(ExitRecord::decode("exit_code=1\n"), None);
        assert_eq!(ExitRecord::decode("garbage"), None);
    }
}
