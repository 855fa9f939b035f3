//! `start ID`: lets a created container's init exec the user process.
//!
//! Talks to the init through the notify socket in the state directory (libcontainer's
//! `Container::start`); touches nothing else.

use super::{Error, Global, load};

pub fn start(global: &Global, id: &str) -> Result<(), Error> {
    let mut container = load(global, "start", id)?;
    container
        .start()
        .map_err(|e| Error::runtime("start", id, &e))
}
