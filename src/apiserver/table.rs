//! Server-side printing: the metav1.Table that `kubectl get` asks for (`Accept:
//! application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! Built-in resources get the columns and cell logic of upstream's printers
//! (kubernetes pkg/printers/internalversion/printers.go), always in their `-o wide` form
//! because the API server prints wide and kubectl hides priority-1 columns itself.
//! Built-in resources without a printer get upstream's default table (Name, Created At), and
//! custom resources their CRD's additionalPrinterColumns (Name and Age by default), evaluated
//! with the small JSONPath subset CRDs use. Everything here is a pure function of the object
//! JSON and the current time.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::selector::LabelSelector;

/// What each row carries in `object`, from the `includeObject` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object (`"object": null`).
    None,
    /// A PartialObjectMetadata with the full metadata (the default).
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses `includeObject`: "" and "Metadata" mean Metadata. Other values are rejected
    /// with upstream's message.
    pub fn parse(s: &str) -> Result<IncludeObject, String> {
        match s {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            "None" => Ok(IncludeObject::None),
            other => Err(format!(
                "unrecognized includeObject value: {}",
                serde_json::to_string(other).unwrap_or_default()
            )),
        }
    }
}

/// The printer that owns a resource's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Printer {
    Pods,
    PodTemplates,
    PodDisruptionBudgets,
    ReplicationControllers,
    ReplicaSets,
    DaemonSets,
    Jobs,
    CronJobs,
    Services,
    Ingresses,
    IngressClasses,
    StatefulSets,
    Endpoints,
    Nodes,
    Events,
    EventsV1,
    Namespaces,
    Secrets,
    ServiceAccounts,
    PersistentVolumes,
    PersistentVolumeClaims,
    ComponentStatuses,
    Deployments,
    HorizontalPodAutoscalers,
    ConfigMaps,
    NetworkPolicies,
    RoleBindings,
    ClusterRoleBindings,
    CertificateSigningRequests,
    Leases,
    StorageClasses,
    VolumeAttributesClasses,
    ControllerRevisions,
    ResourceQuotas,
    PriorityClasses,
    RuntimeClasses,
    VolumeAttachments,
    EndpointSlices,
    CsiNodes,
    CsiDrivers,
    CsiStorageCapacities,
    MutatingWebhookConfigurations,
    ValidatingWebhookConfigurations,
    ValidatingAdmissionPolicies,
    ValidatingAdmissionPolicyBindings,
    ServiceCidrs,
    IpAddresses,
    /// A built-in resource without a printer: upstream's default table convertor.
    Default,
    /// Anything else, i.e. a custom resource: the CRD default columns.
    Custom,
}

fn printer(group: &str, resource: &str) -> Printer {
    use Printer::*;
    match (group, resource) {
        ("", "pods") => Pods,
        ("", "podtemplates") => PodTemplates,
        ("", "replicationcontrollers") => ReplicationControllers,
        ("", "services") => Services,
        ("", "endpoints") => Endpoints,
        ("", "nodes") => Nodes,
        ("", "events") => Events,
        ("", "namespaces") => Namespaces,
        ("", "secrets") => Secrets,
        ("", "serviceaccounts") => ServiceAccounts,
        ("", "persistentvolumes") => PersistentVolumes,
        ("", "persistentvolumeclaims") => PersistentVolumeClaims,
        ("", "componentstatuses") => ComponentStatuses,
        ("", "configmaps") => ConfigMaps,
        ("", "resourcequotas") => ResourceQuotas,
        ("apps", "deployments") => Deployments,
        ("apps", "replicasets") => ReplicaSets,
        ("apps", "statefulsets") => StatefulSets,
        ("apps", "daemonsets") => DaemonSets,
        ("apps", "controllerrevisions") => ControllerRevisions,
        ("batch", "jobs") => Jobs,
        ("batch", "cronjobs") => CronJobs,
        ("autoscaling", "horizontalpodautoscalers") => HorizontalPodAutoscalers,
        ("policy", "poddisruptionbudgets") => PodDisruptionBudgets,
        ("networking.k8s.io", "ingresses") => Ingresses,
        ("networking.k8s.io", "ingressclasses") => IngressClasses,
        ("networking.k8s.io", "networkpolicies") => NetworkPolicies,
        ("networking.k8s.io", "servicecidrs") => ServiceCidrs,
        ("networking.k8s.io", "ipaddresses") => IpAddresses,
        ("rbac.authorization.k8s.io", "rolebindings") => RoleBindings,
        ("rbac.authorization.k8s.io", "clusterrolebindings") => ClusterRoleBindings,
        ("certificates.k8s.io", "certificatesigningrequests") => CertificateSigningRequests,
        ("coordination.k8s.io", "leases") => Leases,
        ("storage.k8s.io", "storageclasses") => StorageClasses,
        ("storage.k8s.io", "volumeattributesclasses") => VolumeAttributesClasses,
        ("storage.k8s.io", "volumeattachments") => VolumeAttachments,
        ("storage.k8s.io", "csinodes") => CsiNodes,
        ("storage.k8s.io", "csidrivers") => CsiDrivers,
        ("storage.k8s.io", "csistoragecapacities") => CsiStorageCapacities,
        ("scheduling.k8s.io", "priorityclasses") => PriorityClasses,
        ("node.k8s.io", "runtimeclasses") => RuntimeClasses,
        ("discovery.k8s.io", "endpointslices") => EndpointSlices,
        ("events.k8s.io", "events") => EventsV1,
        ("admissionregistration.k8s.io", "mutatingwebhookconfigurations") => {
            MutatingWebhookConfigurations
        }
        ("admissionregistration.k8s.io", "validatingwebhookconfigurations") => {
            ValidatingWebhookConfigurations
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicies") => {
            ValidatingAdmissionPolicies
        }
        ("admissionregistration.k8s.io", "validatingadmissionpolicybindings") => {
            ValidatingAdmissionPolicyBindings
        }
        // Built-in groups are the legacy core group, the dot-less groups (apps, batch, …)
        // and *.k8s.io; a CRD's group must contain a dot and is normally elsewhere.
        (g, _) if g.is_empty() || !g.contains('.') || g.ends_with(".k8s.io") => Default,
        _ => Custom,
    }
}

// ---------------------------------------------------------------------------------------------
// Column definitions
// ---------------------------------------------------------------------------------------------

fn column(name: &str, ty: &str, format: &str, priority: i64, description: &str) -> Value {
    json!({
        "name": name,
        "type": ty,
        "format": format,
        "description": description,
        "priority": priority,
    })
}

/// A priority-0 column.
fn col(name: &str, ty: &str, description: &str) -> Value {
    column(name, ty, "", 0, description)
}

/// A priority-1 (`-o wide`) column.
fn wide(name: &str, ty: &str, description: &str) -> Value {
    column(name, ty, "", 1, description)
}

fn name_col() -> Value {
    column("Name", "string", "name", 0, doc("ObjectMeta.name"))
}

fn age_col() -> Value {
    col("Age", "string", doc("ObjectMeta.creationTimestamp"))
}

const CONTAINERS_DOC: &str = "Names of each container in the template.";
const IMAGES_DOC: &str = "Images referenced by each container in the template.";

fn containers_images() -> [Value; 2] {
    [
        wide("Containers", "string", CONTAINERS_DOC),
        wide("Images", "string", IMAGES_DOC),
    ]
}

