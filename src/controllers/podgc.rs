//! The pod garbage collector (upstream's `pkg/controller/podgc`): every 20 s it deletes
//! terminated pods beyond `--terminated-pod-gc-threshold` (oldest first, evicted ones before
//! the rest), pods bound to a node that has been gone for the 40 s quarantine (after marking
//! them Failed with a `DisruptionTarget` condition), and unscheduled pods that are terminating.
//! Upstream's fourth case, pods on nodes tainted `node.kubernetes.io/out-of-service`, waits for
//! the node lifecycle controller.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::informer::{Change, Informer};

/// Upstream's default `--terminated-pod-gc-threshold`.
pub const TERMINATED_POD_GC_THRESHOLD: usize = 12500;
/// Upstream's `quarantineTime`: how long a node must be missing before its pods go.
pub const QUARANTINE: Duration = Duration::from_secs(40);
/// Upstream's `gcCheckPeriod`.
pub const GC_CHECK_PERIOD: Duration = Duration::from_secs(20);
/// The field manager of the status writes (upstream's `fieldManager`).
const FIELD_MANAGER: &str = "PodGC";

/// What the pod garbage collector needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Terminated pods kept before the oldest are deleted; 0 turns that off (as upstream).
    pub terminated_pod_threshold: usize,
    /// How long a node must be missing before the pods bound to it are deleted.
    pub quarantine: Duration,
    /// How often everything is looked at (the resync).
    pub period: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            terminated_pod_threshold: TERMINATED_POD_GC_THRESHOLD,
            quarantine: QUARANTINE,
            period: GC_CHECK_PERIOD,
        }
    }
}

/// Runs the pod garbage collector: a pass every `config.period`, and sooner when a pod starts
/// terminating without a node, a node is deleted, or a quarantine ends.
pub async fn run(
    client: Client,
    config: Config,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
) {
    let wake = Arc::new(Notify::new());
    // The shared informers' changes wake the pass: an unscheduled pod being deleted, a node
    // gone.
    {
        let wake = wake.clone();
        pods.on_change(move |change| {
            if let Change::Applied { new, .. } = change
                && unscheduled_terminating(new)
            {
                wake.notify_one();
            }
        });
    }
    {
        let wake = wake.clone();
        nodes.on_change(move |change| {
            if let Change::Deleted(_) = change {
                wake.notify_one();
            }
        });
    }
    pods.wait_synced().await;
    nodes.wait_synced().await;
    let mut missing_since: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        if let Err(e) = gc(&client, &config, &pods, &nodes, &mut missing_since).await {
            tracing::warn!(error = %e, "pod garbage collector");
        }
        // Wake when the next quarantine ends, not only on the period.
        let now = Instant::now();
        let wait = missing_since
            .values()
            .map(|since| (*since + config.quarantine).saturating_duration_since(now))
            .fold(config.period, Duration::min);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One pass, in upstream's order: terminated, orphaned, unscheduled terminating.
async fn gc(
    client: &Client,
    config: &Config,
    pod_cache: &Informer<Pod>,
    node_cache: &Informer<Node>,
    missing_since: &mut BTreeMap<String, Instant>,
) -> Result<(), kube::Error> {
    let pods: Vec<Pod> = pod_cache.list().iter().map(|p| (**p).clone()).collect();
    let nodes: Api<Node> = Api::all(client.clone());
    let existing: BTreeSet<String> = node_cache.list().iter().map(|n| n.name_any()).collect();

    for pod in select_terminated(&pods, config.terminated_pod_threshold) {
        mark_failed_and_delete(client, pod, None).await;
    }

    let expired = desired_quarantine(
        missing_since,
        &missing_nodes(&pods, &existing),
        Instant::now(),
        config.quarantine,
    );
    // Upstream checks each node whose quarantine ended with a live read before acting.
    let mut deleted = BTreeSet::new();
    for name in expired {
        match nodes.get_opt(&name).await {
            Ok(None) => {
                deleted.insert(name);
            }
            Ok(Some(_)) => {}
            Err(e) => tracing::warn!(node = %name, error = %e, "pod gc checking node"),
        }
    }
    for pod in select_orphaned(&pods, &deleted) {
        let condition = json!({
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
            "lastTransitionTime": Time(Timestamp::now()),
        });
        mark_failed_and_delete(client, pod, Some(condition)).await;
    }

    for pod in pods.iter().filter(|p| unscheduled_terminating(p)) {
        mark_failed_and_delete(client, pod, None).await;
    }
    Ok(())
}

/// Upstream's `markFailedAndDeletePodWithCondition`: a pod not yet in a terminal phase is moved
/// to Failed (with the condition, by server-side apply as the `PodGC` manager) so it does not
/// stay Running forever without a kubelet, then it is deleted with grace period 0.
async fn mark_failed_and_delete(client: &Client, pod: &Pod, condition: Option<serde_json::Value>) {
    let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    if !terminal(pod) {
        let mut status = json!({"phase": "Failed"});
        if let Some(c) = condition {
            status["conditions"] = json!([c]);
        }
        let apply = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "status": status,
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(e) = api.patch_status(&name, &params, &Patch::Apply(apply)).await {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "pod gc marking pod failed");
            return;
        }
    }
    tracing::info!(pod = %format!("{ns}/{name}"), "pod gc force deleting pod");
    match api
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "pod gc deleting pod"),
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

