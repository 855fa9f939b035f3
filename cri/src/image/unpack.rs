//! Applies one layer tar (uncompressed, gzip or zstd) into a fresh directory that overlayfs can
//! use as a lowerdir on its own.
//!
//! Owns the tar-to-overlay translation: OCI whiteouts `.wh.<name>` become overlay whiteouts (a
//! 0/0 character device), opaque markers `.wh..wh..opq` become `trusted.overlay.opaque=y` on
//! their directory. Owns the safety rules too: no entry may land outside the layer directory
//! (no `..`, no absolute path, no path through a symlink, no hard link out of the layer).
//! It never touches anything outside `dest`; the caller gives it a fresh directory and renames
//! it into place once this returns `Ok`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer entry {entry:?} is refused: {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("layer entry {entry:?}: {source}")]
    Entry {
        entry: String,
        source: std::io::Error,
    },
    #[error("reading layer {blob}: {source}")]
    Read {
        blob: PathBuf,
        source: std::io::Error,
    },
    #[error("layer media type {0:?} is not a supported layer type")]
    MediaType(String),
    #[error("layer {blob} has diff id {actual}, the image config says {expected}")]
    DiffId {
        blob: PathBuf,
        expected: String,
        actual: String,
    },
}

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression the media type announces (`None` for an unknown type).
pub fn compression_of_media_type(media_type: &str) -> Option<Compression> {
    let mt = media_type
        .strip_prefix("application/")
        .unwrap_or(media_type);
    match mt {
        "vnd.oci.image.layer.v1.tar"
        | "vnd.oci.image.layer.nondistributable.v1.tar"
        | "vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        "vnd.oci.image.layer.v1.tar+gzip"
        | "vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "vnd.docker.image.rootfs.diff.tar.gzip"
        | "vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "vnd.oci.image.layer.v1.tar+zstd" | "vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
            Some(Compression::Zstd)
        }
        _ => None,
    }
}

/// The compression the first bytes show.
pub fn compression_of_magic(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// What one tar entry path means for the layer directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    /// The layer root itself (`./`): nothing to create.
    Root,
    /// An ordinary entry at this relative path.
    Plain(PathBuf),
    /// `.wh.<name>`: `path` is hidden from lower layers.
    Whiteout(PathBuf),
    /// `.wh..wh..opq`: directory `dir` hides all of its lower content.
    Opaque(PathBuf),
    /// Other `.wh..wh.` metadata (aufs hard link directories): ignored.
    Skip,
}

/// A tar path made relative and checked: `./a/b` → `a/b`; `..` or an absolute path is refused.
pub fn sanitize(raw: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err("its path contains \"..\"".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("its path is absolute".into());
            }
        }
    }
    Ok(out)
}

/// Classifies a tar entry path (pure).
pub fn plan(raw: &Path) -> Result<Planned, String> {
    let rel = sanitize(raw)?;
    let Some(name) = rel.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
        return Ok(Planned::Root);
    };
    let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    if name == ".wh..wh..opq" {
        return Ok(Planned::Opaque(parent));
    }
    if name.starts_with(".wh..wh.") {
        return Ok(Planned::Skip);
    }
    if let Some(hidden) = name.strip_prefix(".wh.") {
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(format!("whiteout {name:?} names nothing"));
        }
        return Ok(Planned::Whiteout(parent.join(hidden)));
    }
    Ok(Planned::Plain(rel))
}

