//! The patch metadata of the built-in API types: upstream's `x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and
//! `x-kubernetes-map-type` extensions, which k8s-openapi's schemas leave out.
//!
//! The table reproduces every such annotation that the Kubernetes 1.33 OpenAPI document carries
//! for the definitions in [`super::Schemas::built_in`] (the GA groups rk3s serves). Strategic
//! merge patch reads the patch strategy and merge key from it, exactly as upstream reads the Go
//! struct tags `patchStrategy`/`patchMergeKey`; the list and map types drive server-side apply
//! and are published in our OpenAPI documents so that kubectl sees what upstream would send.

use serde_json::{Map, Value};

/// The patch metadata of one field of one API type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchMeta {
    /// `x-kubernetes-patch-strategy`: `"merge"`, `"retainKeys"`, `"merge,retainKeys"` or
    /// `"replace"`; empty when the field has none (lists are then replaced wholesale by
    /// strategic merge patch, maps merged).
    pub strategy: &'static str,
    /// `x-kubernetes-patch-merge-key`: the key identifying elements of a merged list of maps.
    pub merge_key: Option<&'static str>,
    /// `x-kubernetes-list-type`: `"atomic"`, `"set"` or `"map"`.
    pub list_type: Option<&'static str>,
    /// `x-kubernetes-list-map-keys`: the keys of a `map` list (server-side apply).
    pub list_map_keys: &'static [&'static str],
    /// `x-kubernetes-map-type`: `"atomic"` or `"granular"` for this field.
    pub map_type: Option<&'static str>,
}

impl PatchMeta {
    /// No annotation at all.
    pub const NONE: PatchMeta = PatchMeta {
        strategy: "",
        merge_key: None,
        list_type: None,
        list_map_keys: &[],
        map_type: None,
    };

    const fn list(self, list_type: &'static str) -> PatchMeta {
        PatchMeta {
            list_type: Some(list_type),
            ..self
        }
    }

    const fn list_map(self, keys: &'static [&'static str]) -> PatchMeta {
        PatchMeta {
            list_type: Some("map"),
            list_map_keys: keys,
            ..self
        }
    }

    const fn map(self, map_type: &'static str) -> PatchMeta {
        PatchMeta {
            map_type: Some(map_type),
            ..self
        }
    }

    const fn patch(self, strategy: &'static str) -> PatchMeta {
        PatchMeta { strategy, ..self }
    }

    const fn patch_merge(self, strategy: &'static str, merge_key: &'static str) -> PatchMeta {
        PatchMeta {
            strategy,
            merge_key: Some(merge_key),
            ..self
        }
    }

    /// Whether the strategy lists `name` (`"merge,retainKeys"` has both `merge` and
    /// `retainKeys`).
    pub fn has_strategy(&self, name: &str) -> bool {
        self.strategy.split(',').any(|part| part.trim() == name)
    }

    /// The OpenAPI vendor extensions this metadata stands for, ready to be merged into the
    /// field's schema.
    pub fn extensions(&self) -> Map<String, Value> {
        let mut extensions = Map::new();
        if !self.strategy.is_empty() {
            extensions.insert("x-kubernetes-patch-strategy".into(), self.strategy.into());
        }
        if let Some(key) = self.merge_key {
            extensions.insert("x-kubernetes-patch-merge-key".into(), key.into());
        }
        if let Some(list_type) = self.list_type {
            extensions.insert("x-kubernetes-list-type".into(), list_type.into());
        }
        if !self.list_map_keys.is_empty() {
            let keys = self.list_map_keys.iter().map(|key| Value::from(*key));
            extensions.insert("x-kubernetes-list-map-keys".into(), keys.collect());
        }
        if let Some(map_type) = self.map_type {
            extensions.insert("x-kubernetes-map-type".into(), map_type.into());
        }
        extensions
    }
}

