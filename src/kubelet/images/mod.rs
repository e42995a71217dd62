//! The kubelet's image service: what containerd's CRI image service does for upstream k3s.
//! It pulls images with `oci-client` (mirrors, rewrites and credentials from k3s's
//! `registries.yaml` and imagePullSecrets), keeps blobs in a content store
//! (`<root>/content/blobs/sha256/<hex>`), unpacks each layer once into a snapshot keyed by its
//! chain id (`<root>/snapshots/<n>/fs`, containerd's overlay snapshotter layout with short
//! numeric names), records images in `<root>/content/metadata.json`, and mounts container root
//! filesystems as overlays of those snapshots. It also imports image tarballs ([`import`]:
//! docker-archive and OCI layout, the airgap path) and removes images, by hand or by the
//! kubelet's disk-usage garbage collection ([`gc`]).
//!
//! Several processes may use one store at a time (the server's kubelet and `rk3s images …`):
//! every change of the metadata file happens under an exclusive `flock` of
//! `<root>/content/metadata.lock`, on the latest file contents, written atomically; readers
//! reload the file when its inode, size or mtime changed, so an image imported or removed by the
//! CLI is seen by the running kubelet at its next lookup. Work in progress (a layer being
//! unpacked, a blob being downloaded, an archive being staged) sits under a temporary name that
//! its process keeps `flock`ed, so a starting process removes only what a dead one left behind.

pub mod gc;
mod import;
mod platform;
mod reference;
mod registries;
mod rootfs;
mod unpack;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::{Deserialize, Serialize};

pub use gc::{GcOutcome, GcPolicy};
pub use reference::Name;
pub use registries::Registries;

/// Failures of the image store itself (not of a pull, which is a [`PullError`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("registries file {path}: {message}")]
    RegistriesFile { path: PathBuf, message: String },
    #[error("image metadata {path}: {source}")]
    Metadata {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("mount {path}: {message}")]
    Mount { path: PathBuf, message: String },
    #[error("image {reference} has no snapshot for layer {chain_id}")]
    MissingSnapshot { reference: String, chain_id: String },
    /// An archive that could not be imported; nothing of it was recorded.
    #[error("importing {path}: {message}")]
    Import { path: PathBuf, message: String },
    #[error("no such image {0:?}")]
    NotFound(String),
    #[error("image {reference} is in use by the container at {container}")]
    InUse {
        reference: String,
        container: PathBuf,
    },
    /// Writing the image metadata, or removing what a removal freed.
    #[error("image store {root}: {message}")]
    Store { root: PathBuf, message: String },
}

/// The container's `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// One registry login, from a pod's imagePullSecrets (`.dockerconfigjson` auths).
#[derive(Clone, Debug)]
pub struct Credential {
    /// The docker config key: `127.0.0.1:5000`, `https://index.docker.io/v1/`, ...
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// An image present locally.
#[derive(Clone, Debug)]
pub struct Image {
    /// Normalized reference: `docker.io/library/busybox:latest`, `127.0.0.1:5000/busybox:1`.
    pub reference: String,
    /// `sha256:<config digest>`, the image id.
    pub id: String,
    /// `<registry>/<repository>@sha256:<manifest or index digest>`, what upstream reports as
    /// `containerStatuses[].imageID`; for an image without a registry digest (imported from a
    /// tarball) the image id instead, as containerd's CRI reports it.
    pub repo_digest: String,
    /// Sum of the compressed layer sizes, as containerd reports for node status.
    pub size: u64,
    pub config: ImageConfig,
    /// Snapshot directories of the layers, base layer first.
    layers: Vec<PathBuf>,
}

impl Image {
    /// Unpacked layer directories, base layer first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }
}

/// The parts of the image config the kubelet merges with the container spec.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// A Kubernetes-visible pull failure: `reason` goes to `state.waiting.reason`, `message` to
/// `state.waiting.message` and the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullError {
    /// `ErrImagePull`, `ErrImageNeverPull` or `InvalidImageName`.
    pub reason: &'static str,
    pub message: String,
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for PullError {}

/// The image store and puller. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ImageService {
    inner: Arc<Inner>,
}

type SharedPull = Shared<BoxFuture<'static, Result<Image, PullError>>>;

struct Inner {
    root: PathBuf,
    registries: Registries,
    /// The metadata as last read or written, reloaded when the file changes on disk.
    meta: Mutex<Metadata>,
    /// Makes this process's temporary names unique.
    seq: AtomicU64,
    /// When `ensure` last handed out each image (unix seconds), so garbage collection spares an
    /// image between its lookup and the mount of its first container.
    touched: Mutex<HashMap<String, u64>>,
    /// In-flight pulls by normalized reference, so concurrent `ensure` calls share one.
    pulls: Mutex<HashMap<String, SharedPull>>,
    /// Per-blob and per-snapshot locks: two images sharing a layer download and unpack it once.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One client per endpoint and login, so bearer tokens are reused across pulls. The login
    /// is part of the key because oci-client keeps the first credentials it sees per registry.
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

/// What `<root>/content/metadata.json` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Metadata {
    images: BTreeMap<String, Record>,
    /// Chain id → snapshot number (`<root>/snapshots/<n>`).
    snapshots: BTreeMap<String, u64>,
    next_snapshot: u64,
    /// Airgap tarballs already imported, by the sha256 of the file, so a restart does not
    /// import them again.
    #[serde(default)]
    airgap: BTreeMap<String, AirgapFile>,
    /// The file this was read from or written to; not stored.
    #[serde(skip)]
    stamp: Option<Stamp>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AirgapFile {
    path: PathBuf,
    images: Vec<String>,
    imported_at: u64,
}

/// Identity of one version of the metadata file: every write is a rename of a new file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    /// Empty for an image without a registry digest (imported).
    repo_digest: String,
    size: u64,
    config: ImageConfig,
    chain_ids: Vec<String>,
    /// Digests of the blobs this image keeps in the content store (config and layers).
    #[serde(default)]
    blobs: Vec<String>,
    /// Unix seconds when the image was recorded (upstream's `firstDetected`).
    #[serde(default)]
    added: u64,
    /// Unix seconds when a container last got a root filesystem from it.
    #[serde(default)]
    last_used: u64,
}

