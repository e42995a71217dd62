//! The garbage collector (upstream's `pkg/controller/garbagecollector`): a dependency graph of
//! every object of every resource discovery lists with list, watch and delete (custom resources
//! included), built from their `metadata.ownerReferences`, and the three deletion propagations:
//!
//! - background: a dependent whose owners are all gone is deleted; one with a remaining owner
//!   only loses the dangling references (upstream's `attemptToDeleteItem`);
//! - foreground: an owner with a deletionTimestamp and the `foregroundDeletion` finalizer has its
//!   dependents deleted, and loses the finalizer once no dependent with `blockOwnerDeletion`
//!   remains (upstream's `processDeletingDependentsItem`);
//! - orphan: an owner with a deletionTimestamp and the `orphan` finalizer has its references
//!   removed from every dependent, then loses the finalizer (upstream's `attemptToOrphan`).
//!
//! Our API server does not serve `PartialObjectMetadata`, so the watches ask for whole objects
//! and decode only their `metadata` ([`Meta`]); the graph keeps a few fields per object.
//! Decisions that delete or rewrite something are checked against live reads first, as
//! upstream's `isDangling` does, because the watches of different resources are not in step.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::{DynamicResourceScope, GroupVersionKind, Resource};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::watcher;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

/// Upstream's `metav1.FinalizerOrphanDependents`.
pub const ORPHAN: &str = "orphan";
/// Upstream's `metav1.FinalizerDeleteDependents`.
pub const FOREGROUND: &str = "foregroundDeletion";

/// How often discovery is re-read so new custom resources are watched (upstream's
/// garbage collector re-syncs its monitors every 30 s).
const DISCOVERY_PERIOD: Duration = Duration::from_secs(30);
/// How soon work that waits on others (dependents going, conflicts) is looked at again.
const REQUEUE: Duration = Duration::from_secs(1);
/// Watch events arriving together are handled in one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Conflicting read-modify-write patches are retried this often before the next pass.
const RETRIES: usize = 3;

/// Any object, decoded down to its metadata: the memory of upstream's metadata-only informers
/// without needing `PartialObjectMetadata` from the server (unknown fields are skipped, never
/// kept).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Meta {
    #[serde(default)]
    pub metadata: ObjectMeta,
}

impl Resource for Meta {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// One object in the dependency graph (upstream's `node`).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub resource: Arc<ApiResource>,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerReference>,
    /// Has a deletionTimestamp.
    pub deleting: bool,
    /// Carries the `orphan` finalizer.
    pub orphan: bool,
    /// Carries the `foregroundDeletion` finalizer.
    pub foreground: bool,
}

impl Node {
    /// The graph's view of an object; `None` for one without a uid (never stored).
    pub fn new(resource: &Arc<ApiResource>, meta: ObjectMeta) -> Option<Node> {
        let finalizers = meta.finalizers.unwrap_or_default();
        Some(Node {
            resource: resource.clone(),
            namespace: meta.namespace.filter(|n| !n.is_empty()),
            name: meta.name?,
            uid: meta.uid?,
            owners: meta.owner_references.unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            orphan: finalizers.iter().any(|f| f == ORPHAN),
            foreground: finalizers.iter().any(|f| f == FOREGROUND),
        })
    }

    /// Upstream's `isDeletingDependents`: being deleted in the foreground.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.foreground
    }
}

/// The dependency graph: every watched object by uid. An object can be seen through two
/// resources sharing one storage (core and events.k8s.io Events), so each resource's members
/// are kept and an object leaves the graph when no resource has it any more.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    members: HashMap<String, HashSet<String>>,
    /// Resources being watched, and those whose first list is in.
    watched: HashSet<String>,
    synced: HashSet<String>,
    /// Owners not (yet) in the graph that a live read found, so their dependents are not
    /// re-checked on every pass (upstream's graph keeps such owners as "virtual" nodes). Only
    /// consulted while the graph has no node of that uid; forgotten when the graph learns of
    /// the object, and at every resync.
    verified: HashSet<String>,
}

impl Graph {
    /// An added or changed object seen through `resource`.
    pub fn upsert(&mut self, resource: &str, node: Node) {
        self.verified.remove(&node.uid);
        self.members
            .entry(resource.to_string())
            .or_default()
            .insert(node.uid.clone());
        self.nodes.insert(node.uid.clone(), node);
    }

    /// A deleted object seen through `resource`.
    pub fn remove(&mut self, resource: &str, uid: &str) {
        if let Some(m) = self.members.get_mut(resource) {
            m.remove(uid);
        }
        if !self.members.values().any(|m| m.contains(uid)) {
            self.nodes.remove(uid);
            self.verified.remove(uid);
        }
    }

