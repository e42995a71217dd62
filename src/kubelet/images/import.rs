//! Image tarballs, as `ctr images import` (and k3s's airgap preload) reads them: a
//! docker-archive (`docker save`: `manifest.json` listing Config, RepoTags and Layers) or an OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/…`), the whole file plain, gzip or
//! zstd, told by its magic bytes.
//!
//! The entries of a tar can come in any order (`docker save` writes `manifest.json` last), so the
//! archive is streamed once into a staging directory: every regular file is written there under
//! a sequence number while its sha256 is computed, and tar paths only ever become keys of a map,
//! never file system paths (a name that climbs out of the archive with `..` is refused). Then
//! the manifests are read from the staged files, every `blobs/sha256/<hex>` is checked against
//! its name, layers are unpacked (each checked against its diff id) into the same snapshots as
//! pulled layers, their blobs are linked into the content store, and all images of the archive
//! are recorded in one metadata write. On any failure nothing is recorded and the snapshots the
//! import made are removed again.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_client::manifest::{OciDescriptor, OciImageIndex};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{
    AirgapFile, Image, ImageConfig, Inner, LAYER_MEDIA_TYPES, RawConfig, Record, chain_ids,
    digest_hex, hold, platform, record_image, reference, unix_now, unpack,
};

/// Manifests, indexes and configs are small; anything bigger is not one.
const MAX_JSON: u64 = 64 << 20;
const MAX_LINK_HOPS: usize = 16;
const MAX_INDEX_DEPTH: usize = 4;

/// `sha256:<hex>` of a file, read in chunks.
pub(super) fn file_digest(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", unpack::hex(ctx.finish().as_ref())))
}

/// Imports the archive at `path`; `airgap` is the file's digest when it comes from the airgap
/// directory, recorded with the images so the next start skips it.
pub(super) fn import(
    inner: &Arc<Inner>,
    path: &Path,
    airgap: Option<&str>,
) -> Result<Vec<Image>, String> {
    let archive = Archive::read(inner, path)?;
    let plans = if archive.has("index.json") {
        oci_plans(&archive)?
    } else if archive.has("manifest.json") {
        docker_plans(&archive)?
    } else {
        return Err(
            "not an image archive: neither index.json (OCI image layout) nor manifest.json (docker-archive) is in it"
                .into(),
        );
    };
    let mut created = Vec::new();
    let result = commit(inner, path, &plans, airgap, &mut created);
    if result.is_err() && !created.is_empty() {
        inner.discard_snapshots(&created);
    }
    result
}

/// One staged file of the archive.
#[derive(Clone, Debug)]
struct Staged {
    /// The path inside the archive, for messages.
    name: String,
    path: PathBuf,
    digest: String,
    size: u64,
}

/// An archive staged on disk; the staging directory goes away with it.
struct Archive {
    dir: PathBuf,
    _held: nix::fcntl::Flock<File>,
    files: HashMap<String, Staged>,
    /// Symlinks and hard links: name → the archive path they point to.
    links: HashMap<String, String>,
}

impl Drop for Archive {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One image to record.
struct Planned {
    /// Normalized references.
    names: Vec<String>,
    config: Staged,
    raw: RawConfig,
    layers: Vec<Staged>,
}

/// A tar path as an archive key: `./a//b` → `a/b`; `..` may not climb above the archive root.
fn archive_path(raw: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(raw);
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("entry {text:?} points outside the archive"));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// The decompressed contents of the file at `path`, by its magic bytes.
fn open_stream(path: &Path) -> Result<Box<dyn Read>, String> {
    let mut file = io::BufReader::with_capacity(
        1 << 20,
        File::open(path).map_err(|e| format!("opening: {e}"))?,
    );
    let mut head = [0u8; 6];
    let n = unpack::read_full(&mut file, &mut head).map_err(|e| format!("reading: {e}"))?;
    let head = &head[..n];
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) || head.starts_with(b"BZh") {
        return Err(
            "xz and bzip2 archives are not supported: use .tar, .tar.gz or .tar.zst".into(),
        );
    }
    let raw = io::Cursor::new(head.to_vec()).chain(file);
    Ok(match unpack::sniff(head) {
        unpack::Compression::None => Box::new(raw),
        unpack::Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        unpack::Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(raw).map_err(|e| format!("reading zstd: {e}"))?,
        ),
    })
}

