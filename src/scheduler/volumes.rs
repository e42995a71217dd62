//! The VolumeBinding plugin's pure part: what a pod's PersistentVolumeClaims require of its
//! node. PreFilter ([`prefilter`]) refuses a pod whose claim is missing, being deleted, or
//! unbound in a class that binds immediately; Filter ([`super::filter::volume_binding`]) keeps
//! only the nodes every bound claim's volume's node affinity allows; after the decision, the
//! unbound WaitForFirstConsumer claims get the chosen node (`volume.kubernetes.io/
//! selected-node`) so that their provisioner creates the volume there.
//!
//! Simplification: unbound WaitForFirstConsumer claims are always provisioned dynamically;
//! pre-created volumes are not matched to them (upstream's `FindMatchingVolumes`).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{NodeSelector, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

/// Upstream's `ErrReasonBindConflict`-family reasons, in its words.
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";

/// What the pod's claims require, computed once per cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims {
    /// The node affinity of each bound claim's volume: a node must match all of them.
    pub affinities: Vec<NodeSelector>,
    /// A bound claim's volume does not exist (every node is rejected).
    pub missing_volume: bool,
    /// Unbound claims of WaitForFirstConsumer classes, by name in the pod's namespace.
    pub to_provision: Vec<String>,
}

impl Claims {
    pub fn is_empty(&self) -> bool {
        self.affinities.is_empty() && !self.missing_volume && self.to_provision.is_empty()
    }
}

/// The cluster's claims (by `namespace/name`), volumes and classes (by name), as the
/// scheduler's cache holds them.
#[derive(Clone, Debug, Default)]
pub struct Storage {
    pub claims: HashMap<String, PersistentVolumeClaim>,
    pub volumes: HashMap<String, PersistentVolume>,
    pub classes: HashMap<String, StorageClass>,
}

/// Upstream's VolumeBinding PreFilter: `Err` carries the message that makes the pod
/// unschedulable on every node (and that preemption cannot help).
pub fn prefilter(pod: &Pod, storage: &Storage) -> Result<Claims, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = Claims::default();
    let mut unbound_immediate = false;
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    for v in volumes {
        let Some(name) = v
            .persistent_volume_claim
            .as_ref()
            .map(|c| c.claim_name.clone())
        else {
            continue;
        };
        let Some(claim) = storage.claims.get(&format!("{ns}/{name}")) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let spec = claim.spec.clone().unwrap_or_default();
        match spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
            Some(volume) => match storage.volumes.get(volume) {
                None => out.missing_volume = true,
                Some(pv) => {
                    if let Some(required) = pv
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_affinity.as_ref())
                        .and_then(|a| a.required.clone())
                    {
                        out.affinities.push(required);
                    }
                }
            },
            None => {
                let class = spec
                    .storage_class_name
                    .as_deref()
                    .and_then(|c| storage.classes.get(c));
                let wait = class.and_then(|c| c.volume_binding_mode.as_deref())
                    == Some("WaitForFirstConsumer");
                if wait {
                    out.to_provision.push(name);
                } else {
                    unbound_immediate = true;
                }
            }
        }
    }
    if unbound_immediate {
        return Err(REASON_UNBOUND_IMMEDIATE.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaimSpec,
        PersistentVolumeClaimVolumeSource, PersistentVolumeSpec, PodSpec, Volume,
        VolumeNodeAffinity,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(claims: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                volumes: Some(
                    claims
                        .iter()
                        .map(|c| Volume {
                            name: format!("v-{c}"),
                            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                claim_name: c.to_string(),
                                read_only: None,
                            }),
                            ..Volume::default()
                        })
                        .collect(),
                ),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn claim(name: &str, class: &str, volume: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                volume_name: volume.map(Into::into),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        }
    }

    fn storage() -> Storage {
        let mut s = Storage::default();
        for (name, mode) in [("wait", "WaitForFirstConsumer"), ("now", "Immediate")] {
            s.classes.insert(
                name.into(),
                StorageClass {
                    metadata: ObjectMeta {
                        name: Some(name.into()),
                        ..ObjectMeta::default()
                    },
                    provisioner: "x".into(),
                    volume_binding_mode: Some(mode.into()),
                    ..StorageClass::default()
                },
            );
        }
        let affinity = NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: "kubernetes.io/hostname".into(),
                    operator: "In".into(),
                    values: Some(vec!["n1".into()]),
                }]),
                match_fields: None,
            }],
        };
        s.volumes.insert(
            "pv1".into(),
            PersistentVolume {
                metadata: ObjectMeta {
                    name: Some("pv1".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeSpec {
                    node_affinity: Some(VolumeNodeAffinity {
                        required: Some(affinity),
                    }),
                    ..PersistentVolumeSpec::default()
                }),
                status: None,
            },
        );
        for c in [
            claim("bound", "wait", Some("pv1")),
            claim("dangling", "wait", Some("gone")),
            claim("pending", "wait", None),
            claim("immediate", "now", None),
        ] {
            s.claims
                .insert(format!("ns/{}", c.metadata.name.clone().unwrap()), c);
        }
        s
    }

    #[test]
    fn missing_claim_is_refused_with_upstreams_message() {
        assert_eq!(
            prefilter(&pod(&["nope"]), &storage()),
            Err("persistentvolumeclaim \"nope\" not found".to_string())
        );
    }

    #[test]
    fn unbound_immediate_claim_is_refused() {
        assert_eq!(
            prefilter(&pod(&["pending", "immediate"]), &storage()),
            Err(REASON_UNBOUND_IMMEDIATE.to_string())
        );
    }

    #[test]
    fn bound_claims_bring_their_volume_affinity_and_waiting_claims_are_provisioned() {
        let got = prefilter(&pod(&["bound", "pending"]), &storage()).unwrap();
        assert_eq!(got.affinities.len(), 1);
        assert_eq!(got.to_provision, vec!["pending".to_string()]);
        assert!(!got.missing_volume);
        let got = prefilter(&pod(&["dangling"]), &storage()).unwrap();
        assert!(got.missing_volume);
        assert!(prefilter(&pod(&[]), &storage()).unwrap().is_empty());
    }
}