/// Upstream's `isPodTerminated`: any phase but Pending, Running and Unknown.
pub fn terminated(pod: &Pod) -> bool {
    !matches!(phase(pod), "Pending" | "Running" | "Unknown")
}

/// Upstream's `eviction.PodIsEvicted`.
fn evicted(pod: &Pod) -> bool {
    phase(pod) == "Failed"
        && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// The terminated pods beyond `threshold` to delete, in upstream's `byEvictionAndCreationTimestamp`
/// order: evicted pods first, then the oldest, names breaking ties. A threshold of 0 deletes
/// nothing (upstream runs `gcTerminated` only for a positive threshold).
pub fn select_terminated(pods: &[Pod], threshold: usize) -> Vec<&Pod> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut done: Vec<&Pod> = pods.iter().filter(|p| terminated(p)).collect();
    let excess = done.len().saturating_sub(threshold);
    done.sort_by(|a, b| {
        evicted(b)
            .cmp(&evicted(a))
            .then_with(|| a.creation_timestamp().cmp(&b.creation_timestamp()))
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    done.truncate(excess);
    done
}

/// The node names pods are bound to that are not among the `existing` nodes.
pub fn missing_nodes(pods: &[Pod], existing: &BTreeSet<String>) -> BTreeSet<String> {
    pods.iter()
        .map(node_name)
        .filter(|n| !n.is_empty() && !existing.contains(*n))
        .map(str::to_string)
        .collect()
}

/// Upstream's quarantine queue (`nodeQueue.AddAfter(node, quarantineTime)`): a missing node is
/// remembered from when it was first seen missing; returns the nodes whose quarantine has ended
/// (to be checked with a live read) and forgets them, and forgets nodes that came back.
pub fn desired_quarantine(
    missing_since: &mut BTreeMap<String, Instant>,
    missing: &BTreeSet<String>,
    now: Instant,
    quarantine: Duration,
) -> Vec<String> {
    missing_since.retain(|n, _| missing.contains(n));
    for n in missing {
        missing_since.entry(n.clone()).or_insert(now);
    }
    let expired: Vec<String> = missing_since
        .iter()
        .filter(|(_, since)| now.saturating_duration_since(**since) >= quarantine)
        .map(|(n, _)| n.clone())
        .collect();
    for n in &expired {
        missing_since.remove(n);
    }
    expired
}

/// The pods bound to a node found deleted after its quarantine.
pub fn select_orphaned<'a>(pods: &'a [Pod], deleted: &BTreeSet<String>) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| deleted.contains(node_name(p)))
        .collect()
}