/// The patch metadata of `field` (its JSON name) in the type named `type_name`
/// (e.g. `io.k8s.api.core.v1.PodSpec`), if upstream annotates it.
pub fn patch_meta(type_name: &str, field: &str) -> Option<PatchMeta> {
    FIELDS
        .binary_search_by(|(t, f, _)| (*t, *f).cmp(&(type_name, field)))
        .ok()
        .and_then(|index| FIELDS.get(index))
        .map(|(_, _, meta)| *meta)
}

/// The `x-kubernetes-map-type` of a whole type (Go's `+structType=atomic`), e.g. `"atomic"` for
/// `io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector`: server-side apply replaces such
/// structs wholesale.
pub fn type_map_type(type_name: &str) -> Option<&'static str> {
    TYPES
        .binary_search_by(|(t, _)| (*t).cmp(type_name))
        .ok()
        .and_then(|index| TYPES.get(index))
        .map(|(_, map_type)| *map_type)
}

/// Every annotated field as `(type name, field, metadata)`, sorted by type then field.
pub fn fields() -> &'static [(&'static str, &'static str, PatchMeta)] {
    FIELDS
}

/// Every type with a type-level `x-kubernetes-map-type`, sorted by name.
pub fn types() -> &'static [(&'static str, &'static str)] {
    TYPES
}

/// Adds the table's extensions to `definitions` (field schemas and whole types alike); entries
/// whose type or field is missing are skipped, the unit tests make sure there are none for the
/// built-in schemas.
pub(super) fn annotate(definitions: &mut Map<String, Value>) {
    for (type_name, field, meta) in FIELDS {
        let property = definitions
            .get_mut(*type_name)
            .and_then(|definition| definition.get_mut("properties"))
            .and_then(|properties| properties.get_mut(*field))
            .and_then(Value::as_object_mut);
        if let Some(property) = property {
            property.extend(meta.extensions());
        }
    }
    for (type_name, map_type) in TYPES {
        let definition = definitions
            .get_mut(*type_name)
            .and_then(Value::as_object_mut);
        if let Some(definition) = definition {
            definition.insert("x-kubernetes-map-type".into(), (*map_type).into());
        }
    }
}

