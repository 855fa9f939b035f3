//! The image store's files under `<root>/images`, and the records kept there.
//!
//! ```text
//! images/
//!   blobs/sha256/<hex>          content-addressed blobs (index, manifest, config, layer), verified
//!   blobs/sha256/.tmp-<hex>-*   a download in progress: renamed to <hex> once its digest matches
//!   layers/<diff id hex>/       an unpacked layer: one overlay lowerdir, shared between images
//!   layers/.tmp-<hex>-*/        an unpack in progress: renamed once complete
//!   layers/.trash-*/            a layer being deleted
//!   meta/<config hex>.json      one ImageRecord per image (written atomically)
//!   holds.json                  which container holds which layers
//! ```
//! Owns paths, the record types and the blob writer; it decides nothing about what to keep
//! (`mod.rs` does). Anything named `.tmp-*`/`.trash-*` is garbage at open.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::RunConfig;

/// Version of the image record format.
pub const RECORD_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("blob {expected} has digest {actual}: refusing it")]
    DigestMismatch { expected: String, actual: String },
    #[error("blob {digest} has {actual} bytes, the descriptor says {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0:?} is not a sha256 digest")]
    BadDigest(String),
    #[error(transparent)]
    Record(#[from] crate::store::Error),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What keel-cri knows about one image (id = config digest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub version: u32,
    /// `sha256:<config digest hex>`.
    pub id: String,
    /// Normalized `name:tag` references.
    pub repo_tags: Vec<String>,
    /// `name@sha256:<digest>`, the digest pulled (an index's own digest for multi-arch images).
    pub repo_digests: Vec<String>,
    /// Config plus compressed layer sizes, as containerd counts.
    pub size: u64,
    /// The platform manifest's digest.
    pub manifest_digest: String,
    /// Every blob the image keeps: index (if any), manifest, config, layers.
    pub blobs: Vec<String>,
    /// Layer diff ids, lowest first.
    pub layers: Vec<String>,
    pub config: RunConfig,
    /// Unix seconds of the (last) pull.
    pub pulled_at: i64,
}

/// One container's hold on layers (kept even if its image is removed meanwhile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hold {
    pub image_id: String,
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HoldsFile {
    pub version: u32,
    pub holds: BTreeMap<String, Hold>,
}

/// The hex part of a `sha256:` digest, checked (it becomes a file name).
pub fn digest_hex(digest: &str) -> Result<&str, Error> {
    super::reference::parse_digest(digest).map_err(|_| Error::BadDigest(digest.to_string()))?;
    Ok(&digest["sha256:".len()..])
}

