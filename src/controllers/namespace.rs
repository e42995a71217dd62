//! The namespace controller (upstream's namespace lifecycle controller, `NamespacedResourcesDeleter`):
//! when a namespace has a deletionTimestamp it deletes every namespaced object in it, for every
//! namespaced resource discovery lists (custom resources included), waits for their finalizers,
//! reports progress in the namespace's status conditions, and finally removes `kubernetes` from
//! `spec.finalizers` through the `finalize` subresource, after which the API server deletes the
//! namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::Notify;

/// The finalizer this controller owns in `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";

/// How soon a namespace whose content is still going is looked at again.
const REQUEUE: Duration = Duration::from_secs(1);

/// Watches namespaces and empties the terminating ones; resyncs every `resync`.
pub async fn run(client: Client, resync: Duration) {
    let wake = Arc::new(Notify::new());
    // Namespaces the watch reported as deleting: a list that still shows one of them without a
    // deletionTimestamp is behind the watch, and the pass is retried soon.
    let deleting: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let watch = {
        let (client, wake, deleting) = (client.clone(), wake.clone(), deleting.clone());
        async move {
            let namespaces: Api<Namespace> = Api::all(client);
            let mut events = watcher(namespaces, watcher::Config::default()).boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Apply(ns) | watcher::Event::InitApply(ns))
                        if ns.metadata.deletion_timestamp.is_some() =>
                    {
                        lock(&deleting).insert(ns.name_any());
                        wake.notify_one()
                    }
                    Ok(watcher::Event::Delete(ns)) => {
                        lock(&deleting).remove(&ns.name_any());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "watching namespaces");
                        tokio::time::sleep(REQUEUE).await;
                    }
                }
            }
        }
    };
    let work = async {
        loop {
            let wait = match sync_all(&client, &deleting).await {
                Ok(false) => resync,
                Ok(true) => REQUEUE,
                Err(e) => {
                    tracing::warn!(error = %e, "namespace controller");
                    REQUEUE
                }
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    };
    tokio::join!(watch, work);
}

fn lock(set: &Mutex<BTreeSet<String>>) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    // The set holds plain names; a panic elsewhere cannot leave it inconsistent.
    set.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reconciles every terminating namespace; `true` when some still wait for content to go.
async fn sync_all(
    client: &Client,
    deleting: &Mutex<BTreeSet<String>>,
) -> Result<bool, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let all = namespaces.list(&ListParams::default()).await?.items;
    let mut pending = {
        let deleting = lock(deleting);
        all.iter()
            .any(|ns| ns.metadata.deletion_timestamp.is_none() && deleting.contains(&ns.name_any()))
    };
    let terminating: Vec<Namespace> = all
        .into_iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_some() && has_finalizer(ns))
        .collect();
    if terminating.is_empty() {
        return Ok(pending);
    }
    // Upstream discovers once per namespace sync; once per pass is the same view, cheaper.
    let discovery = Discovery::new(client.clone()).run_aggregated().await;
    for ns in terminating {
        let name = ns.name_any();
        match sync(client, &namespaces, ns, discovery.as_ref()).await {
            Ok(done) => pending |= !done,
            Err(e) => {
                tracing::warn!(namespace = %name, error = %e, "deleting namespace content");
                pending = true;
            }
        }
    }
    Ok(pending)
}

fn has_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// What one pass over a namespace's content found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Why discovery failed, if it did.
    pub discovery_failure: Option<String>,
    /// Resources whose content could not be deleted, with the error.
    pub failures: Vec<String>,
    /// Objects still present per group-resource (`configmaps`, `widgets.example.com`).
    pub remaining: BTreeMap<String, usize>,
    /// Objects still present per finalizer they carry.
    pub finalizers: BTreeMap<String, usize>,
}

impl Report {
    fn done(&self) -> bool {
        self.discovery_failure.is_none() && self.failures.is_empty() && self.remaining.is_empty()
    }
}