/// Field annotations of the Kubernetes 1.33 API, sorted by `(type, field)` for binary search.
#[rustfmt::skip]
static FIELDS: &[(&str, &str, PatchMeta)] = &[
    ("io.k8s.api.admissionregistration.v1.MatchResources", "excludeResourceRules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.MatchResources", "resourceRules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "admissionReviewVersions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "matchConditions", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhook", "rules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "apiGroups", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "apiVersions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "operations", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "resourceNames", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "resources", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.RuleWithOperations", "apiGroups", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.RuleWithOperations", "apiVersions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.RuleWithOperations", "operations", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.RuleWithOperations", "resources", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.TypeChecking", "expressionWarnings", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpec", "validationActions", PatchMeta::NONE.list("set")),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "auditAnnotations", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "matchConditions", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "validations", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicySpec", "variables", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.admissionregistration.v1.ValidatingAdmissionPolicyStatus", "conditions", PatchMeta::NONE.list_map(&["type"])),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "admissionReviewVersions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "matchConditions", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhook", "rules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", PatchMeta::NONE.patch("retainKeys")),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.apps.v1.StatefulSetSpec", "volumeClaimTemplates", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.authentication.v1.TokenRequestSpec", "audiences", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authentication.v1.TokenReviewSpec", "audiences", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authentication.v1.TokenReviewStatus", "audiences", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authentication.v1.UserInfo", "groups", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.FieldSelectorAttributes", "requirements", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.LabelSelectorAttributes", "requirements", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.NonResourceRule", "nonResourceURLs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.NonResourceRule", "verbs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.ResourceRule", "apiGroups", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.ResourceRule", "resourceNames", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.ResourceRule", "resources", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.ResourceRule", "verbs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.SubjectAccessReviewSpec", "groups", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.SubjectRulesReviewStatus", "nonResourceRules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.authorization.v1.SubjectRulesReviewStatus", "resourceRules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.autoscaling.v2.HPAScalingRules", "policies", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerSpec", "metrics", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "currentMetrics", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.batch.v1.CronJobStatus", "active", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", PatchMeta::NONE.list("atomic").patch_merge("merge", "type")),
    ("io.k8s.api.batch.v1.PodFailurePolicy", "rules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", "values", PatchMeta::NONE.list("set")),
    ("io.k8s.api.batch.v1.PodFailurePolicyRule", "onPodConditions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.batch.v1.SuccessPolicy", "rules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "failed", PatchMeta::NONE.list("set")),
    ("io.k8s.api.batch.v1.UncountedTerminatedPods", "succeeded", PatchMeta::NONE.list("set")),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "groups", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "request", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestSpec", "usages", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "certificate", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.certificates.v1.CertificateSigningRequestStatus", "conditions", PatchMeta::NONE.list_map(&["type"])),
    ("io.k8s.api.core.v1.Capabilities", "add", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.Capabilities", "drop", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.CephFSPersistentVolumeSource", "monitors", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.CephFSVolumeSource", "monitors", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ComponentStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.core.v1.ConfigMapProjection", "items", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ConfigMapVolumeSource", "items", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.Container", "args", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.Container", "command", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.Container", "env", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.core.v1.Container", "envFrom", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.Container", "ports", PatchMeta::NONE.list_map(&["containerPort", "protocol"]).patch_merge("merge", "containerPort")),
    ("io.k8s.api.core.v1.Container", "resizePolicy", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.Container", "volumeDevices", PatchMeta::NONE.list_map(&["devicePath"]).patch_merge("merge", "devicePath")),
    ("io.k8s.api.core.v1.Container", "volumeMounts", PatchMeta::NONE.list_map(&["mountPath"]).patch_merge("merge", "mountPath")),
    ("io.k8s.api.core.v1.ContainerImage", "names", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.core.v1.ContainerStatus", "volumeMounts", PatchMeta::NONE.list_map(&["mountPath"]).patch_merge("merge", "mountPath")),
    ("io.k8s.api.core.v1.DownwardAPIProjection", "items", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.DownwardAPIVolumeSource", "items", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.EndpointSubset", "addresses", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.EndpointSubset", "notReadyAddresses", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.EndpointSubset", "ports", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.Endpoints", "subsets", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.EphemeralContainer", "args", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.EphemeralContainer", "command", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.core.v1.EphemeralContainer", "envFrom", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", PatchMeta::NONE.list_map(&["containerPort", "protocol"]).patch_merge("merge", "containerPort")),
    ("io.k8s.api.core.v1.EphemeralContainer", "resizePolicy", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", PatchMeta::NONE.list_map(&["devicePath"]).patch_merge("merge", "devicePath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", PatchMeta::NONE.list_map(&["mountPath"]).patch_merge("merge", "mountPath")),
    ("io.k8s.api.core.v1.ExecAction", "command", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.FCVolumeSource", "targetWWNs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.FCVolumeSource", "wwids", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.HTTPGetAction", "httpHeaders", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.HostAlias", "hostnames", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ISCSIPersistentVolumeSource", "portals", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ISCSIVolumeSource", "portals", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.LimitRangeSpec", "limits", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.LinuxContainerUser", "supplementalGroups", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.LoadBalancerIngress", "ports", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.LoadBalancerStatus", "ingress", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NamespaceSpec", "finalizers", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.core.v1.NodeAffinity", "preferredDuringSchedulingIgnoredDuringExecution", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NodeSelector", "nodeSelectorTerms", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NodeSelectorRequirement", "values", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "matchExpressions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "matchFields", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", PatchMeta::NONE.list("set").patch("merge")),
    ("io.k8s.api.core.v1.NodeSpec", "taints", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.core.v1.NodeStatus", "images", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NodeStatus", "runtimeHandlers", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NodeStatus", "volumesAttached", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.NodeStatus", "volumesInUse", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PersistentVolumeClaimSpec", "accessModes", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "accessModes", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "allocatedResourceStatuses", PatchMeta::NONE.map("granular")),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "accessModes", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "claimRef", PatchMeta::NONE.map("granular")),
    ("io.k8s.api.core.v1.PersistentVolumeSpec", "mountOptions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodAffinity", "preferredDuringSchedulingIgnoredDuringExecution", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodAffinity", "requiredDuringSchedulingIgnoredDuringExecution", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodAffinityTerm", "matchLabelKeys", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodAffinityTerm", "mismatchLabelKeys", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodAffinityTerm", "namespaces", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodDNSConfig", "nameservers", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodDNSConfig", "options", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodDNSConfig", "searches", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodSecurityContext", "supplementalGroups", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodSecurityContext", "sysctls", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodSpec", "containers", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", PatchMeta::NONE.list_map(&["ip"]).patch_merge("merge", "ip")),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector", PatchMeta::NONE.map("atomic")),
    ("io.k8s.api.core.v1.PodSpec", "readinessGates", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge,retainKeys", "name")),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.core.v1.PodSpec", "tolerations", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", PatchMeta::NONE.list_map(&["topologyKey", "whenUnsatisfiable"]).patch_merge("merge", "topologyKey")),
    ("io.k8s.api.core.v1.PodSpec", "volumes", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge,retainKeys", "name")),
    ("io.k8s.api.core.v1.PodStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.core.v1.PodStatus", "containerStatuses", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodStatus", "ephemeralContainerStatuses", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", PatchMeta::NONE.list("atomic").patch_merge("merge", "ip")),
    ("io.k8s.api.core.v1.PodStatus", "initContainerStatuses", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", PatchMeta::NONE.list_map(&["ip"]).patch_merge("merge", "ip")),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge,retainKeys", "name")),
    ("io.k8s.api.core.v1.ProjectedVolumeSource", "sources", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.RBDPersistentVolumeSource", "monitors", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.RBDVolumeSource", "monitors", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", "selector", PatchMeta::NONE.map("atomic")),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.core.v1.ResourceQuotaSpec", "scopes", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ResourceRequirements", "claims", PatchMeta::NONE.list_map(&["name"])),
    ("io.k8s.api.core.v1.ResourceStatus", "resources", PatchMeta::NONE.list_map(&["resourceID"])),
    ("io.k8s.api.core.v1.ScopeSelector", "matchExpressions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ScopedResourceSelectorRequirement", "values", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.SecretProjection", "items", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.SecretVolumeSource", "items", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ServiceSpec", "externalIPs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ServiceSpec", "loadBalancerSourceRanges", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", PatchMeta::NONE.list_map(&["port", "protocol"]).patch_merge("merge", "port")),
    ("io.k8s.api.core.v1.ServiceSpec", "selector", PatchMeta::NONE.map("atomic")),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.core.v1.TopologySelectorLabelRequirement", "values", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.TopologySelectorTerm", "matchLabelExpressions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.core.v1.TopologySpreadConstraint", "matchLabelKeys", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.discovery.v1.Endpoint", "addresses", PatchMeta::NONE.list("set")),
    ("io.k8s.api.discovery.v1.EndpointHints", "forNodes", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.discovery.v1.EndpointHints", "forZones", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.discovery.v1.EndpointSlice", "endpoints", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.discovery.v1.EndpointSlice", "ports", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.flowcontrol.v1.FlowSchemaSpec", "rules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.flowcontrol.v1.FlowSchemaStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.flowcontrol.v1.NonResourcePolicyRule", "nonResourceURLs", PatchMeta::NONE.list("set")),
    ("io.k8s.api.flowcontrol.v1.NonResourcePolicyRule", "verbs", PatchMeta::NONE.list("set")),
    ("io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects", "nonResourceRules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects", "resourceRules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.flowcontrol.v1.PolicyRulesWithSubjects", "subjects", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.flowcontrol.v1.PriorityLevelConfigurationStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "apiGroups", PatchMeta::NONE.list("set")),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "namespaces", PatchMeta::NONE.list("set")),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "resources", PatchMeta::NONE.list("set")),
    ("io.k8s.api.flowcontrol.v1.ResourcePolicyRule", "verbs", PatchMeta::NONE.list("set")),
    ("io.k8s.api.networking.v1.HTTPIngressRuleValue", "paths", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.IPBlock", "except", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.IngressLoadBalancerIngress", "ports", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.IngressLoadBalancerStatus", "ingress", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.IngressSpec", "rules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.IngressSpec", "tls", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.IngressTLS", "hosts", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "ports", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.NetworkPolicyEgressRule", "to", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "from", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.NetworkPolicyIngressRule", "ports", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "egress", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "ingress", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.NetworkPolicySpec", "policyTypes", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.ServiceCIDRSpec", "cidrs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.networking.v1.ServiceCIDRStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.node.v1.Scheduling", "nodeSelector", PatchMeta::NONE.map("atomic")),
    ("io.k8s.api.node.v1.Scheduling", "tolerations", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetSpec", "selector", PatchMeta::NONE.patch("replace")),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
    ("io.k8s.api.rbac.v1.AggregationRule", "clusterRoleSelectors", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.rbac.v1.ClusterRole", "rules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.rbac.v1.ClusterRoleBinding", "subjects", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.rbac.v1.PolicyRule", "apiGroups", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.rbac.v1.PolicyRule", "nonResourceURLs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.rbac.v1.PolicyRule", "resourceNames", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.rbac.v1.PolicyRule", "resources", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.rbac.v1.PolicyRule", "verbs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.rbac.v1.Role", "rules", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.rbac.v1.RoleBinding", "subjects", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.storage.v1.CSIDriverSpec", "tokenRequests", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.storage.v1.CSIDriverSpec", "volumeLifecycleModes", PatchMeta::NONE.list("set")),
    ("io.k8s.api.storage.v1.CSINodeDriver", "topologyKeys", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.storage.v1.CSINodeSpec", "drivers", PatchMeta::NONE.list_map(&["name"]).patch_merge("merge", "name")),
    ("io.k8s.api.storage.v1.StorageClass", "allowedTopologies", PatchMeta::NONE.list("atomic")),
    ("io.k8s.api.storage.v1.StorageClass", "mountOptions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames", "categories", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionNames", "shortNames", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionSpec", "versions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "conditions", PatchMeta::NONE.list_map(&["type"])),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionStatus", "storedVersions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", "additionalPrinterColumns", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinitionVersion", "selectableFields", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "allOf", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "anyOf", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "enum", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "oneOf", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "required", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-list-map-keys", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps", "x-kubernetes-validations", PatchMeta::NONE.list_map(&["rule"]).patch_merge("merge", "rule")),
    ("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.WebhookConversion", "conversionReviewVersions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "serverAddressByClientCIDRs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroup", "versions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIGroupList", "groups", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "categories", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResource", "shortNames", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList", "resources", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "serverAddressByClientCIDRs", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.APIVersions", "versions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "dryRun", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldSelectorRequirement", "values", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "matchExpressions", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement", "values", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", PatchMeta::NONE.list("set").patch("merge")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "managedFields", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", PatchMeta::NONE.list_map(&["uid"]).patch_merge("merge", "uid")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "details", PatchMeta::NONE.list("atomic")),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails", "causes", PatchMeta::NONE.list("atomic")),
    ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceSpec", "caBundle", PatchMeta::NONE.list("atomic")),
    ("io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIServiceStatus", "conditions", PatchMeta::NONE.list_map(&["type"]).patch_merge("merge", "type")),
];

/// Type-level `x-kubernetes-map-type` of the Kubernetes 1.33 API, sorted by name.
#[rustfmt::skip]
static TYPES: &[(&str, &str)] = &[
    ("io.k8s.api.admissionregistration.v1.MatchResources", "atomic"),
    ("io.k8s.api.admissionregistration.v1.NamedRuleWithOperations", "atomic"),
    ("io.k8s.api.admissionregistration.v1.ParamKind", "atomic"),
    ("io.k8s.api.admissionregistration.v1.ParamRef", "atomic"),
    ("io.k8s.api.admissionregistration.v1.Variable", "atomic"),
    ("io.k8s.api.autoscaling.v1.CrossVersionObjectReference", "atomic"),
    ("io.k8s.api.core.v1.ConfigMapKeySelector", "atomic"),
    ("io.k8s.api.core.v1.EndpointAddress", "atomic"),
    ("io.k8s.api.core.v1.EndpointPort", "atomic"),
    ("io.k8s.api.core.v1.LocalObjectReference", "atomic"),
    ("io.k8s.api.core.v1.NodeSelector", "atomic"),
    ("io.k8s.api.core.v1.NodeSelectorTerm", "atomic"),
    ("io.k8s.api.core.v1.ObjectFieldSelector", "atomic"),
    ("io.k8s.api.core.v1.ObjectReference", "atomic"),
    ("io.k8s.api.core.v1.ResourceFieldSelector", "atomic"),
    ("io.k8s.api.core.v1.ScopeSelector", "atomic"),
    ("io.k8s.api.core.v1.SecretKeySelector", "atomic"),
    ("io.k8s.api.core.v1.SecretReference", "atomic"),
    ("io.k8s.api.core.v1.TopologySelectorTerm", "atomic"),
    ("io.k8s.api.core.v1.TypedLocalObjectReference", "atomic"),
    ("io.k8s.api.discovery.v1.EndpointPort", "atomic"),
    ("io.k8s.api.networking.v1.ServiceBackendPort", "atomic"),
    ("io.k8s.api.rbac.v1.RoleRef", "atomic"),
    ("io.k8s.api.rbac.v1.Subject", "atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", "atomic"),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference", "atomic"),
];

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::apiserver::patch::Schemas;

    /// The type of a property as the schema states it, following references.
    fn property_type<'a>(schemas: &'a Schemas, property: &'a Value) -> Option<&'a str> {
        let (_, schema) = schemas.resolve(property);
        schema?.get("type")?.as_str()
    }

    #[test]
    fn every_annotated_field_exists_in_the_built_in_schemas() {
        let schemas = Schemas::built_in();
        let mut missing = Vec::new();
        for (type_name, field, meta) in fields() {
            let property = schemas
                .get(type_name)
                .and_then(|definition| definition.get("properties"))
                .and_then(|properties| properties.get(*field));
            let Some(property) = property else {
                missing.push(format!("{type_name}.{field}"));
                continue;
            };
            let declared = property_type(schemas, property);
            if meta.list_type.is_some() || meta.merge_key.is_some() {
                // Go's []byte is a list too (CertificateSigningRequestSpec.request), but a
                // base64 string in JSON.
                let bytes = property.get("format").and_then(Value::as_str) == Some("byte");
                // Upstream also marks one struct field atomic as if it were a list.
                let quirk = (*type_name, *field)
                    == ("io.k8s.apimachinery.pkg.apis.meta.v1.Status", "details");
                let list = declared == Some("array")
                    || (bytes || quirk) && meta.list_type == Some("atomic");
                assert!(list, "{type_name}.{field} is not a list");
            }
            if meta.map_type.is_some()
                || meta.has_strategy("retainKeys") && meta.list_type.is_none()
            {
                assert_eq!(declared, Some("object"), "{type_name}.{field} is not a map");
            }
        }
        for (type_name, _) in types() {
            if schemas.get(type_name).is_none() {
                missing.push((*type_name).to_owned());
            }
        }
        assert!(missing.is_empty(), "not in the schemas: {missing:?}");
    }

    #[test]
    fn tables_are_sorted_and_unique_for_binary_search() {
        for pair in fields().windows(2) {
            assert!((pair[0].0, pair[0].1) < (pair[1].0, pair[1].1), "{pair:?}");
        }
        for pair in types().windows(2) {
            assert!(pair[0].0 < pair[1].0, "{pair:?}");
        }
    }

    #[test]
    fn list_metadata_is_consistent() {
        for (type_name, field, meta) in fields() {
            let at = format!("{type_name}.{field}");
            assert_eq!(
                meta.list_type == Some("map"),
                !meta.list_map_keys.is_empty(),
                "{at}"
            );
            if let Some(merge_key) = meta.merge_key {
                assert!(meta.has_strategy("merge"), "{at}");
                if meta.list_type == Some("map") {
                    assert!(meta.list_map_keys.contains(&merge_key), "{at}");
                }
            }
            for part in meta.strategy.split(',').filter(|part| !part.is_empty()) {
                assert!(["merge", "retainKeys", "replace"].contains(&part), "{at}");
            }
        }
    }

    #[test]
    fn well_known_fields_carry_upstream_metadata() {
        let pod_spec = "io.k8s.api.core.v1.PodSpec";
        let container = "io.k8s.api.core.v1.Container";
        let meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
        let cases = [
            (
                pod_spec,
                "containers",
                "merge",
                Some("name"),
                Some("map"),
                &["name"][..],
            ),
            (
                pod_spec,
                "initContainers",
                "merge",
                Some("name"),
                Some("map"),
                &["name"],
            ),
            (
                pod_spec,
                "volumes",
                "merge,retainKeys",
                Some("name"),
                Some("map"),
                &["name"],
            ),
            (pod_spec, "tolerations", "", None, Some("atomic"), &[]),
            (
                pod_spec,
                "hostAliases",
                "merge",
                Some("ip"),
                Some("map"),
                &["ip"],
            ),
            (
                pod_spec,
                "topologySpreadConstraints",
                "merge",
                Some("topologyKey"),
                Some("map"),
                &["topologyKey", "whenUnsatisfiable"],
            ),
            (
                container,
                "ports",
                "merge",
                Some("containerPort"),
                Some("map"),
                &["containerPort", "protocol"],
            ),
            (
                container,
                "env",
                "merge",
                Some("name"),
                Some("map"),
                &["name"],
            ),
            (container, "envFrom", "", None, Some("atomic"), &[]),
            (
                container,
                "volumeMounts",
                "merge",
                Some("mountPath"),
                Some("map"),
                &["mountPath"],
            ),
            (meta, "finalizers", "merge", None, Some("set"), &[]),
            (
                meta,
                "ownerReferences",
                "merge",
                Some("uid"),
                Some("map"),
                &["uid"],
            ),
            (
                "io.k8s.api.core.v1.ServiceSpec",
                "ports",
                "merge",
                Some("port"),
                Some("map"),
                &["port", "protocol"],
            ),
            (
                "io.k8s.api.core.v1.NodeStatus",
                "addresses",
                "merge",
                Some("type"),
                Some("map"),
                &["type"],
            ),
            (
                "io.k8s.api.batch.v1.JobStatus",
                "conditions",
                "merge",
                Some("type"),
                Some("atomic"),
                &[],
            ),
        ];
        for (type_name, field, strategy, merge_key, list_type, keys) in cases {
            let got = patch_meta(type_name, field).unwrap_or(PatchMeta::NONE);
            let want = PatchMeta {
                strategy,
                merge_key,
                list_type,
                list_map_keys: keys,
                map_type: None,
            };
            assert_eq!(got, want, "{type_name}.{field}");
        }
        let strategy = patch_meta("io.k8s.api.apps.v1.DeploymentSpec", "strategy");
        assert_eq!(strategy.map(|meta| meta.strategy), Some("retainKeys"));
        let selector = patch_meta(pod_spec, "nodeSelector");
        assert_eq!(selector.and_then(|meta| meta.map_type), Some("atomic"));
        assert_eq!(patch_meta(pod_spec, "nodeName"), None);
        assert_eq!(
            type_map_type("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"),
            Some("atomic")
        );
        assert_eq!(type_map_type("io.k8s.api.core.v1.PodSpec"), None);
    }

    #[test]
    fn extensions_spell_the_openapi_vendor_keys() {
        let meta = patch_meta("io.k8s.api.core.v1.Container", "ports").unwrap_or(PatchMeta::NONE);
        let extensions = Value::Object(meta.extensions());
        assert_eq!(
            extensions,
            serde_json::json!({
                "x-kubernetes-patch-strategy": "merge",
                "x-kubernetes-patch-merge-key": "containerPort",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
            })
        );
        assert!(PatchMeta::NONE.extensions().is_empty());
    }
}
