//! keel-cri's image store: pulls images from registries into `<root>/images`, keeps their
//! records across restarts, and hands containers their unpacked layers.
//!
//! Owns the store's state (image records, container holds, pull leases) and the rules on what
//! may be deleted. Submodules: `reference` (names), `manifest` (registry documents), `pull`
//! (registries), `unpack` (layer tars), `store` (files and records).
//!
//! Architecture invariants:
//! - An image is recorded only after every blob is verified and every layer unpacked; a pull
//!   that fails, or is killed, leaves nothing new behind (leases + garbage collection at open).
//! - A blob or layer directory is deleted only when no recorded image, no container hold and no
//!   pull in progress (lease) references it. Holds are persisted: after a restart a container's
//!   overlay still keeps its lowerdirs.
//! - Concurrent pulls of one reference run once; every caller gets that pull's result.
//!
//! RemoveImage follows containerd's CRI plugin (`image_remove.go`): whatever names the image
//! (id, tag or digest reference), the whole image goes, with all its tags and digests, because
//! CRI's ImageSpec does not tell a tag from an image. Also like containerd, removing an image a
//! container uses succeeds: the record goes, but the layers the container holds stay until the
//! container is removed (an overlay never loses a lowerdir under it).

pub mod manifest;
pub mod pull;
pub mod reference;
pub mod store;
pub mod unpack;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, TryStreamExt};
use k8s_cri::v1 as cri;

use self::manifest::{Manifest, RunConfig};
use self::pull::{Failure, FailureKind, Fetcher};
use self::reference::ImageReference;
use self::store::{BlobWriter, Hold, ImageRecord, Layout, RECORD_VERSION};
use crate::config::RegistryConfig;
use crate::container::spec::ImageDefaults;
use crate::runtime::{self, ImageProvider, ResolvedImage};

/// Layers fetched at once by one pull.
const PARALLEL_LAYERS: usize = 3;

/// The image store's errors; [`From<Error> for runtime::Error`] is the one mapping to what the
/// CRI caller sees.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] reference::Error),
    #[error(transparent)]
    Pull(#[from] pull::Error),
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("pulling image {reference}: {message}")]
    Config { reference: String, message: String },
    #[error("image store: {0}")]
    Store(String),
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Error {
        Error::Store(e.to_string())
    }
}

impl From<Error> for runtime::Error {
    fn from(e: Error) -> runtime::Error {
        let msg = e.to_string();
        match &e {
            Error::Reference(_) | Error::Config { .. } => runtime::Error::InvalidArgument(msg),
            Error::NotFound(_) => runtime::Error::NotFound(msg),
            Error::Store(_) => runtime::Error::Internal(msg),
            Error::Pull(p) => match p.kind() {
                FailureKind::NotFound => runtime::Error::NotFound(msg),
                FailureKind::Unauthorized => runtime::Error::FailedPrecondition(msg),
                FailureKind::Timeout => runtime::Error::DeadlineExceeded(msg),
                FailureKind::Unreachable => runtime::Error::Unavailable(msg),
                FailureKind::Invalid => runtime::Error::Internal(msg),
            },
        }
    }
}

/// An image with what ImageStatus shows about it.
#[derive(Debug, Clone)]
pub struct ImageStatus {
    pub record: ImageRecord,
    /// Verbose info: JSON with the image config (`imageSpec`), like containerd's `info`.
    pub info: Option<String>,
}

/// Usage of the filesystem holding the images (ImageFsInfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    pub timestamp_nanos: i64,
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

type SharedPull = Shared<BoxFuture<'static, Result<String, Error>>>;

/// The image store. Cheap to share behind an `Arc`.
pub struct ImageStore {
    inner: Arc<Inner>,
    inflight: Mutex<HashMap<String, SharedPull>>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.layout.root)
            .finish()
    }
}

struct Inner {
    layout: Layout,
    registries: BTreeMap<String, RegistryConfig>,
    progress: Duration,
    state: Mutex<State>,
    blobs_downloaded: AtomicU64,
}

#[derive(Default)]
struct State {
    images: BTreeMap<String, ImageRecord>,
    holds: store::HoldsFile,
    /// Blobs and layers a pull in progress uses (count per digest).
    blob_leases: HashMap<String, usize>,
    layer_leases: HashMap<String, usize>,
}