/// A container root filesystem made from an image, recorded by `mount_rootfs` in
/// `<root>/content/leases/` (containerd's leases play this part): while its directory exists,
/// the image and its snapshots are in use.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Lease {
    dir: PathBuf,
    reference: String,
    id: String,
    chain_ids: Vec<String>,
}

/// The image config JSON fields we use; written by hand rather than with oci-spec's
/// `ImageConfiguration` because Docker-built configs carry `null` lists that it rejects.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawConfig {
    config: Option<RawRuntimeConfig>,
    rootfs: RawRootfs,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct RawRuntimeConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
}

impl From<RawRuntimeConfig> for ImageConfig {
    fn from(runtime: RawRuntimeConfig) -> ImageConfig {
        ImageConfig {
            entrypoint: runtime.entrypoint.unwrap_or_default(),
            cmd: runtime.cmd.unwrap_or_default(),
            env: runtime.env.unwrap_or_default(),
            working_dir: runtime.working_dir.unwrap_or_default(),
            user: runtime.user.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawRootfs {
    diff_ids: Vec<String>,
}

/// Layer media types we can unpack (the compression is sniffed from the bytes anyway).
const LAYER_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

impl ImageService {
    /// Opens (creating if needed) the store under `root` (`<data-dir>/agent`). Snapshots,
    /// partial downloads and staged archives left by a crashed process are removed.
    pub fn open(root: &Path, registries: Registries) -> Result<ImageService, Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let blobs = root.join("content/blobs/sha256");
        let snapshots = root.join("snapshots");
        let ingest = root.join("content/ingest");
        let leases = root.join("content/leases");
        for d in [&blobs, &snapshots, &ingest, &leases] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        // Before airgap imports, the metadata lived in `agent/images/`, which is now the
        // directory of airgap tarballs.
        let legacy = root.join("images/metadata.json");
        let meta_path = root.join("content/metadata.json");
        if legacy.exists() && !meta_path.exists() {
            std::fs::rename(&legacy, &meta_path).map_err(io(&legacy))?;
        }
        let inner = Inner {
            root: root.to_path_buf(),
            registries,
            meta: Mutex::new(Metadata::default()),
            seq: AtomicU64::new(0),
            touched: Mutex::new(HashMap::new()),
            pulls: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
        };
        {
            // Under the metadata lock nobody is between renaming a snapshot into place and
            // recording it, so a numbered snapshot the metadata does not name is a leftover.
            let _held = inner.file_lock().map_err(|message| Error::Store {
                root: root.to_path_buf(),
                message,
            })?;
            let mut meta = lock(&inner.meta);
            *meta = load(&meta_path)?;
            let known: std::collections::HashSet<String> =
                meta.snapshots.values().map(|n| n.to_string()).collect();
            for entry in std::fs::read_dir(&snapshots).map_err(io(&snapshots))? {
                let entry = entry.map_err(io(&snapshots))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let numbered = name.bytes().all(|b| b.is_ascii_digit());
                if (numbered && !known.contains(&name)) || (!numbered && abandoned(&entry.path())) {
                    tracing::info!(snapshot = %name, "removing incomplete layer snapshot");
                    std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
                }
            }
            for dir in [&blobs, &ingest] {
                for entry in std::fs::read_dir(dir).map_err(io(dir))? {
                    let entry = entry.map_err(io(dir))?;
                    let path = entry.path();
                    let temporary =
                        dir == &ingest || entry.file_name().to_string_lossy().ends_with(".partial");
                    if temporary && abandoned(&path) {
                        let removed = if path.is_dir() {
                            std::fs::remove_dir_all(&path)
                        } else {
                            std::fs::remove_file(&path)
                        };
                        removed.map_err(io(&path))?;
                    }
                }
            }
        }
        Ok(ImageService {
            inner: Arc::new(inner),
        })
    }

    /// Returns the image named `reference`, pulling it as `policy` says (the kubelet's
    /// `EnsureImageExists`). Concurrent calls for the same reference share one pull.
    pub async fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        auth: &[Credential],
    ) -> Result<Image, PullError> {
        let name = reference::parse(reference).map_err(|e| PullError {
            reason: "InvalidImageName",
            message: format!(
                "Failed to apply default image tag {reference:?}: couldn't parse image name {reference:?}: {e}"
            ),
        })?;
        match policy {
            PullPolicy::Never => {
                return self
                    .inner
                    .lookup(&name.normalized)
                    .ok_or_else(|| PullError {
                        reason: "ErrImageNeverPull",
                        message: format!(
                            "Container image {reference:?} is not present with pull policy of Never"
                        ),
                    });
            }
            PullPolicy::IfNotPresent => {
                if let Some(image) = self.inner.lookup(&name.normalized) {
                    return Ok(image);
                }
            }
            PullPolicy::Always => {}
        }
        let pull = {
            let mut pulls = lock(&self.inner.pulls);
            match pulls.get(&name.normalized) {
                Some(p) => p.clone(),
                None => {
                    let inner = Arc::clone(&self.inner);
                    let creds = auth.to_vec();
                    let key = name.normalized.clone();
                    let written = reference.to_string();
                    // A task, so the pull finishes (and is recorded) even if every caller
                    // gives up waiting; callers only share its result.
                    let task = tokio::spawn(async move {
                        let result = inner.pull(&name, &creds).await;
                        lock(&inner.pulls).remove(&name.normalized);
                        result
                    });
                    let shared = async move {
                        let result = match task.await {
                            Ok(r) => r,
                            Err(e) => Err(format!("pull task failed: {e}")),
                        };
                        result.map_err(|e| PullError {
                            reason: "ErrImagePull",
                            message: format!("Failed to pull image {written:?}: {e}"),
                        })
                    }
                    .boxed()
                    .shared();
                    pulls.insert(key, shared.clone());
                    shared
                }
            }
        };
        pull.await
    }

    /// The local image named `reference`, if present. Never contacts a registry.
    pub fn get(&self, reference: &str) -> Option<Image> {
        let name = reference::parse(reference).ok()?;
        self.inner.lookup(&name.normalized)
    }

    /// All local images, for the node status `images` list.
    pub fn list(&self) -> Vec<Image> {
        let meta = self.inner.current();
        meta.images
            .iter()
            .filter_map(|(reference, record)| self.inner.image(&meta, reference, record).ok())
            .collect()
    }

    /// Mounts the container root filesystem `dir/rootfs`: an overlay with the image's layers
    /// as lower directories (topmost first), `dir/upper` and `dir/work`. Idempotent.
    pub fn mount_rootfs(&self, image: &Image, dir: &Path) -> Result<PathBuf, Error> {
        let lowers: Vec<PathBuf> = image.layers.iter().rev().cloned().collect();
        for l in &lowers {
            if !l.is_dir() {
                return Err(Error::MissingSnapshot {
                    reference: image.reference.clone(),
                    chain_id: l.display().to_string(),
                });
            }
        }
        let rootfs = rootfs::mount(&lowers, dir)?;
        self.inner.lease(image, dir);
        Ok(rootfs)
    }

    /// Imports the images of a tarball (docker-archive or OCI image layout; plain, gzip or
    /// zstd, told by the magic bytes) as `ctr images import` does: layers are verified and
    /// unpacked into the same snapshots as pulled ones. All images of the archive are recorded
    /// together, or none. Blocking: call it from a blocking thread.
    pub fn import(&self, path: &Path) -> Result<Vec<Image>, Error> {
        import::import(&self.inner, path, None).map_err(|message| Error::Import {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Imports every regular file of the airgap directory `dir` (`<data-dir>/agent/images/`)
    /// whose sha256 is not recorded yet, in name order, as k3s does at start; a file that fails
    /// is logged and skipped (and tried again at the next start). A missing directory is fine.
    /// Returns what happened to each file it tried. Blocking.
    pub fn import_dir(&self, dir: &Path) -> Vec<(PathBuf, Result<Vec<Image>, Error>)> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::error!(dir = %dir.display(), "Unable to read images: {e}");
                return Vec::new();
            }
        };
        files.sort();
        let mut out = Vec::new();
        for path in files {
            let digest = match import::file_digest(&path) {
                Ok(d) => d,
                Err(e) => {
                    let err = Error::Io {
                        path: path.clone(),
                        source: e,
                    };
                    tracing::error!(
                        "Error encountered while importing {}: {err}",
                        path.display()
                    );
                    out.push((path, Err(err)));
                    continue;
                }
            };
            if self.inner.current().airgap.contains_key(&digest) {
                tracing::debug!(file = %path.display(), %digest, "already imported");
                continue;
            }
            let start = std::time::Instant::now();
            tracing::info!("Importing images from {}", path.display());
            let result = import::import(&self.inner, &path, Some(&digest)).map_err(|message| {
                Error::Import {
                    path: path.clone(),
                    message,
                }
            });
            match &result {
                Ok(images) => tracing::info!(
                    images = ?images.iter().map(|i| i.reference.as_str()).collect::<Vec<_>>(),
                    "Imported images from {} in {:.3}s",
                    path.display(),
                    start.elapsed().as_secs_f64()
                ),
                // k3s's wording; the path is already in front, so only the reason follows.
                Err(Error::Import { message, .. }) => tracing::error!(
                    "Error encountered while importing {}: {message}",
                    path.display()
                ),
                Err(e) => {
                    tracing::error!("Error encountered while importing {}: {e}", path.display())
                }
            }
            out.push((path, result));
        }
        out
    }

    /// Removes images by reference (`busybox`, `docker.io/library/busybox:1`) or id
    /// (`sha256:<hex>` or a unique hex prefix of at least 4 characters, which removes every
    /// reference to that image), with the snapshots and blobs only they used. An image a
    /// container on this node was made from is refused. Returns the removed references.
    pub fn remove(&self, name: &str) -> Result<Vec<String>, Error> {
        let refs = self.inner.resolve(name)?;
        let leases = self.inner.leases();
        {
            let meta = self.inner.current();
            for r in &refs {
                let Some(record) = meta.images.get(r) else {
                    continue;
                };
                if let Some(l) = leases.iter().find(|l| l.id == record.id) {
                    return Err(Error::InUse {
                        reference: r.clone(),
                        container: l.dir.clone(),
                    });
                }
            }
        }
        self.inner.delete(&refs, &leases)
    }

    /// One pass of image garbage collection as the kubelet's image manager does it: when the
    /// image filesystem is at or above `policy`'s high threshold, unused images (oldest last
    /// use first) are removed until the low threshold is reached. `None` when usage is below
    /// the high threshold. Blocking.
    pub fn collect_garbage(&self, policy: &GcPolicy) -> Result<Option<GcOutcome>, Error> {
        let store_err = |message: String| Error::Store {
            root: self.inner.root.clone(),
            message,
        };
        let stat = nix::sys::statvfs::statvfs(&self.inner.root)
            .map_err(|e| store_err(format!("statfs: {e}")))?;
        // The field types differ between targets (u32 on some 32-bit ones).
        #[allow(clippy::unnecessary_cast)]
        let usage = {
            let block = stat.fragment_size() as u64;
            gc::Usage {
                capacity: (stat.blocks() as u64).saturating_mul(block),
                available: (stat.blocks_available() as u64).saturating_mul(block),
            }
        };
        let leases = self.inner.leases();
        let in_use: BTreeSet<&str> = leases.iter().map(|l| l.id.as_str()).collect();
        let now = unix_now();
        let candidates = {
            let meta = self.inner.current();
            let touched = lock(&self.inner.touched);
            let mut by_id: BTreeMap<&str, gc::Candidate> = BTreeMap::new();
            for (reference, r) in &meta.images {
                let used = r
                    .last_used
                    .max(touched.get(reference).copied().unwrap_or(0));
                let c = by_id.entry(r.id.as_str()).or_insert_with(|| gc::Candidate {
                    id: r.id.clone(),
                    size: r.size,
                    first_seen: r.added,
                    last_used: used,
                    in_use: in_use.contains(r.id.as_str()),
                });
                c.first_seen = c.first_seen.min(r.added);
                c.last_used = c.last_used.max(used);
            }
            by_id.into_values().collect::<Vec<_>>()
        };
        let Some(plan) = gc::plan(usage, &candidates, policy, now) else {
            return Ok(None);
        };
        tracing::info!(
            usage = plan.usage_percent,
            high_threshold = policy.high_threshold_percent,
            amount_to_free = plan.amount_to_free,
            low_threshold = policy.low_threshold_percent,
            "Disk usage on image filesystem is over the high threshold, trying to free bytes down to the low threshold"
        );
        let refs: Vec<String> = {
            let meta = self.inner.current();
            meta.images
                .iter()
                .filter(|(_, r)| plan.ids.contains(&r.id))
                .map(|(n, _)| n.clone())
                .collect()
        };
        let removed = self.inner.delete(&refs, &leases)?;
        for r in &removed {
            tracing::info!(image = %r, "Removing image to free bytes");
        }
        Ok(Some(GcOutcome {
            usage_percent: plan.usage_percent,
            amount_to_free: plan.amount_to_free,
            freed: plan.planned_bytes,
            removed,
        }))
    }

    /// Unmounts `dir/rootfs` (lazily) and removes `dir`. Idempotent.
    pub fn unmount_rootfs(dir: &Path) -> Result<(), Error> {
        rootfs::unmount(dir)
    }
}

/// Locks a std mutex, recovering from poisoning: the guarded maps stay consistent because
/// every critical section is a single insert, remove or clone.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// containerd's chain ids (image-spec config.md "Layer ChainID"):
/// `ChainID(L0) = DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`.
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => {
                let digest =
                    ring::digest::digest(&ring::digest::SHA256, format!("{prev} {d}").as_bytes());
                format!("sha256:{}", unpack::hex(digest.as_ref()))
            }
        };
        out.push(next);
    }
    out
}