/// Paths of the store.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(images_root: PathBuf) -> Layout {
        Layout { root: images_root }
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join("meta")
    }
    pub fn holds_path(&self) -> PathBuf {
        self.root.join("holds.json")
    }
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, Error> {
        Ok(self.blobs_dir().join(digest_hex(digest)?))
    }
    pub fn layer_path(&self, diff_id: &str) -> Result<PathBuf, Error> {
        Ok(self.layers_dir().join(digest_hex(diff_id)?))
    }
    pub fn meta_path(&self, id: &str) -> Result<PathBuf, Error> {
        Ok(self.meta_dir().join(format!("{}.json", digest_hex(id)?)))
    }
    pub fn tmp_layer_path(&self, diff_id: &str) -> Result<PathBuf, Error> {
        Ok(self.layers_dir().join(format!(
            ".tmp-{}-{}",
            digest_hex(diff_id)?,
            uuid::Uuid::new_v4().simple()
        )))
    }
    pub fn trash_path(&self) -> PathBuf {
        self.layers_dir()
            .join(format!(".trash-{}", uuid::Uuid::new_v4().simple()))
    }

    /// Creates the directories and removes leftovers of interrupted pulls and deletions.
    pub fn prepare(&self) -> Result<(), Error> {
        for d in [self.blobs_dir(), self.layers_dir(), self.meta_dir()] {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        for (dir, prefixes) in [
            (self.blobs_dir(), &[".tmp-"][..]),
            (self.layers_dir(), &[".tmp-", ".trash-"][..]),
        ] {
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if prefixes.iter().any(|p| name.starts_with(p)) {
                    let p = entry.path();
                    tracing::info!("removing leftover {}", p.display());
                    remove_path(&p)?;
                }
            }
        }
        let meta = self.meta_dir();
        for entry in std::fs::read_dir(&meta).map_err(io(&meta))?.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "tmp") {
                remove_path(&p)?;
            }
        }
        Ok(())
    }

    /// Every image record on disk; unreadable ones are logged and skipped.
    pub fn load_images(&self) -> Vec<ImageRecord> {
        let Ok(rd) = std::fs::read_dir(self.meta_dir()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let p = entry.path();
            if p.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match crate::store::read_json::<ImageRecord>(&p) {
                Ok(r) if r.version == RECORD_VERSION => out.push(r),
                Ok(r) => tracing::warn!("skipping {}: record version {}", p.display(), r.version),
                Err(e) => tracing::warn!("skipping image record: {e}"),
            }
        }
        out
    }

    pub fn save_image(&self, r: &ImageRecord) -> Result<(), Error> {
        Ok(crate::store::write_json(&self.meta_path(&r.id)?, r)?)
    }

    pub fn delete_image(&self, id: &str) -> Result<(), Error> {
        let p = self.meta_path(id)?;
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&p)(e)),
            _ => Ok(()),
        }
    }

    pub fn load_holds(&self) -> HoldsFile {
        let p = self.holds_path();
        if !p.exists() {
            return HoldsFile::default();
        }
        crate::store::read_json(&p).unwrap_or_else(|e| {
            tracing::warn!("ignoring holds: {e}");
            HoldsFile::default()
        })
    }

    pub fn save_holds(&self, h: &HoldsFile) -> Result<(), Error> {
        Ok(crate::store::write_json(&self.holds_path(), h)?)
    }

    /// Digests of every blob on disk.
    pub fn list_blobs(&self) -> Vec<String> {
        list_hex(&self.blobs_dir())
    }

    /// Diff ids of every unpacked layer on disk.
    pub fn list_layers(&self) -> Vec<String> {
        list_hex(&self.layers_dir())
    }

    /// Stores `bytes` as blob `digest` after checking it.
    pub fn write_blob_bytes(&self, digest: &str, bytes: &[u8]) -> Result<(), Error> {
        let mut w = BlobWriter::create(self, digest, None)?;
        w.write(bytes)?;
        w.commit()
    }
}

fn list_hex(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|n| format!("sha256:{n}"))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a file or a whole directory; missing is fine.
pub fn remove_path(p: &Path) -> Result<(), Error> {
    let r = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) => Err(e),
    };
    match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(p)(e)),
        _ => Ok(()),
    }
}

/// Writes one blob: into a temp file, hashing as it goes; [`BlobWriter::commit`] checks the
/// digest (and size) and renames it into place. Dropped uncommitted, the temp file goes away.
pub struct BlobWriter {
    digest: String,
    expected_size: Option<u64>,
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<std::fs::File>,
    hash: Sha256,
    written: u64,
}

impl BlobWriter {
    pub fn create(
        layout: &Layout,
        digest: &str,
        expected_size: Option<u64>,
    ) -> Result<BlobWriter, Error> {
        let dest = layout.blob_path(digest)?;
        let tmp = layout.blobs_dir().join(format!(
            ".tmp-{}-{}",
            digest_hex(digest)?,
            uuid::Uuid::new_v4().simple()
        ));
        let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        Ok(BlobWriter {
            digest: digest.to_string(),
            expected_size,
            tmp,
            dest,
            file: Some(file),
            hash: Sha256::new(),
            written: 0,
        })
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        self.hash.update(chunk);
        self.written += chunk.len() as u64;
        if let Some(f) = self.file.as_mut() {
            f.write_all(chunk).map_err(io(&self.tmp))?;
        }
        if let Some(max) = self.expected_size
            && self.written > max
        {
            return Err(Error::SizeMismatch {
                digest: self.digest.clone(),
                expected: max,
                actual: self.written,
            });
        }
        Ok(())
    }

