//! Pod volumes on the node: emptyDir (also `medium: Memory`), hostPath, configMap, secret,
//! downwardAPI and projected, under `<data-dir>/agent/pods/<uid>/volumes/<plugin>/<name>` as
//! upstream lays them out, and persistentVolumeClaim, which mounts the directory of the
//! claim's bound hostPath or local PersistentVolume.
//!
//! Content volumes are written the way upstream's atomic writer does: files go into a fresh
//! timestamped directory, `..data` is swapped to it with one rename, and each visible name is
//! a symlink through `..data`, so a running container sees either the old set or the new one,
//! never a mix; re-running [`prepare`] is how updates reach running pods.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, Volume,
};
use kube::api::Api;

use super::env;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Upstream's FailedMount wording: `MountVolume.SetUp failed for volume "x" : …`.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
    SetUp { volume: String, message: String },
    #[error("unsupported volume source for volume \"{0}\"")]
    Unsupported(String),
}

fn setup(volume: &str, message: impl std::fmt::Display) -> Error {
    Error::SetUp {
        volume: volume.into(),
        message: message.to_string(),
    }
}

/// A prepared volume: the host path a volumeMount binds, and whether it must be read-only.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub path: PathBuf,
    pub read_only: bool,
    /// `medium: Memory` emptyDirs are tmpfs mounts with this size limit.
    pub tmpfs: Option<Option<u64>>,
}

/// The directory of a (disk-backed) emptyDir volume.
pub fn empty_dir_path(pod_dir: &Path, name: &str) -> PathBuf {
    dir(pod_dir, "empty-dir", name)
}

/// The volume's directory for the plugin, as upstream names them.
fn dir(pod_dir: &Path, plugin: &str, name: &str) -> PathBuf {
    pod_dir
        .join("volumes")
        .join(format!("kubernetes.io~{plugin}"))
        .join(name)
}

/// Prepares every volume of the pod; an error names the first volume that failed.
pub async fn prepare(
    client: &kube::Client,
    pod: &Pod,
    pod_dir: &Path,
    host_ip: &str,
    pod_ip: &str,
) -> Result<BTreeMap<String, Prepared>, Error> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default()
    {
        let p = prepare_one(client, &ns, pod, pod_dir, &v, host_ip, pod_ip).await?;
        out.insert(v.name.clone(), p);
    }
    Ok(out)
}

async fn prepare_one(
    client: &kube::Client,
    ns: &str,
    pod: &Pod,
    pod_dir: &Path,
    v: &Volume,
    host_ip: &str,
    pod_ip: &str,
) -> Result<Prepared, Error> {
    let name = v.name.as_str();
    if let Some(e) = &v.empty_dir {
        let path = empty_dir_path(pod_dir, name);
        std::fs::create_dir_all(&path).map_err(|e| setup(name, e))?;
        set_mode(&path, 0o777);
        let tmpfs = (e.medium.as_deref() == Some("Memory")).then(|| {
            e.size_limit
                .as_ref()
                .and_then(|q| super::pod::bytes(&q.0))
                .map(|b| b as u64)
        });
        return Ok(Prepared {
            path,
            read_only: false,
            tmpfs,
        });
    }
    if let Some(h) = &v.host_path {
        let path = PathBuf::from(&h.path);
        host_path_check(&path, h.type_.as_deref().unwrap_or("")).map_err(|m| setup(name, m))?;
        return Ok(Prepared {
            path,
            read_only: false,
            tmpfs: None,
        });
    }
    let content = |plugin: &str, files: &Files, mode: Option<i32>| {
        let path = dir(pod_dir, plugin, name);
        write_atomic(&path, files, mode.unwrap_or(0o644)).map_err(|e| setup(name, e))?;
        Ok(Prepared {
            path,
            read_only: true,
            tmpfs: None,
        })
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    if let Some(c) = &v.config_map {
        let files =
            source_files(&config_maps, &c.name, c.items.as_deref(), c.optional, name).await?;
        return content("configmap", &files, c.default_mode);
    }
    if let Some(s) = &v.secret {
        let secret_name = s.secret_name.clone().unwrap_or_default();
        let files =
            source_files(&secrets, &secret_name, s.items.as_deref(), s.optional, name).await?;
        return content("secret", &files, s.default_mode);
    }
    if let Some(d) = &v.downward_api {
        let files = downward_files(pod, d.items.as_deref().unwrap_or_default(), host_ip, pod_ip)
            .map_err(|e| setup(name, e))?;
        return content("downward-api", &files, d.default_mode);
    }
    if let Some(p) = &v.projected {
        let mut files = BTreeMap::new();
        for src in p.sources.clone().unwrap_or_default() {
            if let Some(c) = &src.config_map {
                files.extend(
                    source_files(&config_maps, &c.name, c.items.as_deref(), c.optional, name)
                        .await?,
                );
            }
            if let Some(s) = &src.secret {
                files.extend(
                    source_files(&secrets, &s.name, s.items.as_deref(), s.optional, name).await?,
                );
            }
            if let Some(d) = &src.downward_api {
                files.extend(
                    downward_files(pod, d.items.as_deref().unwrap_or_default(), host_ip, pod_ip)
                        .map_err(|e| setup(name, e))?,
                );
            }
            if src.service_account_token.is_some() {
                // Token issuing (TokenRequest) does not exist yet: the projected volume is
                // written without the token file, so the CA and namespace still reach the pod.
                tracing::debug!(
                    volume = name,
                    "serviceAccountToken projection is not available yet"
                );
            }
        }
        return content("projected", &files, p.default_mode);
    }
    if let Some(c) = &v.persistent_volume_claim {
        let path = claim_path(client, ns, &c.claim_name)
            .await
            .map_err(|m| setup(name, m))?;
        return Ok(Prepared {
            path,
            read_only: c.read_only.unwrap_or(false),
            tmpfs: None,
        });
    }
    Err(Error::Unsupported(name.into()))
}

/// The host directory behind a claim: the claim must be bound (upstream's volume manager
/// refuses unbound claims with "PVC is not bound" and retries), and its PersistentVolume a
/// hostPath (checked by its `type`, so DirectoryOrCreate creates it) or a local volume.
async fn claim_path(client: &kube::Client, ns: &str, claim: &str) -> Result<PathBuf, String> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pvc = match claims.get_opt(claim).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(format!(
                "error processing PVC {ns}/{claim}: persistentvolumeclaim \"{claim}\" not found"
            ));
        }
        Err(e) => return Err(format!("error processing PVC {ns}/{claim}: {e}")),
    };
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
    let volume = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty());
    let (Some(volume), Some("Bound")) = (volume, phase) else {
        return Err(format!(
            "error processing PVC {ns}/{claim}: PVC is not bound"
        ));
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = match volumes.get_opt(volume).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(format!(
                "error processing PVC {ns}/{claim}: persistentvolume \"{volume}\" not found"
            ));
        }
        Err(e) => return Err(format!("error processing PVC {ns}/{claim}: {e}")),
    };
    let spec = pv.spec.unwrap_or_default();
    if let Some(h) = spec.host_path {
        let path = PathBuf::from(&h.path);
        host_path_check(&path, h.type_.as_deref().unwrap_or(""))?;
        return Ok(path);
    }
    if let Some(l) = spec.local {
        let path = PathBuf::from(&l.path);
        if !path.exists() {
            return Err(format!("path {} does not exist", path.display()));
        }
        return Ok(path);
    }
    Err(format!(
        "persistentvolume \"{volume}\" has a volume source this node does not support"
    ))
}