/// The hex part of a `sha256:` digest, refusing anything that could not be a file name.
fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

/// Reads the metadata file (empty when there is none yet).
fn load(path: &Path) -> Result<Metadata, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Metadata::default()),
        Err(e) => return Err(io(e)),
    };
    // The stamp of the opened file, not of the path: a rename after the open must not make an
    // old version look current.
    let stamp = Stamp::of(&file.metadata().map_err(io)?);
    let mut meta: Metadata =
        serde_json::from_reader(std::io::BufReader::new(file)).map_err(|source| {
            Error::Metadata {
                path: path.to_path_buf(),
                source,
            }
        })?;
    meta.stamp = Some(stamp);
    Ok(meta)
}

/// Whether the temporary file or directory `path` was left by a process that is gone: its
/// owner holds a `flock` on it while working.
fn abandoned(path: &Path) -> bool {
    match File::open(path) {
        Ok(f) => nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok(),
        Err(_) => false,
    }
}

/// Takes an exclusive `flock` on `path` (a file or directory) for as long as the result lives.
fn hold(path: &Path, block: bool) -> Result<nix::fcntl::Flock<File>, String> {
    let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let arg = if block {
        nix::fcntl::FlockArg::LockExclusive
    } else {
        nix::fcntl::FlockArg::LockExclusiveNonblock
    };
    nix::fcntl::Flock::lock(file, arg).map_err(|(_, e)| format!("locking {}: {e}", path.display()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Inner {
    fn lookup(&self, normalized: &str) -> Option<Image> {
        let meta = self.current();
        let record = meta.images.get(normalized)?;
        let image = self.image(&meta, normalized, record).ok()?;
        lock(&self.touched).insert(normalized.to_string(), unix_now());
        Some(image)
    }

    fn meta_path(&self) -> PathBuf {
        self.root.join("content/metadata.json")
    }

    /// The metadata, reloaded first if another process changed the file.
    fn current(&self) -> MutexGuard<'_, Metadata> {
        let mut meta = lock(&self.meta);
        if let Err(e) = self.refresh(&mut meta) {
            tracing::warn!(error = %e, "reloading the image metadata; keeping the previous one");
        }
        meta
    }

    fn refresh(&self, meta: &mut Metadata) -> Result<(), Error> {
        let path = self.meta_path();
        let stamp = match std::fs::metadata(&path) {
            Ok(m) => Some(Stamp::of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(Error::Io { path, source }),
        };
        if stamp != meta.stamp {
            *meta = load(&path)?;
        }
        Ok(())
    }

    /// The exclusive lock around every metadata change, shared with other processes.
    fn file_lock(&self) -> Result<nix::fcntl::Flock<File>, String> {
        let path = self.root.join("content/metadata.lock");
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        hold(&path, true)
    }

    /// Changes the metadata: under the file lock, on the latest file contents, written
    /// atomically. When `change` or the write fails nothing changes, on disk or in memory.
    fn update<R>(
        &self,
        change: impl FnOnce(&mut Metadata) -> Result<R, String>,
    ) -> Result<R, String> {
        let _held = self.file_lock()?;
        let mut meta = lock(&self.meta);
        self.refresh(&mut meta).map_err(|e| e.to_string())?;
        let mut next = meta.clone();
        let out = change(&mut next)?;
        self.save(&mut next)?;
        *meta = next;
        Ok(out)
    }

    /// Records that a container root filesystem at `dir` was made from `image`.
    fn lease(&self, image: &Image, dir: &Path) {
        let chain_ids = {
            let meta = self.current();
            meta.images
                .get(&image.reference)
                .map(|r| r.chain_ids.clone())
                .unwrap_or_default()
        };
        let lease = Lease {
            dir: dir.to_path_buf(),
            reference: image.reference.clone(),
            id: image.id.clone(),
            chain_ids,
        };
        let name = unpack::hex(
            ring::digest::digest(&ring::digest::SHA256, dir.as_os_str().as_encoded_bytes())
                .as_ref(),
        );
        let path = self
            .root
            .join("content/leases")
            .join(format!("{name}.json"));
        let written = serde_json::to_vec(&lease)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&path, bytes));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "recording the image's use: {e}");
        }
        let now = unix_now();
        let used = self.update(|meta| {
            if let Some(r) = meta.images.get_mut(&image.reference) {
                r.last_used = now;
            }
            Ok(())
        });
        if let Err(e) = used {
            tracing::warn!(image = %image.reference, "recording the image's last use: {e}");
        }
    }

    /// The root filesystems that still exist; leases of removed ones are dropped.
    fn leases(&self) -> Vec<Lease> {
        let dir = self.root.join("content/leases");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let lease: Option<Lease> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match lease {
                Some(l) if l.dir.exists() => out.push(l),
                // Written right after the mount, so a lease without its directory is over.
                _ => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        out
    }

    /// The references `name` designates: one reference, or every reference of an image id.
    fn resolve(&self, name: &str) -> Result<Vec<String>, Error> {
        let meta = self.current();
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let is_id = hex.len() >= 4
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if is_id {
            let ids: BTreeSet<&str> = meta
                .images
                .values()
                .map(|r| r.id.as_str())
                .filter(|id| {
                    id.strip_prefix("sha256:")
                        .is_some_and(|h| h.starts_with(hex))
                })
                .collect();
            if ids.len() == 1 {
                return Ok(meta
                    .images
                    .iter()
                    .filter(|(_, r)| ids.contains(r.id.as_str()))
                    .map(|(n, _)| n.clone())
                    .collect());
            }
        }
        let normalized = reference::parse(name)
            .map(|n| n.normalized)
            .map_err(|_| Error::NotFound(name.to_string()))?;
        if meta.images.contains_key(&normalized) {
            Ok(vec![normalized])
        } else {
            Err(Error::NotFound(name.to_string()))
        }
    }

    /// Drops `refs` from the metadata, then removes the snapshots and blobs no remaining image
    /// and no live container uses.
    fn delete(&self, refs: &[String], leases: &[Lease]) -> Result<Vec<String>, Error> {
        let pinned: BTreeSet<&str> = leases
            .iter()
            .flat_map(|l| l.chain_ids.iter().map(String::as_str))
            .collect();
        let (removed, dirs, blobs) = self
            .update(|meta| {
                let mut removed = Vec::new();
                let mut chains = BTreeSet::new();
                let mut digests = BTreeSet::new();
                for r in refs {
                    if let Some(record) = meta.images.remove(r) {
                        chains.extend(record.chain_ids);
                        digests.extend(record.blobs);
                        digests.insert(record.id);
                        removed.push(r.clone());
                    }
                }
                for record in meta.images.values() {
                    for c in &record.chain_ids {
                        chains.remove(c);
                    }
                    for b in &record.blobs {
                        digests.remove(b);
                    }
                    digests.remove(&record.id);
                }
                let mut dirs = Vec::new();
                for c in chains {
                    if pinned.contains(c.as_str()) {
                        continue;
                    }
                    if let Some(n) = meta.snapshots.remove(&c) {
                        dirs.push(self.snapshot_dir(n));
                    }
                }
                let blobs: Vec<PathBuf> = digests
                    .iter()
                    .filter_map(|d| digest_hex(d))
                    .map(|h| self.blob_path(h))
                    .collect();
                Ok((removed, dirs, blobs))
            })
            .map_err(|message| Error::Store {
                root: self.root.clone(),
                message,
            })?;
        for d in dirs {
            if let Err(e) = std::fs::remove_dir_all(&d)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(snapshot = %d.display(), "removing a snapshot: {e}");
            }
        }
        for b in blobs {
            if let Err(e) = std::fs::remove_file(&b)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(blob = %b.display(), "removing a blob: {e}");
            }
        }
        for r in &removed {
            lock(&self.touched).remove(r);
        }
        Ok(removed)
    }

    /// A unique temporary name in this process.
    fn temp_name(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{}-{n}", std::process::id())
    }

    /// Unpacks the layer `blob` into a new snapshot for `chain_id` unless one exists; returns
    /// whether it made one. The layer is unpacked under a temporary name and renamed to its
    /// number when recorded, so a snapshot is never half there. Blocking.
    fn create_snapshot(&self, chain_id: &str, blob: &Path, diff_id: &str) -> Result<bool, String> {
        if self.current().snapshots.contains_key(chain_id) {
            return Ok(false);
        }
        let staging = self.root.join("snapshots").join(self.temp_name("new"));
        let fs = staging.join("fs");
        std::fs::create_dir_all(&fs).map_err(|e| format!("creating {}: {e}", fs.display()))?;
        let result = hold(&staging, false).and_then(|held| {
            unpack::unpack_layer(blob, &fs, diff_id).map_err(|e| e.to_string())?;
            let made = self.update(|meta| {
                if meta.snapshots.contains_key(chain_id) {
                    return Ok(false);
                }
                let n = meta.next_snapshot + 1;
                let dir = self.snapshot_dir(n);
                std::fs::rename(&staging, &dir)
                    .map_err(|e| format!("renaming {}: {e}", staging.display()))?;
                meta.next_snapshot = n;
                meta.snapshots.insert(chain_id.to_string(), n);
                Ok(true)
            });
            drop(held);
            made
        });
        if !matches!(result, Ok(true)) {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    /// Removes snapshots made for an import that then failed, unless something uses them now.
    fn discard_snapshots(&self, chain_ids: &[String]) {
        let pinned: BTreeSet<String> = self
            .leases()
            .into_iter()
            .flat_map(|l| l.chain_ids)
            .collect();
        let dirs = self.update(|meta| {
            let used: BTreeSet<&String> = meta
                .images
                .values()
                .flat_map(|r| r.chain_ids.iter())
                .collect();
            let mut dirs = Vec::new();
            for c in chain_ids {
                if used.contains(c) || pinned.contains(c) {
                    continue;
                }
                if let Some(n) = meta.snapshots.remove(c) {
                    dirs.push(self.snapshot_dir(n));
                }
            }
            Ok(dirs)
        });
        match dirs {
            Ok(dirs) => {
                for d in dirs {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
            Err(e) => tracing::warn!("removing the snapshots of a failed import: {e}"),
        }
    }

    fn image(&self, meta: &Metadata, reference: &str, record: &Record) -> Result<Image, Error> {
        let layers = record
            .chain_ids
            .iter()
            .map(|c| {
                meta.snapshots
                    .get(c)
                    .map(|n| self.snapshot_dir(*n).join("fs"))
                    .ok_or_else(|| Error::MissingSnapshot {
                        reference: reference.to_string(),
                        chain_id: c.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Image {
            reference: reference.to_string(),
            id: record.id.clone(),
            repo_digest: if record.repo_digest.is_empty() {
                record.id.clone()
            } else {
                record.repo_digest.clone()
            },
            size: record.size,
            config: record.config.clone(),
            layers,
        })
    }

    fn snapshot_dir(&self, n: u64) -> PathBuf {
        self.root.join("snapshots").join(n.to_string())
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("content/blobs/sha256").join(hex)
    }

    /// Writes the metadata file atomically (temporary file, synced, then renamed) and notes
    /// the new file's stamp. Only under the file lock.
    fn save(&self, meta: &mut Metadata) -> Result<(), String> {
        use std::io::Write as _;
        let path = self.meta_path();
        let tmp = self.root.join("content/metadata.json.tmp");
        let bytes = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
        let written = File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| std::fs::metadata(&path));
        let m = written.map_err(|e| format!("writing {}: {e}", path.display()))?;
        meta.stamp = Some(Stamp::of(&m));
        Ok(())
    }

    fn key_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(lock(&self.locks).entry(key.to_string()).or_default())
    }

    /// The client for one endpoint and login, configured with the endpoint's scheme and its
    /// registries.yaml TLS settings.
    fn client(&self, ep: &registries::Endpoint, auth: &RegistryAuth) -> Arc<Client> {
        let login = match auth {
            RegistryAuth::Anonymous => String::new(),
            RegistryAuth::Basic(u, p) => format!("basic {u}:{p}"),
            RegistryAuth::Bearer(t) => format!("bearer {t}"),
        };
        // Hashed so that secrets do not sit in the map keys in plain text.
        let login =
            unpack::hex(ring::digest::digest(&ring::digest::SHA256, login.as_bytes()).as_ref());
        let scheme = if ep.http { "http" } else { "https" };
        let key = format!("{scheme}://{}#{login}", ep.host);
        let mut clients = lock(&self.clients);
        if let Some(c) = clients.get(&key) {
            return Arc::clone(c);
        }
        // oci-client is built without a bundled crypto provider; ring is the process's one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = ClientConfig {
            protocol: if ep.http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            platform_resolver: Some(Box::new(platform::resolve_current)),
            max_concurrent_download: 2,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(120)),
            ..Default::default()
        };
        if let Some(tls) = self
            .registries
            .config(&ep.host)
            .and_then(|c| c.tls.as_ref())
        {
            config.accept_invalid_certificates = tls.insecure_skip_verify;
            if let Some(ca) = &tls.ca_file {
                match std::fs::read(ca) {
                    Ok(data) => config.extra_root_certificates.push(Certificate {
                        encoding: CertificateEncoding::Pem,
                        data,
                    }),
                    Err(e) => {
                        tracing::warn!(host = %ep.host, ca = %ca.display(), "cannot read registry ca_file: {e}")
                    }
                }
            }
            if tls.cert_file.is_some() || tls.key_file.is_some() {
                tracing::warn!(host = %ep.host, "registry client certificates (cert_file/key_file) are not supported; ignoring");
            }
        }
        let client = Arc::new(Client::new(config));
        clients.insert(key, Arc::clone(&client));
        client
    }

    /// Credentials for an endpoint: a matching imagePullSecret first (as the kubelet passes
    /// them), then registries.yaml `configs.<host>.auth`, else anonymous.
    fn auth_for(
        &self,
        ep: &registries::Endpoint,
        registry: &str,
        creds: &[Credential],
    ) -> RegistryAuth {
        let host_matches = |c: &&Credential| {
            let h = reference::credential_host(&c.registry);
            h == ep.host || (!ep.mirror && h == registry)
        };
        if let Some(c) = creds.iter().find(host_matches) {
            return RegistryAuth::Basic(c.username.clone(), c.password.clone());
        }
        let Some(auth) = self
            .registries
            .config(&ep.host)
            .and_then(|c| c.auth.as_ref())
        else {
            return RegistryAuth::Anonymous;
        };
        if let (Some(u), Some(p)) = (&auth.username, &auth.password) {
            return RegistryAuth::Basic(u.clone(), p.clone());
        }
        if let Some(encoded) = &auth.auth {
            use base64::Engine as _;
            if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim())
                && let Ok(text) = String::from_utf8(decoded)
                && let Some((u, p)) = text.split_once(':')
            {
                return RegistryAuth::Basic(u.to_string(), p.to_string());
            }
        }
        if let Some(token) = auth.identitytoken.as_ref().or(auth.token.as_ref()) {
            return RegistryAuth::Bearer(token.clone());
        }
        RegistryAuth::Anonymous
    }

    /// Resolves the reference at each endpoint in turn and fetches the image from the first
    /// that answers. Errors are worded like containerd's.
    async fn pull(self: &Arc<Self>, name: &Name, creds: &[Credential]) -> Result<Image, String> {
        let r = &name.reference;
        let n = &name.normalized;
        let mut last = format!("failed to resolve reference {n:?}: no endpoint");
        for ep in self.registries.endpoints(r.registry(), r.repository()) {
            let auth = self.auth_for(&ep, r.registry(), creds);
            let client = self.client(&ep, &auth);
            let registry = r.registry().to_string();
            let repo = ep.repository.clone();
            let mut at = match (r.tag(), r.digest()) {
                (Some(t), Some(d)) => {
                    Reference::with_tag_and_digest(registry, repo, t.to_string(), d.to_string())
                }
                (None, Some(d)) => Reference::with_digest(registry, repo, d.to_string()),
                (Some(t), None) => Reference::with_tag(registry, repo, t.to_string()),
                (None, None) => Reference::with_tag(registry, repo, "latest".to_string()),
            };
            if ep.mirror {
                at.set_mirror_registry(ep.host.clone());
            }
            match client.pull_image_manifest_and_list_digest(&at, &auth).await {
                Ok((manifest, digest, list_digest)) => {
                    let repo_digest = format!(
                        "{}@{}",
                        reference::repository_name(r),
                        list_digest.unwrap_or(digest)
                    );
                    return self
                        .fetch(n, &client, &at, &manifest, repo_digest)
                        .await
                        .map_err(|e| format!("failed to pull and unpack image {n:?}: {e}"));
                }
                Err(e) => {
                    tracing::info!(image = %n, endpoint = %ep.host, "resolving image failed: {e}");
                    last = format!(
                        "failed to pull and unpack image {n:?}: {}",
                        describe_resolve_error(n, &e)
                    );
                }
            }
        }
        Err(last)
    }

    /// Downloads config and layers of a resolved manifest, unpacks the layers and records the
    /// image.
    async fn fetch(
        self: &Arc<Self>,
        n: &str,
        client: &Client,
        at: &Reference,
        manifest: &OciImageManifest,
        repo_digest: String,
    ) -> Result<Image, String> {
        let config_path = self.blob(client, at, &manifest.config).await?;
        let raw = tokio::fs::read(&config_path)
            .await
            .map_err(|e| format!("reading config {}: {e}", config_path.display()))?;
        let config: RawConfig = serde_json::from_slice(&raw)
            .map_err(|e| format!("parsing image config {}: {e}", manifest.config.digest))?;
        let diff_ids = config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(format!(
                "mismatched image rootfs and manifest layers: {} diff ids, {} layers",
                diff_ids.len(),
                manifest.layers.len()
            ));
        }
        let chains = chain_ids(&diff_ids);
        let mut size = 0u64;
        for (i, layer) in manifest.layers.iter().enumerate() {
            if !LAYER_MEDIA_TYPES.contains(&layer.media_type.as_str()) {
                return Err(format!(
                    "layer {} has unsupported media type {:?}",
                    layer.digest, layer.media_type
                ));
            }
            size += u64::try_from(layer.size).unwrap_or(0);
            if self.current().snapshots.contains_key(&chains[i]) {
                // Already unpacked for another image: no download, as containerd skips it too.
                continue;
            }
            let blob = self.blob(client, at, layer).await?;
            self.unpack(&chains[i], &blob, &diff_ids[i], &layer.digest)
                .await?;
        }
        let runtime = config.config.unwrap_or_default();
        let record = Record {
            id: manifest.config.digest.clone(),
            repo_digest,
            size,
            config: ImageConfig::from(runtime),
            chain_ids: chains,
            blobs: std::iter::once(manifest.config.digest.clone())
                .chain(manifest.layers.iter().map(|l| l.digest.clone()))
                .collect(),
            added: unix_now(),
            last_used: 0,
        };
        self.update(|meta| {
            record_image(meta, n, record.clone())?;
            self.image(meta, n, &record).map_err(|e| e.to_string())
        })
    }

    /// Makes sure blob `desc` is in the content store, streaming it to `<hex>.partial` and
    /// renaming it once complete. `pull_blob` checks the sha256 of what it wrote against the
    /// descriptor (and the registry's `Docker-Content-Digest`) before returning.
    async fn blob(
        &self,
        client: &Client,
        at: &Reference,
        desc: &OciDescriptor,
    ) -> Result<PathBuf, String> {
        let hex = digest_hex(&desc.digest)
            .ok_or_else(|| format!("unsupported digest {:?}", desc.digest))?;
        let path = self.blob_path(hex);
        let guard = self.key_lock(&desc.digest);
        let _held = guard.lock().await;
        if tokio::fs::metadata(&path).await.is_ok() {
            return Ok(path);
        }
        let partial = path.with_file_name(format!("{}.partial", self.temp_name(hex)));
        let result = async {
            let file = std::fs::File::create(&partial)
                .map_err(|e| format!("creating {}: {e}", partial.display()))?;
            // Held while writing, so another process's start does not take it for a leftover.
            let held = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| format!("locking {}: {e}", partial.display()))?;
            let mut file = tokio::fs::File::from_std(
                held.try_clone()
                    .map_err(|e| format!("opening {}: {e}", partial.display()))?,
            );
            client
                .pull_blob(at, desc, &mut file)
                .await
                .map_err(|e| format!("failed to copy {}: {e}", desc.digest))?;
            // Durable before it gets its final name, so a power cut never leaves a bad blob.
            file.sync_all()
                .await
                .map_err(|e| format!("syncing {}: {e}", partial.display()))?;
            let renamed = tokio::fs::rename(&partial, &path)
                .await
                .map_err(|e| format!("renaming {}: {e}", partial.display()));
            drop(held);
            renamed
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result.map(|()| path)
    }

    /// Unpacks a layer blob into a new snapshot for `chain_id`, once.
    async fn unpack(
        self: &Arc<Self>,
        chain_id: &str,
        blob: &Path,
        diff_id: &str,
        digest: &str,
    ) -> Result<(), String> {
        let guard = self.key_lock(chain_id);
        let _held = guard.lock().await;
        let me = Arc::clone(self);
        let (chain_id, blob, diff_id) = (
            chain_id.to_string(),
            blob.to_path_buf(),
            diff_id.to_string(),
        );
        tokio::task::spawn_blocking(move || me.create_snapshot(&chain_id, &blob, &diff_id))
            .await
            .map_err(|e| format!("unpack task failed: {e}"))
            .and_then(|r| r)
            .map(|_| ())
            .map_err(|e| format!("failed to extract layer {digest}: {e}"))
    }
}