    /// A complete list of `resource` (a watch's initial list or re-list): replaces what the
    /// graph had from it, so objects whose deletion the watch missed go.
    pub fn replace(&mut self, resource: &str, nodes: Vec<Node>) {
        let new: HashSet<String> = nodes.iter().map(|n| n.uid.clone()).collect();
        let old = self
            .members
            .insert(resource.to_string(), new.clone())
            .unwrap_or_default();
        for uid in old.difference(&new) {
            if !self.members.values().any(|m| m.contains(uid)) {
                self.nodes.remove(uid);
                self.verified.remove(uid);
            }
        }
        for n in nodes {
            self.verified.remove(&n.uid);
            self.nodes.insert(n.uid.clone(), n);
        }
        self.synced.insert(resource.to_string());
    }

    /// Sets the watched resources; those no longer served leave the graph with their objects.
    pub fn watch(&mut self, resources: HashSet<String>) {
        let gone: Vec<String> = self
            .members
            .keys()
            .filter(|k| !resources.contains(*k))
            .cloned()
            .collect();
        for r in gone {
            self.replace(&r, Vec::new());
            self.members.remove(&r);
        }
        self.synced.retain(|r| resources.contains(r));
        self.watched = resources;
    }

    /// Whether every watched resource has been listed (upstream waits for its monitors to
    /// sync): only then is "no dependent left" a fact rather than a gap in the graph.
    pub fn complete(&self) -> bool {
        !self.watched.is_empty() && self.watched.iter().all(|r| self.synced.contains(r))
    }

    /// Records an owner a live read found, unless the graph already knows it.
    pub fn verify(&mut self, uid: &str) {
        if !self.nodes.contains_key(uid) {
            self.verified.insert(uid.to_string());
        }
    }

    /// Forgets the live reads (at every resync).
    pub fn clear_verified(&mut self) {
        self.verified.clear();
    }

    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Every owner uid with the objects referring to it.
    pub fn dependents(&self) -> HashMap<&str, Vec<&Node>> {
        let mut map: HashMap<&str, Vec<&Node>> = HashMap::new();
        for n in self.nodes.values() {
            for r in &n.owners {
                map.entry(r.uid.as_str()).or_default().push(n);
            }
        }
        map
    }
}

/// What is known of an owner reference (upstream's `classifyReferences`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Exists with the referenced uid and is not being deleted in the foreground.
    Solid,
    /// Not found, or found with another uid (a new object with the old name), or a namespaced
    /// owner in another namespace than the dependent.
    Dangling,
    /// Exists and waits, in foreground deletion, for its dependents.
    WaitingForDependents,
    /// Cannot be looked up: an unknown kind, or a namespaced kind referenced by a cluster-scoped
    /// object (upstream reports `OwnerRefInvalidNamespace` and never collects the dependent).
    Unresolvable,
}

/// An owner as observed (in the graph or by a live read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub namespace: Option<String>,
    pub uid: String,
    pub deleting_dependents: bool,
}

/// Classifies one owner reference of an object in `dependent_namespace`. `owner_namespaced` is
/// the scope of the reference's kind (`None` when discovery does not know it); `owner` is what
/// was found under the reference's name (or uid).
pub fn classify(
    dependent_namespace: Option<&str>,
    reference: &OwnerReference,
    owner_namespaced: Option<bool>,
    owner: Option<&Observed>,
) -> Owner {
    let Some(namespaced) = owner_namespaced else {
        return Owner::Unresolvable;
    };
    if namespaced && dependent_namespace.is_none() {
        return Owner::Unresolvable;
    }
    match owner {
        None => Owner::Dangling,
        Some(o) if o.uid != reference.uid => Owner::Dangling,
        // Upstream looks a namespaced owner up in the dependent's namespace only.
        Some(o) if namespaced && o.namespace.as_deref() != dependent_namespace => Owner::Dangling,
        Some(o) if o.deleting_dependents => Owner::WaitingForDependents,
        Some(_) => Owner::Solid,
    }
}

/// What the dependents of an object look like, for the foreground case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dependents {
    /// It has dependents.
    pub any: bool,
    /// One of them is itself being deleted in the foreground (a possible cycle).
    pub deleting_dependents: bool,
}

/// What to do with an object that has owner references.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Keep,
    /// Remove the references to these owner uids, keep the object.
    RemoveOwnerRefs(Vec<String>),
    /// Delete it with this propagation.
    Delete(PropagationPolicy),
    /// Set `blockOwnerDeletion: false` on its references, then delete it in the foreground
    /// (upstream's cycle breaker).
    UnblockAndDeleteForeground,
}

