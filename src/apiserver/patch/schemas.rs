//! The JSON schemas of every built-in kind rk3s serves, generated once from k8s-openapi's
//! `JsonSchema` impls, with the Kubernetes list/map/patch extensions of [`super::meta`] added.
//!
//! Strategic merge patch uses them to find the type of each field it descends into; the OpenAPI
//! documents reuse the same definitions so that what kubectl reads and what the server does agree.

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::{Map, Value};

use super::meta;

/// Where a `$ref` in these schemas points: OpenAPI v3's component schemas, as upstream's
/// `/openapi/v3` documents do (`#/components/schemas/io.k8s.api.core.v1.PodSpec`).
pub const REF_PREFIX: &str = "#/components/schemas/";

/// A set of named JSON schemas (OpenAPI v3 dialect), keyed by their Kubernetes definition name
/// such as `io.k8s.api.apps.v1.Deployment`.
#[derive(Debug, Clone, Default)]
pub struct Schemas {
    definitions: Map<String, Value>,
}

impl Schemas {
    /// Wraps definitions produced elsewhere (tests, or later CRD schemas) as-is.
    pub fn new(definitions: Map<String, Value>) -> Schemas {
        Schemas { definitions }
    }

    /// The schemas of all built-in kinds, built on first use and shared afterwards.
    pub fn built_in() -> &'static Schemas {
        static BUILT_IN: OnceLock<Schemas> = OnceLock::new();
        BUILT_IN.get_or_init(generate_built_in)
    }

    /// The schema named `name` (e.g. `io.k8s.api.core.v1.PodSpec`).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.definitions.get(name)
    }

    /// Every definition, keyed by name; `$ref`s between them start with [`REF_PREFIX`].
    pub fn definitions(&self) -> &Map<String, Value> {
        &self.definitions
    }

    /// Follows a schema node to the named definition it stands for, if any: either a plain
    /// `$ref`, or the `allOf: [{$ref}]` wrapper OpenAPI v3 uses to give a reference a description.
    pub fn ref_name(node: &Value) -> Option<&str> {
        let object = node.as_object()?;
        if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
            return reference.strip_prefix(REF_PREFIX);
        }
        match object
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            Some([single]) => Schemas::ref_name(single),
            _ => None,
        }
    }

    /// Resolves a schema node: a reference yields the referenced definition (and its name),
    /// anything else is its own schema.
    pub fn resolve<'a>(&'a self, node: &'a Value) -> (Option<&'a str>, Option<&'a Value>) {
        match Schemas::ref_name(node) {
            Some(name) => (Some(name), self.get(name)),
            None => (None, Some(node)),
        }
    }
}