impl State {
    /// Finds an image by id, id prefix, or (normalized) tag or digest reference.
    fn resolve(&self, image: &str) -> Option<&ImageRecord> {
        let s = image.trim();
        if s.is_empty() {
            return None;
        }
        let is_hex = |h: &str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit());
        let full_id = match s.strip_prefix("sha256:") {
            Some(_) => s.to_string(),
            None if s.len() == 64 && is_hex(s) => format!("sha256:{s}"),
            None => String::new(),
        };
        if let Some(r) = self.images.get(&full_id) {
            return Some(r);
        }
        if let Ok(r) = ImageReference::parse(s) {
            let n = r.to_string();
            if let Some(found) = self
                .images
                .values()
                .find(|i| i.repo_tags.contains(&n) || i.repo_digests.contains(&n))
            {
                return Some(found);
            }
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if is_hex(hex) {
            let prefix = format!("sha256:{}", hex.to_ascii_lowercase());
            let mut hits = self.images.values().filter(|i| i.id.starts_with(&prefix));
            if let (Some(first), None) = (hits.next(), hits.next()) {
                return Some(first);
            }
        }
        None
    }

    /// Everything that must not be deleted now.
    fn in_use(&self) -> (HashSet<String>, HashSet<String>) {
        let mut blobs: HashSet<String> = self.blob_leases.keys().cloned().collect();
        let mut layers: HashSet<String> = self.layer_leases.keys().cloned().collect();
        for i in self.images.values() {
            blobs.extend(i.blobs.iter().cloned());
            layers.extend(i.layers.iter().cloned());
        }
        for h in self.holds.holds.values() {
            layers.extend(h.layers.iter().cloned());
        }
        (blobs, layers)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Deletes those of `blobs` and `layers` nothing uses any more.
    fn collect(&self, blobs: &[String], layers: &[String]) {
        let mut trash = Vec::new();
        {
            let st = self.lock();
            let (used_blobs, used_layers) = st.in_use();
            for b in blobs.iter().filter(|b| !used_blobs.contains(*b)) {
                if let Ok(p) = self.layout.blob_path(b)
                    && let Err(e) = store::remove_path(&p)
                {
                    tracing::warn!("removing blob: {e}");
                }
            }
            for l in layers.iter().filter(|l| !used_layers.contains(*l)) {
                let Ok(p) = self.layout.layer_path(l) else {
                    continue;
                };
                // Renamed under the lock (a pull could otherwise find it half deleted).
                let t = self.layout.trash_path();
                match std::fs::rename(&p, &t) {
                    Ok(()) => trash.push(t),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!("removing layer {}: {e}", p.display()),
                }
            }
        }
        for t in trash {
            if let Err(e) = store::remove_path(&t) {
                tracing::warn!("removing layer: {e}");
            }
        }
    }

    async fn pull(
        self: Arc<Self>,
        r: ImageReference,
        auth: Option<cri::AuthConfig>,
    ) -> Result<String, Error> {
        let config_err = |message: String| Error::Config {
            reference: r.to_string(),
            message,
        };
        let endpoints = pull::endpoints(&r.domain, &self.registries).map_err(config_err)?;
        let mut attempts = Vec::new();
        for ep in endpoints {
            let creds = pull::registry_auth(auth.as_ref(), &ep.host).map_err(config_err)?;
            let fetcher = Fetcher::new(&ep, &r, creds, self.progress);
            let mut lease = Lease {
                inner: self.clone(),
                blobs: Vec::new(),
                layers: Vec::new(),
            };
            match self.pull_from(&fetcher, &r, &mut lease).await {
                Ok(id) => {
                    tracing::info!(image = %r, endpoint = %ep, %id, "pulled image");
                    return Ok(id);
                }
                Err(f) => {
                    tracing::info!(image = %r, endpoint = %ep, "pull failed: {}", f.message);
                    attempts.push((ep.to_string(), f));
                }
            }
            // The lease drops here: what this attempt fetched and nothing else uses goes away.
        }
        Err(pull::Error {
            reference: r.to_string(),
            attempts,
        }
        .into())
    }

    /// One pull from one endpoint, up to the recorded image.
    async fn pull_from(
        &self,
        f: &Fetcher,
        r: &ImageReference,
        lease: &mut Lease,
    ) -> Result<String, Failure> {
        let (top_bytes, top_digest) = f.manifest(None).await?;
        let parsed = manifest::parse(&top_bytes).map_err(Failure::invalid)?;
        let mut small = vec![(top_digest.clone(), top_bytes)];
        let (image_manifest, manifest_digest) = match parsed {
            Manifest::Image(m) => (m, top_digest.clone()),
            Manifest::Index(index) => {
                let want = manifest::host_platform();
                let entry = manifest::select(&index, &want).ok_or_else(|| Failure {
                    kind: FailureKind::NotFound,
                    message: format!(
                        "the image index {top_digest} has no manifest for {}/{}",
                        want.os, want.architecture
                    ),
                })?;
                let (bytes, digest) = f.manifest(Some(&entry.digest)).await?;
                let Manifest::Image(m) = manifest::parse(&bytes).map_err(Failure::invalid)? else {
                    return Err(Failure::invalid(format!(
                        "manifest {digest} of index {top_digest} is itself an index"
                    )));
                };
                small.push((digest.clone(), bytes));
                (m, digest)
            }
        };
        let store_err = |e: store::Error| Failure::invalid(e);
        for (digest, bytes) in &small {
            self.lease_blob(lease, digest);
            if !self.layout.blob_path(digest).map_err(store_err)?.exists() {
                self.layout
                    .write_blob_bytes(digest, bytes)
                    .map_err(store_err)?;
            }
        }

        let cfg = &image_manifest.config;
        self.lease_blob(lease, &cfg.digest);
        self.ensure_blob(f, &cfg.digest, cfg.size).await?;
        let cfg_path = self.layout.blob_path(&cfg.digest).map_err(store_err)?;
        let cfg_bytes = std::fs::read(&cfg_path)
            .map_err(|e| Failure::invalid(format!("reading {}: {e}", cfg_path.display())))?;
        let config = manifest::parse_config(&cfg_bytes).map_err(Failure::invalid)?;
        let diff_ids = config.rootfs.clone().unwrap_or_default().diff_ids;
        if diff_ids.len() != image_manifest.layers.len() {
            return Err(Failure::invalid(format!(
                "manifest {manifest_digest} has {} layers but its config {} lists {} diff ids",
                image_manifest.layers.len(),
                cfg.digest,
                diff_ids.len()
            )));
        }
        for (desc, diff) in image_manifest.layers.iter().zip(&diff_ids) {
            self.lease_blob(lease, &desc.digest);
            self.lease_layer(lease, diff);
        }
        let work: Vec<(manifest::Descriptor, String)> = image_manifest
            .layers
            .iter()
            .cloned()
            .zip(diff_ids.iter().cloned())
            .collect();
        futures::stream::iter(work)
            .map(|(desc, diff)| async move { self.ensure_layer(f, &desc, &diff).await })
            .buffer_unordered(PARALLEL_LAYERS)
            .try_collect::<Vec<()>>()
            .await?;

        let mut blobs: Vec<String> = small.iter().map(|(d, _)| d.clone()).collect();
        blobs.push(cfg.digest.clone());
        blobs.extend(image_manifest.layers.iter().map(|l| l.digest.clone()));
        let record = ImageRecord {
            version: RECORD_VERSION,
            id: cfg.digest.clone(),
            repo_tags: r.tag.iter().map(|_| r.to_string()).collect(),
            repo_digests: vec![r.with_digest(&top_digest)],
            size: cfg.size + image_manifest.layers.iter().map(|l| l.size).sum::<u64>(),
            manifest_digest,
            blobs,
            layers: diff_ids,
            config: config.config.unwrap_or_default(),
            pulled_at: chrono::Utc::now().timestamp(),
        };
        let id = record.id.clone();
        self.commit(record).map_err(Failure::invalid)?;
        Ok(id)
    }

    fn lease_blob(&self, lease: &mut Lease, digest: &str) {
        *self
            .lock()
            .blob_leases
            .entry(digest.to_string())
            .or_default() += 1;
        lease.blobs.push(digest.to_string());
    }

    fn lease_layer(&self, lease: &mut Lease, diff_id: &str) {
        *self
            .lock()
            .layer_leases
            .entry(diff_id.to_string())
            .or_default() += 1;
        lease.layers.push(diff_id.to_string());
    }

    /// Downloads blob `digest` unless the store has it (the caller holds a lease on it).
    async fn ensure_blob(&self, f: &Fetcher, digest: &str, size: u64) -> Result<(), Failure> {
        let dest = self.layout.blob_path(digest).map_err(Failure::invalid)?;
        if dest.exists() {
            return Ok(());
        }
        let mut w = BlobWriter::create(&self.layout, digest, (size > 0).then_some(size))
            .map_err(Failure::invalid)?;
        f.blob(digest, &mut w).await?;
        self.blobs_downloaded.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || w.commit())
            .await
            .map_err(Failure::invalid)?
            .map_err(Failure::invalid)
    }

