//! The built-in local-path provisioner, as k3s ships rancher/local-path-provisioner: the default
//! StorageClass `local-path` (provisioner `rancher.io/local-path`, reclaim policy Delete,
//! binding mode WaitForFirstConsumer) whose volumes are hostPath directories
//! `<data-dir>/storage/pvc-<uid>_<namespace>_<name>` pinned to the node the scheduler chose.
//!
//! It also does the part of upstream's PersistentVolume controller these volumes need: it marks
//! claims of the class with the `storage-provisioner` annotations, binds a provisioned volume
//! to its claim (`spec.volumeName`, the bind annotations, both phases `Bound`), and reclaims a
//! volume whose claim is gone (Delete: the directory and the PV; Retain: phase `Released`).
//!
//! Limitation: the controller runs in the server process and creates directories on the
//! server's disk. The PV's hostPath type is DirectoryOrCreate, so a kubelet on another node
//! creates its own directory, but deleting a volume only removes the server's copy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::informer::{Change, Informer, Requeue, WorkQueue, key_of, run_workers, split_key};

/// The class k3s installs.
pub const CLASS: &str = "local-path";
/// The provisioner name of rancher/local-path-provisioner.
pub const PROVISIONER: &str = "rancher.io/local-path";
/// Set by the scheduler on a WaitForFirstConsumer claim once it chose the pod's node.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set by the PV controller on a claim that waits for dynamic provisioning.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The StorageClass annotation the DefaultStorageClass admission plugin looks for.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// Concurrent syncs.
const WORKERS: usize = 2;

/// The StorageClass the server creates at start (k3s's `local-storage` manifest).
pub fn default_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(CLASS.into()),
            annotations: Some(BTreeMap::from([(DEFAULT_CLASS.into(), "true".into())])),
            ..ObjectMeta::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..StorageClass::default()
    }
}

/// The PV's name for a claim, as upstream's provisioning controller names them.
pub fn volume_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// The volume's directory name, as local-path-provisioner's default path pattern
/// (`{{ .PVName }}_{{ .PVC.Namespace }}_{{ .PVC.Name }}`).
pub fn dir_name(claim_uid: &str, namespace: &str, name: &str) -> String {
    format!("{}_{namespace}_{name}", volume_name(claim_uid))
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The claim's class name (the field, or the deprecated beta annotation).
pub fn claim_class(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .or_else(|| annotation(&claim.metadata, "volume.beta.kubernetes.io/storage-class"))
        .filter(|c| !c.is_empty())
}

/// The volume a claim is bound to, if any.
pub fn bound_volume(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty())
}

