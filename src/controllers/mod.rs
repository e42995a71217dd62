//! The controller-manager: the control loops that run inside `rk3s server`. The server starts
//! them with [`start`] while it holds the `kube-system/kube-controller-manager` Lease (see
//! `leader`) and drops them when it loses it or shuts down.
//!
//! Each controller is a plain async function over a `kube::Client` (in-process in server mode)
//! that watches what it cares about and also resyncs every [`Config::resync`], because watches
//! are never trusted to be complete. Its decisions are pure `desired_*` functions next to it.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod informer;
pub mod ipam;
pub mod job;
pub mod localpath;
pub mod namespace;
pub mod nodelifecycle;
pub mod podcontrol;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod servicelb;
pub mod statefulset;
pub mod ttl;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{self as core_v1, Pod, ReplicationController};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
use kube::{Api, Client};
use tokio::task::JoinSet;

use informer::Informer;

/// What the controller-manager needs, built by the composition root.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often every controller reconciles everything even without watch events.
    pub resync: Duration,
    /// Where node pod CIDRs come from (`--cluster-cidr`).
    pub cluster_cidr: ipam::Cidr,
    /// The cluster CA (PEM) published in every namespace's `kube-root-ca.crt` ConfigMap.
    pub root_ca: String,
    /// Where the local-path provisioner creates volume directories (`<data-dir>/storage`).
    pub storage_dir: std::path::PathBuf,
    /// Whether the local-path provisioner runs (`--disable=local-storage` turns it off).
    pub local_storage: bool,
    /// Whether the built-in LoadBalancer runs (`--disable=servicelb` turns it off).
    pub servicelb: bool,
}

/// The Lease the controller-manager's leader holds.
pub const LEASE: &str = "kube-controller-manager";