    /// Downloads and unpacks one layer unless already there (the caller holds leases on both).
    async fn ensure_layer(
        &self,
        f: &Fetcher,
        desc: &manifest::Descriptor,
        diff_id: &str,
    ) -> Result<(), Failure> {
        self.ensure_blob(f, &desc.digest, desc.size).await?;
        let dest = self.layout.layer_path(diff_id).map_err(Failure::invalid)?;
        if dest.exists() {
            return Ok(());
        }
        let tmp = self
            .layout
            .tmp_layer_path(diff_id)
            .map_err(Failure::invalid)?;
        let blob = self
            .layout
            .blob_path(&desc.digest)
            .map_err(Failure::invalid)?;
        let media_type = desc.media_type.clone();
        let diff = diff_id.to_string();
        let result = tokio::task::spawn_blocking(move || -> Result<(), Failure> {
            let undo = |e: String| {
                let _ = store::remove_path(&tmp);
                Failure::invalid(e)
            };
            std::fs::create_dir(&tmp).map_err(|e| undo(format!("{}: {e}", tmp.display())))?;
            unpack::unpack(&blob, &media_type, &diff, &tmp).map_err(|e| undo(e.to_string()))?;
            match std::fs::rename(&tmp, &dest) {
                Ok(()) => Ok(()),
                // Another pull unpacked the same layer meanwhile.
                Err(_) if dest.exists() => store::remove_path(&tmp).map_err(Failure::invalid),
                Err(e) => Err(undo(format!("{}: {e}", dest.display()))),
            }
        })
        .await;
        result.map_err(Failure::invalid)?
    }