/// A writer that hashes and counts what it writes.
struct Hashing<W> {
    inner: W,
    ctx: ring::digest::Context,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.ctx.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Archive {
    fn read(inner: &Inner, path: &Path) -> Result<Archive, String> {
        let dir = inner
            .root
            .join("content/ingest")
            .join(inner.temp_name("import"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let held = match hold(&dir, false) {
            Ok(h) => h,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut archive = Archive {
            dir,
            _held: held,
            files: HashMap::new(),
            links: HashMap::new(),
        };
        archive.stage(path)?;
        archive.verify_blobs()?;
        Ok(archive)
    }

    fn stage(&mut self, path: &Path) -> Result<(), String> {
        let mut tar = tar::Archive::new(open_stream(path)?);
        let broken = |e: io::Error| format!("reading the archive: {e}");
        let mut n = 0usize;
        for entry in tar.entries().map_err(broken)? {
            let mut entry = entry.map_err(broken)?;
            let name = archive_path(&entry.path_bytes())?;
            let kind = entry.header().entry_type();
            if kind.is_file() || kind.is_contiguous() {
                let staged = self.dir.join(n.to_string());
                n += 1;
                let file = File::create(&staged)
                    .map_err(|e| format!("creating {}: {e}", staged.display()))?;
                let mut out = Hashing {
                    inner: BufWriter::new(file),
                    ctx: ring::digest::Context::new(&ring::digest::SHA256),
                    size: 0,
                };
                io::copy(&mut entry, &mut out)
                    .and_then(|_| out.flush())
                    .map_err(|e| format!("reading {name:?} from the archive: {e}"))?;
                let expected = entry.size();
                if out.size != expected {
                    return Err(format!(
                        "the archive is truncated: {name:?} has {} of its {expected} bytes",
                        out.size
                    ));
                }
                self.links.remove(&name);
                self.files.insert(
                    name.clone(),
                    Staged {
                        name,
                        path: staged,
                        digest: format!("sha256:{}", unpack::hex(out.ctx.finish().as_ref())),
                        size: out.size,
                    },
                );
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let target = String::from_utf8_lossy(&target).into_owned();
                // A symlink is relative to its directory, a hard link to the archive root.
                let joined = match name.rsplit_once('/') {
                    Some((parent, _)) if kind.is_symlink() && !target.starts_with('/') => {
                        format!("{parent}/{target}")
                    }
                    _ => target,
                };
                let resolved = archive_path(joined.as_bytes())
                    .map_err(|_| format!("link {name:?} points outside the archive"))?;
                self.files.remove(&name);
                self.links.insert(name, resolved);
            }
        }
        // The tar reader stops at the end-of-archive marker; reading on to the end surfaces a
        // corrupt or truncated compressed stream.
        io::copy(&mut tar.into_inner(), &mut io::sink()).map_err(broken)?;
        if self.files.is_empty() {
            return Err("not an image archive: it holds no files".into());
        }
        Ok(())
    }

    /// Every `blobs/sha256/<hex>` must hash to its name.
    fn verify_blobs(&self) -> Result<(), String> {
        for (name, f) in &self.files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/")
                && f.digest != format!("sha256:{hex}")
            {
                return Err(format!(
                    "blob {name:?} does not match its name: its content has digest {}",
                    f.digest
                ));
            }
        }
        Ok(())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_ok()
    }

    /// The staged file at archive path `name`, following links.
    fn get(&self, name: &str) -> Result<&Staged, String> {
        let mut at = archive_path(name.as_bytes())?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(f) = self.files.get(&at) {
                return Ok(f);
            }
            match self.links.get(&at) {
                Some(t) => at = t.clone(),
                None => return Err(format!("{name:?} is not in the archive")),
            }
        }
        Err(format!("{name:?}: too many levels of links"))
    }

    /// The blob `digest`, checked against the descriptor's size.
    fn blob(&self, digest: &str, size: i64) -> Result<&Staged, String> {
        let hex = digest_hex(digest).ok_or_else(|| format!("unsupported digest {digest:?}"))?;
        let f = self
            .get(&format!("blobs/sha256/{hex}"))
            .map_err(|_| format!("blob {digest} is not in the archive"))?;
        if size >= 0 && f.size != size as u64 {
            return Err(format!(
                "blob {digest} has {} bytes, its descriptor says {size}",
                f.size
            ));
        }
        Ok(f)
    }
}

fn read_json<T: DeserializeOwned>(f: &Staged) -> Result<T, String> {
    if f.size > MAX_JSON {
        return Err(format!("{:?} is too large for a manifest", f.name));
    }
    let bytes = std::fs::read(&f.path).map_err(|e| format!("reading {:?}: {e}", f.name))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("parsing {:?}: {e}", f.name))
}

/// `docker save`'s `manifest.json` entries.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn docker_plans(a: &Archive) -> Result<Vec<Planned>, String> {
    let entries: Vec<DockerManifest> = read_json(a.get("manifest.json")?)?;
    let mut plans = Vec::new();
    for e in entries {
        let config = a.get(&e.config)?.clone();
        // Classic `docker save` names the config `<hex>.json` after its digest.
        let base = e.config.rsplit('/').next().unwrap_or_default();
        if let Some(hex) = base.strip_suffix(".json")
            && digest_hex(&format!("sha256:{hex}")).is_some()
            && config.digest != format!("sha256:{hex}")
        {
            return Err(format!(
                "config {:?} does not match its name: its content has digest {}",
                e.config, config.digest
            ));
        }
        let layers = e
            .layers
            .iter()
            .map(|l| a.get(l).cloned())
            .collect::<Result<Vec<_>, _>>()?;
        let names = e.repo_tags.unwrap_or_default();
        if names.is_empty() {
            tracing::info!(config = %e.config, "skipping an untagged image in the archive");
            continue;
        }
        plans.push(planned(names, config, layers)?);
    }
    if plans.is_empty() {
        return Err("manifest.json names no tagged image".into());
    }
    Ok(plans)
}