/// Records `record` as `reference`, if every snapshot it needs is still there (a concurrent
/// removal may have taken a shared layer away while it was being fetched).
fn record_image(meta: &mut Metadata, reference: &str, record: Record) -> Result<(), String> {
    if let Some(c) = record
        .chain_ids
        .iter()
        .find(|c| !meta.snapshots.contains_key(*c))
    {
        return Err(format!(
            "the snapshot of layer {c} was removed while the image was being unpacked; try again"
        ));
    }
    meta.images.insert(reference.to_string(), record);
    Ok(())
}

/// Words a failed manifest resolution as containerd does, keeping the registry's own message.
fn describe_resolve_error(n: &str, e: &OciDistributionError) -> String {
    let prefix = format!("failed to resolve reference {n:?}");
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let messages: Vec<String> = envelope.errors.iter().map(|e| e.message.clone()).collect();
            let text = messages.join("; ");
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                format!("{prefix}: {n}: not found ({text})")
            } else if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                format!(
                    "{prefix}: pull access denied, repository does not exist or may require authorization: {text}"
                )
            } else {
                format!("{prefix}: {text}")
            }
        }
        OciDistributionError::ServerError {
            code: 404, message, ..
        } => {
            format!("{prefix}: {n}: not found ({})", message.trim())
        }
        OciDistributionError::ImageManifestNotFoundError(m) => {
            format!("{prefix}: {n}: not found ({m})")
        }
        OciDistributionError::UnauthorizedError { url } => format!(
            "{prefix}: pull access denied, repository does not exist or may require authorization: {url}"
        ),
        other => format!("{prefix}: {}", error_chain(other)),
    }
}

/// An error with its sources, so "connection refused" is not hidden behind "error sending
/// request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
