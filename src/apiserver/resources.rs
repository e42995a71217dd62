//! The table of built-in resources: for every kind the API server serves, its group, version,
//! names, scope, verbs, subresources and typed schema. Discovery, OpenAPI, routing and storage
//! are all driven from this one table (plus the CRDs, which `crd` turns into the same shape).

use std::sync::OnceLock;

use k8s_openapi::api;
use serde_json::Value;

/// Which verbs a resource supports.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces: upstream's namespace registry has no DeleteCollection (each goes through the
/// termination its Delete starts).
const NO_DELETECOLLECTION: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
const READ_ONLY: &[&str] = &["get", "list"];

/// A subresource served under `<resource>/<name>/<sub>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// The kind the subresource takes and returns, when it differs from the parent's.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// A status subresource: the parent's kind, get/patch/update.
pub(super) const STATUS: Subresource = Subresource {
    name: "status",
    group: "",
    version: "",
    kind: "",
    verbs: &["get", "patch", "update"],
};
/// A scale subresource: autoscaling/v1 Scale.
pub(super) const SCALE: Subresource = Subresource {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: &["get", "patch", "update"],
};
/// `namespaces/finalize`: the namespace controller's update of `spec.finalizers`.
const FINALIZE: Subresource = Subresource {
    name: "finalize",
    verbs: &["update"],
    ..STATUS
};
/// `pods/log`: served by the pod's node (the API server proxies it to the kubelet).
const LOG: Subresource = Subresource {
    name: "log",
    group: "",
    version: "v1",
    kind: "Pod",
    verbs: &["get"],
};
/// `pods/exec`, `pods/attach`, `pods/portforward`: streams upgraded by the API server and served
/// by the pod's kubelet; GET (WebSocket) and POST (SPDY) are both authorized as `create`.
const EXEC: Subresource = Subresource {
    name: "exec",
    group: "",
    version: "v1",
    kind: "PodExecOptions",
    verbs: &["create", "get"],
};
const ATTACH: Subresource = Subresource {
    name: "attach",
    kind: "PodAttachOptions",
    ..EXEC
};
const PORTFORWARD: Subresource = Subresource {
    name: "portforward",
    kind: "PodPortForwardOptions",
    ..EXEC
};
const BINDING: Subresource = Subresource {
    name: "binding",
    group: "",
    version: "v1",
    kind: "Binding",
    verbs: &["create"],
};

/// `pods/eviction`: policy/v1 Eviction (v1beta1 bodies are accepted too), as upstream lists it
/// so that `kubectl drain` finds it.
const EVICTION: Subresource = Subresource {
    name: "eviction",
    group: "policy",
    version: "v1",
    kind: "Eviction",
    verbs: &["create"],
};

/// Decodes an object into its k8s-openapi type, reporting type errors.
pub type TypedCheck = fn(&Value) -> Result<(), serde_json::Error>;

/// One served resource.
#[derive(Debug, Clone)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The URL segment, e.g. `deployments`.
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<&'static str>,
    pub subresources: Vec<Subresource>,
    /// The OpenAPI definition name of the kind, e.g. `io.k8s.api.apps.v1.Deployment`
    /// (for CRDs: `<reversed group>.<version>.<Kind>`).
    pub schema_name: String,
    /// Deserializes the object into its typed form: catches type errors the schema walk lets
    /// through. `None` for CRDs.
    pub check: Option<TypedCheck>,
    /// Where objects live in the store: `/registry/<storage>/[<ns>/]<name>`.
    pub storage: String,
    /// Whether writes to the main resource ignore `.status` (it has a status subresource).
    pub has_status: bool,
    /// Virtual resources (reviews) are never stored: create answers from the request.
    pub virtual_only: bool,
    /// The schema and printer columns of a custom resource.
    pub crd: Option<std::sync::Arc<super::crd::CrdInfo>>,
    /// How this version converts to the version its `storage` holds, when another version of
    /// the same resource is the storage version (`None`: objects are stored as served).
    pub conversion: Option<super::convert::Conversion>,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn group_version(&self) -> String {
        self.api_version()
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `deployments.apps`, `pods`: the name upstream uses in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn subresource(&self, name: &str) -> Option<&Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// The key prefix of every object of this resource (in one namespace when given).
    pub fn key_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/", self.storage),
            _ => format!("/registry/{}/", self.storage),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.key_prefix(namespace))
    }
}