/// The metav1.TableColumnDefinition objects of a built-in resource, in cell order, as
/// upstream's printer declares them. Custom resources (groups that are not built in) get
/// the CRD default columns, Name and Age; use [`custom_column_definitions`] for CRDs with
/// additionalPrinterColumns.
pub fn column_definitions(group: &str, resource: &str) -> Vec<Value> {
    use Printer::*;
    let mut cols = vec![name_col()];
    match printer(group, resource) {
        Pods => cols.extend([
            col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            col("Status", "string", "The aggregate status of the containers in this pod."),
            col(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            age_col(),
            wide("IP", "string", doc("PodStatus.podIP")),
            wide("Node", "string", doc("PodSpec.nodeName")),
            wide("Nominated Node", "string", doc("PodStatus.nominatedNodeName")),
            wide("Readiness Gates", "string", doc("PodSpec.readinessGates")),
        ]),
        PodTemplates => cols.extend([
            col("Containers", "string", CONTAINERS_DOC),
            col("Images", "string", IMAGES_DOC),
            col("Pod Labels", "string", "The labels for the pod template."),
        ]),
        PodDisruptionBudgets => cols.extend([
            col("Min Available", "string", "The minimum number of pods that must be available."),
            col("Max Unavailable", "string", "The maximum number of pods that may be unavailable."),
            col(
                "Allowed Disruptions",
                "integer",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            age_col(),
        ]),
        ReplicationControllers => {
            cols.extend([
                col("Desired", "integer", doc("ReplicationControllerSpec.replicas")),
                col("Current", "integer", doc("ReplicationControllerStatus.replicas")),
                col("Ready", "integer", doc("ReplicationControllerStatus.readyReplicas")),
                age_col(),
            ]);
            cols.extend(containers_images());
            cols.push(wide("Selector", "string", doc("ReplicationControllerSpec.selector")));
        }
        ReplicaSets => {
            cols.extend([
                col("Desired", "integer", doc("ReplicaSetSpec.replicas")),
                col("Current", "integer", doc("ReplicaSetStatus.replicas")),
                col("Ready", "integer", doc("ReplicaSetStatus.readyReplicas")),
                age_col(),
            ]);
            cols.extend(containers_images());
            cols.push(wide("Selector", "string", doc("ReplicaSetSpec.selector")));
        }
        DaemonSets => {
            cols.extend([
                col("Desired", "integer", doc("DaemonSetStatus.desiredNumberScheduled")),
                col("Current", "integer", doc("DaemonSetStatus.currentNumberScheduled")),
                col("Ready", "integer", doc("DaemonSetStatus.numberReady")),
                col("Up-to-date", "integer", doc("DaemonSetStatus.updatedNumberScheduled")),
                col("Available", "integer", doc("DaemonSetStatus.numberAvailable")),
                col("Node Selector", "string", doc("PodSpec.nodeSelector")),
                age_col(),
            ]);
            cols.extend(containers_images());
            cols.push(wide("Selector", "string", doc("DaemonSetSpec.selector")));
        }
        Jobs => {
            cols.extend([
                col("Status", "string", "Status of the job."),
                col("Completions", "string", doc("JobStatus.succeeded")),
                col("Duration", "string", "Time required to complete the job."),
                age_col(),
            ]);
            cols.extend(containers_images());
            cols.push(wide("Selector", "string", doc("JobSpec.selector")));
        }
        CronJobs => {
            cols.extend([
                col("Schedule", "string", doc("CronJobSpec.schedule")),
                col("Timezone", "string", doc("CronJobSpec.timeZone")),
                col("Suspend", "boolean", doc("CronJobSpec.suspend")),
                col("Active", "integer", doc("CronJobStatus.active")),
                col("Last Schedule", "string", doc("CronJobStatus.lastScheduleTime")),
                age_col(),
            ]);
            cols.extend(containers_images());
            cols.push(wide("Selector", "string", doc("JobSpec.selector")));
        }
        Services => cols.extend([
            col("Type", "string", doc("ServiceSpec.type")),
            col("Cluster-IP", "string", doc("ServiceSpec.clusterIP")),
            col("External-IP", "string", doc("ServiceSpec.externalIPs")),
            col("Port(s)", "string", doc("ServiceSpec.ports")),
            age_col(),
            wide("Selector", "string", doc("ServiceSpec.selector")),
        ]),
        Ingresses => cols.extend([
            col(
                "Class",
                "string",
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
            col(
                "Hosts",
                "string",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            col(
                "Address",
                "string",
                "Address is a list containing ingress points for the load-balancer",
            ),
            col("Ports", "string", "Ports of TLS configurations that open"),
            age_col(),
        ]),
        IngressClasses => cols.extend([
            col("Controller", "string", "Controller that is responsible for handling this class"),
            col("Parameters", "string", "A reference to a resource with additional parameters"),
            age_col(),
        ]),
        StatefulSets => {
            cols.extend([
                col("Ready", "string", "Number of the pod with ready state"),
                age_col(),
            ]);
            cols.extend(containers_images());
        }
        Endpoints => cols.extend([
            col("Endpoints", "string", doc("Endpoints.subsets")),
            age_col(),
        ]),
        Nodes => cols.extend([
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            age_col(),
            col("Version", "string", doc("NodeSystemInfo.kubeletVersion")),
            wide("Internal-IP", "string", doc("NodeStatus.addresses")),
            wide("External-IP", "string", doc("NodeStatus.addresses")),
            wide("OS-Image", "string", doc("NodeSystemInfo.osImage")),
            wide("Kernel-Version", "string", doc("NodeSystemInfo.kernelVersion")),
            wide("Container-Runtime", "string", doc("NodeSystemInfo.containerRuntimeVersion")),
        ]),
        Events | EventsV1 => {
            // Events lead with Last Seen; the name is a wide column at the end.
            cols = vec![
                col("Last Seen", "string", doc("Event.lastTimestamp")),
                col("Type", "string", doc("Event.type")),
                col("Reason", "string", doc("Event.reason")),
                col("Object", "string", doc("Event.involvedObject")),
                wide("Subobject", "string", doc("ObjectReference.fieldPath")),
                wide("Source", "string", doc("Event.source")),
                col("Message", "string", doc("Event.message")),
                wide("First Seen", "string", doc("Event.firstTimestamp")),
                wide("Count", "string", doc("Event.count")),
                column("Name", "string", "name", 1, doc("ObjectMeta.name")),
            ];
        }
        Namespaces => cols.extend([
            col("Status", "string", "The status of the namespace"),
            age_col(),
        ]),
        Secrets => cols.extend([
            col("Type", "string", doc("Secret.type")),
            col("Data", "string", doc("Secret.data")),
            age_col(),
        ]),
        ServiceAccounts => cols.extend([
            col("Secrets", "string", doc("ServiceAccount.secrets")),
            age_col(),
        ]),
        PersistentVolumes => cols.extend([
            col("Capacity", "string", doc("PersistentVolumeSpec.capacity")),
            col("Access Modes", "string", doc("PersistentVolumeSpec.accessModes")),
            col(
                "Reclaim Policy",
                "string",
                doc("PersistentVolumeSpec.persistentVolumeReclaimPolicy"),
            ),
            col("Status", "string", doc("PersistentVolumeStatus.phase")),
            col("Claim", "string", doc("PersistentVolumeSpec.claimRef")),
            col("StorageClass", "string", "StorageClass of the pv"),
            col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv"),
            col("Reason", "string", doc("PersistentVolumeStatus.reason")),
            age_col(),
            wide("VolumeMode", "string", doc("PersistentVolumeSpec.volumeMode")),
        ]),
        PersistentVolumeClaims => cols.extend([
            col("Status", "string", doc("PersistentVolumeClaimStatus.phase")),
            col("Volume", "string", doc("PersistentVolumeClaimSpec.volumeName")),
            col("Capacity", "string", doc("PersistentVolumeClaimStatus.capacity")),
            col("Access Modes", "string", doc("PersistentVolumeClaimStatus.accessModes")),
            col("StorageClass", "string", "StorageClass of the pvc"),
            col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pvc"),
            age_col(),
            wide("VolumeMode", "string", doc("PersistentVolumeClaimSpec.volumeMode")),
        ]),
        ComponentStatuses => cols.extend([
            col("Status", "string", "Status of the component conditions"),
            col("Message", "string", "Message of the component conditions"),
            col("Error", "string", "Error of the component conditions"),
        ]),
        Deployments => {
            cols.extend([
                col("Ready", "string", "Number of the pod with ready state"),
                col("Up-to-date", "string", doc("DeploymentStatus.updatedReplicas")),
                col("Available", "string", doc("DeploymentStatus.availableReplicas")),
                age_col(),
            ]);
            cols.extend(containers_images());
            cols.push(wide("Selector", "string", doc("DeploymentSpec.selector")));
        }
        HorizontalPodAutoscalers => cols.extend([
            col("Reference", "string", doc("HorizontalPodAutoscalerSpec.scaleTargetRef")),
            col("Targets", "string", doc("HorizontalPodAutoscalerSpec.metrics")),
            col("MinPods", "string", doc("HorizontalPodAutoscalerSpec.minReplicas")),
            col("MaxPods", "string", doc("HorizontalPodAutoscalerSpec.maxReplicas")),
            col("Replicas", "string", doc("HorizontalPodAutoscalerStatus.currentReplicas")),
            age_col(),
        ]),
        ConfigMaps => cols.extend([col("Data", "string", doc("ConfigMap.data")), age_col()]),
        NetworkPolicies => cols.extend([
            col("Pod-Selector", "string", doc("NetworkPolicySpec.podSelector")),
            age_col(),
        ]),
        RoleBindings | ClusterRoleBindings => {
            let (role, what) = if printer(group, resource) == RoleBindings {
                (doc("RoleBinding.roleRef"), "roleBinding")
            } else {
                (doc("ClusterRoleBinding.roleRef"), "clusterRoleBinding")
            };
            cols.extend([
                col("Role", "string", role),
                age_col(),
                wide("Users", "string", &format!("Users in the {what}")),
                wide("Groups", "string", &format!("Groups in the {what}")),
                wide("ServiceAccounts", "string", &format!("ServiceAccounts in the {what}")),
            ]);
        }
        CertificateSigningRequests => cols.extend([
            age_col(),
            col("SignerName", "string", doc("CertificateSigningRequestSpec.signerName")),
            col("Requestor", "string", doc("CertificateSigningRequestSpec.request")),
            col(
                "RequestedDuration",
                "string",
                doc("CertificateSigningRequestSpec.expirationSeconds"),
            ),
            col("Condition", "string", doc("CertificateSigningRequestStatus.conditions")),
        ]),
        Leases => cols.extend([
            col("Holder", "string", doc("LeaseSpec.holderIdentity")),
            age_col(),
        ]),
        StorageClasses => cols.extend([
            col("Provisioner", "string", doc("StorageClass.provisioner")),
            col("ReclaimPolicy", "string", doc("StorageClass.reclaimPolicy")),
            col("VolumeBindingMode", "string", doc("StorageClass.volumeBindingMode")),
            col("AllowVolumeExpansion", "string", doc("StorageClass.allowVolumeExpansion")),
            age_col(),
        ]),
        VolumeAttributesClasses => cols.extend([
            col("DriverName", "string", doc("VolumeAttributesClass.driverName")),
            age_col(),
        ]),
        ControllerRevisions => cols.extend([
            col("Controller", "string", "Controller of the object"),
            col("Revision", "string", doc("ControllerRevision.revision")),
            age_col(),
        ]),
        ResourceQuotas => cols.extend([
            col(
                "Request",
                "string",
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            col(
                "Limit",
                "string",
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
            age_col(),
        ]),
        PriorityClasses => cols.extend([
            col("Value", "integer", doc("PriorityClass.value")),
            col("Global-Default", "boolean", doc("PriorityClass.globalDefault")),
            age_col(),
            col("PreemptionPolicy", "string", doc("PriorityClass.preemptionPolicy")),
        ]),
        // Upstream looks the handler description up in ObjectMeta's docs, which have none.
        RuntimeClasses => cols.extend([col("Handler", "string", ""), age_col()]),
        VolumeAttachments => cols.extend([
            column("Attacher", "string", "name", 0, doc("VolumeAttachmentSpec.attacher")),
            col("PV", "string", doc("VolumeAttachmentSource.persistentVolumeName")),
            col("Node", "string", doc("VolumeAttachmentSpec.nodeName")),
            col("Attached", "boolean", doc("VolumeAttachmentStatus.attached")),
            age_col(),
        ]),
        EndpointSlices => cols.extend([
            col("AddressType", "string", doc("EndpointSlice.addressType")),
            col("Ports", "string", doc("EndpointSlice.ports")),
            col("Endpoints", "string", doc("EndpointSlice.endpoints")),
            age_col(),
        ]),
        CsiNodes => cols.extend([
            col(
                "Drivers",
                "integer",
                "Drivers indicates the number of CSI drivers registered on the node",
            ),
            age_col(),
        ]),
        CsiDrivers => cols.extend([
            col("AttachRequired", "boolean", doc("CSIDriverSpec.attachRequired")),
            col("PodInfoOnMount", "boolean", doc("CSIDriverSpec.podInfoOnMount")),
            col("StorageCapacity", "boolean", doc("CSIDriverSpec.storageCapacity")),
            col("TokenRequests", "string", doc("CSIDriverSpec.tokenRequests")),
            col("RequiresRepublish", "boolean", doc("CSIDriverSpec.requiresRepublish")),
            col("Modes", "string", doc("CSIDriverSpec.volumeLifecycleModes")),
            age_col(),
        ]),
        CsiStorageCapacities => cols.extend([
            col("StorageClassName", "string", doc("CSIStorageCapacity.storageClassName")),
            col("Capacity", "string", doc("CSIStorageCapacity.capacity")),
        ]),
        MutatingWebhookConfigurations | ValidatingWebhookConfigurations => cols.extend([
            col(
                "Webhooks",
                "integer",
                "Webhooks indicates the number of webhooks registered in this configuration",
            ),
            age_col(),
        ]),
        ValidatingAdmissionPolicies => cols.extend([
            col(
                "Validations",
                "integer",
                "Validations indicates the number of validation rules defined in this configuration",
            ),
            col(
                "ParamKind",
                "string",
                "ParamKind specifies the kind of resources used to parameterize this policy",
            ),
            age_col(),
        ]),
        ValidatingAdmissionPolicyBindings => cols.extend([
            col(
                "PolicyName",
                "string",
                "PolicyName indicates the policy definition which the policy binding binded to",
            ),
            col(
                "ParamRef",
                "string",
                "ParamRef indicates the param resource which sets the configration param",
            ),
            age_col(),
        ]),
        ServiceCidrs => cols.extend([col("CIDRs", "string", doc("ServiceCIDRSpec.cidrs")), age_col()]),
        IpAddresses => cols.push(col("ParentRef", "string", doc("IPAddressSpec.parentRef"))),
        Default => cols.push(col("Created At", "date", doc("ObjectMeta.creationTimestamp"))),
        Custom => cols.push(col("Age", "date", doc("ObjectMeta.creationTimestamp"))),
    }
    cols
}

// ---------------------------------------------------------------------------------------------
// Cells
// ---------------------------------------------------------------------------------------------

/// The cells of one object's row, in the order of [`column_definitions`], computed as
/// upstream's printer does with `now_unix_secs` as the current time. Integer columns are
/// JSON numbers, the rest strings (or booleans where upstream prints booleans).
pub fn row_cells(group: &str, resource: &str, obj: &Value, now_unix_secs: i64) -> Vec<Value> {
    use Printer::*;
    let now = now_unix_secs;
    match printer(group, resource) {
        Pods => pod_cells(obj, now),
        PodTemplates => {
            let (names, images) = containers_and_images(obj, &["template", "spec", "containers"]);
            cells([
                name(obj),
                names.into(),
                images.into(),
                format_labels(get(obj, &["template", "metadata", "labels"])).into(),
            ])
        }
        PodDisruptionBudgets => {
            let int_or_string = |path: &[&str]| match get(obj, path) {
                Some(v) => int_or_string_text(v),
                None => "N/A".to_string(),
            };
            cells([
                name(obj),
                int_or_string(&["spec", "minAvailable"]).into(),
                int_or_string(&["spec", "maxUnavailable"]).into(),
                int(obj, &["status", "disruptionsAllowed"]).into(),
                age(obj, now),
            ])
        }
        ReplicationControllers => {
            let (names, images) =
                containers_and_images(obj, &["spec", "template", "spec", "containers"]);
            cells([
                name(obj),
                replicas(obj).into(),
                int(obj, &["status", "replicas"]).into(),
                int(obj, &["status", "readyReplicas"]).into(),
                age(obj, now),
                names.into(),
                images.into(),
                format_labels(get(obj, &["spec", "selector"])).into(),
            ])
        }
        ReplicaSets => {
            let (names, images) =
                containers_and_images(obj, &["spec", "template", "spec", "containers"]);
            cells([
                name(obj),
                replicas(obj).into(),
                int(obj, &["status", "replicas"]).into(),
                int(obj, &["status", "readyReplicas"]).into(),
                age(obj, now),
                names.into(),
                images.into(),
                format_label_selector(get(obj, &["spec", "selector"])).into(),
            ])
        }
        DaemonSets => {
            let (names, images) =
                containers_and_images(obj, &["spec", "template", "spec", "containers"]);
            cells([
                name(obj),
                int(obj, &["status", "desiredNumberScheduled"]).into(),
                int(obj, &["status", "currentNumberScheduled"]).into(),
                int(obj, &["status", "numberReady"]).into(),
                int(obj, &["status", "updatedNumberScheduled"]).into(),
                int(obj, &["status", "numberAvailable"]).into(),
                format_labels(get(obj, &["spec", "template", "spec", "nodeSelector"])).into(),
                age(obj, now),
                names.into(),
                images.into(),
                format_label_selector(get(obj, &["spec", "selector"])).into(),
            ])
        }
        Jobs => job_cells(obj, now),
        CronJobs => cron_job_cells(obj, now),
        Services => service_cells(obj, now),
        Ingresses => {
            let class = get_str(obj, &["spec", "ingressClassName"]).unwrap_or("<none>");
            let ports = if array(obj, &["spec", "tls"]).is_empty() {
                "80"
            } else {
                "80, 443"
            };
            cells([
                name(obj),
                class.into(),
                format_hosts(array(obj, &["spec", "rules"])).into(),
                load_balancer_addresses(obj).into(),
                ports.into(),
                age(obj, now),
            ])
        }
        IngressClasses => {
            let parameters = match get(obj, &["spec", "parameters"]) {
                Some(p) => {
                    let mut out = text(p, &["kind"]).to_string();
                    if let Some(group) = get_str(p, &["apiGroup"]) {
                        out.push('.');
                        out.push_str(group);
                    }
                    out.push('/');
                    out.push_str(text(p, &["name"]));
                    out
                }
                None => "<none>".to_string(),
            };
            cells([
                name(obj),
                text(obj, &["spec", "controller"]).into(),
                parameters.into(),
                age(obj, now),
            ])
        }
        StatefulSets => {
            let (names, images) =
                containers_and_images(obj, &["spec", "template", "spec", "containers"]);
            let ready = format!(
                "{}/{}",
                int(obj, &["status", "readyReplicas"]),
                replicas(obj)
            );
            cells([
                name(obj),
                ready.into(),
                age(obj, now),
                names.into(),
                images.into(),
            ])
        }
        Endpoints => cells([name(obj), format_endpoints(obj).into(), age(obj, now)]),
        Nodes => node_cells(obj, now),
        Events => event_cells(obj, false, now),
        EventsV1 => event_cells(obj, true, now),
        Namespaces => cells([
            name(obj),
            text(obj, &["status", "phase"]).into(),
            age(obj, now),
        ]),
        Secrets => cells([
            name(obj),
            text(obj, &["type"]).into(),
            (object_len(obj, &["data"]) as i64).into(),
            age(obj, now),
        ]),
        ServiceAccounts => cells([
            name(obj),
            (array(obj, &["secrets"]).len() as i64).into(),
            age(obj, now),
        ]),
        PersistentVolumes => persistent_volume_cells(obj, now),
        PersistentVolumeClaims => persistent_volume_claim_cells(obj, now),
        ComponentStatuses => {
            let (mut status, mut message, mut error) = ("Unknown", "", "");
            if let Some(c) = array(obj, &["conditions"])
                .iter()
                .find(|c| text(c, &["type"]) == "Healthy")
            {
                status = if text(c, &["status"]) == "True" {
                    "Healthy"
                } else {
                    "Unhealthy"
                };
                message = text(c, &["message"]);
                error = text(c, &["error"]);
            }
            cells([name(obj), status.into(), message.into(), error.into()])
        }
        Deployments => {
            let (names, images) =
                containers_and_images(obj, &["spec", "template", "spec", "containers"]);
            let ready = format!(
                "{}/{}",
                int(obj, &["status", "readyReplicas"]),
                replicas(obj)
            );
            // Unlike the other printers, upstream prints the selector without the <none>
            // placeholder here, and <invalid> for one it cannot convert.
            let selector = match LabelSelector::from_label_selector_json(
                get(obj, &["spec", "selector"]).unwrap_or(&Value::Null),
            ) {
                Ok(s) => s.to_string(),
                Err(_) => "<invalid>".to_string(),
            };
            cells([
                name(obj),
                ready.into(),
                int(obj, &["status", "updatedReplicas"]).into(),
                int(obj, &["status", "availableReplicas"]).into(),
                age(obj, now),
                names.into(),
                images.into(),
                selector.into(),
            ])
        }
        HorizontalPodAutoscalers => hpa_cells(obj, now),
        ConfigMaps => {
            let n = object_len(obj, &["data"]) + object_len(obj, &["binaryData"]);
            cells([name(obj), (n as i64).into(), age(obj, now)])
        }
        NetworkPolicies => cells([
            name(obj),
            format_label_selector(Some(
                get(obj, &["spec", "podSelector"]).unwrap_or(&json!({})),
            ))
            .into(),
            age(obj, now),
        ]),
        RoleBindings | ClusterRoleBindings => {
            let role_ref = format!(
                "{}/{}",
                text(obj, &["roleRef", "kind"]),
                text(obj, &["roleRef", "name"])
            );
            let (users, groups, service_accounts) = subjects(obj);
            cells([
                name(obj),
                role_ref.into(),
                age(obj, now),
                users.join(", ").into(),
                groups.join(", ").into(),
                service_accounts.join(", ").into(),
            ])
        }
        CertificateSigningRequests => {
            let signer = non_empty_or(text(obj, &["spec", "signerName"]), "<none>");
            let duration = match int_opt(obj, &["spec", "expirationSeconds"]) {
                Some(secs) => human_duration(secs),
                None => "<none>".to_string(),
            };
            cells([
                name(obj),
                age(obj, now),
                signer.into(),
                text(obj, &["spec", "username"]).into(),
                duration.into(),
                csr_condition(obj).into(),
            ])
        }
        Leases => cells([
            name(obj),
            text(obj, &["spec", "holderIdentity"]).into(),
            age(obj, now),
        ]),
        StorageClasses => {
            let mut class_name = text(obj, &["metadata", "name"]).to_string();
            let annotation = |k: &str| {
                get(obj, &["metadata", "annotations"])
                    .and_then(|a| a.get(k))
                    .and_then(Value::as_str)
                    == Some("true")
            };
            if annotation("storageclass.kubernetes.io/is-default-class")
                || annotation("storageclass.beta.kubernetes.io/is-default-class")
            {
                class_name.push_str(" (default)");
            }
            cells([
                class_name.into(),
                text(obj, &["provisioner"]).into(),
                get_str(obj, &["reclaimPolicy"]).unwrap_or("Delete").into(),
                get_str(obj, &["volumeBindingMode"])
                    .unwrap_or("Immediate")
                    .into(),
                boolean(obj, &["allowVolumeExpansion"]).into(),
                age(obj, now),
            ])
        }
        VolumeAttributesClasses => {
            let mut class_name = text(obj, &["metadata", "name"]).to_string();
            let default = get(obj, &["metadata", "annotations"])
                .and_then(|a| a.get("storage.kubernetes.io/is-default-class"))
                .and_then(Value::as_str)
                == Some("true");
            if default {
                class_name.push_str(" (default)");
            }
            cells([
                class_name.into(),
                text(obj, &["driverName"]).into(),
                age(obj, now),
            ])
        }
        ControllerRevisions => cells([
            name(obj),
            controller_of(obj).into(),
            int(obj, &["revision"]).into(),
            age(obj, now),
        ]),
        ResourceQuotas => {
            let (request, limit) = resource_quota_columns(obj);
            cells([name(obj), request.into(), limit.into(), age(obj, now)])
        }
        PriorityClasses => cells([
            name(obj),
            int(obj, &["value"]).into(),
            boolean(obj, &["globalDefault"]).into(),
            age(obj, now),
            text(obj, &["preemptionPolicy"]).into(),
        ]),
        RuntimeClasses => cells([name(obj), text(obj, &["handler"]).into(), age(obj, now)]),
        VolumeAttachments => cells([
            name(obj),
            text(obj, &["spec", "attacher"]).into(),
            text(obj, &["spec", "source", "persistentVolumeName"]).into(),
            text(obj, &["spec", "nodeName"]).into(),
            boolean(obj, &["status", "attached"]).into(),
            age(obj, now),
        ]),
        EndpointSlices => cells([
            name(obj),
            text(obj, &["addressType"]).into(),
            format_discovery_ports(array(obj, &["ports"])).into(),
            format_discovery_endpoints(array(obj, &["endpoints"])).into(),
            age(obj, now),
        ]),
        CsiNodes => cells([
            name(obj),
            (array(obj, &["spec", "drivers"]).len() as i64).into(),
            age(obj, now),
        ]),
        CsiDrivers => {
            let token_requests = match get(obj, &["spec", "tokenRequests"]) {
                Some(Value::Array(requests)) => requests
                    .iter()
                    .map(|r| text(r, &["audience"]))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => "<unset>".to_string(),
            };
            let modes: Vec<&str> = array(obj, &["spec", "volumeLifecycleModes"])
                .iter()
                .filter_map(Value::as_str)
                .collect();
            cells([
                name(obj),
                get(obj, &["spec", "attachRequired"])
                    .and_then(Value::as_bool)
                    .unwrap_or(true)
                    .into(),
                boolean(obj, &["spec", "podInfoOnMount"]).into(),
                boolean(obj, &["spec", "storageCapacity"]).into(),
                token_requests.into(),
                boolean(obj, &["spec", "requiresRepublish"]).into(),
                non_empty_or(&modes.join(","), "<none>").into(),
                age(obj, now),
            ])
        }
        CsiStorageCapacities => cells([
            name(obj),
            text(obj, &["storageClassName"]).into(),
            get(obj, &["capacity"])
                .map_or_else(|| "<unset>".to_string(), quantity)
                .into(),
        ]),
        MutatingWebhookConfigurations | ValidatingWebhookConfigurations => cells([
            name(obj),
            (array(obj, &["webhooks"]).len() as i64).into(),
            age(obj, now),
        ]),
        ValidatingAdmissionPolicies => {
            let param_kind = match get(obj, &["spec", "paramKind"]) {
                Some(p) => format!("{}/{}", text(p, &["apiVersion"]), text(p, &["kind"])),
                None => "<unset>".to_string(),
            };
            cells([
                name(obj),
                (array(obj, &["spec", "validations"]).len() as i64).into(),
                param_kind.into(),
                age(obj, now),
            ])
        }
        ValidatingAdmissionPolicyBindings => {
            let param = match get(obj, &["spec", "paramRef"]) {
                Some(p) if !text(p, &["name"]).is_empty() => {
                    let ns = text(p, &["namespace"]);
                    // Upstream cannot tell whether the param is cluster-scoped, so a
                    // missing namespace prints as "*".
                    format!("{}/{}", non_empty_or(ns, "*"), text(p, &["name"]))
                }
                Some(p) => match get(p, &["selector"]) {
                    Some(sel) => LabelSelector::from_label_selector_json(sel)
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                    None => "<unset>".to_string(),
                },
                None => "<unset>".to_string(),
            };
            cells([
                name(obj),
                text(obj, &["spec", "policyName"]).into(),
                param.into(),
                age(obj, now),
            ])
        }
        ServiceCidrs => {
            let cidrs: Vec<&str> = array(obj, &["spec", "cidrs"])
                .iter()
                .filter_map(Value::as_str)
                .collect();
            cells([name(obj), cidrs.join(",").into(), age(obj, now)])
        }
        IpAddresses => {
            let parent = match get(obj, &["spec", "parentRef"]) {
                Some(p) => {
                    let resource = text(p, &["resource"]);
                    let group = text(p, &["group"]);
                    let mut out = if group.is_empty() {
                        resource.to_lowercase()
                    } else {
                        format!("{resource}.{group}").to_lowercase()
                    };
                    let ns = text(p, &["namespace"]);
                    if !ns.is_empty() {
                        out.push('/');
                        out.push_str(ns);
                    }
                    out.push('/');
                    out.push_str(text(p, &["name"]));
                    out
                }
                None => "<none>".to_string(),
            };
            cells([name(obj), parent.into()])
        }
        Default => cells([name(obj), created_at(obj).into()]),
        Custom => cells([name(obj), age(obj, now)]),
    }
}

fn cells<const N: usize>(values: [Value; N]) -> Vec<Value> {
    values.into()
}

/// The row conditions upstream attaches: pods that have run to completion are marked
/// Completed, which lets clients hide them.
fn row_conditions(group: &str, resource: &str, obj: &Value) -> Option<Value> {
    if printer(group, resource) != Printer::Pods {
        return None;
    }
    let (reason, message) = match text(obj, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

// ---------------------------------------------------------------------------------------------
// The Table
// ---------------------------------------------------------------------------------------------

/// The metav1.Table for a list of built-in objects (or one object as a one-item list). The
/// caller fills `metadata.resourceVersion` and `metadata.continue`. Without `with_columns`
/// (TableOptions `noHeaders`, as for watch events after the first) `columnDefinitions` is
/// `null`, as upstream sends it. Custom resources with printer columns use
/// [`custom_table`] instead.
pub fn table(
    group: &str,
    resource: &str,
    list_items: &[Value],
    include_object: IncludeObject,
    now_unix_secs: i64,
    with_columns: bool,
) -> Value {
    let columns = if with_columns {
        Value::Array(column_definitions(group, resource))
    } else {
        Value::Null
    };
    let rows = list_items
        .iter()
        .map(|obj| {
            row(
                row_cells(group, resource, obj, now_unix_secs),
                row_conditions(group, resource, obj),
                obj,
                include_object,
            )
        })
        .collect();
    table_value(columns, rows)
}

fn table_value(columns: Value, rows: Vec<Value>) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn row(cells: Vec<Value>, conditions: Option<Value>, obj: &Value, include: IncludeObject) -> Value {
    let mut row = Map::new();
    row.insert("cells".to_string(), Value::Array(cells));
    if let Some(c) = conditions {
        row.insert("conditions".to_string(), c);
    }
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    };
    row.insert("object".to_string(), object);
    Value::Object(row)
}

// ---------------------------------------------------------------------------------------------
// Custom resources: additionalPrinterColumns
// ---------------------------------------------------------------------------------------------

/// The columns a CRD version declares, or upstream's default (a single Age column from
/// `.metadata.creationTimestamp`) when it declares none.
fn effective_printer_columns(printer_columns: &[Value]) -> Vec<Value> {
    if printer_columns.is_empty() {
        vec![json!({
            "name": "Age",
            "type": "date",
            "description": doc("ObjectMeta.creationTimestamp"),
            "jsonPath": ".metadata.creationTimestamp",
        })]
    } else {
        printer_columns.to_vec()
    }
}

/// The column definitions of a custom resource: Name, then the CRD version's
/// additionalPrinterColumns (`name`, `type`, `format`, `description`, `priority`,
/// `jsonPath`), or Name and Age when it has none. As upstream, no Age column is added to
/// columns the CRD declares.
pub fn custom_column_definitions(printer_columns: &[Value]) -> Vec<Value> {
    let mut cols = vec![name_col()];
    for c in effective_printer_columns(printer_columns) {
        let json_path = text(&c, &["jsonPath"]);
        let description = match text(&c, &["description"]) {
            "" => format!("Custom resource definition column (in JSONPath format): {json_path}"),
            d => d.to_string(),
        };
        cols.push(column(
            text(&c, &["name"]),
            text(&c, &["type"]),
            text(&c, &["format"]),
            int(&c, &["priority"]),
            &description,
        ));
    }
    cols
}

/// The cells of a custom resource's row, in the order of [`custom_column_definitions`].
/// Each column's JSONPath is evaluated against the object; as upstream, only the first
/// result is printed, a missing value is `null`, and the cell is converted by the column
/// type (a `date` becomes an age like `5m`).
pub fn custom_columns(printer_columns: &[Value], obj: &Value, now_unix_secs: i64) -> Vec<Value> {
    let mut out = vec![name(obj)];
    for c in effective_printer_columns(printer_columns) {
        let Some(path) = jsonpath::parse(text(&c, &["jsonPath"])) else {
            out.push(Value::Null);
            continue;
        };
        let results = jsonpath::eval(&path, obj);
        let Some(first) = results.first() else {
            out.push(Value::Null);
            continue;
        };
        out.push(custom_cell(text(&c, &["type"]), first, now_unix_secs));
    }
    out
}

/// The Table of a custom resource list; see [`table`] for the arguments.
pub fn custom_table(
    printer_columns: &[Value],
    list_items: &[Value],
    include_object: IncludeObject,
    now_unix_secs: i64,
    with_columns: bool,
) -> Value {
    let columns = if with_columns {
        Value::Array(custom_column_definitions(printer_columns))
    } else {
        Value::Null
    };
    let rows = list_items
        .iter()
        .map(|obj| {
            row(
                custom_columns(printer_columns, obj, now_unix_secs),
                None,
                obj,
                include_object,
            )
        })
        .collect();
    table_value(columns, rows)
}

/// Upstream's `cellForJSONValue`, plus its text printing of `string` columns.
fn custom_cell(ty: &str, value: &Value, now: i64) -> Value {
    match ty {
        "string" => Value::String(match value {
            Value::String(s) => s.clone(),
            Value::Null => "<no value>".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => go_number(n),
            other => other.to_string(),
        }),
        "integer" => match value {
            Value::Number(n) => match n.as_i64() {
                Some(i) => i.into(),
                None => n.as_f64().map_or(Value::Null, |f| (f as i64).into()),
            },
            _ => Value::Null,
        },
        "number" => match value.as_f64() {
            Some(f) => json!(f),
            None => Value::Null,
        },
        "boolean" => match value {
            Value::Bool(b) => Value::Bool(*b),
            _ => Value::Null,
        },
        "date" => match value {
            Value::String(s) if s.is_empty() || s == "null" => "<unknown>".into(),
            Value::String(s) => match parse_rfc3339(s) {
                Some(t) => human_duration(elapsed(t, now)).into(),
                None => "<invalid>".into(),
            },
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// Go's `%v` of a JSON number: integers as such, floats in the shortest form with an
/// exponent outside [1e-4, 1e21).
fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = match exp.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', exp),
                };
                format!("{mantissa}e{sign}{digits:0>2}")
            }
            None => s,
        }
    } else {
        format!("{f}")
    }
}

/// The JSONPath subset CRD printer columns use: `.a.b`, `['a.b']`, `[0]`, `[-1]`, `[*]`,
/// `.*`, `[1:3]`, `..name` and filters such as `[?(@.type=="Ready")]`.
mod jsonpath {
    use serde_json::Value;

    #[derive(Debug, Clone, PartialEq)]
    pub(super) enum Step {
        Field(String),
        Wildcard,
        Index(i64),
        Slice(Option<i64>, Option<i64>, Option<i64>),
        Recursive(String),
        Filter(Box<Filter>),
    }

    #[derive(Debug, Clone, PartialEq)]
    pub(super) struct Filter {
        left: Vec<Step>,
        comparison: Option<(Op, Operand)>,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Op {
        Eq,
        Ne,
        Lt,
        Le,
        Gt,
        Ge,
    }

    #[derive(Debug, Clone, PartialEq)]
    enum Operand {
        Literal(Value),
        Path(Vec<Step>),
    }

    /// Parses a printer column's jsonPath; `None` for anything outside the subset.
    pub(super) fn parse(path: &str) -> Option<Vec<Step>> {
        let mut p = path.trim();
        if let Some(inner) = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            p = inner.trim();
        }
        let p = p
            .strip_prefix('$')
            .or_else(|| p.strip_prefix('@'))
            .unwrap_or(p);
        let chars: Vec<char> = p.chars().collect();
        let (steps, end) = parse_steps(&chars, 0)?;
        (end == chars.len()).then_some(steps)
    }

    /// Parses steps from `i` until the end or a character that cannot continue a path.
    fn parse_steps(chars: &[char], mut i: usize) -> Option<(Vec<Step>, usize)> {
        let mut steps = Vec::new();
        // A path may start with a bare name: `status.replicas`.
        if chars.get(i).is_some_and(|c| is_name_char(*c)) {
            let (name, next) = parse_name(chars, i);
            steps.push(Step::Field(name));
            i = next;
        }
        while let Some(&c) = chars.get(i) {
            match c {
                '.' if chars.get(i + 1) == Some(&'.') => {
                    let (name, next) = parse_name(chars, i + 2);
                    if name.is_empty() {
                        return None;
                    }
                    steps.push(Step::Recursive(name));
                    i = next;
                }
                '.' => {
                    let (name, next) = parse_name(chars, i + 1);
                    match name.as_str() {
                        "" => {}
                        "*" => steps.push(Step::Wildcard),
                        _ => steps.push(Step::Field(name)),
                    }
                    i = next;
                }
                '[' => {
                    let close = find_close(chars, i)?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    steps.push(parse_bracket(inner.trim())?);
                    i = close + 1;
                }
                _ => break,
            }
        }
        Some((steps, i))
    }

    fn is_name_char(c: char) -> bool {
        c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | '*')
    }

    fn parse_name(chars: &[char], mut i: usize) -> (String, usize) {
        let start = i;
        while chars.get(i).is_some_and(|c| is_name_char(*c)) {
            i += 1;
        }
        (chars[start..i].iter().collect(), i)
    }

    /// The index of the `]` closing the `[` at `open`, skipping quotes and parentheses.
    fn find_close(chars: &[char], open: usize) -> Option<usize> {
        let mut quote: Option<char> = None;
        let mut depth = 0usize;
        for (j, &c) in chars.iter().enumerate().skip(open + 1) {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(') => depth += 1,
                (None, ')') => depth = depth.saturating_sub(1),
                (None, ']') if depth == 0 => return Some(j),
                _ => {}
            }
        }
        None
    }

    fn unquote(s: &str) -> Option<String> {
        let s = s.trim();
        let quoted =
            (s.starts_with('\'') && s.ends_with('\'')) || (s.starts_with('"') && s.ends_with('"'));
        (quoted && s.len() >= 2).then(|| s[1..s.len() - 1].to_string())
    }

    fn parse_bracket(inner: &str) -> Option<Step> {
        if inner == "*" {
            return Some(Step::Wildcard);
        }
        if let Some(key) = unquote(inner) {
            return Some(Step::Field(key));
        }
        if let Some(filter) = inner.strip_prefix('?') {
            let body = filter.trim().strip_prefix('(')?.strip_suffix(')')?;
            return Some(Step::Filter(Box::new(parse_filter(body.trim())?)));
        }
        if inner.contains(':') {
            let parts: Vec<&str> = inner.split(':').collect();
            if parts.len() > 3 {
                return None;
            }
            let num = |s: Option<&&str>| -> Option<Option<i64>> {
                match s.map(|s| s.trim()) {
                    None | Some("") => Some(None),
                    Some(n) => n.parse().ok().map(Some),
                }
            };
            return Some(Step::Slice(
                num(parts.first())?,
                num(parts.get(1))?,
                num(parts.get(2))?,
            ));
        }
        inner.parse().ok().map(Step::Index)
    }

    fn parse_filter(body: &str) -> Option<Filter> {
        let chars: Vec<char> = body.chars().collect();
        let start = match chars.first() {
            Some('@') => 1,
            _ => return None,
        };
        let (left, mut i) = parse_steps(&chars, start)?;
        while chars.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        if i == chars.len() {
            return Some(Filter {
                left,
                comparison: None,
            });
        }
        let rest: String = chars[i..].iter().collect();
        let (op, len) = [
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("<", Op::Lt),
            (">", Op::Gt),
        ]
        .iter()
        .find(|(s, _)| rest.starts_with(s))
        .map(|(s, op)| (*op, s.len()))?;
        let right = rest[len..].trim();
        let operand = if let Some(s) = unquote(right) {
            Operand::Literal(Value::String(s))
        } else if let Some(path) = right.strip_prefix('@') {
            let chars: Vec<char> = path.chars().collect();
            let (steps, end) = parse_steps(&chars, 0)?;
            if end != chars.len() {
                return None;
            }
            Operand::Path(steps)
        } else {
            Operand::Literal(serde_json::from_str(right).ok()?)
        };
        Some(Filter {
            left,
            comparison: Some((op, operand)),
        })
    }

    /// Evaluates the path; missing keys and out-of-range indexes yield no result, as
    /// upstream's printer columns allow missing keys.
    pub(super) fn eval<'a>(steps: &[Step], root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for step in steps {
            let mut next = Vec::new();
            for v in current {
                apply(step, v, &mut next);
            }
            current = next;
        }
        current
    }

    fn apply<'a>(step: &Step, v: &'a Value, out: &mut Vec<&'a Value>) {
        match step {
            Step::Field(name) => {
                if let Some(x) = v.as_object().and_then(|o| o.get(name)) {
                    out.push(x);
                }
            }
            Step::Wildcard => match v {
                Value::Object(o) => out.extend(o.values()),
                Value::Array(a) => out.extend(a.iter()),
                _ => {}
            },
            Step::Index(i) => {
                if let Value::Array(a) = v {
                    let len = a.len() as i64;
                    let idx = if *i < 0 { len.saturating_add(*i) } else { *i };
                    if (0..len).contains(&idx)
                        && let Some(x) = a.get(idx as usize)
                    {
                        out.push(x);
                    }
                }
            }
            Step::Slice(start, end, step) => {
                if let Value::Array(a) = v {
                    let len = a.len() as i64;
                    let clamp = |x: i64| {
                        if x < 0 {
                            len.saturating_add(x).max(0)
                        } else {
                            x.min(len)
                        }
                    };
                    let from = start.map_or(0, clamp);
                    let to = end.map_or(len, clamp);
                    let step = step.unwrap_or(1).max(1);
                    let mut i = from;
                    while i < to {
                        if let Some(x) = a.get(i as usize) {
                            out.push(x);
                        }
                        match i.checked_add(step) {
                            Some(n) => i = n,
                            None => break,
                        }
                    }
                }
            }
            Step::Recursive(name) => descend(name, v, out),
            Step::Filter(filter) => {
                if let Value::Array(a) = v {
                    out.extend(a.iter().filter(|item| filter.keeps(item)));
                }
            }
        }
    }

    fn descend<'a>(name: &str, v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Object(o) => {
                if let Some(x) = o.get(name) {
                    out.push(x);
                }
                for child in o.values() {
                    descend(name, child, out);
                }
            }
            Value::Array(a) => {
                for child in a {
                    descend(name, child, out);
                }
            }
            _ => {}
        }
    }

    impl Filter {
        fn keeps(&self, item: &Value) -> bool {
            let left = eval(&self.left, item);
            let Some((op, operand)) = &self.comparison else {
                return !left.is_empty();
            };
            let Some(left) = left.first() else {
                return false;
            };
            let right = match operand {
                Operand::Literal(v) => v,
                Operand::Path(steps) => match eval(steps, item).first() {
                    Some(v) => *v,
                    None => return false,
                },
            };
            compare(left, *op, right)
        }
    }

    fn compare(left: &Value, op: Op, right: &Value) -> bool {
        use std::cmp::Ordering;
        let ordering = match (left, right) {
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            (Value::Number(a), Value::Number(b)) => match (a.as_f64(), b.as_f64()) {
                (Some(a), Some(b)) => a.partial_cmp(&b),
                _ => None,
            },
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            _ => None,
        };
        match (ordering, op) {
            (None, Op::Ne) => true,
            (None, _) => false,
            (Some(o), Op::Eq) => o == Ordering::Equal,
            (Some(o), Op::Ne) => o != Ordering::Equal,
            (Some(o), Op::Lt) => o == Ordering::Less,
            (Some(o), Op::Le) => o != Ordering::Greater,
            (Some(o), Op::Gt) => o == Ordering::Greater,
            (Some(o), Op::Ge) => o != Ordering::Less,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-resource cell logic
// ---------------------------------------------------------------------------------------------

/// Upstream's `printPod`: READY counts ready containers (and started restartable init
/// containers) over containers plus sidecars; STATUS is the most specific reason from the
/// init containers, then the containers (last first), then deletion; RESTARTS says when
/// the last restart happened.
fn pod_cells(pod: &Value, now: i64) -> Vec<Value> {
    let init_specs = array(pod, &["spec", "initContainers"]);
    let restartable: BTreeSet<&str> = init_specs
        .iter()
        .filter(|c| text(c, &["restartPolicy"]) == "Always")
        .map(|c| text(c, &["name"]))
        .collect();
    let total = array(pod, &["spec", "containers"]).len() + restartable.len();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut last_restart: Option<i64> = None;
    let mut last_restartable_restart: Option<i64> = None;

    let phase = text(pod, &["status", "phase"]);
    let mut reason = non_empty_or(text(pod, &["status", "reason"]), phase).to_string();
    let conditions = array(pod, &["status", "conditions"]);
    if conditions
        .iter()
        .any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let finished =
        |c: &Value| get_str(c, &["lastState", "terminated", "finishedAt"]).and_then(parse_rfc3339);
    let mut initializing = false;
    for (i, c) in array(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        restarts = restarts.saturating_add(int(c, &["restartCount"]));
        last_restart = last_restart.max(finished(c));
        let is_restartable = restartable.contains(text(c, &["name"]));
        if is_restartable {
            restartable_restarts = restartable_restarts.saturating_add(int(c, &["restartCount"]));
            last_restartable_restart = last_restartable_restart.max(finished(c));
        }
        let terminated = get(c, &["state", "terminated"]);
        let waiting_reason = text(c, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if is_restartable && boolean(c, &["started"]) {
            if boolean(c, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = match text(t, &["reason"]) {
                "" if int(t, &["signal"]) != 0 => format!("Init:Signal:{}", int(t, &["signal"])),
                "" => format!("Init:ExitCode:{}", int(t, &["exitCode"])),
                r => format!("Init:{r}"),
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .any(|c| text(c, &["type"]) == "Initialized" && text(c, &["status"]) == "True");
    if !initializing || initialized {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in array(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts = restarts.saturating_add(int(c, &["restartCount"]));
            last_restart = last_restart.max(finished(c));
            let waiting_reason = text(c, &["state", "waiting", "reason"]);
            let terminated = get(c, &["state", "terminated"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match text(t, &["reason"]) {
                    "" if int(t, &["signal"]) != 0 => format!("Signal:{}", int(t, &["signal"])),
                    "" => format!("ExitCode:{}", int(t, &["exitCode"])),
                    r => r.to_string(),
                };
            } else if boolean(c, &["ready"]) && get(c, &["state", "running"]).is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed while another still runs is not Completed.
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| text(c, &["type"]) == "Ready" && text(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = get(pod, &["metadata", "deletionTimestamp"]).is_some();
    if deleting && text(pod, &["status", "reason"]) == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(elapsed(t, now))),
        _ => restarts.to_string(),
    };

    let mut pod_ip = text(pod, &["status", "podIPs", "0", "ip"]);
    if pod_ip.is_empty() {
        pod_ip = text(pod, &["status", "podIP"]);
    }
    let gates = array(pod, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_conditions = gates
            .iter()
            .filter(|g| {
                let wanted = text(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| text(c, &["type"]) == wanted)
                    .is_some_and(|c| text(c, &["status"]) == "True")
            })
            .count();
        format!("{true_conditions}/{}", gates.len())
    };
    cells([
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_text.into(),
        age(pod, now),
        non_empty_or(pod_ip, "<none>").into(),
        non_empty_or(text(pod, &["spec", "nodeName"]), "<none>").into(),
        non_empty_or(text(pod, &["status", "nominatedNodeName"]), "<none>").into(),
        readiness_gates.into(),
    ])
}

fn job_cells(job: &Value, now: i64) -> Vec<Value> {
    let succeeded = int(job, &["status", "succeeded"]);
    let completions = match int_opt(job, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(job, &["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = get_str(job, &["status", "startTime"]).and_then(parse_rfc3339);
    let completion = get_str(job, &["status", "completionTime"]).and_then(parse_rfc3339);
    let duration = match (start, completion) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(elapsed(s, now)),
        (Some(s), Some(c)) => human_duration(elapsed(s, c)),
    };
    // The first condition of a type decides whether the job has it.
    let has = |ty: &str| {
        array(job, &["status", "conditions"])
            .iter()
            .find(|c| text(c, &["type"]) == ty)
            .is_some_and(|c| text(c, &["status"]) == "True")
    };
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if get(job, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = containers_and_images(job, &["spec", "template", "spec", "containers"]);
    cells([
        name(job),
        status.into(),
        completions.into(),
        duration.into(),
        age(job, now),
        names.into(),
        images.into(),
        format_label_selector(get(job, &["spec", "selector"])).into(),
    ])
}

fn cron_job_cells(cj: &Value, now: i64) -> Vec<Value> {
    let last_schedule = match get(cj, &["status", "lastScheduleTime"]) {
        Some(t) => since(t.as_str(), now),
        None => "<none>".to_string(),
    };
    // Upstream prints the *bool as text, not as a JSON boolean.
    let suspend = match get(cj, &["spec", "suspend"]).and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let template = &[
        "spec",
        "jobTemplate",
        "spec",
        "template",
        "spec",
        "containers",
    ];
    let (names, images) = containers_and_images(cj, template);
    cells([
        name(cj),
        text(cj, &["spec", "schedule"]).into(),
        get_str(cj, &["spec", "timeZone"])
            .unwrap_or("<none>")
            .into(),
        suspend.into(),
        (array(cj, &["status", "active"]).len() as i64).into(),
        last_schedule.into(),
        age(cj, now),
        names.into(),
        images.into(),
        format_label_selector(get(cj, &["spec", "jobTemplate", "spec", "selector"])).into(),
    ])
}

fn service_cells(svc: &Value, now: i64) -> Vec<Value> {
    // Stored services are defaulted; an undefaulted one is treated as the default type.
    let svc_type = get_str(svc, &["spec", "type"]).unwrap_or("ClusterIP");
    let mut cluster_ip = text(svc, &["spec", "clusterIPs", "0"]);
    if cluster_ip.is_empty() {
        cluster_ip = text(svc, &["spec", "clusterIP"]);
    }
    let external_ips: Vec<&str> = array(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let external = match svc_type {
        "ClusterIP" | "NodePort" => non_empty_or(&external_ips.join(","), "<none>").to_string(),
        "LoadBalancer" => {
            let lb = load_balancer_addresses(svc);
            if !external_ips.is_empty() {
                let mut all: Vec<&str> = lb.split(',').filter(|s| !s.is_empty()).collect();
                all.extend(external_ips.iter());
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => text(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = array(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = int(p, &["port"]);
            let protocol = get_str(p, &["protocol"]).unwrap_or("TCP");
            match int(p, &["nodePort"]) {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    cells([
        name(svc),
        svc_type.into(),
        non_empty_or(cluster_ip, "<none>").into(),
        external.into(),
        non_empty_or(&ports.join(","), "<none>").into(),
        age(svc, now),
        format_labels(get(svc, &["spec", "selector"])).into(),
    ])
}

/// The sorted, deduplicated IPs (or else hostnames) of `status.loadBalancer.ingress`,
/// unabbreviated because the server prints wide.
fn load_balancer_addresses(obj: &Value) -> String {
    let addresses: BTreeSet<&str> = array(obj, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| {
            let ip = text(i, &["ip"]);
            let hostname = text(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip)
            } else if !hostname.is_empty() {
                Some(hostname)
            } else {
                None
            }
        })
        .collect();
    addresses.into_iter().collect::<Vec<_>>().join(",")
}

fn format_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = text(rule, &["host"]);
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".to_string();
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", rules.len().saturating_sub(MAX))
    } else {
        joined
    }
}

/// Upstream's `formatEndpoints` for all ports: up to three `ip:port` (or bare IPs for
/// port-less subsets), then `+ N more...`.
fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = array(ep, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addresses = array(ss, &["addresses"]);
        let ports = array(ss, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(text(a, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(text(a, &["ip"]), int(port, &["port"])));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count.saturating_sub(MAX))
    } else {
        joined
    }
}

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn list_with_more(list: Vec<String>, more: bool, count: usize, max: usize) -> String {
    let joined = list.join(",");
    if more {
        return format!("{joined} + {} more...", count.saturating_sub(max));
    }
    non_empty_or(&joined, "<unset>").to_string()
}

fn format_discovery_ports(ports: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut more = false;
    for p in ports {
        if list.len() < MAX {
            let label = match (int_opt(p, &["port"]), get_str(p, &["name"])) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            };
            list.push(label);
        } else if list.len() == MAX {
            more = true;
        }
    }
    list_with_more(list, more, ports.len(), MAX)
}

fn format_discovery_endpoints(endpoints: &[Value]) -> String {
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut more = false;
    let mut count = 0;
    for e in endpoints {
        for a in array(e, &["addresses"]) {
            if list.len() < MAX {
                list.push(a.as_str().unwrap_or("").to_string());
            } else if list.len() == MAX {
                more = true;
            }
            count += 1;
        }
    }
    list_with_more(list, more, count, MAX)
}

fn node_cells(node: &Value, now: i64) -> Vec<Value> {
    // Only the Ready condition is shown; the last one of that type wins, as in upstream's map.
    let mut status = match array(node, &["status", "conditions"])
        .iter()
        .rfind(|c| text(c, &["type"]) == "Ready")
    {
        Some(c) if text(c, &["status"]) == "True" => vec!["Ready"],
        Some(_) => vec!["NotReady"],
        None => vec!["Unknown"],
    };
    if boolean(node, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    if let Some(Value::Object(labels)) = get(node, &["metadata", "labels"]) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str().filter(|v| !v.is_empty())
            {
                roles.insert(v.to_string());
            }
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");
    let address = |ty: &str| {
        array(node, &["status", "addresses"])
            .iter()
            .find(|a| text(a, &["type"]) == ty)
            .map_or("<none>", |a| text(a, &["address"]))
    };
    let info = |k: &str| non_empty_or(text(node, &["status", "nodeInfo", k]), "<unknown>");
    cells([
        name(node),
        status.join(",").into(),
        non_empty_or(&roles, "<none>").into(),
        age(node, now),
        text(node, &["status", "nodeInfo", "kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage").into(),
        info("kernelVersion").into(),
        info("containerRuntimeVersion").into(),
    ])
}

/// Upstream's `printEvent` (wide), for the core/v1 and the events.k8s.io/v1 shape; the
/// latter is what upstream converts to the core type before printing.
fn event_cells(ev: &Value, v1: bool, now: i64) -> Vec<Value> {
    let field = |core: &str, events_v1: &str| {
        let (first, second) = if v1 {
            (events_v1, core)
        } else {
            (core, events_v1)
        };
        get(ev, &[first]).or_else(|| get(ev, &[second]))
    };
    let ts = |core: &str, events_v1: &str| field(core, events_v1).and_then(Value::as_str);
    let mut first_seen = since(ts("firstTimestamp", "deprecatedFirstTimestamp"), now);
    if ts("firstTimestamp", "deprecatedFirstTimestamp").is_none_or(str::is_empty) {
        first_seen = since(get_str(ev, &["eventTime"]), now);
    }
    let mut last_seen = since(ts("lastTimestamp", "deprecatedLastTimestamp"), now);
    if ts("lastTimestamp", "deprecatedLastTimestamp").is_none_or(str::is_empty) {
        last_seen = first_seen.clone();
    }
    let mut count = field("count", "deprecatedCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(series) = get(ev, &["series"]) {
        last_seen = since(get_str(series, &["lastObservedTime"]), now);
        count = int(series, &["count"]);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let null = Value::Null;
    let involved = field("involvedObject", "regarding").unwrap_or(&null);
    let kind = text(involved, &["kind"]).to_lowercase();
    let target = match text(involved, &["name"]) {
        "" => kind,
        n => format!("{kind}/{n}"),
    };
    let source = field("source", "deprecatedSource").unwrap_or(&null);
    let component = non_empty_or(
        text(source, &["component"]),
        field("reportingComponent", "reportingController")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let instance = non_empty_or(
        text(source, &["host"]),
        get_str(ev, &["reportingInstance"]).unwrap_or(""),
    );
    let source_text = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    let message = field("message", "note")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    cells([
        last_seen.into(),
        text(ev, &["type"]).into(),
        text(ev, &["reason"]).into(),
        target.into(),
        text(involved, &["fieldPath"]).into(),
        source_text.into(),
        message.into(),
        first_seen.into(),
        count.into(),
        name(ev),
    ])
}

/// Upstream's `GetAccessModesAsString`: fixed order, duplicates dropped.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|x| x.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class, preferring the beta annotation as upstream does.
fn storage_class(obj: &Value) -> String {
    get(
        obj,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    )
    .and_then(Value::as_str)
    .unwrap_or_else(|| text(obj, &["spec", "storageClassName"]))
    .to_string()
}

fn persistent_volume_cells(pv: &Value, now: i64) -> Vec<Value> {
    let claim = match get(pv, &["spec", "claimRef"]) {
        Some(c) => format!("{}/{}", text(c, &["namespace"]), text(c, &["name"])),
        None => String::new(),
    };
    let phase = if get(pv, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else {
        text(pv, &["status", "phase"])
    };
    cells([
        name(pv),
        quantity_at(pv, &["spec", "capacity", "storage"]).into(),
        access_modes(array(pv, &["spec", "accessModes"])).into(),
        text(pv, &["spec", "persistentVolumeReclaimPolicy"]).into(),
        phase.into(),
        claim.into(),
        storage_class(pv).into(),
        get_str(pv, &["spec", "volumeAttributesClassName"])
            .unwrap_or("<unset>")
            .into(),
        text(pv, &["status", "reason"]).into(),
        age(pv, now),
        get_str(pv, &["spec", "volumeMode"])
            .unwrap_or("<unset>")
            .into(),
    ])
}

fn persistent_volume_claim_cells(pvc: &Value, now: i64) -> Vec<Value> {
    let phase = if get(pvc, &["metadata", "deletionTimestamp"]).is_some() {
        "Terminating"
    } else {
        text(pvc, &["status", "phase"])
    };
    let volume = text(pvc, &["spec", "volumeName"]);
    // Capacity and access modes are those of the bound volume, so only once bound.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity_at(pvc, &["status", "capacity", "storage"]),
            access_modes(array(pvc, &["status", "accessModes"])),
        )
    };
    cells([
        name(pvc),
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class(pvc).into(),
        get_str(pvc, &["spec", "volumeAttributesClassName"])
            .unwrap_or("<unset>")
            .into(),
        age(pvc, now),
        get_str(pvc, &["spec", "volumeMode"])
            .unwrap_or("<unset>")
            .into(),
    ])
}

/// The metric specs and statuses in the autoscaling/v2 shape; an autoscaling/v1 object's
/// CPU target is converted the way upstream converts it.
fn hpa_metrics(hpa: &Value) -> (Vec<Value>, Vec<Value>) {
    if get(hpa, &["spec", "metrics"]).is_some() {
        return (
            array(hpa, &["spec", "metrics"]).to_vec(),
            array(hpa, &["status", "currentMetrics"]).to_vec(),
        );
    }
    let mut specs = Vec::new();
    let mut statuses = Vec::new();
    if let Some(target) = int_opt(hpa, &["spec", "targetCPUUtilizationPercentage"]) {
        specs.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target}}}));
    }
    if let Some(current) = int_opt(hpa, &["status", "currentCPUUtilizationPercentage"]) {
        statuses.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": current}}}));
    }
    (specs, statuses)
}

/// Upstream's `formatHPAMetrics`: `current/target` per metric, statuses matched by index,
/// at most two shown.
fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let status_of = |key: &str| status.and_then(|s| get(s, &[key]));
        let q = |v: Option<&Value>| v.map_or_else(|| "<nil>".to_string(), quantity);
        let entry = match text(spec, &["type"]) {
            "External" | "Object" => {
                let key = if text(spec, &["type"]) == "External" {
                    "external"
                } else {
                    "object"
                };
                let target = get(spec, &[key, "target"]);
                match target.and_then(|t| get(t, &["averageValue"])) {
                    Some(avg) => {
                        let current = status_of(key)
                            .and_then(|s| get(s, &["current", "averageValue"]))
                            .map_or_else(|| "<unknown>".to_string(), quantity);
                        format!("{current}/{} (avg)", quantity(avg))
                    }
                    None => {
                        let current = status_of(key).map_or_else(
                            || "<unknown>".to_string(),
                            |s| q(get(s, &["current", "value"])),
                        );
                        format!("{current}/{}", q(target.and_then(|t| get(t, &["value"]))))
                    }
                }
            }
            "Pods" => {
                let current = status_of("pods").map_or_else(
                    || "<unknown>".to_string(),
                    |s| q(get(s, &["current", "averageValue"])),
                );
                format!(
                    "{current}/{}",
                    q(get(spec, &["pods", "target", "averageValue"]))
                )
            }
            "Resource" | "ContainerResource" => {
                let key = if text(spec, &["type"]) == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let resource_name = text(spec, &[key, "name"]);
                match get(spec, &[key, "target", "averageValue"]) {
                    Some(avg) => {
                        let current = status_of(key).map_or_else(
                            || "<unknown>".to_string(),
                            |s| q(get(s, &["current", "averageValue"])),
                        );
                        format!("{resource_name}: {current}/{}", quantity(avg))
                    }
                    None => {
                        let current = status_of(key)
                            .and_then(|s| int_opt(s, &["current", "averageUtilization"]))
                            .map_or_else(|| "<unknown>".to_string(), |u| format!("{u}%"));
                        let target = int_opt(spec, &[key, "target", "averageUtilization"])
                            .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                        format!("{resource_name}: {current}/{target}")
                    }
                }
            }
            _ => "<unknown type>".to_string(),
        };
        list.push(entry);
    }
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        return format!("{} + {} more...", list.join(", "), count - MAX);
    }
    list.join(", ")
}

fn hpa_cells(hpa: &Value, now: i64) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        text(hpa, &["spec", "scaleTargetRef", "kind"]),
        text(hpa, &["spec", "scaleTargetRef", "name"])
    );
    let (specs, statuses) = hpa_metrics(hpa);
    let min_pods = int_opt(hpa, &["spec", "minReplicas"])
        .map_or_else(|| "<unset>".to_string(), |n| n.to_string());
    cells([
        name(hpa),
        reference.into(),
        format_hpa_metrics(&specs, &statuses).into(),
        min_pods.into(),
        int(hpa, &["spec", "maxReplicas"]).into(),
        int(hpa, &["status", "currentReplicas"]).into(),
        age(hpa, now),
    ])
}

/// Upstream's `SubjectsStrings`: users, groups and `namespace/name` service accounts.
fn subjects(binding: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut service_accounts = Vec::new();
    for s in array(binding, &["subjects"]) {
        let subject_name = text(s, &["name"]).to_string();
        match text(s, &["kind"]) {
            "ServiceAccount" => {
                service_accounts.push(format!("{}/{subject_name}", text(s, &["namespace"])));
            }
            "User" => users.push(subject_name),
            "Group" => groups.push(subject_name),
            _ => {}
        }
    }
    (users, groups, service_accounts)
}

fn csr_condition(csr: &Value) -> String {
    let conditions = array(csr, &["status", "conditions"]);
    let has = |ty: &str| conditions.iter().any(|c| text(c, &["type"]) == ty);
    let mut status = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        status.push_str(",Failed");
    }
    if !text(csr, &["status", "certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    status
}

/// `kind.group/name` (lower case) of the controlling owner, or `<none>`.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = array(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| boolean(o, &["controller"]))
    else {
        return "<none>".to_string();
    };
    let api_version = text(owner, &["apiVersion"]);
    let group = match api_version.split_once('/') {
        Some((g, _)) => g,
        None => "",
    };
    let kind = text(owner, &["kind"]);
    let owner_name = text(owner, &["name"]);
    if kind.is_empty() && group.is_empty() {
        return owner_name.to_string();
    }
    let group_kind = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

fn resource_quota_columns(rq: &Value) -> (String, String) {
    let mut request = Vec::new();
    let mut limit = Vec::new();
    if let Some(Value::Object(hard)) = get(rq, &["status", "hard"]) {
        // Map keys are already sorted, as upstream sorts the resource names.
        for (resource, hard_qty) in hard {
            let used = get(rq, &["status", "used"])
                .and_then(|u| u.get(resource.as_str()))
                .map_or_else(|| "0".to_string(), quantity);
            let entry = format!("{resource}: {used}/{}", quantity(hard_qty));
            let is_limit = resource
                .split_once('.')
                .is_some_and(|(first, _)| first == "limits");
            if is_limit {
                limit.push(entry);
            } else {
                request.push(entry);
            }
        }
    }
    (request.join(", "), limit.join(", "))
}

// ---------------------------------------------------------------------------------------------
// Shared cell helpers
// ---------------------------------------------------------------------------------------------

/// The value at `path`, treating `null` as absent. Numeric steps index arrays.
fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = match cur {
            Value::Object(o) => o.get(*key)?,
            Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!cur.is_null()).then_some(cur)
}

fn get_str<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

/// The string at `path`, "" when absent, as Go's zero value.
fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get_str(v, path).unwrap_or("")
}

fn int_opt(v: &Value, path: &[&str]) -> Option<i64> {
    match get(v, path)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        _ => None,
    }
}

/// The integer at `path`, 0 when absent.
fn int(v: &Value, path: &[&str]) -> i64 {
    int_opt(v, path).unwrap_or(0)
}

fn boolean(v: &Value, path: &[&str]) -> bool {
    get(v, path).and_then(Value::as_bool).unwrap_or(false)
}

fn array<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    match get(v, path) {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

fn object_len(v: &Value, path: &[&str]) -> usize {
    match get(v, path) {
        Some(Value::Object(o)) => o.len(),
        _ => 0,
    }
}

fn non_empty_or<'a>(s: &'a str, placeholder: &'a str) -> &'a str {
    if s.is_empty() { placeholder } else { s }
}

fn name(obj: &Value) -> Value {
    text(obj, &["metadata", "name"]).into()
}

/// `spec.replicas`, which upstream defaults to 1 before anything is stored.
fn replicas(obj: &Value) -> i64 {
    int_opt(obj, &["spec", "replicas"]).unwrap_or(1)
}

/// A resource.Quantity as stored: a string, or a bare JSON number.
fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The quantity at `path`; an absent quantity is upstream's zero value, "0".
fn quantity_at(v: &Value, path: &[&str]) -> String {
    get(v, path).map_or_else(|| "0".to_string(), quantity)
}

fn int_or_string_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Container names and images, each comma-joined.
fn containers_and_images(obj: &Value, path: &[&str]) -> (String, String) {
    let containers = array(obj, path);
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// Upstream's `labels.FormatLabels`: sorted `k=v` pairs, or `<none>`.
fn format_labels(map: Option<&Value>) -> String {
    let pairs: Vec<String> = match map {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect(),
        _ => Vec::new(),
    };
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

/// Upstream's `metav1.FormatLabelSelector`: the canonical selector, `<none>` for an empty or
/// missing one, `<error>` for one that does not convert.
fn format_label_selector(sel: Option<&Value>) -> String {
    match LabelSelector::from_label_selector_json(sel.unwrap_or(&Value::Null)) {
        Ok(s) => {
            let text = s.to_string();
            if text.is_empty() {
                "<none>".to_string()
            } else {
                text
            }
        }
        Err(_) => "<error>".to_string(),
    }
}

/// Upstream's `translateTimestampSince`: the age of a timestamp, `<unknown>` when unset.
fn since(timestamp: Option<&str>, now: i64) -> String {
    match timestamp.and_then(parse_rfc3339) {
        Some(t) => human_duration(elapsed(t, now)),
        None => "<unknown>".to_string(),
    }
}

fn age(obj: &Value, now: i64) -> Value {
    since(get_str(obj, &["metadata", "creationTimestamp"]), now).into()
}

/// The creation timestamp in UTC RFC 3339, as the default table prints it; an unset one is
/// Go's zero time.
fn created_at(obj: &Value) -> String {
    match get_str(obj, &["metadata", "creationTimestamp"]).and_then(parse_rfc3339) {
        Some(t) => format_rfc3339(t),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}

/// Seconds from `from` to `to`, limited like Go's time.Duration (about 292 years) so that
/// ancient or far-future timestamps print as upstream prints them, and never overflow.
fn elapsed(from: i64, to: i64) -> i64 {
    const MAX_DURATION_SECS: i64 = i64::MAX / 1_000_000_000;
    to.saturating_sub(from)
        .clamp(-MAX_DURATION_SECS, MAX_DURATION_SECS)
}

/// Upstream's `duration.HumanDuration`: two or three significant figures, e.g. `45s`,
/// `5m30s`, `45m`, `5h30m`, `20h`, `3d4h`, `45d`, `3y45d`, `10y`. Up to a second of clock skew
/// reads `0s`; anything further in the future is `<invalid>`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".to_string();
    }
    if secs < 0 {
        return "0s".to_string();
    }
    if secs < 60 * 2 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Seconds since the Unix epoch of an RFC 3339 timestamp (`2024-05-01T10:00:00Z`, with
/// optional fraction and numeric offset), fractions truncated. `None` if malformed.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    };
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    let year = digits(0, 4)?;
    let month = digits(5, 2)?;
    let day = digits(8, 2)?;
    let hour = digits(11, 2)?;
    let minute = digits(14, 2)?;
    let second = digits(17, 2)?;
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' => {
            i += 1;
            0
        }
        sign @ (b'+' | b'-') => {
            let oh = digits(i + 1, 2)?;
            let om = digits(i + 4, 2)?;
            if !sep(i + 3, b":") || oh > 23 || om > 59 {
                return None;
            }
            i += 6;
            let off = oh * 3600 + om * 60;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    if i != b.len() {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------------------------
// Column descriptions
// ---------------------------------------------------------------------------------------------

/// The API documentation of the fields upstream's printers describe their columns with
/// (`SwaggerDoc()` of the Go types), from the Kubernetes 1.33 OpenAPI descriptions.
fn doc(key: &str) -> &'static str {
    match key {
        "ObjectMeta.name" => {
            "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
        }
        "ObjectMeta.creationTimestamp" => {
            "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
        }
        "PodStatus.podIP" => {
            "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."
        }
        "PodSpec.nodeName" => {
            "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"
        }
        "PodStatus.nominatedNodeName" => {
            "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled."
        }
        "PodSpec.readinessGates" => {
            "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"
        }
        "PodSpec.nodeSelector" => {
            "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"
        }
        "ReplicationControllerSpec.replicas" => {
            "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"
        }
        "ReplicationControllerStatus.replicas" => {
            "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"
        }
        "ReplicationControllerStatus.readyReplicas" => {
            "The number of ready replicas for this replication controller."
        }
        "ReplicationControllerSpec.selector" => {
            "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
        }
        "ServiceSpec.type" => {
            "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types"
        }
        "ServiceSpec.clusterIP" => {
            "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"
        }
        "ServiceSpec.externalIPs" => {
            "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system."
        }
        "ServiceSpec.ports" => {
            "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies"
        }
        "ServiceSpec.selector" => {
            "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/"
        }
        "Endpoints.subsets" => {
            "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service."
        }
        "NodeSystemInfo.kubeletVersion" => "Kubelet Version reported by the node.",
        "NodeStatus.addresses" => {
            "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP)."
        }
        "NodeSystemInfo.osImage" => {
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."
        }
        "NodeSystemInfo.kernelVersion" => {
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."
        }
        "NodeSystemInfo.containerRuntimeVersion" => {
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."
        }
        "Event.lastTimestamp" => {
            "The time at which the most recent occurrence of this event was recorded."
        }
        "Event.type" => {
            "Type of this event (Normal, Warning), new types could be added in the future"
        }
        "Event.reason" => {
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."
        }
        "Event.involvedObject" => "The object that this event is about.",
        "ObjectReference.fieldPath" => {
            "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object."
        }
        "Event.source" => {
            "The component reporting this event. Should be a short machine understandable string."
        }
        "Event.message" => "A human-readable description of the status of this operation.",
        "Event.firstTimestamp" => {
            "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"
        }
        "Event.count" => "The number of times this event has occurred.",
        "Secret.type" => {
            "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"
        }
        "Secret.data" => {
            "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"
        }
        "ServiceAccount.secrets" => {
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret"
        }
        "PersistentVolumeSpec.capacity" => {
            "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"
        }
        "PersistentVolumeSpec.accessModes" => {
            "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"
        }
        "PersistentVolumeSpec.persistentVolumeReclaimPolicy" => {
            "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"
        }
        "PersistentVolumeStatus.phase" => {
            "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"
        }
        "PersistentVolumeSpec.claimRef" => {
            "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"
        }
        "PersistentVolumeStatus.reason" => {
            "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."
        }
        "PersistentVolumeSpec.volumeMode" => {
            "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec."
        }
        "PersistentVolumeClaimStatus.phase" => {
            "phase represents the current phase of PersistentVolumeClaim."
        }
        "PersistentVolumeClaimSpec.volumeName" => {
            "volumeName is the binding reference to the PersistentVolume backing this claim."
        }
        "PersistentVolumeClaimStatus.capacity" => {
            "capacity represents the actual resources of the underlying volume."
        }
        "PersistentVolumeClaimStatus.accessModes" => {
            "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"
        }
        "PersistentVolumeClaimSpec.volumeMode" => {
            "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec."
        }
        "ConfigMap.data" => {
            "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process."
        }
        "ReplicaSetSpec.replicas" => {
            "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"
        }
        "ReplicaSetStatus.replicas" => {
            "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset"
        }
        "ReplicaSetStatus.readyReplicas" => {
            "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."
        }
        "ReplicaSetSpec.selector" => {
            "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
        }
        "DaemonSetStatus.desiredNumberScheduled" => {
            "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"
        }
        "DaemonSetStatus.currentNumberScheduled" => {
            "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"
        }
        "DaemonSetStatus.numberReady" => {
            "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."
        }
        "DaemonSetStatus.updatedNumberScheduled" => {
            "The total number of nodes that are running updated daemon pod"
        }
        "DaemonSetStatus.numberAvailable" => {
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"
        }
        "DaemonSetSpec.selector" => {
            "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
        }
        "DeploymentStatus.updatedReplicas" => {
            "Total number of non-terminating pods targeted by this deployment that have the desired template spec."
        }
        "DeploymentStatus.availableReplicas" => {
            "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment."
        }
        "DeploymentSpec.selector" => {
            "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels."
        }
        "ControllerRevision.revision" => {
            "Revision indicates the revision of the state represented by Data."
        }
        "JobStatus.succeeded" => {
            "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."
        }
        "JobSpec.selector" => {
            "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
        }
        "CronJobSpec.schedule" => {
            "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."
        }
        "CronJobSpec.timeZone" => {
            "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"
        }
        "CronJobSpec.suspend" => {
            "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."
        }
        "CronJobStatus.active" => "A list of pointers to currently running jobs.",
        "CronJobStatus.lastScheduleTime" => {
            "Information when was the last time the job was successfully scheduled."
        }
        "HorizontalPodAutoscalerSpec.scaleTargetRef" => {
            "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count."
        }
        "HorizontalPodAutoscalerSpec.metrics" => {
            "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond. If not set, the default metric will be set to 80% average CPU utilization."
        }
        "HorizontalPodAutoscalerSpec.minReplicas" => {
            "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available."
        }
        "HorizontalPodAutoscalerSpec.maxReplicas" => {
            "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas."
        }
        "HorizontalPodAutoscalerStatus.currentReplicas" => {
            "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."
        }
        "NetworkPolicySpec.podSelector" => {
            "podSelector selects the pods to which this NetworkPolicy object applies. The array of ingress rules is applied to any pods selected by this field. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace."
        }
        "RoleBinding.roleRef" => {
            "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable."
        }
        "ClusterRoleBinding.roleRef" => {
            "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable."
        }
        "CertificateSigningRequestSpec.signerName" => {
            "signerName indicates the requested signer, and is a qualified name.\n\nList/watch requests for CertificateSigningRequests can filter on this field using a \"spec.signerName=NAME\" fieldSelector.\n\nWell-known Kubernetes signers are:\n 1. \"kubernetes.io/kube-apiserver-client\": issues client certificates that can be used to authenticate to kube-apiserver.\n  Requests for this signer are never auto-approved by kube-controller-manager, can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 2. \"kubernetes.io/kube-apiserver-client-kubelet\": issues client certificates that kubelets use to authenticate to kube-apiserver.\n  Requests for this signer can be auto-approved by the \"csrapproving\" controller in kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n 3. \"kubernetes.io/kubelet-serving\" issues serving certificates that kubelets use to serve TLS endpoints, which kube-apiserver can connect to securely.\n  Requests for this signer are never auto-approved by kube-controller-manager, and can be issued by the \"csrsigning\" controller in kube-controller-manager.\n\nMore details are available at https://k8s.io/docs/reference/access-authn-authz/certificate-signing-requests/#kubernetes-signers\n\nCustom signerNames can also be specified. The signer defines:\n 1. Trust distribution: how trust (CA bundles) are distributed.\n 2. Permitted subjects: and behavior when a disallowed subject is requested.\n 3. Required, permitted, or forbidden x509 extensions in the request (including whether subjectAltNames are allowed, which types, restrictions on allowed values) and behavior when a disallowed extension is requested.\n 4. Required, permitted, or forbidden key usages / extended key usages.\n 5. Expiration/certificate lifetime: whether it is fixed by the signer, configurable by the admin.\n 6. Whether or not requests for CA certificates are allowed."
        }
        "CertificateSigningRequestSpec.request" => {
            "request contains an x509 certificate signing request encoded in a \"CERTIFICATE REQUEST\" PEM block. When serialized as JSON or YAML, the data is additionally base64-encoded."
        }
        "CertificateSigningRequestSpec.expirationSeconds" => {
            "expirationSeconds is the requested duration of validity of the issued certificate. The certificate signer may issue a certificate with a different validity duration so a client must check the delta between the notBefore and and notAfter fields in the issued certificate to determine the actual duration.\n\nThe v1.22+ in-tree implementations of the well-known Kubernetes signers will honor this field as long as the requested duration is not greater than the maximum duration they will honor per the --cluster-signing-duration CLI flag to the Kubernetes controller manager.\n\nCertificate signers may not honor this field for various reasons:\n\n  1. Old signer that is unaware of the field (such as the in-tree\n     implementations prior to v1.22)\n  2. Signer whose configured maximum is shorter than the requested duration\n  3. Signer whose configured minimum is longer than the requested duration\n\nThe minimum valid value for expirationSeconds is 600, i.e. 10 minutes."
        }
        "CertificateSigningRequestStatus.conditions" => {
            "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\"."
        }
        "LeaseSpec.holderIdentity" => {
            "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."
        }
        "StorageClass.provisioner" => "provisioner indicates the type of the provisioner.",
        "StorageClass.reclaimPolicy" => {
            "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."
        }
        "StorageClass.volumeBindingMode" => {
            "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."
        }
        "StorageClass.allowVolumeExpansion" => {
            "allowVolumeExpansion shows whether the storage class allow volume expand."
        }
        "VolumeAttachmentSpec.attacher" => {
            "attacher indicates the name of the volume driver that MUST handle this request. This is the name returned by GetPluginName()."
        }
        "VolumeAttachmentSource.persistentVolumeName" => {
            "persistentVolumeName represents the name of the persistent volume to attach."
        }
        "VolumeAttachmentSpec.nodeName" => {
            "nodeName represents the node that the volume should be attached to."
        }
        "VolumeAttachmentStatus.attached" => {
            "attached indicates the volume is successfully attached. This field must only be set by the entity completing the attach operation, i.e. the external-attacher."
        }
        "CSIDriverSpec.attachRequired" => {
            "attachRequired indicates this CSI volume driver requires an attach operation (because it implements the CSI ControllerPublishVolume() method), and that the Kubernetes attach detach controller should call the attach volume interface which checks the volumeattachment status and waits until the volume is attached before proceeding to mounting. The CSI external-attacher coordinates with CSI volume driver and updates the volumeattachment status when the attach operation is complete. If the CSIDriverRegistry feature gate is enabled and the value is specified to false, the attach operation will be skipped. Otherwise the attach operation will be called.\n\nThis field is immutable."
        }
        "CSIDriverSpec.podInfoOnMount" => {
            "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations, if set to true. If set to false, pod information will not be passed on mount. Default is false.\n\nThe CSI driver specifies podInfoOnMount as part of driver deployment. If true, Kubelet will pass pod information as VolumeContext in the CSI NodePublishVolume() calls. The CSI driver is responsible for parsing and validating the information passed in as VolumeContext.\n\nThe following VolumeContext will be passed if podInfoOnMount is set to true. This list might grow, but the prefix will be used. \"csi.storage.k8s.io/pod.name\": pod.Name \"csi.storage.k8s.io/pod.namespace\": pod.Namespace \"csi.storage.k8s.io/pod.uid\": string(pod.UID) \"csi.storage.k8s.io/ephemeral\": \"true\" if the volume is an ephemeral inline volume\n                                defined by a CSIVolumeSource, otherwise \"false\"\n\n\"csi.storage.k8s.io/ephemeral\" is a new feature in Kubernetes 1.16. It is only required for drivers which support both the \"Persistent\" and \"Ephemeral\" VolumeLifecycleMode. Other drivers can leave pod info disabled and/or ignore this field. As Kubernetes 1.15 doesn't support this field, drivers can only support one mode when deployed on such a cluster and the deployment determines which mode that is, for example via a command line parameter of the driver.\n\nThis field was immutable in Kubernetes < 1.29 and now is mutable."
        }
        "CSIDriverSpec.storageCapacity" => {
            "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report by creating CSIStorageCapacity objects with capacity information, if set to true.\n\nThe check can be enabled immediately when deploying a driver. In that case, provisioning new volumes with late binding will pause until the driver deployment has published some suitable CSIStorageCapacity object.\n\nAlternatively, the driver can be deployed with the field unset or false and it can be flipped later when storage capacity information has been published.\n\nThis field was immutable in Kubernetes <= 1.22 and now is mutable."
        }
        "CSIDriverSpec.tokenRequests" => {
            "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication. Kubelet will pass the tokens in VolumeContext in the CSI NodePublishVolume calls. The CSI driver should parse and validate the following VolumeContext: \"csi.storage.k8s.io/serviceAccount.tokens\": {\n  \"<audience>\": {\n    \"token\": <token>,\n    \"expirationTimestamp\": <expiration timestamp in RFC3339>,\n  },\n  ...\n}\n\nNote: Audience in each TokenRequest should be different and at most one token is empty string. To receive a new token after expiry, RequiresRepublish can be used to trigger NodePublishVolume periodically."
        }
        "CSIDriverSpec.requiresRepublish" => {
            "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume. This field defaults to false.\n\nNote: After a successful initial NodePublishVolume call, subsequent calls to NodePublishVolume should only update the contents of the volume. New mount points will not be seen by a running container."
        }
        "CSIDriverSpec.volumeLifecycleModes" => {
            "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports. The default if the list is empty is \"Persistent\", which is the usage defined by the CSI specification and implemented in Kubernetes via the usual PV/PVC mechanism.\n\nThe other mode is \"Ephemeral\". In this mode, volumes are defined inline inside the pod spec with CSIVolumeSource and their lifecycle is tied to the lifecycle of that pod. A driver has to be aware of this because it is only going to get a NodePublishVolume call for such a volume.\n\nFor more information about implementing this mode, see https://kubernetes-csi.github.io/docs/ephemeral-local-volumes.html A driver can support one or more of these modes and more modes may be added in the future.\n\nThis field is beta. This field is immutable."
        }
        "CSIStorageCapacity.storageClassName" => {
            "storageClassName represents the name of the StorageClass that the reported capacity applies to. It must meet the same requirements as the name of a StorageClass object (non-empty, DNS subdomain). If that object no longer exists, the CSIStorageCapacity object is obsolete and should be removed by its creator. This field is immutable."
        }
        "CSIStorageCapacity.capacity" => {
            "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields.\n\nThe semantic is currently (CSI spec 1.2) defined as: The available capacity, in bytes, of the storage that can be used to provision volumes. If not set, that information is currently unavailable."
        }
        "VolumeAttributesClass.driverName" => "Name of the CSI driver This field is immutable.",
        "PriorityClass.value" => {
            "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."
        }
        "PriorityClass.globalDefault" => {
            "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority."
        }
        "PriorityClass.preemptionPolicy" => {
            "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."
        }
        "EndpointSlice.addressType" => {
            "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type."
        }
        "EndpointSlice.ports" => {
            "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list."
        }
        "EndpointSlice.endpoints" => {
            "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints."
        }
        "ServiceCIDRSpec.cidrs" => {
            "CIDRs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs. Max of two CIDRs is allowed, one of each IP family. This field is immutable."
        }
        "IPAddressSpec.parentRef" => {
            "ParentRef references the resource that an IPAddress is attached to. An IPAddress must reference a parent object."
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-05-01T12:00:00Z, the "now" of every test.
    const NOW: i64 = 1_714_564_800;

    fn cells_of(group: &str, resource: &str, obj: Value) -> Vec<Value> {
        let cells = row_cells(group, resource, &obj, NOW);
        let columns = column_definitions(group, resource);
        assert_eq!(cells.len(), columns.len(), "{group}/{resource}: {cells:?}");
        cells
    }

    fn column_names(group: &str, resource: &str) -> Vec<(String, i64)> {
        column_definitions(group, resource)
            .iter()
            .map(|c| (text(c, &["name"]).to_string(), int(c, &["priority"])))
            .collect()
    }

    #[test]
    fn human_duration_matches_upstream() {
        let cases = [
            (-5, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (330, "5m30s"),
            (599, "9m59s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 30 * 60, "5h30m"),
            (8 * 3600 + 59 * 60, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (3 * 86_400 + 4 * 3600, "3d4h"),
            (7 * 86_400 + 23 * 3600, "7d23h"),
            (8 * 86_400, "8d"),
            (729 * 86_400, "729d"),
            (730 * 86_400, "2y"),
            (3 * 365 * 86_400 + 45 * 86_400, "3y45d"),
            (8 * 365 * 86_400, "8y"),
            (10 * 365 * 86_400 + 100 * 86_400, "10y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn rfc3339_timestamps_parse_and_print() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00Z"), Some(NOW));
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00+02:00"), Some(NOW));
        assert_eq!(parse_rfc3339("2024-05-01T11:30:00-00:30"), Some(NOW));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.123456Z"), Some(NOW));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01 12:00:00Z",
            "2024-05-01T12:00:00",
            "2024-13-01T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00Zjunk",
            "2024-05-01T12:00:00+0200",
            "２０２4-05-01T12:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        for secs in [0, NOW, 1_709_164_800, -1, -62_135_596_800, 253_402_300_799] {
            let text = format_rfc3339(secs);
            assert_eq!(parse_rfc3339(&text), Some(secs), "{text}");
        }
        assert_eq!(format_rfc3339(NOW), "2024-05-01T12:00:00Z");
        assert_eq!(format_rfc3339(-62_135_596_800), "0001-01-01T00:00:00Z");
    }

    fn crash_looping_pod() -> Value {
        json!({
            "metadata": {"name": "web-7d4b9c-abcde", "namespace": "default",
                         "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"nodeName": "node1", "containers": [
                {"name": "app", "image": "example/app:1"},
                {"name": "sidecar", "image": "busybox"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.42.0.7",
                "podIPs": [{"ip": "10.42.0.7"}],
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [
                    {"name": "app", "ready": false, "restartCount": 3,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                  "finishedAt": "2024-05-01T11:55:00Z"}}},
                    {"name": "sidecar", "ready": true, "restartCount": 0,
                     "state": {"running": {"startedAt": "2024-05-01T11:00:05Z"}}}
                ]
            }
        })
    }

    #[test]
    fn pod_columns_are_upstreams() {
        assert_eq!(
            column_names("", "pods"),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Status", 0),
                ("Restarts", 0),
                ("Age", 0),
                ("IP", 1),
                ("Node", 1),
                ("Nominated Node", 1),
                ("Readiness Gates", 1)
            ]
            .map(|(n, p)| (n.to_string(), p))
        );
        let first = &column_definitions("", "pods")[0];
        assert_eq!(first["format"], "name");
        assert!(
            text(first, &["description"]).starts_with("Name must be unique within a namespace.")
        );
    }

    #[test]
    fn crash_looping_pod_shows_reason_and_last_restart() {
        assert_eq!(
            cells_of("", "pods", crash_looping_pod()),
            [
                json!("web-7d4b9c-abcde"),
                json!("1/2"),
                json!("CrashLoopBackOff"),
                json!("3 (5m ago)"),
                json!("60m"),
                json!("10.42.0.7"),
                json!("node1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    fn pod_status(spec: Value, status: Value) -> (String, String, String) {
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:59:00Z"},
                         "spec": spec, "status": status});
        let cells = cells_of("", "pods", pod);
        (
            text(&cells[1], &[]).to_string(),
            text(&cells[2], &[]).to_string(),
            text(&cells[3], &[]).to_string(),
        )
    }

    #[test]
    fn pod_status_follows_upstream_reason_logic() {
        let one = json!({"containers": [{"name": "app"}]});
        let with_init = json!({"initContainers": [{"name": "init-db"}, {"name": "init-cache"}],
                               "containers": [{"name": "app"}]});
        type Case = (
            &'static str,
            Value,
            Value,
            (&'static str, &'static str, &'static str),
        );
        let cases: Vec<Case> = vec![
            (
                "pending, nothing reported",
                one.clone(),
                json!({"phase": "Pending"}),
                ("0/1", "Pending", "0"),
            ),
            (
                "container creating",
                one.clone(),
                json!({"phase": "Pending", "containerStatuses": [
                    {"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
                ("0/1", "ContainerCreating", "0"),
            ),
            (
                "image pull error",
                one.clone(),
                json!({"phase": "Pending", "containerStatuses": [
                    {"name": "app", "state": {"waiting": {"reason": "ErrImagePull"}}}]}),
                ("0/1", "ErrImagePull", "0"),
            ),
            (
                "running and ready",
                one.clone(),
                json!({"phase": "Running", "containerStatuses": [
                    {"name": "app", "ready": true, "state": {"running": {}}}]}),
                ("1/1", "Running", "0"),
            ),
            (
                "completed",
                one.clone(),
                json!({"phase": "Succeeded", "containerStatuses": [
                    {"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ("0/1", "Completed", "0"),
            ),
            (
                "error exit",
                one.clone(),
                json!({"phase": "Failed", "containerStatuses": [
                    {"name": "app", "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}),
                ("0/1", "Error", "0"),
            ),
            (
                "exit code without reason",
                one.clone(),
                json!({"phase": "Failed", "containerStatuses": [
                    {"name": "app", "state": {"terminated": {"exitCode": 137}}}]}),
                ("0/1", "ExitCode:137", "0"),
            ),
            (
                "signal without reason",
                one.clone(),
                json!({"phase": "Failed", "containerStatuses": [
                    {"name": "app", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]}),
                ("0/1", "Signal:9", "0"),
            ),
            (
                "first init container running",
                with_init.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "init-db", "state": {"running": {}}},
                    {"name": "init-cache", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ("0/1", "Init:0/2", "0"),
            ),
            (
                "second init container running",
                with_init.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "init-db", "state": {"terminated": {"exitCode": 0}}},
                    {"name": "init-cache", "state": {"running": {}}}]}),
                ("0/1", "Init:1/2", "0"),
            ),
            (
                "init container crash looping",
                with_init.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "init-db", "restartCount": 4,
                     "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:58:00Z"}}}]}),
                ("0/1", "Init:CrashLoopBackOff", "4 (2m ago)"),
            ),
            (
                "init container failed",
                with_init.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "init-db", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
                ("0/1", "Init:Error", "0"),
            ),
            (
                "init container failed without reason",
                with_init.clone(),
                json!({"phase": "Pending", "initContainerStatuses": [
                    {"name": "init-db", "state": {"terminated": {"exitCode": 3}}}]}),
                ("0/1", "Init:ExitCode:3", "0"),
            ),
            (
                "waiting on the containers after init",
                with_init.clone(),
                json!({"phase": "Pending",
                       "initContainerStatuses": [
                           {"name": "init-db", "state": {"terminated": {"exitCode": 0}}},
                           {"name": "init-cache", "state": {"terminated": {"exitCode": 0}}}],
                       "containerStatuses": [
                           {"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
                ("0/1", "PodInitializing", "0"),
            ),
            (
                "scheduling gated",
                one.clone(),
                json!({"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                ("0/1", "SchedulingGated", "0"),
            ),
            (
                "evicted",
                one.clone(),
                json!({"phase": "Failed", "reason": "Evicted"}),
                ("0/1", "Evicted", "0"),
            ),
            (
                "sidecar started and ready",
                json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                       "containers": [{"name": "app"}]}),
                json!({"phase": "Running",
                       "conditions": [{"type": "Initialized", "status": "True"}],
                       "initContainerStatuses": [
                           {"name": "proxy", "started": true, "ready": true, "restartCount": 1,
                            "state": {"running": {}},
                            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:30Z"}}}],
                       "containerStatuses": [
                           {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}},
                            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:50:00Z"}}}]}),
                ("2/2", "Running", "3 (30s ago)"),
            ),
            (
                "one container completed, another still running",
                json!({"containers": [{"name": "a"}, {"name": "b"}]}),
                json!({"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "False"}],
                       "containerStatuses": [
                           {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                           {"name": "b", "ready": true, "state": {"running": {}}}]}),
                ("1/2", "NotReady", "0"),
            ),
        ];
        for (what, spec, status, (ready, reason, restarts)) in cases {
            assert_eq!(
                pod_status(spec, status),
                (ready.to_string(), reason.to_string(), restarts.to_string()),
                "{what}"
            );
        }
    }

    #[test]
    fn deleted_pods_show_terminating_or_unknown() {
        let mut pod = crash_looping_pod();
        pod["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        assert_eq!(cells_of("", "pods", pod.clone())[2], "Terminating");
        pod["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells_of("", "pods", pod.clone())[2], "Unknown");
        pod["status"]["reason"] = json!("");
        pod["status"]["phase"] = json!("Succeeded");
        pod["status"]["containerStatuses"] = json!([]);
        assert_eq!(cells_of("", "pods", pod)[2], "Succeeded");
    }

    #[test]
    fn pod_wide_columns_show_readiness_gates_and_nominated_node() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}],
                     "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]},
            "status": {"phase": "Pending", "nominatedNodeName": "node2",
                       "conditions": [{"type": "example.com/lb", "status": "True"},
                                      {"type": "example.com/dns", "status": "False"}]}
        });
        let cells = cells_of("", "pods", pod);
        assert_eq!(cells[4], "<unknown>");
        assert_eq!(
            &cells[5..],
            [
                json!("<none>"),
                json!("<none>"),
                json!("node2"),
                json!("1/2")
            ]
        );
    }

    #[test]
    fn node_port_service() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-04-28T12:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080, "targetPort": 8080},
                               {"port": 53, "protocol": "UDP"}],
                     "selector": {"tier": "front", "app": "web"}}
        });
        assert_eq!(
            cells_of("", "services", svc),
            [
                json!("web"),
                json!("NodePort"),
                json!("10.43.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("3d"),
                json!("app=web,tier=front")
            ]
        );
    }

    #[test]
    fn service_external_ips_follow_upstream_rules() {
        let svc = |spec: Value, status: Value| {
            let cells = cells_of(
                "",
                "services",
                json!({"metadata": {"name": "s"}, "spec": spec, "status": status}),
            );
            (
                text(&cells[2], &[]).to_string(),
                text(&cells[3], &[]).to_string(),
                text(&cells[4], &[]).to_string(),
            )
        };
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            svc(
                json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}),
                json!({})
            ),
            s("None", "<none>", "<none>")
        );
        assert_eq!(
            svc(
                json!({"type": "ClusterIP", "clusterIPs": ["10.43.0.2"], "externalIPs": ["1.2.3.4", "5.6.7.8"],
                       "ports": [{"port": 443}]}),
                json!({})
            ),
            s("10.43.0.2", "1.2.3.4,5.6.7.8", "443/TCP")
        );
        assert_eq!(
            svc(
                json!({"type": "LoadBalancer", "clusterIPs": ["10.43.0.3"]}),
                json!({})
            ),
            s("10.43.0.3", "<pending>", "<none>")
        );
        assert_eq!(
            svc(
                json!({"type": "LoadBalancer", "clusterIPs": ["10.43.0.3"]}),
                json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.20"}, {"hostname": "lb.example.com"},
                                                     {"ip": "192.168.1.10"}]}})
            ),
            s(
                "10.43.0.3",
                "192.168.1.10,192.168.1.20,lb.example.com",
                "<none>"
            )
        );
        assert_eq!(
            svc(
                json!({"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]}),
                json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}]}})
            ),
            s("<none>", "192.168.1.10,9.9.9.9", "<none>")
        );
        assert_eq!(
            svc(
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
                json!({})
            ),
            s("<none>", "db.example.com", "<none>")
        );
    }

    #[test]
    fn deployment_mid_rollout() {
        let deploy = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-04-30T09:30:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [
                         {"name": "web", "image": "nginx:1.27"},
                         {"name": "log", "image": "fluent-bit:3"}]}}},
            "status": {"replicas": 4, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3}
        });
        assert_eq!(
            column_names("apps", "deployments")
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            cells_of("apps", "deployments", deploy),
            [
                json!("web"),
                json!("3/3"),
                json!(2),
                json!(3),
                json!("26h"),
                json!("web,log"),
                json!("nginx:1.27,fluent-bit:3"),
                json!("app=web")
            ]
        );
        let bare = cells_of("apps", "deployments", json!({"metadata": {"name": "d"}}));
        assert_eq!(bare[1], "0/1");
        assert_eq!(bare[7], "");
    }

    #[test]
    fn replica_sets_stateful_sets_daemon_sets_and_controllers() {
        let template = json!({"spec": {"containers": [{"name": "c", "image": "img"}],
                                       "nodeSelector": {"kubernetes.io/os": "linux"}}});
        let rs = json!({"metadata": {"name": "web-7d4b9c", "creationTimestamp": "2024-05-01T11:00:00Z"},
                        "spec": {"replicas": 2, "template": template,
                                 "selector": {"matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}}},
                        "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            cells_of("apps", "replicasets", rs),
            [
                json!("web-7d4b9c"),
                json!(2),
                json!(2),
                json!(1),
                json!("60m"),
                json!("c"),
                json!("img"),
                json!("app=web,pod-template-hash=7d4b9c")
            ]
        );
        let sts = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3, "template": template},
                         "status": {"readyReplicas": 2}});
        assert_eq!(
            cells_of("apps", "statefulsets", sts),
            [
                json!("db"),
                json!("2/3"),
                json!("<unknown>"),
                json!("c"),
                json!("img")
            ]
        );
        let ds = json!({"metadata": {"name": "agent"},
                        "spec": {"template": template, "selector": {"matchExpressions": [
                            {"key": "app", "operator": "In", "values": ["agent"]}]}},
                        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                                   "updatedNumberScheduled": 3, "numberAvailable": 2}});
        assert_eq!(
            cells_of("apps", "daemonsets", ds),
            [
                json!("agent"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux"),
                json!("<unknown>"),
                json!("c"),
                json!("img"),
                json!("app in (agent)")
            ]
        );
        let rc = json!({"metadata": {"name": "old"}, "spec": {"replicas": 1, "selector": {"app": "old"}}});
        assert_eq!(
            cells_of("", "replicationcontrollers", rc),
            [
                json!("old"),
                json!(1),
                json!(0),
                json!(0),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("app=old")
            ]
        );
    }

    #[test]
    fn jobs_show_status_completions_and_duration() {
        let running = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:58:00Z"},
            "spec": {"completions": 3, "parallelism": 1,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}}},
            "status": {"succeeded": 1, "active": 1, "startTime": "2024-05-01T11:58:30Z"}
        });
        assert_eq!(
            column_names("batch", "jobs")
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        assert_eq!(
            cells_of("batch", "jobs", running),
            [
                json!("pi"),
                json!("Running"),
                json!("1/3"),
                json!("90s"),
                json!("2m"),
                json!("pi"),
                json!("perl:5.34"),
                json!("batch.kubernetes.io/controller-uid=abc")
            ]
        );
        let complete = json!({
            "metadata": {"name": "once"},
            "spec": {"parallelism": 2},
            "status": {"succeeded": 1, "startTime": "2024-05-01T10:00:00Z",
                       "completionTime": "2024-05-01T10:00:45Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}
        });
        let cells = cells_of("batch", "jobs", complete);
        assert_eq!(
            &cells[1..4],
            [json!("Complete"), json!("1/1 of 2"), json!("45s")]
        );
        let failed = json!({"metadata": {"name": "f"},
                            "status": {"conditions": [{"type": "FailureTarget", "status": "True"},
                                                      {"type": "Failed", "status": "True"}]}});
        let cells = cells_of("batch", "jobs", failed);
        assert_eq!(&cells[1..4], [json!("Failed"), json!("0/1"), json!("")]);
        let suspended = json!({"metadata": {"name": "s", "deletionTimestamp": "2024-05-01T11:00:00Z"},
                               "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(cells_of("batch", "jobs", suspended)[1], "Terminating");
    }

    #[test]
    fn cron_jobs_show_last_schedule() {
        let cj = json!({
            "metadata": {"name": "backup", "creationTimestamp": "2024-04-01T00:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                         {"name": "b", "image": "backup:1"}]}}}}},
            "status": {"active": [{"name": "backup-28580000"}], "lastScheduleTime": "2024-05-01T11:55:00Z"}
        });
        assert_eq!(
            cells_of("batch", "cronjobs", cj),
            [
                json!("backup"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("5m"),
                json!("30d"),
                json!("b"),
                json!("backup:1"),
                json!("<none>")
            ]
        );
        let never = json!({"metadata": {"name": "n"}, "spec": {"schedule": "@daily", "timeZone": "Etc/UTC"}});
        let cells = cells_of("batch", "cronjobs", never);
        assert_eq!(
            &cells[2..6],
            [
                json!("Etc/UTC"),
                json!("<unset>"),
                json!(0),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn node_with_roles_and_scheduling_disabled() {
        let node = json!({
            "metadata": {"name": "server-1", "creationTimestamp": "2024-04-01T12:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "",
                                    "node-role.kubernetes.io/master": "true",
                                    "node-role.kubernetes.io/": "ignored",
                                    "kubernetes.io/role": "etcd",
                                    "kubernetes.io/hostname": "server-1"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"},
                               {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "server-1"},
                              {"type": "InternalIP", "address": "192.168.1.5"}],
                "nodeInfo": {"kubeletVersion": "v1.33.1+rk3s", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-21-amd64", "containerRuntimeVersion": ""}
            }
        });
        assert_eq!(
            cells_of("", "nodes", node),
            [
                json!("server-1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,etcd,master"),
                json!("30d"),
                json!("v1.33.1+rk3s"),
                json!("192.168.1.5"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0-21-amd64"),
                json!("<unknown>")
            ]
        );
        let cells = cells_of("", "nodes", json!({"metadata": {"name": "new"}}));
        assert_eq!(&cells[1..3], [json!("Unknown"), json!("<none>")]);
        let not_ready = json!({"metadata": {"name": "n"}, "status": {"conditions": [
            {"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(cells_of("", "nodes", not_ready)[1], "NotReady");
    }

    #[test]
    fn core_events_print_like_kubectl_get_events() {
        assert_eq!(
            column_names("", "events"),
            [
                ("Last Seen", 0),
                ("Type", 0),
                ("Reason", 0),
                ("Object", 0),
                ("Subobject", 1),
                ("Source", 1),
                ("Message", 0),
                ("First Seen", 1),
                ("Count", 1),
                ("Name", 1)
            ]
            .map(|(n, p)| (n.to_string(), p))
        );
        let ev = json!({
            "metadata": {"name": "web-1.17c2", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff", "type": "Warning",
            "message": "Back-off restarting failed container app\n",
            "source": {"component": "kubelet", "host": "node1"},
            "firstTimestamp": "2024-05-01T11:00:00Z", "lastTimestamp": "2024-05-01T11:58:00Z",
            "count": 12
        });
        assert_eq!(
            cells_of("", "events", ev),
            [
                json!("2m"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-1"),
                json!("spec.containers{app}"),
                json!("kubelet, node1"),
                json!("Back-off restarting failed container app"),
                json!("60m"),
                json!(12),
                json!("web-1.17c2")
            ]
        );
        // A new-API event seen through core/v1: eventTime, reportingComponent, no count.
        let ev = json!({
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Node"},
            "reason": "Starting", "type": "Normal", "message": "Starting kubelet.",
            "eventTime": "2024-05-01T11:59:30.000000Z",
            "reportingComponent": "kubelet", "reportingInstance": "node1"
        });
        let cells = cells_of("", "events", ev);
        assert_eq!(cells[0], "30s");
        assert_eq!(cells[3], "node");
        assert_eq!(cells[5], "kubelet, node1");
        assert_eq!(cells[7], "30s");
        assert_eq!(cells[8], 1);
    }

    #[test]
    fn events_k8s_io_events_print_like_core_events() {
        assert_eq!(
            column_definitions("events.k8s.io", "events"),
            column_definitions("", "events")
        );
        let ev = json!({
            "metadata": {"name": "web.1"},
            "regarding": {"kind": "Deployment", "name": "web", "namespace": "default"},
            "reason": "ScalingReplicaSet", "type": "Normal",
            "note": "Scaled up replica set web-7d4b9c to 3",
            "reportingController": "deployment-controller",
            "eventTime": "2024-05-01T11:00:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2024-05-01T11:57:00.000000Z"}
        });
        assert_eq!(
            cells_of("events.k8s.io", "events", ev),
            [
                json!("3m"),
                json!("Normal"),
                json!("ScalingReplicaSet"),
                json!("deployment/web"),
                json!(""),
                json!("deployment-controller"),
                json!("Scaled up replica set web-7d4b9c to 3"),
                json!("60m"),
                json!(4),
                json!("web.1")
            ]
        );
    }

    #[test]
    fn config_and_identity_resources() {
        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": "2024-04-30T12:00:00Z"},
                        "status": {"phase": "Active"}});
        assert_eq!(
            cells_of("", "namespaces", ns),
            [json!("kube-system"), json!("Active"), json!("24h")]
        );
        let secret = json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
                            "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            cells_of("", "secrets", secret),
            [
                json!("tls"),
                json!("kubernetes.io/tls"),
                json!(2),
                json!("<unknown>")
            ]
        );
        let cm =
            json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
        assert_eq!(
            cells_of("", "configmaps", cm),
            [json!("cfg"), json!(2), json!("<unknown>")]
        );
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(
            cells_of("", "serviceaccounts", sa),
            [json!("default"), json!(0), json!("<unknown>")]
        );
        let rb = json!({
            "metadata": {"name": "read-pods"},
            "roleRef": {"kind": "Role", "name": "pod-reader", "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": [{"kind": "User", "name": "jane"}, {"kind": "Group", "name": "devs"},
                         {"kind": "ServiceAccount", "name": "ci", "namespace": "tools"},
                         {"kind": "User", "name": "joe"}]
        });
        assert_eq!(
            cells_of("rbac.authorization.k8s.io", "rolebindings", rb),
            [
                json!("read-pods"),
                json!("Role/pod-reader"),
                json!("<unknown>"),
                json!("jane, joe"),
                json!("devs"),
                json!("tools/ci")
            ]
        );
        let csr = json!({
            "metadata": {"name": "csr-abc"},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client-kubelet", "username": "system:node:n1",
                     "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "LS0t"}
        });
        assert_eq!(
            cells_of("certificates.k8s.io", "certificatesigningrequests", csr),
            [
                json!("csr-abc"),
                json!("<unknown>"),
                json!("kubernetes.io/kube-apiserver-client-kubelet"),
                json!("system:node:n1"),
                json!("24h"),
                json!("Approved,Issued")
            ]
        );
        let lease = json!({"metadata": {"name": "node1"}, "spec": {"holderIdentity": "node1"}});
        assert_eq!(
            cells_of("coordination.k8s.io", "leases", lease),
            [json!("node1"), json!("node1"), json!("<unknown>")]
        );
    }

    #[test]
    fn storage_resources() {
        let pv = json!({
            "metadata": {"name": "pv-1", "annotations": {"volume.beta.kubernetes.io/storage-class": "slow"}},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "fast",
                     "claimRef": {"namespace": "default", "name": "data"}},
            "status": {"phase": "Bound"}
        });
        assert_eq!(
            cells_of("", "persistentvolumes", pv),
            [
                json!("pv-1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("slow"),
                json!("<unset>"),
                json!(""),
                json!("<unknown>"),
                json!("<unset>")
            ]
        );
        let bound = json!({
            "metadata": {"name": "data"},
            "spec": {"volumeName": "pv-1", "storageClassName": "local-path", "volumeMode": "Filesystem",
                     "resources": {"requests": {"storage": "5Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"]}
        });
        assert_eq!(
            cells_of("", "persistentvolumeclaims", bound),
            [
                json!("data"),
                json!("Bound"),
                json!("pv-1"),
                json!("10Gi"),
                json!("RWO"),
                json!("local-path"),
                json!("<unset>"),
                json!("<unknown>"),
                json!("Filesystem")
            ]
        );
        let pending = json!({"metadata": {"name": "p"}, "spec": {"storageClassName": "local-path"},
                             "status": {"phase": "Pending"}});
        let cells = cells_of("", "persistentvolumeclaims", pending);
        assert_eq!(
            &cells[1..6],
            [
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("local-path")
            ]
        );
        let sc = json!({"metadata": {"name": "local-path",
                                     "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            cells_of("storage.k8s.io", "storageclasses", sc),
            [
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("<unknown>")
            ]
        );
        let driver = json!({"metadata": {"name": "csi.example.com"},
                            "spec": {"podInfoOnMount": true, "volumeLifecycleModes": ["Persistent", "Ephemeral"]}});
        assert_eq!(
            cells_of("storage.k8s.io", "csidrivers", driver),
            [
                json!("csi.example.com"),
                json!(true),
                json!(true),
                json!(false),
                json!("<unset>"),
                json!(false),
                json!("Persistent,Ephemeral"),
                json!("<unknown>")
            ]
        );
    }

    #[test]
    fn network_resources() {
        let ing = json!({
            "metadata": {"name": "web"},
            "spec": {"ingressClassName": "traefik",
                     "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"}, {"host": "c.example.com"},
                               {"host": "d.example.com"}],
                     "tls": [{"hosts": ["a.example.com"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.5"}]}}
        });
        assert_eq!(
            cells_of("networking.k8s.io", "ingresses", ing),
            [
                json!("web"),
                json!("traefik"),
                json!("a.example.com,b.example.com,c.example.com + 2 more..."),
                json!("192.168.1.5"),
                json!("80, 443"),
                json!("<unknown>")
            ]
        );
        let catch_all = json!({"metadata": {"name": "all"}, "spec": {"rules": [{}]}});
        let cells = cells_of("networking.k8s.io", "ingresses", catch_all);
        assert_eq!(
            &cells[1..5],
            [json!("<none>"), json!("*"), json!(""), json!("80")]
        );
        let ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.42.0.7"}, {"ip": "10.42.0.8"}], "ports": [{"port": 8080}, {"port": 9090}]},
            {"addresses": [{"ip": "fd00::1"}]}]});
        assert_eq!(
            cells_of("", "endpoints", ep),
            [
                json!("web"),
                json!("10.42.0.7:8080,10.42.0.8:8080,10.42.0.7:9090 + 2 more..."),
                json!("<unknown>")
            ]
        );
        let v6 = json!({"metadata": {"name": "v6"}, "subsets": [
            {"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}]});
        assert_eq!(cells_of("", "endpoints", v6)[1], "[fd00::1]:53");
        assert_eq!(
            cells_of("", "endpoints", json!({"metadata": {"name": "e"}}))[1],
            "<none>"
        );
        let slice = json!({"metadata": {"name": "web-abc12"}, "addressType": "IPv4",
                           "ports": [{"port": 8080, "name": "http"}, {"name": "metrics"}],
                           "endpoints": [{"addresses": ["10.42.0.7"]}, {"addresses": ["10.42.0.8"]}]});
        assert_eq!(
            cells_of("discovery.k8s.io", "endpointslices", slice),
            [
                json!("web-abc12"),
                json!("IPv4"),
                json!("8080,metrics"),
                json!("10.42.0.7,10.42.0.8"),
                json!("<unknown>")
            ]
        );
        let empty = cells_of(
            "discovery.k8s.io",
            "endpointslices",
            json!({"metadata": {"name": "x"}}),
        );
        assert_eq!(&empty[2..4], [json!("<unset>"), json!("<unset>")]);
        let np = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
        assert_eq!(
            cells_of("networking.k8s.io", "networkpolicies", np)[1],
            "<none>"
        );
        let class = json!({"metadata": {"name": "nginx"},
                           "spec": {"controller": "k8s.io/ingress-nginx",
                                    "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters",
                                                   "name": "external-lb"}}});
        assert_eq!(
            cells_of("networking.k8s.io", "ingressclasses", class)[2],
            "IngressParameters.k8s.example.com/external-lb"
        );
    }

    #[test]
    fn policy_scaling_and_scheduling_resources() {
        let pdb = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": "50%"},
                         "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            cells_of("policy", "poddisruptionbudgets", pdb),
            [
                json!("web"),
                json!("50%"),
                json!("N/A"),
                json!(1),
                json!("<unknown>")
            ]
        );
        let hpa = json!({
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 10,
                     "metrics": [
                         {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
                         {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                         {"type": "Pods", "pods": {"metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}]},
            "status": {"currentReplicas": 3, "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45}}}]}
        });
        assert_eq!(
            cells_of("autoscaling", "horizontalpodautoscalers", hpa),
            [
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 45%/80%, memory: <unknown>/500Mi + 1 more..."),
                json!("2"),
                json!(10),
                json!(3),
                json!("<unknown>")
            ]
        );
        let v1 = json!({"metadata": {"name": "old"},
                        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "old"}, "maxReplicas": 5,
                                 "targetCPUUtilizationPercentage": 70}});
        let cells = cells_of("autoscaling", "horizontalpodautoscalers", v1);
        assert_eq!(
            &cells[2..4],
            [json!("cpu: <unknown>/70%"), json!("<unset>")]
        );
        let pc = json!({"metadata": {"name": "system-cluster-critical"}, "value": 2000000000,
                        "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            cells_of("scheduling.k8s.io", "priorityclasses", pc),
            [
                json!("system-cluster-critical"),
                json!(2_000_000_000),
                json!(false),
                json!("<unknown>"),
                json!("PreemptLowerPriority")
            ]
        );
        let quota = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"requests.cpu": "2", "limits.memory": "4Gi", "pods": "10"},
            "used": {"requests.cpu": "500m", "pods": "3"}}});
        assert_eq!(
            cells_of("", "resourcequotas", quota),
            [
                json!("q"),
                json!("pods: 3/10, requests.cpu: 500m/2"),
                json!("limits.memory: 0/4Gi"),
                json!("<unknown>")
            ]
        );
        let rev = json!({"metadata": {"name": "db-5d8f", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]}, "revision": 2});
        assert_eq!(
            cells_of("apps", "controllerrevisions", rev),
            [
                json!("db-5d8f"),
                json!("statefulset.apps/db"),
                json!(2),
                json!("<unknown>")
            ]
        );
        let webhook = json!({"metadata": {"name": "w"}, "webhooks": [{}, {}]});
        assert_eq!(
            cells_of(
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
                webhook
            )[1],
            2
        );
    }

    #[test]
    fn resources_without_a_printer_get_the_default_table() {
        for (group, resource) in [
            ("rbac.authorization.k8s.io", "roles"),
            ("rbac.authorization.k8s.io", "clusterroles"),
            ("", "limitranges"),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("apiregistration.k8s.io", "apiservices"),
        ] {
            assert_eq!(
                column_names(group, resource),
                [("Name".to_string(), 0), ("Created At".to_string(), 0)],
                "{group}/{resource}"
            );
            assert_eq!(column_definitions(group, resource)[1]["type"], "date");
        }
        let role = json!({"metadata": {"name": "admin", "creationTimestamp": "2024-04-01T10:00:00+02:00"}});
        assert_eq!(
            cells_of("rbac.authorization.k8s.io", "clusterroles", role),
            [json!("admin"), json!("2024-04-01T08:00:00Z")]
        );
        assert_eq!(
            cells_of("", "limitranges", json!({"metadata": {"name": "l"}})),
            [json!("l"), json!("0001-01-01T00:00:00Z")]
        );
        // Custom resources without printer columns: Name and Age.
        assert_eq!(
            column_names("example.com", "widgets"),
            [("Name".to_string(), 0), ("Age".to_string(), 0)]
        );
        let widget =
            json!({"metadata": {"name": "w1", "creationTimestamp": "2024-05-01T11:59:15Z"}});
        assert_eq!(
            cells_of("example.com", "widgets", widget),
            [json!("w1"), json!("45s")]
        );
    }

    #[test]
    fn every_printer_has_one_cell_per_column_even_for_empty_objects() {
        let resources = [
            ("", "pods"),
            ("", "podtemplates"),
            ("", "replicationcontrollers"),
            ("", "services"),
            ("", "endpoints"),
            ("", "nodes"),
            ("", "events"),
            ("", "namespaces"),
            ("", "secrets"),
            ("", "serviceaccounts"),
            ("", "persistentvolumes"),
            ("", "persistentvolumeclaims"),
            ("", "componentstatuses"),
            ("", "configmaps"),
            ("", "resourcequotas"),
            ("", "limitranges"),
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("apps", "controllerrevisions"),
            ("batch", "jobs"),
            ("batch", "cronjobs"),
            ("autoscaling", "horizontalpodautoscalers"),
            ("policy", "poddisruptionbudgets"),
            ("networking.k8s.io", "ingresses"),
            ("networking.k8s.io", "ingressclasses"),
            ("networking.k8s.io", "networkpolicies"),
            ("networking.k8s.io", "servicecidrs"),
            ("networking.k8s.io", "ipaddresses"),
            ("rbac.authorization.k8s.io", "rolebindings"),
            ("rbac.authorization.k8s.io", "clusterrolebindings"),
            ("rbac.authorization.k8s.io", "roles"),
            ("certificates.k8s.io", "certificatesigningrequests"),
            ("coordination.k8s.io", "leases"),
            ("storage.k8s.io", "storageclasses"),
            ("storage.k8s.io", "volumeattributesclasses"),
            ("storage.k8s.io", "volumeattachments"),
            ("storage.k8s.io", "csinodes"),
            ("storage.k8s.io", "csidrivers"),
            ("storage.k8s.io", "csistoragecapacities"),
            ("scheduling.k8s.io", "priorityclasses"),
            ("node.k8s.io", "runtimeclasses"),
            ("discovery.k8s.io", "endpointslices"),
            ("events.k8s.io", "events"),
            (
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
            ),
            (
                "admissionregistration.k8s.io",
                "validatingwebhookconfigurations",
            ),
            (
                "admissionregistration.k8s.io",
                "validatingadmissionpolicies",
            ),
            (
                "admissionregistration.k8s.io",
                "validatingadmissionpolicybindings",
            ),
            ("apiextensions.k8s.io", "customresourcedefinitions"),
            ("example.com", "widgets"),
        ];
        for (group, resource) in resources {
            for obj in [
                json!({}),
                Value::Null,
                json!({"metadata": null, "spec": [], "status": "x"}),
            ] {
                let cells = row_cells(group, resource, &obj, NOW);
                let columns = column_definitions(group, resource);
                assert_eq!(cells.len(), columns.len(), "{group}/{resource} with {obj}");
            }
            for c in column_definitions(group, resource) {
                let keys: Vec<&String> = c
                    .as_object()
                    .map(|o| o.keys().collect())
                    .unwrap_or_default();
                assert_eq!(
                    keys,
                    ["description", "format", "name", "priority", "type"],
                    "{group}/{resource}"
                );
                assert!(
                    ["string", "integer", "number", "boolean", "date"]
                        .contains(&text(&c, &["type"])),
                    "{group}/{resource}: {c}"
                );
            }
        }
    }

    #[test]
    fn tables_carry_rows_objects_and_conditions() {
        let done = json!({"metadata": {"name": "done", "namespace": "default", "uid": "u1",
                                       "labels": {"app": "batch"}},
                          "spec": {"containers": [{"name": "c"}]},
                          "status": {"phase": "Succeeded"}});
        let t = table(
            "",
            "pods",
            &[crash_looping_pod(), done.clone()],
            IncludeObject::Metadata,
            NOW,
            true,
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({}));
        assert_eq!(t["columnDefinitions"].as_array().map(Vec::len), Some(9));
        let rows = t["rows"].as_array().cloned().unwrap_or_default();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["cells"][0], "web-7d4b9c-abcde");
        assert!(rows[0].get("conditions").is_none());
        assert_eq!(
            rows[1]["conditions"],
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                    "message": "The pod has completed successfully."}])
        );
        assert_eq!(
            rows[1]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": done["metadata"]})
        );

        let t = table(
            "",
            "pods",
            std::slice::from_ref(&done),
            IncludeObject::Object,
            NOW,
            false,
        );
        assert_eq!(t["columnDefinitions"], Value::Null);
        assert_eq!(t["rows"][0]["object"], done);
        let t = table("", "pods", &[done], IncludeObject::None, NOW, true);
        assert_eq!(t["rows"][0]["object"], Value::Null);
        let empty = table("", "pods", &[], IncludeObject::Metadata, NOW, true);
        assert_eq!(empty["rows"], json!([]));
    }

    #[test]
    fn include_object_parses_like_upstream() {
        assert_eq!(IncludeObject::parse(""), Ok(IncludeObject::Metadata));
        assert_eq!(
            IncludeObject::parse("Metadata"),
            Ok(IncludeObject::Metadata)
        );
        assert_eq!(IncludeObject::parse("Object"), Ok(IncludeObject::Object));
        assert_eq!(IncludeObject::parse("None"), Ok(IncludeObject::None));
        assert_eq!(
            IncludeObject::parse("object"),
            Err("unrecognized includeObject value: \"object\"".to_string())
        );
    }

    fn printer_columns() -> Vec<Value> {
        vec![
            json!({"name": "Ready", "type": "string",
                   "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}),
            json!({"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas",
                   "description": "Desired replicas"}),
            json!({"name": "Images", "type": "string", "priority": 1, "jsonPath": ".spec.containers[*].image"}),
            json!({"name": "Last", "type": "string", "jsonPath": ".spec.containers[-1].name"}),
            json!({"name": "Selector", "type": "string", "jsonPath": ".spec.selector"}),
            json!({"name": "Ratio", "type": "number", "jsonPath": ".status.ratio"}),
            json!({"name": "Paused", "type": "boolean", "jsonPath": ".spec.paused"}),
            json!({"name": "Zone", "type": "string", "jsonPath": ".metadata.labels['topology.kubernetes.io/zone']"}),
            json!({"name": "Missing", "type": "string", "jsonPath": ".status.nothing"}),
            json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}),
        ]
    }

    #[test]
    fn custom_resources_use_their_printer_columns() {
        let defs = custom_column_definitions(&printer_columns());
        assert_eq!(defs.len(), 11);
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert_eq!(
            defs[1]["description"],
            "Custom resource definition column (in JSONPath format): .status.conditions[?(@.type==\"Ready\")].status"
        );
        assert_eq!(defs[2]["description"], "Desired replicas");
        assert_eq!(defs[3]["priority"], 1);
        assert_eq!(defs[10]["name"], "Age");
        let obj = json!({
            "metadata": {"name": "w1", "creationTimestamp": "2024-05-01T09:00:00Z",
                         "labels": {"topology.kubernetes.io/zone": "eu-1a"}},
            "spec": {"replicas": 3, "paused": false, "selector": {"matchLabels": {"app": "w"}},
                     "containers": [{"name": "a", "image": "img-a"}, {"name": "b", "image": "img-b"}]},
            "status": {"ratio": 0.5, "conditions": [{"type": "Synced", "status": "True"},
                                                    {"type": "Ready", "status": "False"}]}
        });
        assert_eq!(
            custom_columns(&printer_columns(), &obj, NOW),
            [
                json!("w1"),
                json!("False"),
                json!(3),
                json!("img-a"),
                json!("b"),
                json!("{\"matchLabels\":{\"app\":\"w\"}}"),
                json!(0.5),
                json!(false),
                json!("eu-1a"),
                Value::Null,
                json!("3h")
            ]
        );
        let t = custom_table(
            &printer_columns(),
            &[obj],
            IncludeObject::Metadata,
            NOW,
            true,
        );
        assert_eq!(t["columnDefinitions"].as_array().map(Vec::len), Some(11));
        assert_eq!(t["rows"][0]["cells"][0], "w1");
    }

    #[test]
    fn custom_resources_without_columns_get_name_and_age() {
        let defs = custom_column_definitions(&[]);
        assert_eq!(defs.len(), 2);
        assert_eq!(defs[1]["name"], "Age");
        assert_eq!(defs[1]["type"], "date");
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-04-29T12:00:00Z"}});
        assert_eq!(custom_columns(&[], &obj, NOW), [json!("x"), json!("2d")]);
    }

    #[test]
    fn custom_cells_convert_by_column_type_like_upstream() {
        let cases = [
            ("string", json!("x"), json!("x")),
            ("string", json!(12), json!("12")),
            ("string", json!(1.5), json!("1.5")),
            ("string", json!(1e21), json!("1e+21")),
            ("string", json!(0.00001), json!("1e-05")),
            ("string", json!(true), json!("true")),
            ("string", Value::Null, json!("<no value>")),
            ("string", json!(["a", "b"]), json!("[\"a\",\"b\"]")),
            ("integer", json!(7), json!(7)),
            ("integer", json!(7.9), json!(7)),
            ("integer", json!("7"), Value::Null),
            ("number", json!(2), json!(2.0)),
            ("boolean", json!(true), json!(true)),
            ("boolean", json!("true"), Value::Null),
            ("date", json!("2024-05-01T11:55:00Z"), json!("5m")),
            ("date", json!(""), json!("<unknown>")),
            ("date", json!("yesterday"), json!("<invalid>")),
            ("date", json!(5), Value::Null),
            ("object", json!({}), Value::Null),
        ];
        for (ty, value, want) in cases {
            assert_eq!(custom_cell(ty, &value, NOW), want, "{ty} {value}");
        }
    }

    #[test]
    fn json_path_subset_evaluates_like_kubectl() {
        let obj = json!({
            "a": {"b": [{"c": 1, "n": "x"}, {"c": 2, "n": "y"}, {"c": 3, "n": "z"}], "d.e": "dotted"},
            "list": [10, 20, 30, 40]
        });
        let eval = |p: &str| -> Option<Vec<Value>> {
            let steps = jsonpath::parse(p)?;
            Some(jsonpath::eval(&steps, &obj).into_iter().cloned().collect())
        };
        assert_eq!(eval(".a.b[0].c"), Some(vec![json!(1)]));
        assert_eq!(eval("{.a.b[1].n}"), Some(vec![json!("y")]));
        assert_eq!(eval(".a.b[*].c"), Some(vec![json!(1), json!(2), json!(3)]));
        assert_eq!(eval(".a.b[-1].n"), Some(vec![json!("z")]));
        assert_eq!(eval(".a.b[5].n"), Some(vec![]));
        assert_eq!(eval(".list[1:3]"), Some(vec![json!(20), json!(30)]));
        assert_eq!(eval(".list[::2]"), Some(vec![json!(10), json!(30)]));
        assert_eq!(eval(".a['d.e']"), Some(vec![json!("dotted")]));
        assert_eq!(eval(".a[\"d.e\"]"), Some(vec![json!("dotted")]));
        assert_eq!(
            eval(".a.b[?(@.c > 1)].n"),
            Some(vec![json!("y"), json!("z")])
        );
        assert_eq!(
            eval(".a.b[?(@.n != 'y')].c"),
            Some(vec![json!(1), json!(3)])
        );
        assert_eq!(eval(".a.b[?(@.missing)].c"), Some(vec![]));
        assert_eq!(eval("..n"), Some(vec![json!("x"), json!("y"), json!("z")]));
        assert_eq!(eval(".missing.deeper"), Some(vec![]));
        assert_eq!(eval("$.list[0]"), Some(vec![json!(10)]));
        for bad in [".a[", ".a[x]", ".a.b[?(@.c ~ 1)]", ".a]", ".a[1,2]"] {
            assert_eq!(eval(bad), None, "{bad}");
        }
    }

    mod no_panics {
        use super::*;
        use proptest::prelude::*;

        const KEYS: &[&str] = &[
            "metadata",
            "name",
            "namespace",
            "creationTimestamp",
            "deletionTimestamp",
            "labels",
            "annotations",
            "ownerReferences",
            "spec",
            "status",
            "containers",
            "initContainers",
            "initContainerStatuses",
            "containerStatuses",
            "state",
            "waiting",
            "terminated",
            "running",
            "lastState",
            "finishedAt",
            "restartCount",
            "exitCode",
            "signal",
            "reason",
            "phase",
            "conditions",
            "type",
            "ports",
            "port",
            "nodePort",
            "subsets",
            "addresses",
            "ip",
            "replicas",
            "selector",
            "matchLabels",
            "matchExpressions",
            "template",
            "series",
            "count",
            "involvedObject",
            "regarding",
            "metrics",
            "currentMetrics",
            "resource",
            "target",
            "current",
            "hard",
            "used",
            "capacity",
            "storage",
            "0",
        ];

        fn arb_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(
                    |f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                ),
                prop_oneof![
                    Just("2024-05-01T11:00:00Z".to_string()),
                    Just("0001-01-01T00:00:00Z".to_string()),
                    Just("9999-12-31T23:59:59Z".to_string()),
                    Just("True".to_string()),
                    Just("Ready".to_string()),
                    Just("Always".to_string()),
                    Just("LoadBalancer".to_string()),
                    "[ -~é]{0,6}",
                ]
                .prop_map(Value::String),
            ];
            leaf.prop_recursive(5, 96, 6, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::btree_map(proptest::sample::select(KEYS), inner, 0..6)
                        .prop_map(|m| Value::Object(
                            m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                        )),
                ]
            })
        }

        const RESOURCES: &[(&str, &str)] = &[
            ("", "pods"),
            ("", "services"),
            ("", "endpoints"),
            ("", "nodes"),
            ("", "events"),
            ("", "persistentvolumes"),
            ("", "persistentvolumeclaims"),
            ("", "resourcequotas"),
            ("apps", "deployments"),
            ("apps", "daemonsets"),
            ("apps", "controllerrevisions"),
            ("batch", "jobs"),
            ("batch", "cronjobs"),
            ("autoscaling", "horizontalpodautoscalers"),
            ("policy", "poddisruptionbudgets"),
            ("networking.k8s.io", "ingresses"),
            ("discovery.k8s.io", "endpointslices"),
            ("events.k8s.io", "events"),
            ("storage.k8s.io", "csidrivers"),
            ("rbac.authorization.k8s.io", "roles"),
            (
                "admissionregistration.k8s.io",
                "validatingadmissionpolicybindings",
            ),
            ("example.com", "widgets"),
        ];

        proptest! {
            #[test]
            fn printers_never_panic(obj in arb_json(), now in any::<i64>()) {
                for (group, resource) in RESOURCES {
                    let cells = row_cells(group, resource, &obj, now);
                    prop_assert_eq!(cells.len(), column_definitions(group, resource).len());
                }
            }

            #[test]
            fn json_paths_never_panic(path in "[.a-c\\[\\]*?@()=<>!'\"0-9:$-]{0,16}", obj in arb_json()) {
                if let Some(steps) = jsonpath::parse(&path) {
                    let _ = jsonpath::eval(&steps, &obj);
                }
                let columns = [json!({"name": "X", "type": "date", "jsonPath": path})];
                prop_assert_eq!(custom_columns(&columns, &obj, 0).len(), 2);
            }

            #[test]
            fn timestamps_never_panic(s in "[0-9T:.Zz+-]{0,30}") {
                if let Some(t) = parse_rfc3339(&s) {
                    prop_assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
                }
            }
        }
    }
}