fn oci_plans(a: &Archive) -> Result<Vec<Planned>, String> {
    if let Ok(f) = a.get("oci-layout") {
        let layout: serde_json::Value = read_json(f)?;
        let version = layout["imageLayoutVersion"].as_str().unwrap_or_default();
        if !version.starts_with("1.") {
            return Err(format!("unsupported OCI image layout version {version:?}"));
        }
    }
    let index: OciImageIndex = read_json(a.get("index.json")?)?;
    let mut plans = Vec::new();
    for entry in &index.manifests {
        let annotations = entry.annotations.clone().unwrap_or_default();
        let name = annotations
            .get("io.containerd.image.name")
            .or_else(|| annotations.get("org.opencontainers.image.ref.name"));
        let Some(name) = name else {
            tracing::info!(digest = %entry.digest, "skipping an unnamed image in the archive");
            continue;
        };
        // `org.opencontainers.image.ref.name` is often only a tag ("latest"), which names no
        // repository.
        if !name.contains(':') && !name.contains('/') {
            tracing::info!(%name, digest = %entry.digest, "skipping an image named by a tag alone");
            continue;
        }
        let (config, layers) = resolve(a, &entry.digest, entry.size, 0)?;
        plans.push(planned(vec![name.clone()], config, layers)?);
    }
    if plans.is_empty() {
        return Err(
            "index.json names no image (no io.containerd.image.name or org.opencontainers.image.ref.name annotation with a repository)"
                .into(),
        );
    }
    Ok(plans)
}

/// The config and layers of the manifest `digest` names, choosing this machine's platform from
/// an index (also an index of indexes).
fn resolve(
    a: &Archive,
    digest: &str,
    size: i64,
    depth: usize,
) -> Result<(Staged, Vec<Staged>), String> {
    let blob = a.blob(digest, size)?;
    let doc: serde_json::Value = read_json(blob)?;
    if doc.get("manifests").is_some() {
        if depth >= MAX_INDEX_DEPTH {
            return Err(format!("index {digest} nests too deep"));
        }
        let index: OciImageIndex =
            serde_json::from_value(doc).map_err(|e| format!("parsing index {digest}: {e}"))?;
        let (arch, variant) = platform::host();
        let chosen = platform::resolve_current(&index.manifests)
            .or_else(|| {
                // A single entry without a platform (an index wrapping one manifest).
                match index.manifests.as_slice() {
                    [only] if only.platform.is_none() => Some(only.digest.clone()),
                    _ => None,
                }
            })
            .ok_or_else(|| {
                format!(
                    "index {digest} has no image for linux/{arch}{}",
                    variant.map(|v| format!("/{v}")).unwrap_or_default()
                )
            })?;
        let entry = index
            .manifests
            .iter()
            .find(|e| e.digest == chosen)
            .ok_or_else(|| format!("index {digest} lost entry {chosen}"))?;
        return resolve(a, &entry.digest, entry.size, depth + 1);
    }
    #[derive(Deserialize)]
    struct Manifest {
        config: OciDescriptor,
        #[serde(default)]
        layers: Vec<OciDescriptor>,
    }
    let manifest: Manifest =
        serde_json::from_value(doc).map_err(|e| format!("parsing manifest {digest}: {e}"))?;
    let config = a
        .blob(&manifest.config.digest, manifest.config.size)?
        .clone();
    let mut layers = Vec::new();
    for l in &manifest.layers {
        if !LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()) {
            return Err(format!(
                "layer {} has unsupported media type {:?}",
                l.digest, l.media_type
            ));
        }
        layers.push(a.blob(&l.digest, l.size)?.clone());
    }
    Ok((config, layers))
}