    /// Records a pulled image: moves its tags away from other images, merges with the record
    /// of the same id, persists.
    fn commit(&self, mut record: ImageRecord) -> Result<(), Error> {
        let mut dropped = Vec::new();
        {
            let mut st = self.lock();
            for other in st.images.values_mut().filter(|o| o.id != record.id) {
                let before = other.repo_tags.len();
                other.repo_tags.retain(|t| !record.repo_tags.contains(t));
                if other.repo_tags.len() != before {
                    if other.repo_tags.is_empty() && other.repo_digests.is_empty() {
                        dropped.push(other.id.clone());
                    } else {
                        self.layout.save_image(other)?;
                    }
                }
            }
            if let Some(old) = st.images.get(&record.id) {
                let union = |a: &[String], b: &[String]| {
                    let mut out = a.to_vec();
                    out.extend(b.iter().filter(|x| !a.contains(x)).cloned());
                    out
                };
                record.repo_tags = union(&old.repo_tags, &record.repo_tags);
                record.repo_digests = union(&old.repo_digests, &record.repo_digests);
                record.blobs = union(&old.blobs, &record.blobs);
            }
            self.layout.save_image(&record)?;
            st.images.insert(record.id.clone(), record);
            let mut garbage = Vec::new();
            for id in &dropped {
                if let Some(r) = st.images.remove(id) {
                    self.layout.delete_image(id)?;
                    garbage.push(r);
                }
            }
            dropped.clear();
            drop(st);
            for r in garbage {
                self.collect(&r.blobs, &r.layers);
            }
        }
        Ok(())
    }
}