/// Upstream's `attemptToDeleteItem` decision for an object not itself being deleted, given each
/// of its owner references classified, its dependents and its own GC finalizers.
pub fn desired_action(
    owners: &[(&OwnerReference, Owner)],
    dependents: Dependents,
    orphan_finalizer: bool,
    foreground_finalizer: bool,
) -> Action {
    if owners.is_empty() || owners.iter().any(|(_, o)| *o == Owner::Unresolvable) {
        return Action::Keep;
    }
    let of = |want: Owner| owners.iter().filter(move |(_, o)| *o == want);
    if of(Owner::Solid).next().is_some() {
        // A living owner keeps the object; references to owners that are gone or waiting for
        // their dependents are removed so those owners can finish.
        let remove: Vec<String> = owners
            .iter()
            .filter(|(_, o)| *o != Owner::Solid)
            .map(|(r, _)| r.uid.clone())
            .collect();
        return if remove.is_empty() {
            Action::Keep
        } else {
            Action::RemoveOwnerRefs(remove)
        };
    }
    if of(Owner::WaitingForDependents).next().is_some() && dependents.any {
        // An owner waits in the foreground and this object has dependents of its own: delete
        // it in the foreground too, so the wait propagates down.
        return if dependents.deleting_dependents {
            Action::UnblockAndDeleteForeground
        } else {
            Action::Delete(PropagationPolicy::Foreground)
        };
    }
    // No owner is left: collect it, honouring its own finalizers for its dependents.
    Action::Delete(if orphan_finalizer {
        PropagationPolicy::Orphan
    } else if foreground_finalizer {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    })
}

/// The owner references left after removing `remove` (upstream's `deleteOwnerRefJSONMergePatch`).
pub fn remaining_refs(refs: &[OwnerReference], remove: &[String]) -> Vec<OwnerReference> {
    refs.iter()
        .filter(|r| !remove.contains(&r.uid))
        .cloned()
        .collect()
}

/// The owner references with every `blockOwnerDeletion` turned off (upstream's
/// `unblockOwnerReferencesJSONMergePatch`).
pub fn unblocked_refs(refs: &[OwnerReference]) -> Vec<OwnerReference> {
    refs.iter()
        .cloned()
        .map(|mut r| {
            if r.block_owner_deletion == Some(true) {
                r.block_owner_deletion = Some(false);
            }
            r
        })
        .collect()
}

/// A piece of work found in the graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// An object whose owners look gone or waiting: decide on live reads and act.
    Dependent { node: Node, dependents: Dependents },
    /// An owner deleted with the orphan policy: strip its references, then its finalizer.
    Orphan { owner: Node, dependents: Vec<Node> },
    /// An owner deleted in the foreground with no blocking dependent left: drop the finalizer.
    FinishForeground { owner: Node },
}

/// The work the graph calls for, and whether something waits (a foreground owner with blocking
/// dependents, or an incomplete graph). `namespaced` gives the scope of an owner reference's
/// `(apiVersion, kind)`.
pub fn plan(graph: &Graph, namespaced: &dyn Fn(&str, &str) -> Option<bool>) -> (Vec<Work>, bool) {
    let dependents = graph.dependents();
    let complete = graph.complete();
    let mut work = Vec::new();
    let mut waiting = false;
    for node in graph.nodes.values() {
        let deps = dependents.get(node.uid.as_str());
        if node.deleting {
            if node.orphan {
                if complete {
                    work.push(Work::Orphan {
                        owner: node.clone(),
                        dependents: deps
                            .map(|d| d.iter().map(|n| (*n).clone()).collect())
                            .unwrap_or_default(),
                    });
                } else {
                    waiting = true;
                }
            } else if node.foreground {
                let blocking = deps.is_some_and(|d| {
                    d.iter().any(|dep| {
                        dep.owners
                            .iter()
                            .any(|r| r.uid == node.uid && r.block_owner_deletion == Some(true))
                    })
                });
                if blocking || !complete {
                    waiting = true;
                } else {
                    work.push(Work::FinishForeground {
                        owner: node.clone(),
                    });
                }
            }
            continue;
        }
        if node.owners.is_empty() {
            continue;
        }
        let summary = Dependents {
            any: deps.is_some_and(|d| !d.is_empty()),
            deleting_dependents: deps.is_some_and(|d| d.iter().any(|n| n.deleting_dependents())),
        };
        let owners: Vec<(&OwnerReference, Owner)> = node
            .owners
            .iter()
            .map(|r| {
                if !graph.nodes.contains_key(&r.uid) && graph.verified.contains(&r.uid) {
                    return (r, Owner::Solid);
                }
                let seen = graph.get(&r.uid).map(|o| Observed {
                    namespace: o.namespace.clone(),
                    uid: o.uid.clone(),
                    deleting_dependents: o.deleting_dependents(),
                });
                let scope = namespaced(&r.api_version, &r.kind);
                (
                    r,
                    classify(node.namespace.as_deref(), r, scope, seen.as_ref()),
                )
            })
            .collect();
        if desired_action(&owners, summary, node.orphan, node.foreground) != Action::Keep {
            work.push(Work::Dependent {
                node: node.clone(),
                dependents: summary,
            });
        }
    }
    (work, waiting)
}