fn planned(names: Vec<String>, config: Staged, layers: Vec<Staged>) -> Result<Planned, String> {
    let raw: RawConfig = read_json(&config)?;
    if raw.rootfs.diff_ids.len() != layers.len() {
        return Err(format!(
            "mismatched image rootfs and manifest layers: {} diff ids, {} layers",
            raw.rootfs.diff_ids.len(),
            layers.len()
        ));
    }
    let names = names
        .iter()
        .map(|n| {
            reference::parse(n)
                .map(|r| r.normalized)
                .map_err(|e| format!("image name {n:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Planned {
        names,
        config,
        raw,
        layers,
    })
}

/// Unpacks, stores the blobs and records the images; `created` collects the snapshots made.
fn commit(
    inner: &Arc<Inner>,
    path: &Path,
    plans: &[Planned],
    airgap: Option<&str>,
    created: &mut Vec<String>,
) -> Result<Vec<Image>, String> {
    for p in plans {
        let chains = chain_ids(&p.raw.rootfs.diff_ids);
        for (i, layer) in p.layers.iter().enumerate() {
            let made = inner
                .create_snapshot(&chains[i], &layer.path, &p.raw.rootfs.diff_ids[i])
                .map_err(|e| format!("layer {:?}: {e}", layer.name))?;
            if made {
                created.push(chains[i].clone());
            }
        }
    }
    let mut linked = Vec::new();
    let stored = store_blobs(inner, plans, &mut linked);
    let now = unix_now();
    let recorded = stored.and_then(|()| {
        inner.update(|meta| {
            let mut images = Vec::new();
            for p in plans {
                let runtime = p.raw.config.clone().unwrap_or_default();
                let record = Record {
                    id: p.config.digest.clone(),
                    repo_digest: String::new(),
                    size: p.layers.iter().map(|l| l.size).sum(),
                    config: ImageConfig::from(runtime),
                    chain_ids: chain_ids(&p.raw.rootfs.diff_ids),
                    blobs: std::iter::once(&p.config)
                        .chain(&p.layers)
                        .map(|f| f.digest.clone())
                        .collect(),
                    added: now,
                    last_used: 0,
                };
                for name in &p.names {
                    record_image(meta, name, record.clone())?;
                    images.push(
                        inner
                            .image(meta, name, &record)
                            .map_err(|e| e.to_string())?,
                    );
                }
            }
            if let Some(digest) = airgap {
                meta.airgap.insert(
                    digest.to_string(),
                    AirgapFile {
                        path: path.to_path_buf(),
                        images: images.iter().map(|i| i.reference.clone()).collect(),
                        imported_at: now,
                    },
                );
            }
            Ok(images)
        })
    });
    if recorded.is_err() {
        for l in linked {
            let _ = std::fs::remove_file(l);
        }
    }
    recorded
}

/// Links (or copies) the config and layer blobs into the content store; `linked` collects
/// the ones that were not there before.
fn store_blobs(inner: &Inner, plans: &[Planned], linked: &mut Vec<PathBuf>) -> Result<(), String> {
    for p in plans {
        for f in std::iter::once(&p.config).chain(&p.layers) {
            let hex = digest_hex(&f.digest)
                .ok_or_else(|| format!("unsupported digest {:?}", f.digest))?;
            let dest = inner.blob_path(hex);
            if dest.exists() {
                continue;
            }
            match std::fs::hard_link(&f.path, &dest) {
                Ok(()) => linked.push(dest),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) => {
                    // Another file system (a bind-mounted content directory): copy, then
                    // rename, so the blob never appears half written.
                    let tmp = dest.with_file_name(format!("{}.partial", inner.temp_name(hex)));
                    let copied =
                        std::fs::copy(&f.path, &tmp).and_then(|_| std::fs::rename(&tmp, &dest));
                    if let Err(e) = copied {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(format!("storing blob {}: {e}", f.digest));
                    }
                    linked.push(dest);
                }
            }
        }
    }
    Ok(())
}