fn check<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), serde_json::Error> {
    T::deserialize(v).map(|_| ())
}

struct Spec {
    short: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
    verbs: &'static [&'static str],
    /// Storage name when it differs from the plural (two versions or groups of one name).
    storage: Option<&'static str>,
    virtual_only: bool,
    conversion: Option<super::convert::Conversion>,
}

const DEFAULT: Spec = Spec {
    short: &[],
    categories: &[],
    subresources: &[],
    verbs: ALL_VERBS,
    storage: None,
    virtual_only: false,
    conversion: None,
};

fn entry<T>(spec: Spec) -> Resource
where
    T: k8s_openapi::Resource + schemars::JsonSchema + serde::de::DeserializeOwned,
    T::Scope: 'static,
{
    let plural = T::URL_PATH_SEGMENT.to_string();
    let namespaced = std::any::TypeId::of::<T::Scope>()
        == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>();
    Resource {
        group: T::GROUP.to_string(),
        version: T::VERSION.to_string(),
        kind: T::KIND.to_string(),
        singular: T::KIND.to_lowercase(),
        namespaced,
        short_names: spec.short.iter().map(|s| s.to_string()).collect(),
        categories: spec.categories.iter().map(|s| s.to_string()).collect(),
        verbs: spec.verbs.to_vec(),
        has_status: spec.subresources.iter().any(|s| s.name == "status"),
        subresources: spec.subresources.to_vec(),
        schema_name: T::schema_name().into_owned(),
        check: Some(check::<T>),
        storage: spec.storage.map(str::to_string).unwrap_or(plural.clone()),
        plural,
        virtual_only: spec.virtual_only,
        crd: None,
        conversion: spec.conversion,
    }
}

macro_rules! spec {
    ($($field:ident : $value:expr),* $(,)?) => {
        Spec { $($field: $value,)* ..DEFAULT }
    };
}

/// Every built-in resource, in discovery order (groups in upstream's order, preferred version
/// first).
pub fn built_in() -> &'static [Resource] {
    static TABLE: OnceLock<Vec<Resource>> = OnceLock::new();
    TABLE.get_or_init(table)
}