/// State shared by the watch tasks and the worker.
#[derive(Default)]
struct Shared {
    graph: Mutex<Graph>,
    wake: Notify,
    /// A CustomResourceDefinition changed: read discovery again now rather than at the next
    /// 30 s tick, so a new custom resource's objects join the graph quickly.
    rediscover: AtomicBool,
}

impl Shared {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        // The graph is only changed by whole-method calls that keep it consistent; a panic in
        // another task cannot leave it half-written.
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the garbage collector: watches every deletable resource, re-reads discovery every 30 s,
/// re-lists every resource every `resync` (watches are never trusted to be complete), and
/// processes the graph after every change and at least every 30 s.
pub async fn run(client: Client, resync: Duration) {
    let shared = Arc::new(Shared::default());
    // Dropping the set (when this controller is cancelled) aborts every watch task.
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut watching: HashMap<String, AbortHandle> = HashMap::new();
    let mut discovery: Option<Discovery> = None;
    let mut next_discovery = Instant::now();
    let mut next_resync = Instant::now() + resync;
    loop {
        let crds_changed = shared.rediscover.swap(false, Ordering::Relaxed);
        if crds_changed || Instant::now() >= next_discovery {
            match Discovery::new(client.clone()).run_aggregated().await {
                Ok(d) => {
                    let wanted = watchable(&d);
                    watching.retain(|key, task| {
                        let keep = wanted.contains_key(key) && !task.is_finished();
                        if !keep {
                            task.abort();
                        }
                        keep
                    });
                    for (key, ar) in &wanted {
                        if !watching.contains_key(key) {
                            let task = tasks.spawn(watch_resource(
                                client.clone(),
                                Arc::new(ar.clone()),
                                key.clone(),
                                shared.clone(),
                                resync,
                            ));
                            watching.insert(key.clone(), task);
                        }
                    }
                    shared.graph().watch(wanted.into_keys().collect());
                    discovery = Some(d);
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector discovery"),
            }
            // After a CRD change, look again shortly: the API server may serve the new resource
            // only once the CRD is established.
            next_discovery = Instant::now()
                + if crds_changed {
                    REQUEUE * 2
                } else {
                    DISCOVERY_PERIOD
                };
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done
                    && !e.is_cancelled()
                {
                    tracing::error!(error = %e, "a garbage collector watch stopped");
                }
            }
        }
        if Instant::now() >= next_resync {
            shared.graph().clear_verified();
            next_resync = Instant::now() + resync;
        }
        let waiting = match &discovery {
            Some(d) => process(&client, &shared, d).await,
            None => true,
        };
        let wait = if waiting {
            REQUEUE
        } else {
            next_discovery
                .min(next_resync)
                .saturating_duration_since(Instant::now())
        };
        tokio::select! {
            _ = shared.wake.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The resources upstream's garbage collector monitors (`GetDeletableResources`): preferred
/// versions supporting list, watch and delete, keyed `apiVersion/plural`, minus upstream's
/// `DefaultIgnoredResources` (Events of both groups: many, short-lived, never owners).
fn watchable(discovery: &Discovery) -> HashMap<String, ApiResource> {
    discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(ar, caps)| {
            caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::WATCH)
                && caps.supports_operation(verbs::DELETE)
                && !(ar.plural == "events" && matches!(ar.group.as_str(), "" | "events.k8s.io"))
        })
        .map(|(ar, _)| (format!("{}/{}", ar.api_version, ar.plural), ar))
        .collect()
}

/// The resource of an owner reference's `(apiVersion, kind)`: its own version when served,
/// else the group's preferred one (upstream's RESTMapper lookup).
fn resolve(discovery: &Discovery, api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    discovery
        .resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
        .or_else(|| discovery.get(group)?.recommended_kind(kind))
        .map(|(ar, caps)| (ar, caps.scope == Scope::Namespaced))
}

/// Feeds one resource's watch into the graph, starting over (a full re-list) every `resync`.
async fn watch_resource(
    client: Client,
    ar: Arc<ApiResource>,
    key: String,
    shared: Arc<Shared>,
    resync: Duration,
) {
    let api: Api<Meta> = Api::all_with(client, ar.as_ref());
    let crds = ar.group == "apiextensions.k8s.io" && ar.plural == "customresourcedefinitions";
    let crd_changed = || {
        if crds {
            shared.rediscover.store(true, Ordering::Relaxed);
            shared.wake.notify_one();
        }
    };
    loop {
        let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
        let relist = tokio::time::sleep(resync);
        tokio::pin!(relist);
        let mut listed: Vec<Node> = Vec::new();
        loop {
            let event = tokio::select! {
                _ = &mut relist => break,
                e = events.next() => e,
            };
            match event {
                None => break,
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitApply(m))) => listed.extend(Node::new(&ar, m.metadata)),
                Some(Ok(watcher::Event::InitDone)) => {
                    shared.graph().replace(&key, std::mem::take(&mut listed));
                    shared.wake.notify_one();
                }
                Some(Ok(watcher::Event::Apply(m))) => {
                    if let Some(node) = Node::new(&ar, m.metadata) {
                        let interesting = !node.owners.is_empty() || node.deleting;
                        shared.graph().upsert(&key, node);
                        if interesting {
                            shared.wake.notify_one();
                        }
                    }
                    crd_changed();
                }
                Some(Ok(watcher::Event::Delete(m))) => {
                    if let Some(uid) = m.metadata.uid {
                        shared.graph().remove(&key, &uid);
                        shared.wake.notify_one();
                    }
                    crd_changed();
                }
                Some(Err(e)) => {
                    tracing::debug!(resource = %key, error = %e, "garbage collector watch");
                    tokio::time::sleep(REQUEUE).await;
                }
            }
        }
    }
}