/// Starts every controller (a plain list, no registry); dropping the set stops them.
pub fn start(client: &Client, config: &Config) -> JoinSet<()> {
    let mut set = JoinSet::new();
    // Shared informers: one watch per resource, read by every controller that needs it.
    let pods = Informer::<Pod>::new(Api::all(client.clone()));
    let replica_sets = Informer::<ReplicaSet>::new(Api::all(client.clone()));
    let rcs = Informer::<ReplicationController>::new(Api::all(client.clone()));
    let rs = replicaset::Controller::new(
        client.clone(),
        replicaset::replica_set_kind(),
        replica_sets.clone(),
        pods.clone(),
    );
    let rc = replicaset::Controller::new(
        client.clone(),
        replicaset::replication_controller_kind(),
        rcs.clone(),
        pods.clone(),
    );
    let deployments = Informer::<Deployment>::new(Api::all(client.clone()));
    let deploy = deployment::Controller::new(
        client.clone(),
        deployments.clone(),
        replica_sets.clone(),
        pods.clone(),
    );
    let jobs = Informer::<Job>::new(Api::all(client.clone()));
    let job = job::Controller::new(
        client.clone(),
        job::Config::default(),
        jobs.clone(),
        pods.clone(),
    );
    let ttl = ttl::Controller::new(client.clone(), jobs.clone());
    let cronjobs = Informer::<CronJob>::new(Api::all(client.clone()));
    let cronjob = cronjob::Controller::new(
        client.clone(),
        cronjob::Config::default(),
        cronjobs.clone(),
        jobs.clone(),
    );
    let nodes = Informer::<Node>::new(Api::all(client.clone()));
    let node_leases = Informer::<Lease>::new(Api::namespaced(client.clone(), "kube-node-lease"));
    let lifecycle = nodelifecycle::Controller::new(
        client.clone(),
        nodelifecycle::Config {
            cluster_cidr: Some(config.cluster_cidr),
            ..nodelifecycle::Config::default()
        },
        nodes.clone(),
        pods.clone(),
        node_leases.clone(),
    );
    let revisions = Informer::<ControllerRevision>::new(Api::all(client.clone()));
    let daemon_sets = Informer::<DaemonSet>::new(Api::all(client.clone()));
    let ds = daemonset::Controller::new(
        client.clone(),
        daemon_sets.clone(),
        pods.clone(),
        nodes.clone(),
        revisions.clone(),
    );
    let claims = Informer::<PersistentVolumeClaim>::new(Api::all(client.clone()));
    let stateful_sets = Informer::<StatefulSet>::new(Api::all(client.clone()));
    let sts = statefulset::Controller::new(
        client.clone(),
        stateful_sets.clone(),
        pods.clone(),
        claims.clone(),
        revisions.clone(),
    );
    let volumes = Informer::<core_v1::PersistentVolume>::new(Api::all(client.clone()));
    let storage_classes =
        Informer::<k8s_openapi::api::storage::v1::StorageClass>::new(Api::all(client.clone()));
    let local_path = localpath::Controller::new(
        client.clone(),
        config.storage_dir.clone(),
        claims.clone(),
        volumes.clone(),
        storage_classes.clone(),
    );
    // Services, service accounts, quotas and disruption budgets.
    use k8s_openapi::api::core::v1 as core;
    let services = Informer::<core::Service>::new(Api::all(client.clone()));
    let endpoints = Informer::<core::Endpoints>::new(Api::all(client.clone()));
    let slices =
        Informer::<k8s_openapi::api::discovery::v1::EndpointSlice>::new(Api::all(client.clone()));
    let endpoint = endpoints::Controller::new(
        client.clone(),
        services.clone(),
        pods.clone(),
        nodes.clone(),
        endpoints.clone(),
        slices.clone(),
    );
    let servicelb = servicelb::Controller::new(client.clone(), services.clone(), nodes.clone());
    let namespaces = Informer::<core::Namespace>::new(Api::all(client.clone()));
    let accounts = Informer::<core::ServiceAccount>::new(Api::all(client.clone()));
    let config_maps = Informer::<core::ConfigMap>::new(Api::all(client.clone()));
    let serviceaccount = serviceaccount::Controller::new(
        client.clone(),
        config.root_ca.clone(),
        namespaces.clone(),
        accounts.clone(),
        config_maps.clone(),
    );
    let quotas = Informer::<core::ResourceQuota>::new(Api::all(client.clone()));
    let quota = resourcequota::Controller::new(
        client.clone(),
        quotas.clone(),
        pods.clone(),
        services.clone(),
        claims.clone(),
    );
    let pdbs = Informer::<k8s_openapi::api::policy::v1::PodDisruptionBudget>::new(Api::all(
        client.clone(),
    ));
    let disruption = disruption::Controller::new(
        client.clone(),
        pdbs.clone(),
        pods.clone(),
        deployments.clone(),
        replica_sets.clone(),
        rcs.clone(),
        stateful_sets.clone(),
    );
    let pod_gc = podgc::run(
        client.clone(),
        podgc::Config::default(),
        pods.clone(),
        nodes.clone(),
    );
    // Handlers are registered above; only now do the watches start.
    set.spawn(pods.run());
    set.spawn(replica_sets.run());
    set.spawn(rcs.run());
    set.spawn(rs.run(config.resync));
    set.spawn(rc.run(config.resync));
    set.spawn(deployments.run());
    set.spawn(deploy.run(config.resync));
    set.spawn(jobs.run());
    set.spawn(job.run(config.resync));
    set.spawn(ttl.run(config.resync));
    set.spawn(cronjobs.run());
    set.spawn(cronjob.run(config.resync));
    set.spawn(namespace::run(client.clone(), config.resync));
    // The garbage collector's watches restart with a full re-list of every resource; doing
    // that every resync would cost a list of every object in the cluster each 30 s (upstream
    // re-lists only after watch errors), so it re-lists every ten.
    set.spawn(gc::run(client.clone(), config.resync * 10));
    set.spawn(pod_gc);
    set.spawn(nodes.run());
    set.spawn(node_leases.run());
    set.spawn(lifecycle.run());
    set.spawn(revisions.run());
    set.spawn(daemon_sets.run());
    set.spawn(ds.run(config.resync));
    set.spawn(claims.run());
    set.spawn(volumes.run());
    set.spawn(storage_classes.run());
    if config.local_storage {
        set.spawn(local_path.run(config.resync));
    }
    set.spawn(stateful_sets.run());
    set.spawn(sts.run(config.resync));
    set.spawn(services.run());
    set.spawn(endpoints.run());
    set.spawn(slices.run());
    set.spawn(endpoint.run(config.resync));
    if config.servicelb {
        set.spawn(servicelb.run(config.resync));
    }
    set.spawn(namespaces.run());
    set.spawn(accounts.run());
    set.spawn(config_maps.run());
    set.spawn(serviceaccount.run(config.resync));
    set.spawn(quotas.run());
    set.spawn(quota.run(config.resync));
    set.spawn(pdbs.run());
    set.spawn(disruption.run(config.resync));
    set
}
