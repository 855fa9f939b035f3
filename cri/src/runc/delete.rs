//! `delete [--force] ID`: removes a stopped (or created) container's cgroup and state
//! directory; `--force` kills a running one first. An unknown id fails with "does not exist"
//! (keel-cri treats that as already deleted).

use super::{Error, Global, container_dir, load, validate_id};

#[derive(Debug, Clone)]
pub struct Options {
    pub id: String,
    pub force: bool,
}

pub fn delete(global: &Global, o: &Options) -> Result<(), Error> {
    validate_id(&o.id)?;
    let mut container = match load(global, "delete", &o.id) {
        Ok(c) => c,
        // A state directory without readable state (a create killed half-way): with --force
        // there is nothing left to ask libcontainer about, so just remove it.
        Err(Error::Runtime { .. }) if o.force => {
            let dir = container_dir(&global.root, &o.id);
            return std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
                what: "removing state directory",
                path: dir,
                source,
            });
        }
        Err(e) => return Err(e),
    };
    container
        .delete(o.force)
        .map_err(|e| Error::runtime("delete", &o.id, &e))
}