/// One pass over the graph; `true` when something waits and the pass should come again soon.
async fn process(client: &Client, shared: &Shared, discovery: &Discovery) -> bool {
    let namespaced = |av: &str, kind: &str| resolve(discovery, av, kind).map(|(_, n)| n);
    let (work, mut waiting) = plan(&shared.graph(), &namespaced);
    for w in work {
        let outcome = match &w {
            Work::Dependent { node, dependents } => {
                attempt_to_delete(client, discovery, shared, node, *dependents).await
            }
            Work::Orphan { owner, dependents } => orphan(client, owner, dependents).await,
            Work::FinishForeground { owner } => remove_finalizer(client, owner, FOREGROUND).await,
        };
        match outcome {
            Ok(true) => {}
            Ok(false) => waiting = true,
            Err(e) => {
                tracing::warn!(work = ?w, error = %e, "garbage collector");
                waiting = true;
            }
        }
    }
    waiting
}

fn api_for(client: &Client, ar: &ApiResource, namespace: Option<&str>) -> Api<Meta> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// The live object behind a node, `None` when it is gone or replaced by another uid.
async fn latest(api: &Api<Meta>, node: &Node) -> Result<Option<Meta>, kube::Error> {
    Ok(api
        .get_opt(&node.name)
        .await?
        .filter(|m| m.metadata.uid.as_deref() == Some(node.uid.as_str())))
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Upstream's `attemptToDeleteItem` on live reads; `Ok(false)` when it should be retried.
async fn attempt_to_delete(
    client: &Client,
    discovery: &Discovery,
    shared: &Shared,
    node: &Node,
    dependents: Dependents,
) -> Result<bool, kube::Error> {
    let api = api_for(client, &node.resource, node.namespace.as_deref());
    let Some(live) = latest(&api, node).await? else {
        return Ok(true);
    };
    // Objects already being deleted are left alone (foreground ones are handled as owners).
    if live.metadata.deletion_timestamp.is_some() {
        return Ok(true);
    }
    let refs = live.metadata.owner_references.clone().unwrap_or_default();
    let mut owners = Vec::with_capacity(refs.len());
    for r in &refs {
        let state = match resolve(discovery, &r.api_version, &r.kind) {
            None => Owner::Unresolvable,
            Some((_, true)) if node.namespace.is_none() => Owner::Unresolvable,
            Some((ar, namespaced)) => {
                let ns = if namespaced {
                    node.namespace.as_deref()
                } else {
                    None
                };
                let found = api_for(client, &ar, ns).get_opt(&r.name).await?;
                let seen = found.map(|m| {
                    let n = Node::new(&Arc::new(ar.clone()), m.metadata);
                    Observed {
                        namespace: n.as_ref().and_then(|n| n.namespace.clone()),
                        uid: n.as_ref().map(|n| n.uid.clone()).unwrap_or_default(),
                        deleting_dependents: n.is_some_and(|n| n.deleting_dependents()),
                    }
                });
                classify(
                    node.namespace.as_deref(),
                    r,
                    Some(namespaced),
                    seen.as_ref(),
                )
            }
        };
        if state == Owner::Solid {
            shared.graph().verify(&r.uid);
        }
        owners.push((r, state));
    }
    let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
    let action = desired_action(
        &owners,
        dependents,
        finalizers.iter().any(|f| f == ORPHAN),
        finalizers.iter().any(|f| f == FOREGROUND),
    );
    let rv = live.metadata.resource_version.clone();
    match action {
        Action::Keep => Ok(true),
        Action::RemoveOwnerRefs(remove) => {
            tracing::info!(object = %describe(node), owners = ?remove, "removing dangling owner references");
            patch_refs(&api, node, rv, &remaining_refs(&refs, &remove)).await
        }
        Action::Delete(policy) => {
            tracing::info!(object = %describe(node), ?policy, "deleting object whose owners are gone");
            delete(&api, node, policy).await
        }
        Action::UnblockAndDeleteForeground => {
            if !patch_refs(&api, node, rv, &unblocked_refs(&refs)).await? {
                return Ok(false);
            }
            delete(&api, node, PropagationPolicy::Foreground).await
        }
    }
}

fn describe(node: &Node) -> String {
    match &node.namespace {
        Some(ns) => format!("{} {ns}/{}", node.resource.plural, node.name),
        None => format!("{} {}", node.resource.plural, node.name),
    }
}

/// Writes an object's owner references with a resourceVersion precondition (upstream's JSON
/// merge patch); `Ok(false)` on a conflict.
async fn patch_refs(
    api: &Api<Meta>,
    node: &Node,
    resource_version: Option<String>,
    refs: &[OwnerReference],
) -> Result<bool, kube::Error> {
    let refs = if refs.is_empty() {
        serde_json::Value::Null
    } else {
        json!(refs)
    };
    let patch = json!({"metadata": {"resourceVersion": resource_version, "ownerReferences": refs}});
    match api
        .patch(&node.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 404) => Ok(true),
        Err(e) if is_status(&e, 409) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes an object with a uid precondition, so a new object with the same name is spared.
async fn delete(
    api: &Api<Meta>,
    node: &Node,
    policy: PropagationPolicy,
) -> Result<bool, kube::Error> {
    let params = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions {
            uid: Some(node.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&node.name, &params).await {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Upstream's `attemptToOrphan`: removes the owner's references from its dependents, then the
/// `orphan` finalizer from the owner.
async fn orphan(client: &Client, owner: &Node, dependents: &[Node]) -> Result<bool, kube::Error> {
    for dep in dependents {
        let api = api_for(client, &dep.resource, dep.namespace.as_deref());
        let mut done = false;
        for _ in 0..RETRIES {
            let Some(live) = latest(&api, dep).await? else {
                done = true;
                break;
            };
            let refs = live.metadata.owner_references.unwrap_or_default();
            let left = remaining_refs(&refs, std::slice::from_ref(&owner.uid));
            if left.len() == refs.len() {
                done = true;
                break;
            }
            if patch_refs(&api, dep, live.metadata.resource_version, &left).await? {
                done = true;
                break;
            }
        }
        if !done {
            return Ok(false);
        }
    }
    tracing::info!(object = %describe(owner), dependents = dependents.len(), "orphaned dependents");
    remove_finalizer(client, owner, ORPHAN).await
}

/// Removes one finalizer from a deleting owner with a resourceVersion precondition; the API
/// server deletes the object once its last finalizer is gone.
async fn remove_finalizer(
    client: &Client,
    owner: &Node,
    finalizer: &str,
) -> Result<bool, kube::Error> {
    let api = api_for(client, &owner.resource, owner.namespace.as_deref());
    for _ in 0..RETRIES {
        let Some(live) = latest(&api, owner).await? else {
            return Ok(true);
        };
        let finalizers = live.metadata.finalizers.unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(true);
        }
        let left: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        let left = if left.is_empty() {
            serde_json::Value::Null
        } else {
            json!(left)
        };
        let patch = json!({"metadata": {
            "resourceVersion": live.metadata.resource_version,
            "finalizers": left,
        }});
        match api
            .patch(&owner.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => {
                tracing::info!(object = %describe(owner), finalizer, "removed finalizer");
                return Ok(true);
            }
            Err(e) if is_status(&e, 404) => return Ok(true),
            Err(e) if is_status(&e, 409) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configmaps() -> Arc<ApiResource> {
        Arc::new(ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        })
    }

    fn reference(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("owner-{uid}"),
            uid: uid.into(),
            block_owner_deletion: block.then_some(true),
            controller: None,
        }
    }

    fn node(uid: &str, owners: Vec<OwnerReference>) -> Node {
        Node {
            resource: configmaps(),
            namespace: Some("default".into()),
            name: format!("n-{uid}"),
            uid: uid.into(),
            owners,
            deleting: false,
            orphan: false,
            foreground: false,
        }
    }

    fn namespaced(_: &str, kind: &str) -> Option<bool> {
        match kind {
            "ConfigMap" => Some(true),
            "Node" => Some(false),
            _ => None,
        }
    }

    #[test]
    fn all_owners_gone_deletes_in_the_background() {
        let (a, b) = (reference("a", false), reference("b", true));
        let owners = [(&a, Owner::Dangling), (&b, Owner::Dangling)];
        assert_eq!(
            desired_action(&owners, Dependents::default(), false, false),
            Action::Delete(PropagationPolicy::Background)
        );
        // The object's own finalizers pick the propagation for its dependents.
        assert_eq!(
            desired_action(&owners, Dependents::default(), true, false),
            Action::Delete(PropagationPolicy::Orphan)
        );
        assert_eq!(
            desired_action(&owners, Dependents::default(), false, true),
            Action::Delete(PropagationPolicy::Foreground)
        );
    }

    #[test]
    fn a_living_owner_keeps_the_object_and_dangling_references_go() {
        let (a, b, c) = (
            reference("a", false),
            reference("b", false),
            reference("c", true),
        );
        let owners = [
            (&a, Owner::Solid),
            (&b, Owner::Dangling),
            (&c, Owner::WaitingForDependents),
        ];
        assert_eq!(
            desired_action(&owners, Dependents::default(), false, false),
            Action::RemoveOwnerRefs(vec!["b".into(), "c".into()])
        );
        assert_eq!(
            desired_action(&[(&a, Owner::Solid)], Dependents::default(), false, false),
            Action::Keep
        );
        assert_eq!(
            desired_action(&[], Dependents::default(), false, false),
            Action::Keep
        );
    }

    #[test]
    fn an_unresolvable_owner_keeps_the_object() {
        let (a, b) = (reference("a", false), reference("b", false));
        let owners = [(&a, Owner::Dangling), (&b, Owner::Unresolvable)];
        assert_eq!(
            desired_action(&owners, Dependents::default(), false, false),
            Action::Keep
        );
    }

    #[test]
    fn foreground_deletion_propagates_to_dependents_with_dependents() {
        let a = reference("a", true);
        let owners = [(&a, Owner::WaitingForDependents)];
        assert_eq!(
            desired_action(&owners, Dependents::default(), false, false),
            Action::Delete(PropagationPolicy::Background)
        );
        let with = Dependents {
            any: true,
            deleting_dependents: false,
        };
        assert_eq!(
            desired_action(&owners, with, false, false),
            Action::Delete(PropagationPolicy::Foreground)
        );
        let cycle = Dependents {
            any: true,
            deleting_dependents: true,
        };
        assert_eq!(
            desired_action(&owners, cycle, false, false),
            Action::UnblockAndDeleteForeground
        );
    }

    #[test]
    fn owners_are_classified_by_uid_and_namespace() {
        let r = reference("a", false);
        let seen = |ns: &str, uid: &str, fg: bool| Observed {
            namespace: Some(ns.into()),
            uid: uid.into(),
            deleting_dependents: fg,
        };
        let same = seen("default", "a", false);
        assert_eq!(
            classify(Some("default"), &r, Some(true), Some(&same)),
            Owner::Solid
        );
        // Same name, another uid: the owner was deleted and recreated.
        let other = seen("default", "z", false);
        assert_eq!(
            classify(Some("default"), &r, Some(true), Some(&other)),
            Owner::Dangling
        );
        assert_eq!(
            classify(Some("default"), &r, Some(true), None),
            Owner::Dangling
        );
        let elsewhere = seen("other", "a", false);
        assert_eq!(
            classify(Some("default"), &r, Some(true), Some(&elsewhere)),
            Owner::Dangling
        );
        let waiting = seen("default", "a", true);
        assert_eq!(
            classify(Some("default"), &r, Some(true), Some(&waiting)),
            Owner::WaitingForDependents
        );
        assert_eq!(
            classify(None, &r, Some(true), Some(&same)),
            Owner::Unresolvable
        );
        assert_eq!(
            classify(Some("default"), &r, None, None),
            Owner::Unresolvable
        );
    }

    #[test]
    fn references_are_removed_and_unblocked() {
        let refs = vec![reference("a", true), reference("b", true)];
        let left = remaining_refs(&refs, &["a".into()]);
        assert_eq!(left, vec![reference("b", true)]);
        let unblocked = unblocked_refs(&refs);
        assert!(
            unblocked
                .iter()
                .all(|r| r.block_owner_deletion == Some(false))
        );
        assert_eq!(
            unblocked_refs(&[reference("c", false)])[0].block_owner_deletion,
            None
        );
    }

    fn graph(nodes: Vec<Node>) -> Graph {
        let mut g = Graph::default();
        g.watch(HashSet::from(["v1/configmaps".to_string()]));
        g.replace("v1/configmaps", nodes);
        g
    }

    fn kinds(work: &[Work]) -> Vec<(String, &'static str)> {
        let mut v: Vec<_> = work
            .iter()
            .map(|w| match w {
                Work::Dependent { node, .. } => (node.uid.clone(), "dependent"),
                Work::Orphan { owner, .. } => (owner.uid.clone(), "orphan"),
                Work::FinishForeground { owner } => (owner.uid.clone(), "finish"),
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_graph_finds_dependents_of_missing_owners() {
        let g = graph(vec![
            node("owner", vec![]),
            node("kept", vec![reference("owner", false)]),
            node("orphaned", vec![reference("gone", false)]),
        ]);
        let (work, waiting) = plan(&g, &namespaced);
        assert_eq!(kinds(&work), [("orphaned".to_string(), "dependent")]);
        assert!(!waiting);
        // An owner a live read found (its resource is not watched) counts as present.
        let mut g = g;
        g.verify("gone");
        let (work, _) = plan(&g, &namespaced);
        assert!(work.is_empty());
        // Once the graph has seen that owner go, the live read no longer counts.
        g.upsert("v1/configmaps", node("gone", vec![]));
        g.remove("v1/configmaps", "gone");
        let (work, _) = plan(&g, &namespaced);
        assert_eq!(kinds(&work), [("orphaned".to_string(), "dependent")]);
    }

    #[test]
    fn a_foreground_owner_waits_for_blocking_dependents_only() {
        let mut owner = node("owner", vec![]);
        owner.deleting = true;
        owner.foreground = true;
        let g = graph(vec![
            owner.clone(),
            node("blocking", vec![reference("owner", true)]),
            node("free", vec![reference("owner", false)]),
        ]);
        let (work, waiting) = plan(&g, &namespaced);
        assert_eq!(
            kinds(&work),
            [
                ("blocking".to_string(), "dependent"),
                ("free".to_string(), "dependent")
            ]
        );
        assert!(waiting);
        let g = graph(vec![owner, node("free", vec![reference("owner", false)])]);
        let (work, waiting) = plan(&g, &namespaced);
        assert_eq!(
            kinds(&work),
            [
                ("free".to_string(), "dependent"),
                ("owner".to_string(), "finish")
            ]
        );
        assert!(!waiting);
    }

    #[test]
    fn an_orphaning_owner_lists_its_dependents() {
        let mut owner = node("owner", vec![]);
        owner.deleting = true;
        owner.orphan = true;
        let g = graph(vec![
            owner,
            node("d1", vec![reference("owner", true)]),
            node("d2", vec![reference("owner", false), reference("x", false)]),
        ]);
        let mut g = g;
        g.verify("x");
        let (work, _) = plan(&g, &namespaced);
        let orphan = work
            .iter()
            .find_map(|w| match w {
                Work::Orphan { dependents, .. } => Some(dependents.len()),
                _ => None,
            })
            .unwrap();
        assert_eq!(orphan, 2);
        // The dependents themselves are not collected while the owner still exists.
        assert_eq!(kinds(&work), [("owner".to_string(), "orphan")]);
    }

    #[test]
    fn an_incomplete_graph_finishes_no_owner() {
        let mut owner = node("owner", vec![]);
        owner.deleting = true;
        owner.foreground = true;
        let mut g = graph(vec![owner]);
        g.watch(HashSet::from([
            "v1/configmaps".to_string(),
            "v1/secrets".to_string(),
        ]));
        let (work, waiting) = plan(&g, &namespaced);
        assert!(work.is_empty());
        assert!(waiting);
    }

    #[test]
    fn a_relist_drops_objects_whose_deletion_was_missed() {
        let mut g = graph(vec![node("a", vec![]), node("b", vec![])]);
        // The same object seen through a second resource (shared storage) stays until both
        // have dropped it.
        g.upsert("events.k8s.io/v1/events", node("b", vec![]));
        g.replace("v1/configmaps", vec![node("c", vec![])]);
        assert!(g.get("a").is_none());
        assert!(g.get("b").is_some());
        assert!(g.get("c").is_some());
        g.remove("events.k8s.io/v1/events", "b");
        assert!(g.get("b").is_none());
        // A resource no longer served takes its objects along.
        g.watch(HashSet::new());
        assert!(g.get("c").is_none());
    }

    #[test]
    fn cluster_scoped_dependents_of_namespaced_owners_are_kept() {
        let mut n = node("d", vec![reference("gone", false)]);
        n.namespace = None;
        let g = graph(vec![n]);
        let (work, _) = plan(&g, &namespaced);
        assert!(work.is_empty());
    }
}
