//! `kill [--all] ID [SIGNAL]`: sends a signal (a name like `SIGTERM`/`TERM` or a number; default
//! SIGTERM) to the init, or with `--all` to every process in the container's cgroup.

use libcontainer::signal::Signal;

use super::{Error, Global, load};

#[derive(Debug, Clone)]
pub struct Options {
    pub id: String,
    pub signal: String,
    pub all: bool,
}

/// Parses a signal the way runc does: `SIGKILL`, `KILL`, `kill` or `9`.
pub fn parse_signal(s: &str) -> Result<Signal, Error> {
    let invalid = || Error::InvalidSignal {
        signal: s.to_string(),
    };
    match s.trim().parse::<i32>() {
        Ok(n) => Signal::try_from(n).map_err(|_| invalid()),
        Err(_) => Signal::try_from(s.trim()).map_err(|_| invalid()),
    }
}

pub fn kill(global: &Global, o: &Options) -> Result<(), Error> {
    let signal = parse_signal(&o.signal)?;
    let mut container = load(global, "kill", &o.id)?;
    container
        .kill(signal, o.all)
        .map_err(|e| Error::runtime("kill", &o.id, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "TERM", "term", "9", "KILL", "SIGKILL", "15"] {
            assert!(parse_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["", "SIGNOPE", "0", "-1", "999"] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }
}