/// Upstream's `gcUnscheduledTerminating` selection: terminating pods never bound to a node.
pub fn unscheduled_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && node_name(pod).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

    fn pod(name: &str, created: i64, phase: &str, node: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.namespace = Some("default".into());
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        p.spec = Some(PodSpec {
            node_name: (!node.is_empty()).then(|| node.to_string()),
            ..PodSpec::default()
        });
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            ..PodStatus::default()
        });
        p
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn terminated_pods_beyond_the_threshold_go_oldest_first() {
        let pods = vec![
            pod("new", 30, "Succeeded", "n1"),
            pod("running", 1, "Running", "n1"),
            pod("old", 10, "Failed", "n1"),
            pod("b-mid", 20, "Succeeded", "n1"),
            pod("a-mid", 20, "Succeeded", "n1"),
            pod("pending", 2, "Pending", "n1"),
        ];
        assert_eq!(names(&select_terminated(&pods, 2)), ["old", "a-mid"]);
        assert!(select_terminated(&pods, 4).is_empty());
        assert!(select_terminated(&pods, 0).is_empty());
    }

    #[test]
    fn evicted_pods_go_before_older_terminated_ones() {
        let mut evicted = pod("evicted", 50, "Failed", "n1");
        evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
        let pods = vec![pod("old", 1, "Succeeded", "n1"), evicted];
        assert_eq!(names(&select_terminated(&pods, 1)), ["evicted"]);
    }

    #[test]
    fn pods_of_a_missing_node_go_only_after_the_quarantine() {
        let pods = vec![
            pod("bound", 1, "Running", "ghost"),
            pod("fine", 1, "Running", "real"),
            pod("unscheduled", 1, "Pending", ""),
        ];
        let existing = BTreeSet::from(["real".to_string()]);
        let missing = missing_nodes(&pods, &existing);
        assert_eq!(missing, BTreeSet::from(["ghost".to_string()]));

        let start = Instant::now();
        let mut since = BTreeMap::new();
        let q = QUARANTINE;
        assert!(desired_quarantine(&mut since, &missing, start, q).is_empty());
        let later = start + Duration::from_secs(39);
        assert!(desired_quarantine(&mut since, &missing, later, q).is_empty());
        let expired = desired_quarantine(&mut since, &missing, start + q, q);
        assert_eq!(expired, ["ghost"]);
        assert!(since.is_empty());
        let deleted: BTreeSet<String> = expired.into_iter().collect();
        assert_eq!(names(&select_orphaned(&pods, &deleted)), ["bound"]);
    }

    #[test]
    fn a_node_that_comes_back_leaves_the_quarantine() {
        let start = Instant::now();
        let mut since = BTreeMap::new();
        let ghost = BTreeSet::from(["ghost".to_string()]);
        desired_quarantine(&mut since, &ghost, start, QUARANTINE);
        desired_quarantine(&mut since, &BTreeSet::new(), start, QUARANTINE);
        // Missing again later: the quarantine starts over.
        let again = start + Duration::from_secs(30);
        desired_quarantine(&mut since, &ghost, again, QUARANTINE);
        let at = start + QUARANTINE;
        assert!(desired_quarantine(&mut since, &ghost, at, QUARANTINE).is_empty());
        let at = again + QUARANTINE;
        assert_eq!(
            desired_quarantine(&mut since, &ghost, at, QUARANTINE),
            ["ghost"]
        );
    }

    #[test]
    fn only_unscheduled_pods_that_are_terminating_are_selected() {
        let mut deleting = pod("deleting", 1, "Pending", "");
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(5).unwrap()));
        assert!(unscheduled_terminating(&deleting));
        assert!(!unscheduled_terminating(&pod("waiting", 1, "Pending", "")));
        let mut on_node = pod("bound", 1, "Running", "n1");
        on_node.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(5).unwrap()));
        assert!(!unscheduled_terminating(&on_node));
    }
}