/// What a pull in progress uses; dropping it lets garbage collection have what no image took.
struct Lease {
    inner: Arc<Inner>,
    blobs: Vec<String>,
    layers: Vec<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            let mut guard = self.inner.lock();
            let st = &mut *guard;
            for (map, keys) in [
                (&mut st.blob_leases, &self.blobs),
                (&mut st.layer_leases, &self.layers),
            ] {
                for k in keys {
                    if let Some(n) = map.get_mut(k) {
                        *n -= 1;
                        if *n == 0 {
                            map.remove(k);
                        }
                    }
                }
            }
        }
        self.inner.collect(&self.blobs, &self.layers);
    }
}

impl ImageStore {
    /// Opens (creating) the store under `<root>/images`: reloads the records and holds, and
    /// deletes leftovers of interrupted pulls (temp files and anything no image or hold uses).
    pub async fn open(
        root: &Path,
        registries: BTreeMap<String, RegistryConfig>,
        progress_timeout: Duration,
    ) -> Result<Arc<ImageStore>, runtime::Error> {
        let layout = Layout::new(root.join("images"));
        let inner = tokio::task::spawn_blocking(move || -> Result<Inner, Error> {
            layout.prepare()?;
            let mut state = State::default();
            for r in layout.load_images() {
                state.images.insert(r.id.clone(), r);
            }
            state.holds = layout.load_holds();
            state.holds.version = RECORD_VERSION;
            let inner = Inner {
                layout,
                registries,
                progress: progress_timeout,
                state: Mutex::new(state),
                blobs_downloaded: AtomicU64::new(0),
            };
            let blobs = inner.layout.list_blobs();
            let layers = inner.layout.list_layers();
            inner.collect(&blobs, &layers);
            Ok(inner)
        })
        .await
        .map_err(|e| runtime::Error::internal("opening the image store", e))??;
        tracing::info!(
            root = %inner.layout.root.display(),
            images = inner.lock().images.len(),
            "image store open"
        );
        Ok(Arc::new(ImageStore {
            inner: Arc::new(inner),
            inflight: Mutex::new(HashMap::new()),
        }))
    }

    /// Pulls `image` and returns its id. A pull of a reference already being pulled waits for
    /// that pull (whose credentials are used) and returns its result.
    pub async fn pull(
        &self,
        image: &str,
        auth: Option<&cri::AuthConfig>,
    ) -> Result<String, runtime::Error> {
        let r = ImageReference::parse(image).map_err(Error::from)?;
        let key = r.to_string();
        let fut = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(f) => f.clone(),
                None => {
                    // A task of its own: the pull goes on (and is shared) even if the first
                    // caller gives up.
                    let task = tokio::spawn(self.inner.clone().pull(r, auth.cloned()));
                    let fut = async move {
                        task.await
                            .unwrap_or_else(|e| Err(Error::Store(format!("pull task: {e}"))))
                    }
                    .boxed()
                    .shared();
                    map.insert(key.clone(), fut.clone());
                    fut
                }
            }
        };
        let result = fut.clone().await;
        {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&key).is_some_and(|f| f.ptr_eq(&fut)) {
                map.remove(&key);
            }
        }
        result.map_err(Into::into)
    }

    /// All images, or only the one `filter` names (an unknown name gives none).
    pub fn list(&self, filter: Option<&str>) -> Vec<ImageRecord> {
        let st = self.inner.lock();
        match filter.filter(|f| !f.is_empty()) {
            Some(f) => st.resolve(f).cloned().into_iter().collect(),
            None => st.images.values().cloned().collect(),
        }
    }

    /// The image `image` names, if any; with `verbose`, its config as JSON info.
    pub fn status(
        &self,
        image: &str,
        verbose: bool,
    ) -> Result<Option<ImageStatus>, runtime::Error> {
        let Some(record) = self.inner.lock().resolve(image).cloned() else {
            return Ok(None);
        };
        let info = if verbose {
            let path = self
                .inner
                .layout
                .blob_path(&record.id)
                .map_err(Error::from)?;
            let bytes =
                std::fs::read(&path).map_err(|e| runtime::Error::internal(path.display(), e))?;
            let spec: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| runtime::Error::internal(path.display(), e))?;
            let info = serde_json::json!({
                "imageSpec": spec,
                "chainID": chain_id(&record.layers),
                "manifestDigest": record.manifest_digest,
                "layers": record.layers.iter()
                    .filter_map(|l| self.inner.layout.layer_path(l).ok())
                    .collect::<Vec<_>>(),
            });
            Some(info.to_string())
        } else {
            None
        };
        Ok(Some(ImageStatus { record, info }))
    }

    /// Removes the image `image` names, with all its tags (see the module doc); `Ok(false)`
    /// when there is no such image.
    pub fn remove(&self, image: &str) -> Result<bool, runtime::Error> {
        let record = {
            let mut st = self.inner.lock();
            let Some(record) = st.resolve(image).cloned() else {
                return Ok(false);
            };
            self.inner
                .layout
                .delete_image(&record.id)
                .map_err(Error::from)?;
            st.images.remove(&record.id);
            record
        };
        tracing::info!(id = %record.id, tags = ?record.repo_tags, "removed image");
        self.inner.collect(&record.blobs, &record.layers);
        Ok(true)
    }

    /// Bytes and inodes used under `<root>/images`, and the mount point of its filesystem.
    pub async fn fs_info(&self) -> Result<FsUsage, runtime::Error> {
        let root = self.inner.layout.root.clone();
        tokio::task::spawn_blocking(move || {
            let (used_bytes, inodes_used) = disk_usage(&root);
            let mountpoint = mount_point_of(&root)
                .map_err(|e| runtime::Error::internal("reading /proc/self/mountinfo", e))?;
            Ok(FsUsage {
                timestamp_nanos: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
                mountpoint,
                used_bytes,
                inodes_used,
            })
        })
        .await
        .map_err(|e| runtime::Error::internal("image fs info", e))?
    }

    /// Blobs downloaded since open (a pull that finds a blob present downloads nothing).
    pub fn blobs_downloaded(&self) -> u64 {
        self.inner.blobs_downloaded.load(Ordering::Relaxed)
    }

    /// `<root>/images`.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }
}

