//! The kubelet's image service: what containerd's CRI image service does for upstream k3s.
//! It pulls images with `oci-client` (mirrors, rewrites and credentials from k3s's
//! `registries.yaml` and imagePullSecrets), keeps blobs in a content store
//! (`<root>/content/blobs/sha256/<hex>`), unpacks each layer once into a snapshot keyed by its
//! chain id (`<root>/snapshots/<n>/fs`, containerd's overlay snapshotter layout with short
//! numeric names), records images in `<root>/images/metadata.json`, and mounts container root
//! filesystems as overlays of those snapshots.

mod platform;
mod reference;
mod registries;
mod rootfs;
mod unpack;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
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
    /// `containerStatuses[].imageID`.
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
    meta: Mutex<Metadata>,
    /// In-flight pulls by normalized reference, so concurrent `ensure` calls share one.
    pulls: Mutex<HashMap<String, SharedPull>>,
    /// Per-blob and per-snapshot locks: two images sharing a layer download and unpack it once.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One client per endpoint and login, so bearer tokens are reused across pulls. The login
    /// is part of the key because oci-client keeps the first credentials it sees per registry.
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

/// What `<root>/images/metadata.json` holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Metadata {
    images: BTreeMap<String, Record>,
    /// Chain id → snapshot number (`<root>/snapshots/<n>`).
    snapshots: BTreeMap<String, u64>,
    next_snapshot: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    repo_digest: String,
    size: u64,
    config: ImageConfig,
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

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct RawRuntimeConfig {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
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
    /// Opens (creating if needed) the store under `root` (`<data-dir>/agent`). Snapshots and
    /// partial downloads left by a crash are removed.
    pub fn open(root: &Path, registries: Registries) -> Result<ImageService, Error> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let blobs = root.join("content/blobs/sha256");
        let snapshots = root.join("snapshots");
        let images = root.join("images");
        for d in [&blobs, &snapshots, &images] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let meta_path = images.join("metadata.json");
        let meta: Metadata = match std::fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Metadata {
                path: meta_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Metadata::default(),
            Err(e) => return Err(io(&meta_path)(e)),
        };
        // A snapshot directory that the metadata does not name was being unpacked when the
        // process stopped: it may be incomplete.
        let known: std::collections::HashSet<String> =
            meta.snapshots.values().map(|n| n.to_string()).collect();
        for entry in std::fs::read_dir(&snapshots).map_err(io(&snapshots))? {
            let entry = entry.map_err(io(&snapshots))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&name) {
                tracing::info!(snapshot = %name, "removing incomplete layer snapshot");
                std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        for entry in std::fs::read_dir(&blobs).map_err(io(&blobs))? {
            let entry = entry.map_err(io(&blobs))?;
            if entry.file_name().to_string_lossy().ends_with(".partial") {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        Ok(ImageService {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                registries,
                meta: Mutex::new(meta),
                pulls: Mutex::new(HashMap::new()),
                locks: Mutex::new(HashMap::new()),
                clients: Mutex::new(HashMap::new()),
            }),
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
        let meta = lock(&self.inner.meta);
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
        rootfs::mount(&lowers, dir)
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

impl Inner {
    fn lookup(&self, normalized: &str) -> Option<Image> {
        let meta = lock(&self.meta);
        let record = meta.images.get(normalized)?;
        self.image(&meta, normalized, record).ok()
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
            repo_digest: record.repo_digest.clone(),
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

    /// Writes the metadata file atomically (temporary file, then rename).
    fn save(&self, meta: &Metadata) -> Result<(), String> {
        let path = self.root.join("images/metadata.json");
        let tmp = self.root.join("images/metadata.json.tmp");
        let bytes = serde_json::to_vec_pretty(meta).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("writing {}: {e}", path.display()))
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
            if lock(&self.meta).snapshots.contains_key(&chains[i]) {
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
            config: ImageConfig {
                entrypoint: runtime.entrypoint.unwrap_or_default(),
                cmd: runtime.cmd.unwrap_or_default(),
                env: runtime.env.unwrap_or_default(),
                working_dir: runtime.working_dir.unwrap_or_default(),
                user: runtime.user.unwrap_or_default(),
            },
            chain_ids: chains,
        };
        let mut meta = lock(&self.meta);
        meta.images.insert(n.to_string(), record.clone());
        self.save(&meta)?;
        self.image(&meta, n, &record).map_err(|e| e.to_string())
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
        let partial = path.with_extension("partial");
        let result = async {
            let mut file = tokio::fs::File::create(&partial)
                .await
                .map_err(|e| format!("creating {}: {e}", partial.display()))?;
            client
                .pull_blob(at, desc, &mut file)
                .await
                .map_err(|e| format!("failed to copy {}: {e}", desc.digest))?;
            // Durable before it gets its final name, so a power cut never leaves a bad blob.
            file.sync_all()
                .await
                .map_err(|e| format!("syncing {}: {e}", partial.display()))?;
            tokio::fs::rename(&partial, &path)
                .await
                .map_err(|e| format!("renaming {}: {e}", partial.display()))
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&partial).await;
        }
        result.map(|()| path)
    }

    /// Unpacks a layer blob into a new snapshot for `chain_id`, once.
    async fn unpack(
        &self,
        chain_id: &str,
        blob: &Path,
        diff_id: &str,
        digest: &str,
    ) -> Result<(), String> {
        let guard = self.key_lock(chain_id);
        let _held = guard.lock().await;
        let n = {
            let mut meta = lock(&self.meta);
            if meta.snapshots.contains_key(chain_id) {
                return Ok(());
            }
            meta.next_snapshot += 1;
            meta.next_snapshot
        };
        let dir = self.snapshot_dir(n);
        let fs = dir.join("fs");
        let blob = blob.to_path_buf();
        let diff_id = diff_id.to_string();
        let unpack_dir = dir.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&unpack_dir);
            std::fs::create_dir_all(&fs).map_err(|e| format!("creating {}: {e}", fs.display()))?;
            unpack::unpack_layer(&blob, &fs, &diff_id).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("unpack task failed: {e}"))
        .and_then(|r| r);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("failed to extract layer {digest}: {e}"));
        }
        let mut meta = lock(&self.meta);
        meta.snapshots.insert(chain_id.to_string(), n);
        self.save(&meta)
    }
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