fn table() -> Vec<Resource> {
    use super::convert;
    use api::{
        admissionregistration::v1 as admission, apps::v1 as apps, authentication::v1 as authn,
        authorization::v1 as authz, autoscaling::v1 as autoscaling1,
        autoscaling::v2 as autoscaling2, batch::v1 as batch, certificates::v1 as certificates,
        coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
        events::v1 as events, networking::v1 as networking, node::v1 as node, policy::v1 as policy,
        rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    const ALL: &[&str] = &["all"];
    vec![
        // core/v1
        entry::<core::Binding>(spec!(verbs: CREATE_ONLY)),
        entry::<core::ComponentStatus>(spec!(short: &["cs"], verbs: READ_ONLY, virtual_only: true)),
        entry::<core::ConfigMap>(spec!(short: &["cm"])),
        entry::<core::Endpoints>(spec!(short: &["ep"])),
        entry::<core::Event>(spec!(short: &["ev"])),
        entry::<core::LimitRange>(spec!(short: &["limits"])),
        entry::<core::Namespace>(spec!(
            short: &["ns"],
            verbs: NO_DELETECOLLECTION,
            subresources: &[FINALIZE, STATUS]
        )),
        entry::<core::Node>(spec!(short: &["no"], subresources: &[STATUS])),
        entry::<core::PersistentVolumeClaim>(spec!(short: &["pvc"], subresources: &[STATUS])),
        entry::<core::PersistentVolume>(spec!(short: &["pv"], subresources: &[STATUS])),
        entry::<core::Pod>(spec!(
            short: &["po"],
            categories: ALL,
            subresources: &[ATTACH, BINDING, EVICTION, EXEC, LOG, PORTFORWARD, STATUS]
        )),
        entry::<core::PodTemplate>(spec!()),
        entry::<core::ReplicationController>(spec!(
            short: &["rc"],
            categories: ALL,
            subresources: &[SCALE, STATUS]
        )),
        entry::<core::ResourceQuota>(spec!(short: &["quota"], subresources: &[STATUS])),
        entry::<core::Secret>(spec!()),
        entry::<core::ServiceAccount>(spec!(short: &["sa"])),
        entry::<core::Service>(spec!(short: &["svc"], categories: ALL, subresources: &[STATUS])),
        // apps/v1
        entry::<apps::ControllerRevision>(spec!()),
        entry::<apps::DaemonSet>(spec!(short: &["ds"], categories: ALL, subresources: &[STATUS])),
        entry::<apps::Deployment>(spec!(
            short: &["deploy"],
            categories: ALL,
            subresources: &[SCALE, STATUS]
        )),
        entry::<apps::ReplicaSet>(spec!(
            short: &["rs"],
            categories: ALL,
            subresources: &[SCALE, STATUS]
        )),
        entry::<apps::StatefulSet>(spec!(
            short: &["sts"],
            categories: ALL,
            subresources: &[SCALE, STATUS]
        )),
        // events.k8s.io/v1: the core events, stored as core/v1 and converted (upstream's layout)
        entry::<events::Event>(spec!(short: &["ev"], conversion: Some(convert::EVENTS_V1))),
        // authentication.k8s.io/v1, authorization.k8s.io/v1: reviews, answered, never stored
        entry::<authn::SelfSubjectReview>(spec!(verbs: CREATE_ONLY, virtual_only: true)),
        entry::<authn::TokenReview>(spec!(verbs: CREATE_ONLY, virtual_only: true)),
        // kubectl 1.27 asks v1beta1 for `auth whoami`; the object is the same as v1's.
        Resource {
            version: "v1beta1".into(),
            check: None,
            ..entry::<authn::SelfSubjectReview>(spec!(verbs: CREATE_ONLY, virtual_only: true))
        },
        entry::<authz::LocalSubjectAccessReview>(spec!(verbs: CREATE_ONLY, virtual_only: true)),
        entry::<authz::SelfSubjectAccessReview>(spec!(verbs: CREATE_ONLY, virtual_only: true)),
        entry::<authz::SelfSubjectRulesReview>(spec!(verbs: CREATE_ONLY, virtual_only: true)),
        entry::<authz::SubjectAccessReview>(spec!(verbs: CREATE_ONLY, virtual_only: true)),
        // autoscaling: v2 is preferred and the storage version; v1 converts to it
        entry::<autoscaling2::HorizontalPodAutoscaler>(spec!(
            short: &["hpa"],
            categories: ALL,
            subresources: &[STATUS]
        )),
        entry::<autoscaling1::HorizontalPodAutoscaler>(spec!(
            short: &["hpa"],
            categories: ALL,
            subresources: &[STATUS],
            conversion: Some(convert::AUTOSCALING_V1)
        )),
        // batch/v1
        entry::<batch::CronJob>(spec!(short: &["cj"], categories: ALL, subresources: &[STATUS])),
        entry::<batch::Job>(spec!(categories: ALL, subresources: &[STATUS])),
        // certificates.k8s.io/v1
        entry::<certificates::CertificateSigningRequest>(spec!(
            short: &["csr"],
            subresources: &[
                Subresource { name: "approval", ..STATUS },
                STATUS
            ]
        )),
        // networking.k8s.io/v1
        entry::<networking::IngressClass>(spec!()),
        entry::<networking::Ingress>(spec!(short: &["ing"], subresources: &[STATUS])),
        entry::<networking::IPAddress>(spec!(short: &["ip"])),
        entry::<networking::NetworkPolicy>(spec!(short: &["netpol"])),
        entry::<networking::ServiceCIDR>(spec!(subresources: &[STATUS])),
        // policy/v1
        entry::<policy::PodDisruptionBudget>(spec!(short: &["pdb"], subresources: &[STATUS])),
        // rbac.authorization.k8s.io/v1
        entry::<rbac::ClusterRoleBinding>(spec!()),
        entry::<rbac::ClusterRole>(spec!()),
        entry::<rbac::RoleBinding>(spec!()),
        entry::<rbac::Role>(spec!()),
        // storage.k8s.io/v1
        entry::<storage::CSIDriver>(spec!()),
        entry::<storage::CSINode>(spec!()),
        entry::<storage::CSIStorageCapacity>(spec!()),
        entry::<storage::StorageClass>(spec!(short: &["sc"])),
        entry::<storage::VolumeAttachment>(spec!(subresources: &[STATUS])),
        // admissionregistration.k8s.io/v1
        entry::<admission::MutatingWebhookConfiguration>(spec!()),
        entry::<admission::ValidatingAdmissionPolicy>(spec!(subresources: &[STATUS])),
        entry::<admission::ValidatingAdmissionPolicyBinding>(spec!()),
        entry::<admission::ValidatingWebhookConfiguration>(spec!()),
        // apiextensions.k8s.io/v1
        entry::<apiextensions::CustomResourceDefinition>(spec!(
            short: &["crd", "crds"],
            subresources: &[STATUS]
        )),
        // scheduling.k8s.io/v1
        entry::<scheduling::PriorityClass>(spec!(short: &["pc"])),
        // coordination.k8s.io/v1
        entry::<coordination::Lease>(spec!()),
        // node.k8s.io/v1
        entry::<node::RuntimeClass>(spec!()),
        // discovery.k8s.io/v1
        entry::<discovery::EndpointSlice>(spec!()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_scopes_and_storage_are_unique_and_right() {
        let t = built_in();
        let deploy = t.iter().find(|r| r.plural == "deployments").unwrap();
        assert_eq!(deploy.group, "apps");
        assert!(deploy.namespaced);
        assert_eq!(deploy.schema_name, "io.k8s.api.apps.v1.Deployment");
        assert_eq!(
            deploy.key(Some("default"), "web"),
            "/registry/deployments/default/web"
        );
        let ns = t.iter().find(|r| r.plural == "namespaces").unwrap();
        assert!(!ns.namespaced);
        assert_eq!(ns.key(Some("x"), "x"), "/registry/namespaces/x");
        let stored: Vec<&Resource> = t.iter().filter(|r| !r.virtual_only).collect();
        // Versions with a conversion share their storage version's prefix (upstream's etcd
        // layout): one of a kind and plural is stored as served, and the prefix is the plural.
        for r in stored.iter().filter(|r| r.conversion.is_some()) {
            let owners: Vec<&&Resource> = stored
                .iter()
                .filter(|o| o.storage == r.storage && o.conversion.is_none())
                .collect();
            assert_eq!(owners.len(), 1, "{} has no storage version", r.qualified());
            assert_eq!((&owners[0].kind, &owners[0].plural), (&r.kind, &r.plural));
            assert_eq!(r.storage, r.plural);
        }
        let events = t.iter().filter(|r| r.plural == "events");
        assert!(
            events.clone().count() == 2
                && events
                    .clone()
                    .all(|r| r.key(Some("ns"), "e") == "/registry/events/ns/e")
        );
        let stored: Vec<&Resource> = stored
            .into_iter()
            .filter(|r| r.conversion.is_none())
            .collect();
        let mut storages: Vec<&str> = stored.iter().map(|r| r.storage.as_str()).collect();
        storages.sort();
        let before = storages.len();
        storages.dedup();
        assert_eq!(
            before,
            storages.len(),
            "two resources share a storage prefix"
        );
        // No storage prefix may be a prefix of another's (a range over one would see the other).
        for a in &stored {
            for b in &stored {
                if a.storage != b.storage {
                    assert!(!format!("{}/", b.storage).starts_with(&format!("{}/", a.storage)));
                }
            }
        }
    }

    #[test]
    fn the_all_category_is_exactly_upstreams() {
        let mut all: Vec<&str> = built_in()
            .iter()
            .filter(|r| r.categories.iter().any(|c| c == "all"))
            .map(|r| r.plural.as_str())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(
            all,
            [
                "cronjobs",
                "daemonsets",
                "deployments",
                "horizontalpodautoscalers",
                "jobs",
                "pods",
                "replicasets",
                "replicationcontrollers",
                "services",
                "statefulsets"
            ]
        );
    }
}