/// The PV local-path-provisioner creates for `claim` on `node`: capacity from the request,
/// access modes and volume mode from the claim, reclaim policy from the class, a hostPath
/// (DirectoryOrCreate) at `dir`, required node affinity on `kubernetes.io/hostname`, and the
/// `claimRef` that pre-binds it to the claim.
pub fn desired_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    dir: &Path,
) -> PersistentVolume {
    let spec = claim.spec.clone().unwrap_or_default();
    let capacity = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| BTreeMap::from([("storage".to_string(), q.clone())]));
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume_name(&uid)),
            annotations: Some(BTreeMap::from([
                (PROVISIONED_BY.into(), PROVISIONER.into()),
                ("local.path.provisioner/selected-node".into(), node.into()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity,
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                ..ObjectReference::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path: dir.to_string_lossy().into_owned(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    }
}

/// What to do with a claim (upstream's PV controller `syncUnboundClaim` and the external
/// provisioner's `shouldProvision`, for this provisioner's classes).
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimAction {
    Nothing,
    /// Add the `storage-provisioner` annotations.
    Annotate,
    /// Create the volume on this node.
    Provision {
        node: String,
    },
    /// The volume exists and names the claim: bind the claim to it.
    Bind {
        volume: String,
    },
    /// Bound in the spec but the status says otherwise.
    MarkBound {
        volume: String,
    },
}

/// Decides for one claim; `volume` is the PV this provisioner would create for it, if it exists.
pub fn desired_claim_action(
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    volume: Option<&PersistentVolume>,
) -> ClaimAction {
    if claim.metadata.deletion_timestamp.is_some() {
        return ClaimAction::Nothing;
    }
    if let Some(v) = bound_volume(claim) {
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        return if phase == Some("Bound") {
            ClaimAction::Nothing
        } else {
            ClaimAction::MarkBound { volume: v.into() }
        };
    }
    if class.is_none_or(|c| c.provisioner != PROVISIONER) {
        return ClaimAction::Nothing;
    }
    if let Some(v) = volume {
        let ours = v
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.uid == claim.metadata.uid);
        return if ours {
            ClaimAction::Bind {
                volume: v.name_any(),
            }
        } else {
            ClaimAction::Nothing
        };
    }
    if annotation(&claim.metadata, STORAGE_PROVISIONER) != Some(PROVISIONER) {
        return ClaimAction::Annotate;
    }
    // Without a selected node there is nothing to do: WaitForFirstConsumer claims wait for the
    // scheduler, and an Immediate class would need a node now, which local-path-provisioner
    // refuses too ("configuration error, no node was specified").
    match annotation(&claim.metadata, SELECTED_NODE) {
        Some(node) if !node.is_empty() => ClaimAction::Provision { node: node.into() },
        _ => ClaimAction::Nothing,
    }
}

/// What to do with a volume this provisioner created, given its claim (if it still exists
/// with the uid the volume names).
#[derive(Debug, PartialEq, Eq)]
pub enum VolumeAction {
    Nothing,
    MarkBound,
    /// Reclaim policy Delete: remove the directory, then the PV.
    Delete,
    /// Reclaim policy Retain: phase Released.
    Release,
}

pub fn desired_volume_action(
    volume: &PersistentVolume,
    claim: Option<&PersistentVolumeClaim>,
) -> VolumeAction {
    if annotation(&volume.metadata, PROVISIONED_BY) != Some(PROVISIONER)
        || volume.metadata.deletion_timestamp.is_some()
    {
        return VolumeAction::Nothing;
    }
    let spec = volume.spec.clone().unwrap_or_default();
    let Some(claim_ref) = spec.claim_ref.as_ref() else {
        return VolumeAction::Nothing;
    };
    let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
    let claim = claim.filter(|c| c.metadata.uid == claim_ref.uid);
    match claim {
        Some(c) => {
            if bound_volume(c) == Some(volume.name_any().as_str()) && phase != Some("Bound") {
                VolumeAction::MarkBound
            } else {
                VolumeAction::Nothing
            }
        }
        None => match spec.persistent_volume_reclaim_policy.as_deref() {
            Some("Retain") if phase == Some("Released") => VolumeAction::Nothing,
            Some("Retain") => VolumeAction::Release,
            _ => VolumeAction::Delete,
        },
    }
}

/// The running controller.
pub struct Controller {
    client: Client,
    /// `<data-dir>/storage`.
    root: PathBuf,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    volumes: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    queue: Arc<WorkQueue>,
}

/// Queue keys: claims and volumes share one queue.
fn claim_key(key: &str) -> String {
    format!("pvc/{key}")
}

fn volume_key(name: &str) -> String {
    format!("pv/{name}")
}

impl Controller {
    /// Wires the handlers; run the informers and then [`Controller::run`].
    pub fn new(
        client: Client,
        root: PathBuf,
        claims: Arc<Informer<PersistentVolumeClaim>>,
        volumes: Arc<Informer<PersistentVolume>>,
        classes: Arc<Informer<StorageClass>>,
    ) -> Arc<Self> {
        let this = Arc::new(Controller {
            client,
            root,
            claims,
            volumes,
            classes,
            queue: WorkQueue::new(),
        });
        let weak = Arc::downgrade(&this);
        this.claims.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            let claim = change.object();
            c.queue.add(claim_key(&key_of(claim.as_ref())));
            // A deleted claim releases its volume.
            if let Change::Deleted(_) = change
                && let Some(uid) = claim.metadata.uid.as_deref()
            {
                c.queue.add(volume_key(&volume_name(uid)));
            }
            if let Some(v) = bound_volume(claim) {
                c.queue.add(volume_key(v));
            }
        });
        let weak = Arc::downgrade(&this);
        this.volumes.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            let volume = change.object();
            c.queue.add(volume_key(&volume.name_any()));
            if let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                c.queue.add(claim_key(&format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap_or_default(),
                    r.name.as_deref().unwrap_or_default()
                )));
            }
        });
        this
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.claims.wait_synced().await;
        self.volumes.wait_synced().await;
        self.classes.wait_synced().await;
        let this = self.clone();
        let workers = run_workers(
            "local-path-provisioner",
            self.queue.clone(),
            WORKERS,
            move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            },
        );
        let periodic = async {
            loop {
                for c in self.claims.list() {
                    self.queue.add(claim_key(&key_of(c.as_ref())));
                }
                for v in self.volumes.list() {
                    self.queue.add(volume_key(&v.name_any()));
                }
                tokio::time::sleep(resync).await;
            }
        };
        tokio::join!(workers, periodic);
    }

    async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        if let Some(k) = key.strip_prefix("pvc/") {
            self.sync_claim(k).await
        } else if let Some(name) = key.strip_prefix("pv/") {
            self.sync_volume(name).await
        } else {
            Ok(None)
        }
    }

    fn class(&self, claim: &PersistentVolumeClaim) -> Option<Arc<StorageClass>> {
        self.classes.get(claim_class(claim)?)
    }

    async fn sync_claim(&self, key: &str) -> Result<Requeue, kube::Error> {
        let Some(claim) = self.claims.get(key) else {
            return Ok(None);
        };
        let class = self.class(&claim);
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let volume = self.volumes.get(&volume_name(&uid));
        let (ns, name) = split_key(key);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        match desired_claim_action(&claim, class.as_deref(), volume.as_deref()) {
            ClaimAction::Nothing => {}
            ClaimAction::Annotate => {
                let patch = json!({"metadata": {
                    "resourceVersion": claim.metadata.resource_version,
                    "annotations": {
                        STORAGE_PROVISIONER: PROVISIONER,
                        BETA_STORAGE_PROVISIONER: PROVISIONER,
                    }
                }});
                ignore_conflict(
                    claims
                        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                        .await,
                )?;
            }
            ClaimAction::Provision { node } => {
                let Some(class) = class else {
                    return Ok(None);
                };
                let dir = self.root.join(dir_name(&uid, ns, name));
                if let Err(e) = create_dir(&dir) {
                    tracing::warn!(claim = %key, dir = %dir.display(), error = %e, "creating the volume directory");
                    return Ok(Some(Duration::from_secs(5)));
                }
                let pv = desired_volume(&claim, &class, &node, &dir);
                tracing::info!(claim = %key, volume = %pv.name_any(), %node, "provisioning a local-path volume");
                match volumes.create(&PostParams::default(), &pv).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e),
                }
                // The volume's watch event brings the claim back for binding.
            }
            ClaimAction::Bind { volume } => {
                let patch = json!({
                    "metadata": {
                        "resourceVersion": claim.metadata.resource_version,
                        "annotations": {BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes"},
                    },
                    "spec": {"volumeName": volume},
                });
                ignore_conflict(
                    claims
                        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                        .await,
                )?;
            }
            ClaimAction::MarkBound { volume } => {
                let Some(pv) = self.volumes.get(&volume) else {
                    // Bound to a volume not (yet) seen: upstream's claim phase is Lost; wait.
                    return Ok(Some(Duration::from_secs(5)));
                };
                let spec = pv.spec.clone().unwrap_or_default();
                let patch = json!({"status": {
                    "phase": "Bound",
                    "accessModes": spec.access_modes,
                    "capacity": spec.capacity,
                }});
                claims
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
        }
        Ok(None)
    }

    async fn sync_volume(&self, name: &str) -> Result<Requeue, kube::Error> {
        let Some(volume) = self.volumes.get(name) else {
            return Ok(None);
        };
        let claim = volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|r| {
                self.claims.get(&format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap_or_default(),
                    r.name.as_deref().unwrap_or_default()
                ))
            });
        let volumes: Api<PersistentVolume> = Api::all(self.client.clone());
        match desired_volume_action(&volume, claim.as_deref()) {
            VolumeAction::Nothing => {}
            VolumeAction::MarkBound => {
                let patch = json!({"status": {"phase": "Bound"}});
                volumes
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
            VolumeAction::Release => {
                let patch = json!({"status": {"phase": "Released"}});
                volumes
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
            VolumeAction::Delete => {
                // The informer may lag behind a claim created a moment ago: ask the API.
                if let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                    let ns = r.namespace.as_deref().unwrap_or_default();
                    let claims: Api<PersistentVolumeClaim> =
                        Api::namespaced(self.client.clone(), ns);
                    if let Some(c) = claims
                        .get_opt(r.name.as_deref().unwrap_or_default())
                        .await?
                        && c.metadata.uid == r.uid
                    {
                        return Ok(None);
                    }
                }
                if let Some(dir) = volume
                    .spec
                    .as_ref()
                    .and_then(|s| s.host_path.as_ref())
                    .map(|h| PathBuf::from(&h.path))
                    && let Err(e) = remove_dir(&self.root, &dir)
                {
                    tracing::warn!(volume = name, dir = %dir.display(), error = %e, "removing the volume directory");
                    return Ok(Some(Duration::from_secs(5)));
                }
                tracing::info!(volume = name, "deleting the released local-path volume");
                match volumes.delete(name, &Default::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(None)
    }
}

/// A conflict means the cache was behind; the watch event that follows brings the key back.
fn ignore_conflict<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the volume directory world-writable, as local-path-provisioner's helper does
/// (`mkdir -m 0777`), so that pods running as any user can write to it.
fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

/// Removes a volume directory, but only one this provisioner made: a direct child of `root`
/// named `pvc-…`, so a hand-edited PV cannot make it delete anything else.
fn remove_dir(root: &Path, dir: &Path) -> std::io::Result<()> {
    let ours = dir.parent() == Some(root)
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("pvc-") && n != "pvc-");
    if !ours {
        return Ok(());
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeStatus,
        VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn claim(annotations: &[(&str, &str)]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("apps".into()),
                uid: Some("1234".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: Some(CLASS.into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity("1Gi".into()),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn names_follow_local_path_provisioner() {
        assert_eq!(volume_name("1234"), "pvc-1234");
        assert_eq!(dir_name("1234", "apps", "data"), "pvc-1234_apps_data");
    }

    #[test]
    fn volume_is_a_host_path_pinned_to_the_node_and_pre_bound() {
        let dir = Path::new("/var/lib/rk3s/storage/pvc-1234_apps_data");
        let pv = desired_volume(&claim(&[]), &default_class(), "node-a", dir);
        assert_eq!(pv.name_any(), "pvc-1234");
        assert_eq!(
            annotation(&pv.metadata, PROVISIONED_BY),
            Some("rancher.io/local-path")
        );
        let spec = pv.spec.unwrap();
        assert_eq!(spec.capacity.unwrap()["storage"], Quantity("1Gi".into()));
        assert_eq!(
            spec.access_modes.unwrap(),
            vec!["ReadWriteOnce".to_string()]
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
        assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
        let hp = spec.host_path.unwrap();
        assert_eq!(hp.path, dir.to_str().unwrap());
        assert_eq!(hp.type_.as_deref(), Some("DirectoryOrCreate"));
        let r = spec.claim_ref.unwrap();
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("apps"), Some("data"), Some("1234"))
        );
        let term = &spec
            .node_affinity
            .unwrap()
            .required
            .unwrap()
            .node_selector_terms[0];
        let req = &term.match_expressions.as_ref().unwrap()[0];
        assert_eq!(
            (req.key.as_str(), req.operator.as_str()),
            ("kubernetes.io/hostname", "In")
        );
        assert_eq!(req.values.as_deref(), Some(&["node-a".to_string()][..]));
    }

    #[test]
    fn claims_are_annotated_then_provisioned_once_a_node_is_selected() {
        let class = default_class();
        assert_eq!(
            desired_claim_action(&claim(&[]), Some(&class), None),
            ClaimAction::Annotate
        );
        let waiting = claim(&[(STORAGE_PROVISIONER, PROVISIONER)]);
        assert_eq!(
            desired_claim_action(&waiting, Some(&class), None),
            ClaimAction::Nothing
        );
        let selected = claim(&[(STORAGE_PROVISIONER, PROVISIONER), (SELECTED_NODE, "n1")]);
        assert_eq!(
            desired_claim_action(&selected, Some(&class), None),
            ClaimAction::Provision { node: "n1".into() }
        );
        let other = StorageClass {
            provisioner: "example.com/other".into(),
            ..default_class()
        };
        assert_eq!(
            desired_claim_action(&selected, Some(&other), None),
            ClaimAction::Nothing
        );
        assert_eq!(
            desired_claim_action(&selected, None, None),
            ClaimAction::Nothing
        );
    }

    #[test]
    fn provisioned_volume_binds_its_claim_and_both_become_bound() {
        let class = default_class();
        let mut c = claim(&[(STORAGE_PROVISIONER, PROVISIONER), (SELECTED_NODE, "n1")]);
        let mut pv = desired_volume(&c, &class, "n1", Path::new("/s/pvc-1234_apps_data"));
        assert_eq!(
            desired_claim_action(&c, Some(&class), Some(&pv)),
            ClaimAction::Bind {
                volume: "pvc-1234".into()
            }
        );
        // A volume pre-bound to another claim of the same name is not ours to bind.
        let mut stranger = c.clone();
        stranger.metadata.uid = Some("9999".into());
        assert_eq!(
            desired_claim_action(&stranger, Some(&class), Some(&pv)),
            ClaimAction::Nothing
        );
        c.spec.as_mut().unwrap().volume_name = Some("pvc-1234".into());
        assert_eq!(
            desired_claim_action(&c, Some(&class), Some(&pv)),
            ClaimAction::MarkBound {
                volume: "pvc-1234".into()
            }
        );
        assert_eq!(
            desired_volume_action(&pv, Some(&c)),
            VolumeAction::MarkBound
        );
        c.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            ..PersistentVolumeClaimStatus::default()
        });
        pv.status = Some(PersistentVolumeStatus {
            phase: Some("Bound".into()),
            ..PersistentVolumeStatus::default()
        });
        assert_eq!(
            desired_claim_action(&c, Some(&class), Some(&pv)),
            ClaimAction::Nothing
        );
        assert_eq!(desired_volume_action(&pv, Some(&c)), VolumeAction::Nothing);
    }

    #[test]
    fn volume_of_a_deleted_claim_is_reclaimed_by_its_policy() {
        let c = claim(&[]);
        let mut pv = desired_volume(&c, &default_class(), "n1", Path::new("/s/x"));
        assert_eq!(desired_volume_action(&pv, None), VolumeAction::Delete);
        // A new claim with the same name is another claim.
        let mut again = c.clone();
        again.metadata.uid = Some("5678".into());
        assert_eq!(
            desired_volume_action(&pv, Some(&again)),
            VolumeAction::Delete
        );
        pv.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Retain".into());
        assert_eq!(desired_volume_action(&pv, None), VolumeAction::Release);
        pv.status = Some(PersistentVolumeStatus {
            phase: Some("Released".into()),
            ..PersistentVolumeStatus::default()
        });
        assert_eq!(desired_volume_action(&pv, None), VolumeAction::Nothing);
        // Volumes of other provisioners are left alone.
        pv.metadata.annotations = None;
        pv.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Delete".into());
        assert_eq!(desired_volume_action(&pv, None), VolumeAction::Nothing);
    }

    #[test]
    fn only_provisioned_directories_are_removed() {
        let root = std::env::temp_dir().join(format!("rk3s-localpath-{}", std::process::id()));
        let dir = root.join("pvc-1_ns_x");
        create_dir(&dir).unwrap();
        let other = root.join("keep");
        std::fs::create_dir_all(&other).unwrap();
        remove_dir(&root, &other).unwrap();
        remove_dir(&root, Path::new("/etc")).unwrap();
        assert!(other.exists());
        remove_dir(&root, &dir).unwrap();
        assert!(!dir.exists());
        // Already gone is fine.
        remove_dir(&root, &dir).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