/// Deletes a terminating namespace's content; `Ok(true)` once it was finalized.
async fn sync(
    client: &Client,
    namespaces: &Api<Namespace>,
    mut ns: Namespace,
    discovery: Result<&Discovery, &kube::Error>,
) -> Result<bool, kube::Error> {
    let name = ns.name_any();
    let mut report = Report::default();
    match discovery {
        Ok(d) => {
            for ar in deletable(d) {
                delete_content(client, &name, &ar, &mut report).await;
            }
        }
        Err(e) => {
            report.discovery_failure =
                Some(format!("Discovery failed for some groups, 1 failing: {e}"))
        }
    }
    // Upstream writes the conditions after every pass, before finalizing.
    let old = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let conditions = desired_conditions(&old, &report, Timestamp::now());
    if conditions != old {
        ns.status.get_or_insert_default().conditions = Some(conditions);
        ns = namespaces
            .replace_status(&name, &PostParams::default(), &ns)
            .await?;
    }
    if !report.done() {
        tracing::debug!(namespace = %name, ?report, "namespace content remains");
        return Ok(false);
    }
    let spec = ns.spec.get_or_insert_default();
    spec.finalizers = Some(desired_finalizers(
        spec.finalizers.as_deref().unwrap_or_default(),
    ));
    namespaces
        .replace_subresource("finalize", &name, &PostParams::default(), &ns)
        .await?;
    tracing::info!(namespace = %name, "namespace content removed; finalized");
    Ok(true)
}

/// The namespaced resources whose objects can be listed and deleted (upstream deletes those
/// supporting `delete`, through `deletecollection` when it can), at the preferred version of
/// each group.
pub fn deletable(discovery: &Discovery) -> Vec<ApiResource> {
    discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(_, caps)| {
            caps.scope == Scope::Namespaced
                && caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::DELETE)
        })
        .map(|(ar, _)| ar)
        .collect()
}

/// Deletes everything of one resource in `namespace`, then counts what is left.
async fn delete_content(client: &Client, namespace: &str, ar: &ApiResource, report: &mut Report) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, ar);
    let group_resource = if ar.group.is_empty() {
        ar.plural.clone()
    } else {
        format!("{}.{}", ar.plural, ar.group)
    };
    // Upstream deletes with background propagation, collection-wide when the resource allows
    // it and one by one otherwise.
    let params = DeleteParams::background();
    let collection = api.delete_collection(&params, &ListParams::default()).await;
    if collection.is_err() {
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                for obj in list.items {
                    if obj.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    match api.delete(&obj.name_any(), &params).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => report.failures.push(format!("{group_resource}: {e}")),
                    }
                }
            }
            Err(e) => {
                report.failures.push(format!("{group_resource}: {e}"));
                return;
            }
        }
    }
    match api.list(&ListParams::default()).await {
        Ok(list) if !list.items.is_empty() => {
            *report.remaining.entry(group_resource).or_default() += list.items.len();
            for obj in &list.items {
                for f in obj.finalizers() {
                    *report.finalizers.entry(f.clone()).or_default() += 1;
                }
            }
        }
        Ok(_) => {}
        Err(e) => report.failures.push(format!("{group_resource}: {e}")),
    }
}

/// `spec.finalizers` once this controller is done: everything but `kubernetes`.
pub fn desired_finalizers(current: &[String]) -> Vec<String> {
    current
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect()
}