/// A ConfigMap or Secret as volume content: its keys and their bytes.
trait KeyData:
    kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug
{
    /// `configmap` or `secret`, as upstream's messages name them.
    const WORD: &'static str;
    fn key_data(&self) -> BTreeMap<String, Vec<u8>>;
}

impl KeyData for ConfigMap {
    const WORD: &'static str = "configmap";
    fn key_data(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out: BTreeMap<String, Vec<u8>> = self
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for (k, v) in self.binary_data.clone().unwrap_or_default() {
            out.insert(k, v.0);
        }
        out
    }
}

impl KeyData for Secret {
    const WORD: &'static str = "secret";
    fn key_data(&self) -> BTreeMap<String, Vec<u8>> {
        let mut out: BTreeMap<String, Vec<u8>> = self
            .data
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in self.string_data.clone().unwrap_or_default() {
            out.insert(k, v.into_bytes());
        }
        out
    }
}

/// The files of a configMap or secret source (a volume or a projection): a missing object
/// fails unless the source is optional, then it contributes nothing.
async fn source_files<K: KeyData>(
    api: &Api<K>,
    source: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    volume: &str,
) -> Result<Files, Error> {
    match api.get_opt(source).await.map_err(|e| setup(volume, e))? {
        Some(obj) => key_files(&obj.key_data(), items, optional, volume, source),
        None if optional == Some(true) => Ok(Files::new()),
        None => Err(setup(volume, format!("{} \"{source}\" not found", K::WORD))),
    }
}

/// A file to write: content and an optional per-item mode.
type Files = BTreeMap<String, (Vec<u8>, Option<i32>)>;