/// Hashes what passes through it (the uncompressed tar: its digest is the diff id).
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Unpacks `blob` (a layer of `media_type`) into `dest`, an existing empty directory, and
/// checks that the uncompressed stream has digest `diff_id`. Compression is taken from the
/// magic bytes; the media type must be a layer type.
pub fn unpack(blob: &Path, media_type: &str, diff_id: &str, dest: &Path) -> Result<(), Error> {
    if compression_of_media_type(media_type).is_none() {
        return Err(Error::MediaType(media_type.to_string()));
    }
    let read_err = |source| Error::Read {
        blob: blob.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(blob).map_err(read_err)?;
    let mut buffered = BufReader::with_capacity(256 * 1024, file);
    let head = buffered.fill_buf().map_err(read_err)?;
    let decoded: Box<dyn Read> = match compression_of_magic(head) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(read_err)?)
        }
        Compression::None => Box::new(buffered),
    };
    let mut hashing = Hashing {
        inner: decoded,
        hash: Sha256::new(),
    };
    apply_tar(&mut hashing, dest, blob)?;
    // Trailing blocks after the end-of-archive marker are part of the diff.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(read_err)?;
    let actual = format!("sha256:{}", hex::encode(hashing.hash.finalize()));
    if actual != diff_id {
        return Err(Error::DiffId {
            blob: blob.to_path_buf(),
            expected: diff_id.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Applies an uncompressed tar stream into `dest`.
pub fn apply_tar(reader: &mut dyn Read, dest: &Path, blob: &Path) -> Result<(), Error> {
    let mut archive = tar::Archive::new(reader);
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let entries = archive.entries().map_err(|source| Error::Read {
        blob: blob.to_path_buf(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| Error::Read {
            blob: blob.to_path_buf(),
            source,
        })?;
        let raw = entry
            .path()
            .map_err(|source| Error::Read {
                blob: blob.to_path_buf(),
                source,
            })?
            .into_owned();
        let name = raw.display().to_string();
        let unsafe_entry = |reason: String| Error::Unsafe {
            entry: name.clone(),
            reason,
        };
        let io = |source| Error::Entry {
            entry: name.clone(),
            source,
        };
        match plan(&raw).map_err(unsafe_entry)? {
            Planned::Root | Planned::Skip => {}
            Planned::Opaque(dir) => {
                let target = dest.join(&dir);
                prepare_parents(dest, &dir).map_err(unsafe_or_io(&name))?;
                if !dir.as_os_str().is_empty() {
                    ensure_dir(&target).map_err(unsafe_or_io(&name))?;
                }
                rustix::fs::lsetxattr(&target, "trusted.overlay.opaque", b"y", XattrFlags::empty())
                    .map_err(|e| io(e.into()))?;
            }
            Planned::Whiteout(path) => {
                prepare_parents(dest, &path).map_err(unsafe_or_io(&name))?;
                let target = dest.join(&path);
                remove_existing(&target).map_err(io)?;
                rustix::fs::mknodat(CWD, &target, FileType::CharacterDevice, Mode::empty(), 0)
                    .map_err(|e| io(e.into()))?;
            }
            Planned::Plain(path) => {
                prepare_parents(dest, &path).map_err(unsafe_or_io(&name))?;
                let target = dest.join(&path);
                let header = entry.header().clone();
                let kind = header.entry_type();
                let mode = header.mode().map_err(io)? & 0o7777;
                match kind {
                    tar::EntryType::Directory => {
                        ensure_dir(&target).map_err(unsafe_or_io(&name))?;
                    }
                    tar::EntryType::Regular
                    | tar::EntryType::Continuous
                    | tar::EntryType::GNUSparse => {
                        remove_existing(&target).map_err(io)?;
                        let mut f = std::fs::OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&target)
                            .map_err(io)?;
                        std::io::copy(&mut entry, &mut f).map_err(io)?;
                    }
                    tar::EntryType::Symlink => {
                        let link = entry
                            .link_name()
                            .map_err(io)?
                            .ok_or_else(|| unsafe_entry("a symlink without a target".into()))?
                            .into_owned();
                        remove_existing(&target).map_err(io)?;
                        std::os::unix::fs::symlink(&link, &target).map_err(io)?;
                    }
                    tar::EntryType::Link => {
                        let link = entry
                            .link_name()
                            .map_err(io)?
                            .ok_or_else(|| unsafe_entry("a hard link without a target".into()))?
                            .into_owned();
                        let rel = sanitize(&link).map_err(|r| {
                            unsafe_entry(format!("hard link target {}: {r}", link.display()))
                        })?;
                        check_no_symlink_parents(dest, &rel).map_err(unsafe_or_io(&name))?;
                        let source = dest.join(&rel);
                        match std::fs::symlink_metadata(&source) {
                            Ok(m) if !m.is_dir() => {}
                            _ => {
                                return Err(unsafe_entry(format!(
                                    "hard link target {} is not a file of this layer",
                                    rel.display()
                                )));
                            }
                        }
                        if source != target {
                            remove_existing(&target).map_err(io)?;
                            std::fs::hard_link(&source, &target).map_err(io)?;
                        }
                        continue; // shares the target's inode and metadata
                    }
                    tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                        let ft = match kind {
                            tar::EntryType::Char => FileType::CharacterDevice,
                            tar::EntryType::Block => FileType::BlockDevice,
                            _ => FileType::Fifo,
                        };
                        let major = header.device_major().map_err(io)?.unwrap_or(0);
                        let minor = header.device_minor().map_err(io)?.unwrap_or(0);
                        let dev = rustix::fs::makedev(major, minor);
                        remove_existing(&target).map_err(io)?;
                        rustix::fs::mknodat(CWD, &target, ft, Mode::from_raw_mode(mode), dev)
                            .map_err(|e| io(e.into()))?;
                    }
                    // PAX and GNU long-name headers are consumed by the tar reader itself.
                    _ => continue,
                }
                let uid = header.uid().map_err(io)?;
                let gid = header.gid().map_err(io)?;
                rustix::fs::chownat(
                    CWD,
                    &target,
                    Some(rustix::fs::Uid::from_raw(uid as u32)),
                    Some(rustix::fs::Gid::from_raw(gid as u32)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io(e.into()))?;
                if kind != tar::EntryType::Symlink {
                    // After chown, which clears set-id bits.
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                        .map_err(io)?;
                }
                if let Some(exts) = entry.pax_extensions().map_err(io)? {
                    for ext in exts {
                        let ext = ext.map_err(io)?;
                        let Ok(key) = ext.key() else { continue };
                        let Some(xattr) = key.strip_prefix("SCHILY.xattr.") else {
                            continue;
                        };
                        if xattr.starts_with("trusted.overlay.") {
                            return Err(unsafe_entry(format!(
                                "it sets the overlay attribute {xattr}"
                            )));
                        }
                        if let Err(e) = rustix::fs::lsetxattr(
                            &target,
                            xattr,
                            ext.value_bytes(),
                            XattrFlags::empty(),
                        ) {
                            tracing::warn!("layer entry {name:?}: xattr {xattr}: {e}");
                        }
                    }
                }
                let mtime = header.mtime().map_err(io)? as i64;
                if kind == tar::EntryType::Directory {
                    dir_times.push((target, mtime));
                } else {
                    set_mtime(&target, mtime).map_err(io)?;
                }
            }
        }
    }
    // Last, as creating entries changes their directory's mtime.
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime).map_err(|source| Error::Entry {
            entry: dir.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// A failure preparing a path: a safety refusal or an I/O error.
enum PathError {
    Unsafe(String),
    Io(std::io::Error),
}

fn unsafe_or_io(entry: &str) -> impl Fn(PathError) -> Error + '_ {
    move |e| match e {
        PathError::Unsafe(reason) => Error::Unsafe {
            entry: entry.to_string(),
            reason,
        },
        PathError::Io(source) => Error::Entry {
            entry: entry.to_string(),
            source,
        },
    }
}

/// Walks the parents of `rel` inside `dest`: each must be a real directory (created 0755 when
/// missing), never a symlink, so nothing is written outside `dest`.
fn prepare_parents(dest: &Path, rel: &Path) -> Result<(), PathError> {
    let mut cur = dest.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(PathError::Unsafe(format!(
                    "its parent {} is a symlink",
                    cur.strip_prefix(dest).unwrap_or(&cur).display()
                )));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(PathError::Unsafe(format!(
                    "its parent {} is not a directory",
                    cur.strip_prefix(dest).unwrap_or(&cur).display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).map_err(PathError::Io)?;
                std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(0o755))
                    .map_err(PathError::Io)?;
            }
            Err(e) => return Err(PathError::Io(e)),
        }
    }
    Ok(())
}

/// Like [`prepare_parents`] but creates nothing (for hard link targets).
fn check_no_symlink_parents(dest: &Path, rel: &Path) -> Result<(), PathError> {
    let mut cur = dest.to_path_buf();
    for c in rel.parent().into_iter().flat_map(Path::components) {
        cur.push(c);
        if let Ok(m) = std::fs::symlink_metadata(&cur)
            && m.file_type().is_symlink()
        {
            return Err(PathError::Unsafe(format!(
                "its link target goes through the symlink {}",
                cur.strip_prefix(dest).unwrap_or(&cur).display()
            )));
        }
    }
    Ok(())
}

fn ensure_dir(path: &Path) -> Result<(), PathError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            remove_existing(path).map_err(PathError::Io)?;
            std::fs::create_dir(path).map_err(PathError::Io)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(path).map_err(PathError::Io)
        }
        Err(e) => Err(PathError::Io(e)),
    }
}