/// The chain id of a layer stack (the OCI image spec's definition).
pub fn chain_id(diff_ids: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut iter = diff_ids.iter();
    let Some(first) = iter.next() else {
        return String::new();
    };
    iter.fold(first.clone(), |chain, diff| {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{chain} {diff}").as_bytes()))
        )
    })
}

/// Allocated bytes and inodes under `root` (hard links counted once).
fn disk_usage(root: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if seen.insert((m.dev(), m.ino())) {
            bytes += m.blocks() * 512;
            inodes += 1;
        }
        if m.is_dir()
            && let Ok(rd) = std::fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    (bytes, inodes)
}

/// The mount point of the filesystem holding `path` (the longest mount point prefix).
fn mount_point_of(path: &Path) -> std::io::Result<PathBuf> {
    let path = std::fs::canonicalize(path)?;
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(mount_point_in(&text, &path))
}

fn mount_point_in(mountinfo: &str, path: &Path) -> PathBuf {
    let unescape = |s: &str| {
        let mut out = String::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\'
                && i + 3 < b.len()
                && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
            {
                out.push(v as char);
                i += 4;
                continue;
            }
            out.push(b[i] as char);
            i += 1;
        }
        out
    };
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(|m| PathBuf::from(unescape(m))))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"))
}

