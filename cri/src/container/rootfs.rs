//! A container's root filesystem: an overlay of the image's unpacked layers (read-only lower
//! dirs, shared between containers) with a per-container upper and work dir.
//!
//! Owns mounting and unmounting it; never writes into a layer.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("mounting the rootfs at {target}: {message}")]
    Mount { target: PathBuf, message: String },
}

/// Mounts `overlay` at `target` with `layers` (lowest first) under `upper`/`work`.
pub fn mount(layers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), Error> {
    let err = |message: String| Error::Mount {
        target: target.to_path_buf(),
        message,
    };
    for d in [upper, work, target] {
        std::fs::create_dir_all(d).map_err(|e| err(format!("creating {}: {e}", d.display())))?;
    }
    let empty;
    let lowers: Vec<&Path> = if layers.is_empty() {
        // overlayfs needs a lower dir: an image without layers gets an empty one.
        empty = upper.with_file_name("empty-lower");
        std::fs::create_dir_all(&empty).map_err(|e| err(e.to_string()))?;
        vec![empty.as_path()]
    } else {
        layers.iter().rev().map(PathBuf::as_path).collect()
    };
    let lowerdir = lowers
        .iter()
        .map(|p| p.to_string_lossy().replace(':', "\\:"))
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={},index=off",
        upper.display(),
        work.display()
    );
    if data.len() >= 4000 {
        return Err(err(format!(
            "{} layers make mount options of {} bytes, over the kernel's page-size limit",
            layers.len(),
            data.len()
        )));
    }
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| err(format!("overlay: {e}")))
}

/// Unmounts the rootfs; not mounted is fine.
pub fn unmount(target: &Path) -> Result<(), Error> {
    match nix::mount::umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::Mount {
            target: target.to_path_buf(),
            message: format!("unmount: {e}"),
        }),
    }
}