/// Removes whatever is at `path` (a later entry replaces an earlier one), never following a
/// symlink.
fn remove_existing(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(m) if m.file_type().is_symlink() || !m.file_type().is_dir() => {
            std::fs::remove_file(path)
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mtime(path: &Path, secs: i64) -> std::io::Result<()> {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(Into::into)
}

/// Whether `path` is an overlay whiteout (a 0/0 character device).
pub fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_char_device() && m.rdev() == 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_entries() {
        let p = |s: &str| PathBuf::from(s);
        let cases: Vec<(&str, Result<Planned, &str>)> = vec![
            ("./", Ok(Planned::Root)),
            ("./etc/passwd", Ok(Planned::Plain(p("etc/passwd")))),
            ("etc/", Ok(Planned::Plain(p("etc")))),
            ("data/.wh.gone", Ok(Planned::Whiteout(p("data/gone")))),
            (".wh.top", Ok(Planned::Whiteout(p("top")))),
            ("opq/.wh..wh..opq", Ok(Planned::Opaque(p("opq")))),
            (".wh..wh..opq", Ok(Planned::Opaque(p("")))),
            ("a/.wh..wh.plnk", Ok(Planned::Skip)),
            ("a/.wh.", Err("names nothing")),
            ("../etc/passwd", Err("\"..\"")),
            ("a/../../b", Err("\"..\"")),
            ("/etc/passwd", Err("absolute")),
        ];
        for (input, want) in cases {
            match (plan(Path::new(input)), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
                (Err(got), Err(needle)) => assert!(got.contains(needle), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn detects_compression() {
        let cases = [
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Some(Compression::Gzip),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Some(Compression::Zstd),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar",
                Some(Compression::None),
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Compression::Gzip),
            ),
            ("application/vnd.oci.image.config.v1+json", None),
        ];
        for (mt, want) in cases {
            assert_eq!(compression_of_media_type(mt), want, "{mt}");
        }
        assert_eq!(compression_of_magic(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            compression_of_magic(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(compression_of_magic(b"etc/\0\0"), Compression::None);
        assert_eq!(compression_of_magic(b""), Compression::None);
    }

    /// Tar building helpers for the privileged tests.
    fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        // Written raw so that tests can build hostile paths the builder refuses.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h
    }

    fn add(b: &mut tar::Builder<Vec<u8>>, mut h: tar::Header, data: &[u8]) {
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, target: &str) {
        let mut h = header(path, kind, 0o777, 0);
        h.set_link_name(target).expect("link name");
        add(b, h, &[]);
    }

    fn apply(tar: Vec<u8>, dest: &Path) -> Result<(), Error> {
        apply_tar(&mut &tar[..], dest, Path::new("test.tar"))
    }

    fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
        let mut buf = [0u8; 64];
        rustix::fs::lgetxattr(p, name, &mut buf[..])
            .ok()
            .map(|n| buf[..n].to_vec())
    }

    #[test]
    fn unpacks_files_links_devices_and_whiteouts() {
        use std::os::unix::fs::MetadataExt;
        if !keel_testkit::require_root("unpacks_files_links_devices_and_whiteouts") {
            return;
        }
        let d = tempfile::tempdir().expect("tempdir");
        let mut b = tar::Builder::new(Vec::new());
        add(
            &mut b,
            header("./", tar::EntryType::Directory, 0o755, 0),
            &[],
        );
        add(
            &mut b,
            header("etc/", tar::EntryType::Directory, 0o750, 0),
            &[],
        );
        let mut h = header("etc/secret", tar::EntryType::Regular, 0o4640, 5);
        h.set_uid(1000);
        h.set_gid(2000);
        add(&mut b, h, b"hello");
        // A file whose directory has no entry of its own.
        add(
            &mut b,
            header("deep/er/file", tar::EntryType::Regular, 0o600, 2),
            b"hi",
        );
        link(&mut b, "etc/link", tar::EntryType::Symlink, "/etc/secret");
        link(&mut b, "etc/hard", tar::EntryType::Link, "./etc/secret");
        let mut h = header("dev/null", tar::EntryType::Char, 0o666, 0);
        h.set_device_major(1).expect("major");
        h.set_device_minor(3).expect("minor");
        add(&mut b, h, &[]);
        add(
            &mut b,
            header("data/.wh.gone", tar::EntryType::Regular, 0o600, 0),
            &[],
        );
        add(
            &mut b,
            header("opq/.wh..wh..opq", tar::EntryType::Regular, 0o600, 0),
            &[],
        );
        add(
            &mut b,
            header("opq/new", tar::EntryType::Regular, 0o644, 1),
            b"n",
        );
        // An xattr through a PAX header.
        b.append_pax_extensions([("SCHILY.xattr.user.keel", &b"v"[..])])
            .expect("pax");
        add(
            &mut b,
            header("withxattr", tar::EntryType::Regular, 0o644, 0),
            &[],
        );
        apply(b.into_inner().expect("tar"), d.path()).expect("unpack");

        let p = |s: &str| d.path().join(s);
        let m = std::fs::symlink_metadata(p("etc/secret")).expect("secret");
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4640, 1000, 2000));
        assert_eq!(m.mtime(), 1_000_000);
        assert_eq!(m.nlink(), 2, "hard link shares the inode");
        assert_eq!(std::fs::read(p("etc/hard")).expect("hard"), b"hello");
        assert_eq!(
            std::fs::read_link(p("etc/link")).expect("link"),
            Path::new("/etc/secret")
        );
        assert_eq!(
            std::fs::symlink_metadata(p("etc")).expect("etc").mode() & 0o7777,
            0o750
        );
        assert_eq!(
            std::fs::symlink_metadata(p("etc")).expect("etc").mtime(),
            1_000_000
        );
        assert_eq!(std::fs::read(p("deep/er/file")).expect("deep"), b"hi");
        let dev = std::fs::symlink_metadata(p("dev/null")).expect("dev");
        assert!(dev.file_type().is_char_device());
        assert_eq!(dev.rdev(), rustix::fs::makedev(1, 3));
        assert!(is_whiteout(&p("data/gone")));
        assert!(!p("data/.wh.gone").exists());
        assert_eq!(
            xattr(&p("opq"), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..])
        );
        assert!(!p("opq/.wh..wh..opq").exists());
        assert_eq!(std::fs::read(p("opq/new")).expect("new"), b"n");
        assert_eq!(
            xattr(&p("withxattr"), "user.keel").as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn refuses_entries_escaping_the_layer() {
        if !keel_testkit::require_root("refuses_entries_escaping_the_layer") {
            return;
        }
        let outside = tempfile::tempdir().expect("outside");
        let o = outside.path().display().to_string();
        type Build = Box<dyn Fn(&mut tar::Builder<Vec<u8>>)>;
        let cases: Vec<(&str, Build, &str)> = vec![
            (
                "dotdot",
                Box::new(|b| {
                    add(
                        b,
                        header("a/../../x", tar::EntryType::Regular, 0o644, 1),
                        b"x",
                    )
                }),
                "\"..\"",
            ),
            (
                "absolute",
                Box::new(|b| add(b, header("/x", tar::EntryType::Regular, 0o644, 1), b"x")),
                "absolute",
            ),
            (
                "through a symlink",
                Box::new(move |b| {
                    link(b, "a", tar::EntryType::Symlink, &o);
                    add(
                        b,
                        header("a/pwned", tar::EntryType::Regular, 0o644, 1),
                        b"x",
                    );
                }),
                "parent a is a symlink",
            ),
            (
                "whiteout through a symlink",
                Box::new({
                    let o = outside.path().display().to_string();
                    move |b| {
                        link(b, "a", tar::EntryType::Symlink, &o);
                        add(
                            b,
                            header("a/.wh.pwned", tar::EntryType::Regular, 0o644, 0),
                            &[],
                        );
                    }
                }),
                "symlink",
            ),
            (
                "hard link out",
                Box::new(|b| link(b, "h", tar::EntryType::Link, "../../etc/passwd")),
                "\"..\"",
            ),
            (
                "hard link to a lower layer",
                Box::new(|b| link(b, "h", tar::EntryType::Link, "etc/passwd")),
                "not a file of this layer",
            ),
            (
                "overlay xattr",
                Box::new(|b| {
                    b.append_pax_extensions([(
                        "SCHILY.xattr.trusted.overlay.redirect",
                        &b"/x"[..],
                    )])
                    .expect("pax");
                    add(b, header("r", tar::EntryType::Directory, 0o755, 0), &[]);
                }),
                "overlay attribute",
            ),
        ];
        for (name, build, needle) in cases {
            let d = tempfile::tempdir().expect("tempdir");
            let mut b = tar::Builder::new(Vec::new());
            build(&mut b);
            let e = apply(b.into_inner().expect("tar"), d.path()).expect_err(name);
            assert!(e.to_string().contains(needle), "{name}: {e}");
            let leaked: Vec<_> = std::fs::read_dir(outside.path())
                .expect("rd")
                .flatten()
                .collect();
            assert!(
                leaked.is_empty(),
                "{name}: wrote outside the layer: {leaked:?}"
            );
        }
    }

    #[test]
    fn unpack_checks_compression_and_diff_id() {
        if !keel_testkit::require_root("unpack_checks_compression_and_diff_id") {
            return;
        }
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, header("f", tar::EntryType::Regular, 0o644, 1), b"f");
        let plain = b.into_inner().expect("tar");
        let diff = format!("sha256:{}", hex::encode(Sha256::digest(&plain)));
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut e, &plain).expect("gz");
            e.finish().expect("gz")
        };
        let zst = zstd::encode_all(&plain[..], 0).expect("zstd");
        let gzip_mt = "application/vnd.oci.image.layer.v1.tar+gzip";
        let dir = tempfile::tempdir().expect("tempdir");
        // The magic bytes win over a media type that names another compression.
        for (i, (bytes, mt)) in [
            (&plain, "application/vnd.oci.image.layer.v1.tar"),
            (&gz, gzip_mt),
            (&zst, "application/vnd.oci.image.layer.v1.tar+zstd"),
            (&zst, gzip_mt),
        ]
        .into_iter()
        .enumerate()
        {
            let blob = dir.path().join(format!("blob{i}"));
            std::fs::write(&blob, bytes).expect("blob");
            let dest = dir.path().join(format!("layer{i}"));
            std::fs::create_dir(&dest).expect("dest");
            unpack(&blob, mt, &diff, &dest).unwrap_or_else(|e| panic!("{mt}: {e}"));
            assert_eq!(std::fs::read(dest.join("f")).expect("f"), b"f");
            let wrong = format!("sha256:{}", "0".repeat(64));
            let dest2 = dir.path().join(format!("bad{i}"));
            std::fs::create_dir(&dest2).expect("dest");
            let e = unpack(&blob, mt, &wrong, &dest2).expect_err("diff id");
            assert!(matches!(e, Error::DiffId { .. }), "{e}");
        }
        let blob = dir.path().join("blob0");
        let e = unpack(
            &blob,
            "application/vnd.oci.image.config.v1+json",
            &diff,
            dir.path(),
        )
        .expect_err("media type");
        assert!(e.to_string().contains("not a supported layer type"), "{e}");
    }
}