/// The files of a configMap/secret source: every key, or only `items` (a missing key fails
/// unless the source is optional, as upstream).
fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    volume: &str,
    source: &str,
) -> Result<Files, Error> {
    let mut out = Files::new();
    match items {
        None => {
            for (k, v) in data {
                out.insert(k.clone(), (v.clone(), None));
            }
        }
        Some(items) => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        out.insert(it.path.clone(), (v.clone(), it.mode));
                    }
                    None if optional == Some(true) => {}
                    None => {
                        return Err(setup(
                            volume,
                            format!(
                                "configmap references non-existent config key: {} (in {source})",
                                it.key
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    host_ip: &str,
    pod_ip: &str,
) -> Result<Files, String> {
    let mut out = Files::new();
    for it in items {
        let value = if let Some(f) = &it.field_ref {
            env::field_ref(pod, &f.field_path, host_ip, pod_ip).map_err(|e| e.0)?
        } else if let Some(r) = &it.resource_field_ref {
            let spec = pod.spec.clone().unwrap_or_default();
            let c = spec
                .containers
                .iter()
                .find(|c| Some(&c.name) == r.container_name.as_ref())
                .or(spec.containers.first())
                .cloned()
                .unwrap_or_default();
            let cpus = std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1);
            env::resource_field_ref(
                &c,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                cpus,
                0,
            )
            .map_err(|e| e.0)?
        } else {
            String::new()
        };
        out.insert(it.path.clone(), (value.into_bytes(), it.mode));
    }
    Ok(out)
}

/// Upstream's hostPath `type` checks.
fn host_path_check(path: &Path, kind: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path);
    let shown = path.display();
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
                set_mode(path, 0o755);
            }
            Ok(())
        }
        "FileOrCreate" => {
            if meta.is_err() {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::File::create(path).map_err(|e| e.to_string())?;
                set_mode(path, 0o644);
            }
            Ok(())
        }
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(format!(
                "hostPath type check failed: {shown} is not a directory"
            )),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => Err(format!("hostPath type check failed: {shown} is not a file")),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => Err(format!(
                "hostPath type check failed: {shown} is not a socket file"
            )),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => Err(format!(
                "hostPath type check failed: {shown} is not a character device"
            )),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => Err(format!(
                "hostPath type check failed: {shown} is not a block device"
            )),
        },
        other => Err(format!("unknown hostPath type {other:?}")),
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// Writes `files` into `dir` atomically (upstream's AtomicWriter layout): unchanged content
/// is not rewritten, so a resync does not touch the volume.
pub fn write_atomic(dir: &Path, files: &Files, default_mode: i32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    // Unchanged: nothing to do.
    if let Ok(current) = std::fs::read_link(&data_link) {
        let current_dir = dir.join(&current);
        let same = files
            .iter()
            .all(|(k, (v, _))| std::fs::read(current_dir.join(k)).is_ok_and(|old| &old == v))
            && count_files(&current_dir) == files.len();
        if same {
            return Ok(());
        }
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let new_dir = dir.join(&stamp);
    std::fs::create_dir_all(&new_dir)?;
    for (rel, (content, mode)) in files {
        let target = new_dir.join(rel);
        if !target.starts_with(&new_dir) || rel.split('/').any(|c| c == "..") {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)?;
        set_mode(&target, mode.unwrap_or(default_mode) as u32 & 0o7777);
    }
    set_mode(&new_dir, 0o755);
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    let old = std::fs::read_link(&data_link).ok();
    std::fs::rename(&tmp_link, &data_link)?;
    // Top-level names point through ..data.
    let tops: std::collections::BTreeSet<String> = files
        .keys()
        .filter_map(|k| k.split('/').next().map(str::to_string))
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)?;
        }
    }
    // Names that disappeared.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with("..") && !tops.contains(&n) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n += count_files(&e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> Files {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (v.as_bytes().to_vec(), None)))
            .collect()
    }

    #[test]
    fn atomic_writer_swaps_the_data_dir_and_drops_removed_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("vol");
        write_atomic(&d, &files(&[("a", "1"), ("sub/b", "2")]), 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(d.join("sub/b")).unwrap(), "2");
        let first = std::fs::read_link(d.join("..data")).unwrap();
        // Same content: untouched.
        write_atomic(&d, &files(&[("a", "1"), ("sub/b", "2")]), 0o644).unwrap();
        assert_eq!(std::fs::read_link(d.join("..data")).unwrap(), first);
        write_atomic(&d, &files(&[("a", "3")]), 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(d.join("sub")).is_err());
        assert!(!d.join(&first).exists(), "the old generation is removed");
    }

    #[test]
    fn items_select_keys_and_missing_keys_fail_unless_optional() {
        let data: BTreeMap<String, Vec<u8>> =
            [("k".to_string(), b"v".to_vec())].into_iter().collect();
        let items = vec![KeyToPath {
            key: "k".into(),
            path: "dir/file".into(),
            mode: Some(0o600),
        }];
        let f = key_files(&data, Some(&items), None, "vol", "cm").unwrap();
        assert_eq!(f["dir/file"], (b"v".to_vec(), Some(0o600)));
        let missing = vec![KeyToPath {
            key: "x".into(),
            path: "x".into(),
            mode: None,
        }];
        let err = key_files(&data, Some(&missing), None, "vol", "cm").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("MountVolume.SetUp failed for volume \"vol\""),
            "{err}"
        );
        assert!(
            key_files(&data, Some(&missing), Some(true), "vol", "cm")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn host_path_types_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("made");
        host_path_check(&d, "DirectoryOrCreate").unwrap();
        assert!(d.is_dir());
        host_path_check(&d, "Directory").unwrap();
        assert!(
            host_path_check(&d, "File")
                .unwrap_err()
                .contains("is not a file")
        );
        let f = tmp.path().join("f");
        host_path_check(&f, "FileOrCreate").unwrap();
        host_path_check(&f, "File").unwrap();
        assert!(host_path_check(&f, "Socket").is_err());
        assert!(host_path_check(&f, "Weird").is_err());
    }
}