fn generate_built_in() -> Schemas {
    let mut generator = SchemaSettings::openapi3().into_generator();
    macro_rules! add {
        ($($kind:ty),* $(,)?) => {
            $( generator.subschema_for::<$kind>(); )*
        };
    }
    add!(
            k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration,
            k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy,
            k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
            k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration,
            k8s_openapi::api::apps::v1::ControllerRevision,
            k8s_openapi::api::apps::v1::DaemonSet,
            k8s_openapi::api::apps::v1::Deployment,
            k8s_openapi::api::apps::v1::ReplicaSet,
            k8s_openapi::api::apps::v1::StatefulSet,
            k8s_openapi::api::authentication::v1::SelfSubjectReview,
            k8s_openapi::api::authentication::v1::TokenRequest,
            k8s_openapi::api::authentication::v1::TokenReview,
            k8s_openapi::api::authorization::v1::LocalSubjectAccessReview,
            k8s_openapi::api::authorization::v1::SelfSubjectAccessReview,
            k8s_openapi::api::authorization::v1::SelfSubjectRulesReview,
            k8s_openapi::api::authorization::v1::SubjectAccessReview,
            k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler,
            k8s_openapi::api::autoscaling::v1::Scale,
            k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler,
            k8s_openapi::api::batch::v1::CronJob,
            k8s_openapi::api::batch::v1::Job,
            k8s_openapi::api::certificates::v1::CertificateSigningRequest,
            k8s_openapi::api::coordination::v1::Lease,
            k8s_openapi::api::core::v1::Binding,
            k8s_openapi::api::core::v1::ComponentStatus,
            k8s_openapi::api::core::v1::ConfigMap,
            k8s_openapi::api::core::v1::Endpoints,
            k8s_openapi::api::core::v1::Event,
            k8s_openapi::api::core::v1::LimitRange,
            k8s_openapi::api::core::v1::Namespace,
            k8s_openapi::api::core::v1::Node,
            k8s_openapi::api::core::v1::PersistentVolume,
            k8s_openapi::api::core::v1::PersistentVolumeClaim,
            k8s_openapi::api::core::v1::Pod,
            k8s_openapi::api::core::v1::PodTemplate,
            k8s_openapi::api::core::v1::ReplicationController,
            k8s_openapi::api::core::v1::ResourceQuota,
            k8s_openapi::api::core::v1::Secret,
            k8s_openapi::api::core::v1::Service,
            k8s_openapi::api::core::v1::ServiceAccount,
            k8s_openapi::api::discovery::v1::EndpointSlice,
            k8s_openapi::api::events::v1::Event,
            k8s_openapi::api::flowcontrol::v1::FlowSchema,
            k8s_openapi::api::flowcontrol::v1::PriorityLevelConfiguration,
            k8s_openapi::api::networking::v1::IPAddress,
            k8s_openapi::api::networking::v1::Ingress,
            k8s_openapi::api::networking::v1::IngressClass,
            k8s_openapi::api::networking::v1::NetworkPolicy,
            k8s_openapi::api::networking::v1::ServiceCIDR,
            k8s_openapi::api::node::v1::RuntimeClass,
            k8s_openapi::api::policy::v1::Eviction,
            k8s_openapi::api::policy::v1::PodDisruptionBudget,
            k8s_openapi::api::rbac::v1::ClusterRole,
            k8s_openapi::api::rbac::v1::ClusterRoleBinding,
            k8s_openapi::api::rbac::v1::Role,
            k8s_openapi::api::rbac::v1::RoleBinding,
            k8s_openapi::api::scheduling::v1::PriorityClass,
            k8s_openapi::api::storage::v1::CSIDriver,
            k8s_openapi::api::storage::v1::CSINode,
            k8s_openapi::api::storage::v1::CSIStorageCapacity,
            k8s_openapi::api::storage::v1::StorageClass,
            k8s_openapi::api::storage::v1::VolumeAttachment,
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroup,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::APIVersions,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions,
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
            k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService
    );
    let mut definitions = generator.take_definitions(true);
    meta::annotate(&mut definitions);
    Schemas { definitions }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn built_in_schemas_cover_every_served_kind() {
        let schemas = Schemas::built_in();
        for name in [
            "io.k8s.api.core.v1.Pod",
            "io.k8s.api.core.v1.Service",
            "io.k8s.api.core.v1.Node",
            "io.k8s.api.apps.v1.Deployment",
            "io.k8s.api.batch.v1.CronJob",
            "io.k8s.api.autoscaling.v1.Scale",
            "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
            "io.k8s.api.networking.v1.Ingress",
            "io.k8s.api.policy.v1.Eviction",
            "io.k8s.api.rbac.v1.ClusterRole",
            "io.k8s.api.coordination.v1.Lease",
            "io.k8s.api.discovery.v1.EndpointSlice",
            "io.k8s.api.events.v1.Event",
            "io.k8s.api.storage.v1.StorageClass",
            "io.k8s.api.scheduling.v1.PriorityClass",
            "io.k8s.api.node.v1.RuntimeClass",
            "io.k8s.api.certificates.v1.CertificateSigningRequest",
            "io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration",
            "io.k8s.api.authentication.v1.TokenRequest",
            "io.k8s.api.authentication.v1.SelfSubjectReview",
            "io.k8s.api.authorization.v1.SelfSubjectAccessReview",
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        ] {
            assert!(schemas.get(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
            match value {
                Value::Object(fields) => {
                    if let Some(reference) = fields.get("$ref").and_then(Value::as_str) {
                        found.push(reference);
                    }
                    fields.values().for_each(|value| walk(value, found));
                }
                Value::Array(items) => items.iter().for_each(|value| walk(value, found)),
                _ => {}
            }
        }
        let schemas = Schemas::built_in();
        let mut references = Vec::new();
        for definition in schemas.definitions().values() {
            walk(definition, &mut references);
        }
        assert!(!references.is_empty());
        for reference in references {
            let name = reference.strip_prefix(REF_PREFIX);
            assert!(
                name.and_then(|name| schemas.get(name)).is_some(),
                "{reference}"
            );
        }
    }

    #[test]
    fn references_resolve_plain_and_wrapped() {
        let schemas = Schemas::built_in();
        let spec = &schemas.definitions()["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        assert_eq!(
            Schemas::ref_name(spec),
            Some("io.k8s.api.apps.v1.DeploymentSpec")
        );
        let plain = json!({"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"});
        let (name, schema) = schemas.resolve(&plain);
        assert_eq!(name, Some("io.k8s.api.core.v1.PodSpec"));
        assert!(schema.is_some());
        let inline = json!({"type": "string"});
        assert_eq!(schemas.resolve(&inline), (None, Some(&inline)));
    }

    #[test]
    fn built_in_schemas_carry_the_kubernetes_extensions() {
        let schemas = Schemas::built_in();
        let containers =
            &schemas.definitions()["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let selector = &schemas.definitions()["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"];
        assert_eq!(selector["x-kubernetes-map-type"], "atomic");
    }
}