    pub fn commit(mut self) -> Result<(), Error> {
        let actual = format!("sha256:{}", hex::encode(self.hash.clone().finalize()));
        if actual != self.digest {
            return Err(Error::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            });
        }
        if let Some(size) = self.expected_size
            && size != self.written
        {
            return Err(Error::SizeMismatch {
                digest: self.digest.clone(),
                expected: size,
                actual: self.written,
            });
        }
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(io(&self.tmp))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(io(&self.dest))?;
        Ok(())
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful commit the temp file no longer exists.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> (tempfile::TempDir, Layout) {
        let d = tempfile::tempdir().expect("tempdir");
        let l = Layout::new(d.path().join("images"));
        l.prepare().expect("prepare");
        (d, l)
    }

    fn digest_of(b: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(b)))
    }

    #[test]
    fn record_round_trip_and_leftovers() {
        let (_d, l) = layout();
        let r = ImageRecord {
            version: RECORD_VERSION,
            id: digest_of(b"config"),
            repo_tags: vec!["docker.io/library/busybox:latest".into()],
            repo_digests: vec![format!("docker.io/library/busybox@{}", digest_of(b"m"))],
            size: 42,
            manifest_digest: digest_of(b"m"),
            blobs: vec![digest_of(b"m"), digest_of(b"config")],
            layers: vec![digest_of(b"layer")],
            config: RunConfig {
                user: Some("keel".into()),
                cmd: Some(vec!["sh".into()]),
                ..Default::default()
            },
            pulled_at: 7,
        };
        l.save_image(&r).expect("save");
        assert_eq!(l.load_images(), vec![r.clone()]);
        let mut h = HoldsFile::default();
        h.holds.insert(
            "c1".into(),
            Hold {
                image_id: r.id.clone(),
                layers: r.layers.clone(),
            },
        );
        l.save_holds(&h).expect("holds");
        assert_eq!(l.load_holds(), h);

        // Leftovers of an interrupted pull disappear at open; finished content stays.
        let tmp_layer = l.tmp_layer_path(&r.layers[0]).expect("tmp");
        std::fs::create_dir_all(tmp_layer.join("etc")).expect("mkdir");
        std::fs::write(l.blobs_dir().join(".tmp-x"), b"half").expect("write");
        std::fs::create_dir_all(l.layer_path(&r.layers[0]).expect("layer")).expect("mkdir");
        l.prepare().expect("prepare again");
        assert!(!tmp_layer.exists());
        assert!(!l.blobs_dir().join(".tmp-x").exists());
        assert_eq!(l.list_layers(), r.layers);
        l.delete_image(&r.id).expect("delete");
        assert!(l.load_images().is_empty());
        l.delete_image(&r.id).expect("delete twice");
    }

    #[test]
    fn blob_writer_verifies() {
        let (_d, l) = layout();
        let data = b"hello blob";
        let d = digest_of(data);
        l.write_blob_bytes(&d, data).expect("good blob");
        assert_eq!(
            std::fs::read(l.blob_path(&d).expect("path")).expect("read"),
            data
        );

        let wrong = digest_of(b"other");
        let e = l.write_blob_bytes(&wrong, data).expect_err("bad digest");
        assert!(e.to_string().contains("refusing"), "{e}");
        let mut w = BlobWriter::create(&l, &d, Some(3)).expect("writer");
        assert!(w.write(data).is_err());
        drop(w);
        assert_eq!(l.list_blobs(), vec![d.clone()]);
        assert!(matches!(
            l.blob_path("sha256:../../etc"),
            Err(Error::BadDigest(_))
        ));
        // No temp file is left behind by failures.
        let names: Vec<_> = std::fs::read_dir(l.blobs_dir())
            .expect("rd")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }
}