/// The five deletion conditions upstream's namespace controller maintains, in its order, with
/// its reasons and messages; a condition keeps its lastTransitionTime while its status and
/// message stay the same (upstream's `namespaceConditionUpdater`).
pub fn desired_conditions(
    old: &[NamespaceCondition],
    report: &Report,
    now: Timestamp,
) -> Vec<NamespaceCondition> {
    let join = |m: &BTreeMap<String, usize>, f: &dyn Fn(&str, usize) -> String| {
        m.iter()
            .map(|(k, n)| f(k, *n))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let failures = match report.failures.len() {
        0 => None,
        1 => Some(format!(
            "Failed to delete all resource types, 1 remaining: {}",
            report.failures[0]
        )),
        n => Some(format!(
            "Failed to delete all resource types, {n} remaining: [{}]",
            report.failures.join(", ")
        )),
    };
    let remaining = (!report.remaining.is_empty()).then(|| {
        format!(
            "Some resources are remaining: {}",
            join(&report.remaining, &|r, n| format!(
                "{r} has {n} resource instances"
            ))
        )
    });
    let finalizers = (!report.finalizers.is_empty()).then(|| {
        format!(
            "Some content in the namespace has finalizers remaining: {}",
            join(&report.finalizers, &|f, n| format!(
                "{f} in {n} resource instances"
            ))
        )
    });
    let table: [(&str, Option<String>, &str, &str, &str); 5] = [
        (
            "NamespaceDeletionDiscoveryFailure",
            report.discovery_failure.clone(),
            "DiscoveryFailed",
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            None,
            "GroupVersionParsingFailed",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        (
            "NamespaceDeletionContentFailure",
            failures,
            "ContentDeletionFailed",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        (
            "NamespaceContentRemaining",
            remaining,
            "SomeResourcesRemain",
            "ContentRemoved",
            "All content successfully removed",
        ),
        (
            "NamespaceFinalizersRemaining",
            finalizers,
            "SomeFinalizersRemain",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        ),
    ];
    table
        .into_iter()
        .map(|(type_, problem, bad_reason, ok_reason, ok_message)| {
            let (status, reason, message) = match problem {
                Some(m) => ("True", bad_reason, m),
                None => ("False", ok_reason, ok_message.to_string()),
            };
            match old.iter().find(|c| c.type_ == type_) {
                Some(c) if c.status == status && c.message.as_deref() == Some(&message) => {
                    c.clone()
                }
                _ => NamespaceCondition {
                    type_: type_.into(),
                    status: status.into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                    last_transition_time: Some(Time(now)),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finalizing_removes_only_the_kubernetes_finalizer() {
        let f = vec!["kubernetes".to_string(), "example.com/keep".to_string()];
        assert_eq!(desired_finalizers(&f), vec!["example.com/keep".to_string()]);
    }

    #[test]
    fn remaining_content_is_reported_with_upstreams_messages() {
        let report = Report {
            remaining: BTreeMap::from([
                ("configmaps".into(), 2),
                ("widgets.example.com".into(), 1),
            ]),
            finalizers: BTreeMap::from([("example.com/hold".into(), 3)]),
            ..Report::default()
        };
        let now = Timestamp::from_second(1000).unwrap();
        let c = desired_conditions(&[], &report, now);
        let types: Vec<_> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "NamespaceDeletionDiscoveryFailure",
                "NamespaceDeletionGroupVersionParsingFailure",
                "NamespaceDeletionContentFailure",
                "NamespaceContentRemaining",
                "NamespaceFinalizersRemaining"
            ]
        );
        assert_eq!(c[3].status, "True");
        assert_eq!(c[3].reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            c[3].message.as_deref(),
            Some(
                "Some resources are remaining: configmaps has 2 resource instances, widgets.example.com has 1 resource instances"
            )
        );
        assert_eq!(
            c[4].message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 3 resource instances"
            )
        );
        assert_eq!(c[0].status, "False");
        assert_eq!(c[0].reason.as_deref(), Some("ResourcesDiscovered"));
    }

    #[test]
    fn unchanged_conditions_keep_their_transition_time() {
        let report = Report::default();
        let first = desired_conditions(&[], &report, Timestamp::from_second(1).unwrap());
        let again = desired_conditions(&first, &report, Timestamp::from_second(99).unwrap());
        assert_eq!(first, again);
        let changed = Report {
            remaining: BTreeMap::from([("pods".into(), 1)]),
            ..Report::default()
        };
        let moved = desired_conditions(&first, &changed, Timestamp::from_second(99).unwrap());
        assert_eq!(
            moved[3].last_transition_time,
            Some(Time(Timestamp::from_second(99).unwrap()))
        );
        assert_eq!(moved[0], first[0]);
    }
}