impl ImageProvider for ImageStore {
    fn resolve_for_container(&self, reference: &str) -> Result<ResolvedImage, runtime::Error> {
        let record = self
            .inner
            .lock()
            .resolve(reference)
            .cloned()
            .ok_or_else(|| {
                runtime::Error::NotFound(format!("image {reference:?} not found: pull it first"))
            })?;
        let layers = record
            .layers
            .iter()
            .map(|l| self.inner.layout.layer_path(l))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::from)?;
        let name = ImageReference::parse(reference).ok().map(|r| r.name());
        let image_ref = name
            .as_ref()
            .and_then(|n| {
                record
                    .repo_digests
                    .iter()
                    .find(|d| d.split('@').next() == Some(n.as_str()))
            })
            .or_else(|| record.repo_digests.first())
            .cloned()
            .unwrap_or_else(|| record.id.clone());
        let RunConfig {
            user,
            env,
            entrypoint,
            cmd,
            working_dir,
            stop_signal,
        } = record.config.clone();
        Ok(ResolvedImage {
            id: record.id.clone(),
            image_ref,
            layers,
            defaults: ImageDefaults {
                entrypoint: entrypoint.unwrap_or_default(),
                cmd: cmd.unwrap_or_default(),
                env: env.unwrap_or_default(),
                working_dir: working_dir.unwrap_or_default(),
                name: reference.to_string(),
            },
            user: user.unwrap_or_default(),
            stop_signal: stop_signal.unwrap_or_default(),
        })
    }

    fn hold(&self, owner: &str, image_id: &str) -> Result<(), runtime::Error> {
        let mut st = self.inner.lock();
        let record = st
            .resolve(image_id)
            .cloned()
            .ok_or_else(|| runtime::Error::NotFound(format!("image {image_id:?} not found")))?;
        st.holds.holds.insert(
            owner.to_string(),
            Hold {
                image_id: record.id,
                layers: record.layers,
            },
        );
        self.inner
            .layout
            .save_holds(&st.holds)
            .map_err(|e| runtime::Error::Internal(e.to_string()))
    }

    fn release(&self, owner: &str) {
        let hold = {
            let mut st = self.inner.lock();
            let Some(hold) = st.holds.holds.remove(owner) else {
                return;
            };
            if let Err(e) = self.inner.layout.save_holds(&st.holds) {
                tracing::warn!("releasing image hold of {owner}: {e}");
            }
            hold
        };
        self.inner.collect(&[], &hold.layers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id_byte: char, tags: &[&str], digests: &[&str]) -> ImageRecord {
        ImageRecord {
            version: RECORD_VERSION,
            id: format!("sha256:{}", id_byte.to_string().repeat(64)),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: digests.iter().map(|s| s.to_string()).collect(),
            size: 1,
            manifest_digest: String::new(),
            blobs: vec![],
            layers: vec![],
            config: RunConfig::default(),
            pulled_at: 0,
        }
    }

    #[test]
    fn resolves_names_ids_and_prefixes() {
        let d = format!("sha256:{}", "d".repeat(64));
        let mut st = State::default();
        for r in [
            rec('a', &["docker.io/library/busybox:latest"], &[]),
            rec(
                'b',
                &["127.0.0.1:5000/keel-test/busybox:v2s2"],
                &[&format!("127.0.0.1:5000/keel-test/busybox@{d}")],
            ),
            rec('c', &[], &[]),
        ] {
            st.images.insert(r.id.clone(), r);
        }
        let a = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("busybox", Some('a')),
            ("docker.io/library/busybox:latest", Some('a')),
            ("busybox:other", None),
            (a.as_str(), Some('a')),
            (&a[7..], Some('a')),
            ("aaaa", Some('a')),
            ("sha256:bbb", Some('b')),
            ("127.0.0.1:5000/keel-test/busybox:v2s2", Some('b')),
            (&format!("127.0.0.1:5000/keel-test/busybox@{d}"), Some('b')),
            (
                &format!("127.0.0.1:5000/keel-test/busybox:v9@{d}"),
                Some('b'),
            ),
            ("c", Some('c')),
            ("", None),
            ("zzz", None),
        ];
        for (input, want) in cases {
            let got = st
                .resolve(input)
                .map(|r| r.id.chars().last().unwrap_or(' '));
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn chain_ids() {
        assert_eq!(chain_id(&[]), "");
        assert_eq!(chain_id(&["sha256:a".into()]), "sha256:a");
        let two = chain_id(&["sha256:a".into(), "sha256:b".into()]);
        assert!(two.starts_with("sha256:") && two.len() == 71, "{two}");
    }

    #[test]
    fn mount_point_is_the_longest_prefix() {
        let mi = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                  30 22 0:5 / /var/lib rw - ext4 /dev/sdb rw\n\
                  31 22 0:6 / /var/lib\\040x rw - tmpfs t rw\n";
        assert_eq!(
            mount_point_in(mi, Path::new("/var/lib/keel/images")),
            PathBuf::from("/var/lib")
        );
        assert_eq!(
            mount_point_in(mi, Path::new("/var/lib x/i")),
            PathBuf::from("/var/lib x")
        );
        assert_eq!(mount_point_in(mi, Path::new("/srv")), PathBuf::from("/"));
    }
}
