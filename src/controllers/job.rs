//! The Job controller (upstream's `pkg/controller/job`, batch/v1 Jobs as of Kubernetes 1.33):
//! runs pods until `completions` of them succeed (NonIndexed) or every completion index has a
//! succeeded pod (Indexed), at most `parallelism` at a time, with exponential back-off between
//! failed pods, and fails the Job past its `backoffLimit`, its `activeDeadlineSeconds` or a
//! `podFailurePolicy` FailJob rule. Suspended Jobs have no active pods.
//!
//! Finished pods are counted exactly once through upstream's pod tracking finalizer
//! (`batch.kubernetes.io/job-tracking`): every pod is created with it; a finished pod's uid is
//! first written to `status.uncountedTerminatedPods` (a compare-and-swap status write), only
//! then is the finalizer removed, and once the pod is seen without it (or gone) the uid moves
//! from the uncounted list into `succeeded`/`failed`. A pod deleted before it finished stays
//! until it is counted, so counts survive deletions, restarts and lost watch events.
//!
//! As upstream since 1.31, a Job that meets its success or failure criteria first gets the
//! interim condition (`SuccessCriteriaMet` / `FailureTarget`) and only gets `Complete` /
//! `Failed` once no pod is left uncounted or terminating.
//!
//! The decisions are the pure [`plan`]; [`Controller`] reads the caches and carries it out.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicy, SuccessPolicy, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};

use super::events::Events;
use super::informer::{
    Change, Expectations, Informer, Requeue, WorkQueue, controller_of, ignore_gone, key_of, lock,
    run_workers, split_key,
};
use super::podcontrol::{adopt, create_pod, delete_pod};
use super::replicaset::{
    deletion_order, is_active, is_ready, owner_ref, pod_from_template, selects_some, slow_start,
};

/// Upstream's pod tracking finalizer.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The annotation and label with an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Upstream's annotation with an index's counted pod failures before this pod
/// (`backoffLimitPerIndex`).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Upstream's annotation with an index's failures a podFailurePolicy Ignore rule matched.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// Upstream's `MaxPodCreateDeletePerSync`.
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// Upstream's `MaxUncountedPods`: at most this many uids are added to the uncounted lists per
/// status write.
const MAX_UNCOUNTED_PODS: usize = 500;
/// Concurrent syncs (upstream's `--concurrent-job-syncs`).
const WORKERS: usize = 5;
/// Upstream's `MaxGeneratedNameLength` (63 minus the 5 random characters).
const MAX_GENERATED_NAME_LENGTH: usize = 58;

/// The Job controller's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The back-off after the first failed pod (upstream's `DefaultJobPodFailureBackOff`,
    /// 10 s), doubled per further failure since the last success.
    pub backoff_base: Duration,
    /// The longest back-off (upstream's `MaxJobPodFailureBackOff`, 6 min).
    pub backoff_max: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(360),
        }
    }
}

// ---- pure vocabulary ----

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// Upstream's `IsPodTerminating`: being deleted and not yet finished.
fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// Upstream's `onlyReplaceFailedPods`: `podReplacementPolicy: Failed`, the default when a
/// `podFailurePolicy` is set.
fn only_replace_failed(spec: &JobSpec) -> bool {
    match spec.pod_replacement_policy.as_deref() {
        Some(p) => p == "Failed",
        None => spec.pod_failure_policy.is_some(),
    }
}

/// Upstream's `isPodFailed`: Failed, or (unless only failed pods are replaced) deleted before
/// it succeeded, so orphaned pods that never reach the Failed phase still count.
fn is_failed(pod: &Pod, spec: &JobSpec) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    if spec.pod_failure_policy.is_some() || only_replace_failed(spec) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

/// The completion index of an Indexed Job pod (upstream's `getCompletionIndex`: the
/// annotation, else the label).
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.annotations()
        .get(COMPLETION_INDEX)
        .or_else(|| pod.labels().get(COMPLETION_INDEX))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|i| *i >= 0)
}

/// Upstream's `parseIndexesFromString`: "0-2,4" → {0, 1, 2, 4}, indexes at or above
/// `completions` dropped.
pub fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            out.extend((lo.max(0)..=hi.min(completions - 1)).filter(|i| *i >= lo));
        }
    }
    out
}

/// Upstream's `orderedIntervals.String`: {0, 1, 2, 4} → "0-2,4" (two neighbours are written
/// "3,4", as upstream).
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        parts.push(match last - first {
            0 => first.to_string(),
            1 => format!("{first},{last}"),
            _ => format!("{first}-{last}"),
        });
    }
    parts.join(",")
}

/// Upstream's `getFinishedTime`: when the last container terminated, else when the pod became
/// not ready, else its deletion timestamp, else its creation.
pub fn finish_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_ref());
    let from_containers = containers.and_then(|cs| {
        cs.iter()
            .map(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.finished_at.as_ref())
                    .map(|t| t.0)
            })
            .collect::<Option<Vec<_>>>()
            .and_then(|ts| ts.into_iter().max())
    });
    let not_ready = || {
        status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.type_ == "Ready" && c.status == "False")
            })
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    from_containers
        .or_else(not_ready)
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Upstream's `backoffRecord`: the failures since the last success, and the last one's time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure: Option<Timestamp>,
}

/// Upstream's `newBackoffRecord`: folds newly finished pods (their finish times) into the
/// record; a success resets it to the failures that finished after the last success.
pub fn next_backoff_record(
    prev: BackoffRecord,
    mut succeeded: Vec<Timestamp>,
    mut failed: Vec<Timestamp>,
) -> BackoffRecord {
    succeeded.sort();
    failed.sort();
    let Some(last_success) = succeeded.last() else {
        let Some(last) = failed.last() else {
            return prev;
        };
        return BackoffRecord {
            failures_after_last_success: prev.failures_after_last_success + failed.len() as u32,
            last_failure: Some(*last),
        };
    };
    let after: Vec<&Timestamp> = failed.iter().filter(|t| *t > last_success).collect();
    BackoffRecord {
        failures_after_last_success: after.len() as u32,
        last_failure: after.last().map(|t| **t),
    }
}

/// Upstream's `getRemainingTimeForFailuresCount`: `base` doubled per failure after the first,
/// at most `max`, minus the time since the last failure.
pub fn remaining_backoff(
    record: BackoffRecord,
    base: Duration,
    max: Duration,
    now: Timestamp,
) -> Duration {
    let Some(last) = record.last_failure else {
        return Duration::ZERO;
    };
    if record.failures_after_last_success == 0 {
        return Duration::ZERO;
    }
    let mut backoff = base;
    for _ in 1..record.failures_after_last_success {
        backoff = backoff.saturating_mul(2);
        if backoff >= max {
            backoff = max;
            break;
        }
    }
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    backoff.saturating_sub(elapsed)
}

/// The action of the pod failure policy rule a failed pod matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyAction {
    FailJob,
    FailIndex,
    Ignore,
    Count,
}

/// Upstream's `matchPodFailurePolicy`: the first rule the failed pod matches, with the FailJob
/// message upstream writes. No rule matched counts the failure.
pub fn match_pod_failure_policy(
    policy: &PodFailurePolicy,
    pod: &Pod,
) -> Option<(PolicyAction, Option<String>)> {
    let status = pod.status.clone().unwrap_or_default();
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    for (index, rule) in policy.rules.iter().enumerate() {
        let action = match rule.action.as_str() {
            "FailJob" => PolicyAction::FailJob,
            "FailIndex" => PolicyAction::FailIndex,
            "Ignore" => PolicyAction::Ignore,
            "Count" => PolicyAction::Count,
            _ => continue,
        };
        if let Some(req) = &rule.on_exit_codes {
            let statuses = status
                .container_statuses
                .iter()
                .flatten()
                .chain(status.init_container_statuses.iter().flatten());
            let matched = statuses.into_iter().find_map(|c| {
                let t = c.state.as_ref()?.terminated.as_ref()?;
                let named = req.container_name.as_ref().is_none_or(|n| *n == c.name);
                let listed = req.values.contains(&t.exit_code);
                let hit = match req.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                };
                (named && t.exit_code != 0 && hit).then(|| (c.name.clone(), t.exit_code))
            });
            if let Some((container, code)) = matched {
                let message = (action == PolicyAction::FailJob).then(|| {
                    format!(
                        "Container {container} for pod {ns}/{name} failed with exit code {code} matching FailJob rule at index {index}"
                    )
                });
                return Some((action, message));
            }
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let matched = status.conditions.iter().flatten().find(|c| {
                patterns
                    .iter()
                    .any(|p| p.type_ == c.type_ && p.status == c.status)
            });
            if let Some(c) = matched {
                let message = (action == PolicyAction::FailJob).then(|| {
                    format!(
                        "Pod {ns}/{name} has condition {} matching FailJob rule at index {index}",
                        c.type_
                    )
                });
                return Some((action, message));
            }
        }
    }
    None
}

/// Upstream's `matchPodFailurePolicy` "countFailed": whether a failed pod counts against the
/// limits (every action but Ignore, and no rule matched).
fn counts_failure(spec: &JobSpec, pod: &Pod) -> bool {
    let Some(policy) = spec.pod_failure_policy.as_ref() else {
        return true;
    };
    !matches!(
        match_pod_failure_policy(policy, pod),
        Some((PolicyAction::Ignore, _))
    )
}

/// Upstream's `parseInt32` of the failure count annotations: a missing, unparsable, negative
/// or too large value counts as 0, so a user editing the annotation cannot break the sync.
fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.annotations()
        .get(key)
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

/// The failures of an index so far, carried from pod to pod in upstream's annotations
/// `batch.kubernetes.io/job-index-failure-count` (counted failures) and
/// `batch.kubernetes.io/job-index-ignored-failure-count` (failures a podFailurePolicy Ignore
/// rule matched, which still lengthen the index's back-off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexFailures {
    pub counted: i32,
    pub ignored: i32,
}

impl IndexFailures {
    /// The counts the pod carries.
    pub fn of(pod: &Pod) -> IndexFailures {
        IndexFailures {
            counted: annotation_count(pod, INDEX_FAILURE_COUNT),
            ignored: annotation_count(pod, INDEX_IGNORED_FAILURE_COUNT),
        }
    }

    /// Upstream's `getNewIndexFailureCounts`: the counts for the pod that replaces `failed`,
    /// which adds its own failure to one of them.
    pub fn after(spec: &JobSpec, failed: Option<&Pod>) -> IndexFailures {
        let Some(pod) = failed else {
            return IndexFailures::default();
        };
        let mut counts = IndexFailures::of(pod);
        if counts_failure(spec, pod) {
            counts.counted = counts.counted.saturating_add(1);
        } else {
            counts.ignored = counts.ignored.saturating_add(1);
        }
        counts
    }
}

/// Upstream's `isIndexFailed`: the failed pod's index is given up, because a podFailurePolicy
/// FailIndex rule matched or its counted failures reached `backoffLimitPerIndex`.
pub fn is_index_failed(spec: &JobSpec, pod: &Pod) -> bool {
    if !is_failed(pod, spec) {
        return false;
    }
    if let Some(policy) = spec.pod_failure_policy.as_ref() {
        match match_pod_failure_policy(policy, pod) {
            Some((PolicyAction::FailIndex, _)) => return true,
            Some((PolicyAction::Ignore, _)) => return false,
            _ => {}
        }
    }
    let limit = spec.backoff_limit_per_index.unwrap_or(i32::MAX);
    IndexFailures::of(pod).counted >= limit
}

/// Upstream's `getRemainingTimePerIndex`: an index whose last pod failed waits `base` doubled
/// per earlier failure of the index (ignored ones included), at most `max`, from that pod's
/// finish.
pub fn remaining_index_backoff(
    last_failed: Option<&Pod>,
    base: Duration,
    max: Duration,
    now: Timestamp,
) -> Duration {
    let Some(pod) = last_failed else {
        return Duration::ZERO;
    };
    let counts = IndexFailures::of(pod);
    let failures = counts
        .counted
        .saturating_add(counts.ignored)
        .saturating_add(1);
    let record = BackoffRecord {
        failures_after_last_success: failures as u32,
        last_failure: Some(finish_time(pod).min(now)),
    };
    remaining_backoff(record, base, max, now)
}

/// Upstream's `matchSuccessPolicy`: the message of the first rule the succeeded indexes meet
/// ("Matched rules at index <i>"). A rule with `succeededIndexes` is met when all of them
/// succeeded or, with `succeededCount`, that many of them; a rule with only `succeededCount`
/// when that many indexes succeeded.
pub fn match_success_policy(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &BTreeSet<i32>,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = if let Some(list) = rule.succeeded_indexes.as_deref() {
            let required = parse_indexes(list, completions);
            if required.is_empty() {
                // Unparsable (validation keeps these out): the rule never matches, as upstream.
                continue;
            }
            let contained = required.intersection(succeeded).count();
            contained == required.len()
                || rule
                    .succeeded_count
                    .is_some_and(|n| contained >= n.max(0) as usize)
        } else if let Some(n) = rule.succeeded_count {
            succeeded.len() >= n.max(0) as usize
        } else {
            false
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

/// Whether the Job has a condition of this type with status True.
fn condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Upstream's `IsJobFinished`: Complete or Failed is True.
pub fn is_finished(job: &Job) -> bool {
    finished_at(job).is_some()
}

/// When the Job's Complete or Failed condition became True.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    let c = condition(status, "Complete").or_else(|| condition(status, "Failed"))?;
    Some(
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `ensureJobConditionStatus`: sets an existing condition's status (a new one is
/// only added when it is True). Returns whether anything changed.
fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
        {
            return false;
        }
        if c.status != status {
            c.last_transition_time = Some(Time(now));
        }
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_probe_time = Some(Time(now));
        return true;
    }
    if status == "True" {
        conditions.push(new_condition(type_, status, reason, message, now));
        return true;
    }
    false
}

/// Upstream's `pastBackoffLimitOnFailure`: with restartPolicy OnFailure, container restarts
/// of running pods count against the backoff limit.
fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[Arc<Pod>]) -> bool {
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    let limit = spec.backoff_limit.unwrap_or(6);
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// Upstream's `activePodsForRemoval`: for Indexed Jobs, pods with an index out of range or a
/// duplicated index first; then the least valuable pods (the ReplicaSet's ranking).
fn pods_for_removal(
    indexed: bool,
    completions: i32,
    active: &[Arc<Pod>],
    at_least: usize,
) -> Vec<Arc<Pod>> {
    let mut rm = Vec::new();
    let mut left = Vec::new();
    if indexed {
        let mut seen = HashSet::new();
        // The best pod of each index is kept: go through them most valuable first.
        let mut ordered = deletion_order(active.to_vec(), &HashMap::new());
        ordered.reverse();
        for p in ordered {
            match completion_index(&p) {
                Some(i) if i < completions && seen.insert(i) => left.push(p),
                _ => rm.push(p),
            }
        }
    } else {
        left = active.to_vec();
    }
    if rm.len() < at_least {
        let need = at_least - rm.len();
        rm.extend(deletion_order(left, &HashMap::new()).into_iter().take(need));
    }
    rm
}

/// Upstream's `firstPendingIndexes`: the lowest indexes that neither succeeded nor have a pod.
fn first_pending_indexes(
    completions: i32,
    succeeded: &BTreeSet<i32>,
    taken: &HashSet<i32>,
    count: usize,
) -> Vec<i32> {
    (0..completions)
        .filter(|i| !succeeded.contains(i) && !taken.contains(i))
        .take(count)
        .collect()
}

/// An event to record on the Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

fn event(warning: bool, reason: &str, message: &str) -> JobEvent {
    JobEvent {
        warning,
        reason: reason.into(),
        message: message.into(),
    }
}

/// What one sync starts from.
pub struct Input<'a> {
    pub job: &'a Job,
    /// Every pod the Job controls, finished and terminating ones included.
    pub pods: &'a [Arc<Pod>],
    pub backoff: BackoffRecord,
    /// Whether the informer has seen every creation and deletion asked for before
    /// (expectations): only then are pods created or deleted.
    pub manage: bool,
    pub config: &'a Config,
    pub now: Timestamp,
}

/// What one sync does, in this order: write the status (compare-and-swap), remove the
/// tracking finalizers, delete, create.
#[derive(Debug, Default)]
pub struct Plan {
    pub status: JobStatus,
    pub remove_finalizers: Vec<Arc<Pod>>,
    pub delete: Vec<Arc<Pod>>,
    /// One entry per pod to create: its completion index for Indexed Jobs.
    pub create: Vec<Option<i32>>,
    /// With `backoffLimitPerIndex`: the failure counts each created index's pod carries.
    pub index_failures: HashMap<i32, IndexFailures>,
    pub events: Vec<JobEvent>,
    pub requeue: Option<Duration>,
    /// The back-off record to keep once the status is written.
    pub backoff: BackoffRecord,
}

/// Success (`SuccessCriteriaMet` → `Complete`) or failure (`FailureTarget` → `Failed`).
struct Finish {
    success: bool,
    reason: String,
    message: String,
}

/// Upstream's `syncJob` after the caches are read: counts, conditions, pods to create and
/// delete, finalizers to remove.
pub fn plan(input: &Input) -> Plan {
    let job = input.job;
    let now = input.now;
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut plan = Plan {
        backoff: input.backoff,
        ..Plan::default()
    };
    let pods = input.pods;
    if is_finished(job) {
        // Upstream removes the finalizers of a finished Job's pods (they are counted already,
        // or never will be) and changes nothing else.
        plan.remove_finalizers = pods.iter().filter(|p| has_finalizer(p)).cloned().collect();
        plan.status = old;
        return plan;
    }
    let deleting = job.metadata.deletion_timestamp.is_some();
    let suspended = spec.suspend == Some(true);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let only_failed = only_replace_failed(&spec);
    let policy = spec.pod_failure_policy.as_ref();

    // Uncounted pods whose finalizer is gone (or that are gone) are counted now.
    let by_uid: HashMap<&str, &Arc<Pod>> = pods
        .iter()
        .filter_map(|p| Some((p.metadata.uid.as_deref()?, p)))
        .collect();
    let uncounted = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut succeeded = old.succeeded.unwrap_or(0);
    let mut failed = old.failed.unwrap_or(0);
    let still = |uid: &String| by_uid.get(uid.as_str()).is_some_and(|p| has_finalizer(p));
    let (mut unc_succeeded, counted): (Vec<String>, Vec<String>) = uncounted
        .succeeded
        .unwrap_or_default()
        .into_iter()
        .partition(still);
    succeeded += counted.len() as i32;
    let (mut unc_failed, counted): (Vec<String>, Vec<String>) = uncounted
        .failed
        .unwrap_or_default()
        .into_iter()
        .partition(still);
    failed += counted.len() as i32;
    let in_uncounted: HashSet<String> = unc_succeeded.iter().chain(&unc_failed).cloned().collect();
    let is_new = |p: &Pod| {
        has_finalizer(p) && !in_uncounted.contains(p.metadata.uid.as_deref().unwrap_or_default())
    };

    let active_pods: Vec<Arc<Pod>> = pods.iter().filter(|p| is_active(p)).cloned().collect();
    let terminating = pods.iter().filter(|p| is_terminating(p)).count();
    let mut ready = active_pods.iter().filter(|p| is_ready(p)).count();
    let action = |p: &Pod| policy.and_then(|pol| match_pod_failure_policy(pol, p));
    let new_succeeded: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| is_new(p) && phase(p) == "Succeeded")
        .collect();
    let new_failed: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| is_new(p) && is_failed(p, &spec))
        .filter(|p| !matches!(action(p), Some((PolicyAction::Ignore, _))))
        .collect();
    let total_succeeded = succeeded + (unc_succeeded.len() + new_succeeded.len()) as i32;
    let total_failed = failed + (unc_failed.len() + new_failed.len()) as i32;

    if status.start_time.is_none() && !suspended {
        status.start_time = Some(Time(now));
    }
    // A pod deleted gracefully has its deletion timestamp (its finish time when no container
    // reported one) in the future; it cannot have finished later than now.
    plan.backoff = next_backoff_record(
        input.backoff,
        new_succeeded
            .iter()
            .map(|p| finish_time(p).min(now))
            .collect(),
        new_failed.iter().map(|p| finish_time(p).min(now)).collect(),
    );

    // The success or failure criteria, in upstream's order.
    let mut finish = None;
    if let Some(c) = condition(&old, "SuccessCriteriaMet") {
        finish = Some(Finish {
            success: true,
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    } else if let Some(c) = condition(&old, "FailureTarget") {
        finish = Some(Finish {
            success: false,
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    } else if let Some(message) = pods
        .iter()
        .filter(|p| is_failed(p, &spec))
        .find_map(|p| action(p).and_then(|(_, m)| m))
    {
        finish = Some(Finish {
            success: false,
            reason: "PodFailurePolicy".into(),
            message,
        });
    }
    if finish.is_none() {
        let deadline = spec.active_deadline_seconds.filter(|_| !suspended);
        let started = status.start_time.as_ref().map(|t| t.0).unwrap_or(now);
        let elapsed = now.duration_since(started);
        if total_failed > backoff_limit || past_backoff_limit_on_failure(&spec, &active_pods) {
            finish = Some(Finish {
                success: false,
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            });
        } else if let Some(ads) = deadline {
            let limit = SignedDuration::from_secs(ads);
            if elapsed >= limit {
                finish = Some(Finish {
                    success: false,
                    reason: "DeadlineExceeded".into(),
                    message: "Job was active longer than specified deadline".into(),
                });
            } else {
                plan.requeue = Duration::try_from(limit - elapsed).ok();
            }
        }
    }

    // Upstream's `calculateSucceededIndexes`.
    let c = completions.unwrap_or(0);
    let prev_indexes = parse_indexes(old.completed_indexes.as_deref().unwrap_or(""), c);
    let mut indexes = prev_indexes.clone();
    if indexed {
        indexes.extend(
            pods.iter()
                .filter(|p| phase(p) == "Succeeded" && has_finalizer(p))
                .filter_map(|p| completion_index(p))
                .filter(|i| *i < c),
        );
    }
    let succeeded_for_completion = if indexed {
        indexes.len() as i32
    } else {
        total_succeeded
    };

    // Upstream's `calculateFailedIndexes` and its two failure criteria, for
    // `backoffLimitPerIndex` (Indexed Jobs only; the API server refuses it elsewhere).
    let per_index = indexed && spec.backoff_limit_per_index.is_some();
    let mut failed_indexes = BTreeSet::new();
    // Upstream's `getPodsWithDelayedDeletionPerIndex`: per index without a pod running, the
    // failed pod that keeps its finalizer (and so exists) until its replacement is created
    // with the index's failure counts.
    let mut delayed: HashMap<i32, &Arc<Pod>> = HashMap::new();
    if per_index {
        failed_indexes = parse_indexes(old.failed_indexes.as_deref().unwrap_or(""), c);
        failed_indexes.extend(
            pods.iter()
                .filter(|p| has_finalizer(p) && is_index_failed(&spec, p))
                .filter_map(|p| completion_index(p))
                .filter(|i| *i < c),
        );
        if finish.is_none() {
            let failed_count = failed_indexes.len() as i32;
            if spec.max_failed_indexes.is_some_and(|m| failed_count > m) {
                finish = Some(Finish {
                    success: false,
                    reason: "MaxFailedIndexesExceeded".into(),
                    message: "Job has exceeded the specified maximal number of failed indexes"
                        .into(),
                });
            } else if failed_count > 0 && failed_count + indexes.len() as i32 >= c {
                finish = Some(Finish {
                    success: false,
                    reason: "FailedIndexes".into(),
                    message: "Job has failed indexes".into(),
                });
            }
        }
        let running: HashSet<i32> = active_pods
            .iter()
            .filter_map(|p| completion_index(p))
            .collect();
        for p in pods
            .iter()
            .filter(|p| has_finalizer(p) && is_failed(p, &spec))
        {
            let Some(i) = completion_index(p).filter(|i| *i < c) else {
                continue;
            };
            if indexes.contains(&i) || failed_indexes.contains(&i) || running.contains(&i) {
                continue;
            }
            let later = |last: &Arc<Pod>| {
                let (a, b) = (IndexFailures::of(last), IndexFailures::of(p));
                a.counted + a.ignored <= b.counted + b.ignored
                    && finish_time(p) >= finish_time(last)
            };
            if delayed.get(&i).is_none_or(|last| later(last)) {
                delayed.insert(i, p);
            }
        }
    }
    // Upstream's `matchSuccessPolicy`, after the failure criteria.
    if indexed
        && finish.is_none()
        && let Some(message) = match_success_policy(spec.success_policy.as_ref(), c, &indexes)
    {
        finish = Some(Finish {
            success: true,
            reason: "SuccessPolicy".into(),
            message,
        });
    }

    let mut active = active_pods.len();
    if finish.is_some() {
        // Upstream's `deleteActivePods`.
        plan.delete = active_pods.clone();
        ready -= active_pods.iter().filter(|p| is_ready(p)).count();
        active = 0;
    } else {
        let mut managed = false;
        if input.manage && !deleting {
            managed = true;
            if suspended {
                plan.delete = deletion_order(active_pods.clone(), &HashMap::new())
                    .into_iter()
                    .take(MAX_POD_CREATE_DELETE_PER_SYNC)
                    .collect();
                active -= plan.delete.len();
            } else {
                // Upstream's `manageJob`.
                let want = match completions {
                    None if total_succeeded > 0 => active,
                    None => parallelism,
                    Some(c) => ((c - succeeded_for_completion).max(0) as usize).min(parallelism),
                };
                let rm = pods_for_removal(indexed, c, &active_pods, active.saturating_sub(want));
                if !rm.is_empty() {
                    // Deletions take precedence over creations in one sync, as upstream.
                    plan.delete = rm
                        .into_iter()
                        .take(MAX_POD_CREATE_DELETE_PER_SYNC)
                        .collect();
                    active -= plan.delete.len();
                } else {
                    let held = if only_failed { terminating } else { 0 };
                    let diff = want.saturating_sub(held + active);
                    if diff > 0 {
                        // With backoffLimitPerIndex each index backs off on its own.
                        let wait = if per_index {
                            Duration::ZERO
                        } else {
                            remaining_backoff(
                                plan.backoff,
                                input.config.backoff_base,
                                input.config.backoff_max,
                                now,
                            )
                        };
                        if !wait.is_zero() {
                            plan.requeue = Some(plan.requeue.map_or(wait, |r| r.min(wait)));
                        } else {
                            let diff = diff.min(MAX_POD_CREATE_DELETE_PER_SYNC);
                            plan.create = if indexed {
                                let mut taken: HashSet<i32> = pods
                                    .iter()
                                    .filter(|p| is_active(p) || (only_failed && is_terminating(p)))
                                    .filter_map(|p| completion_index(p))
                                    .collect();
                                taken.extend(failed_indexes.iter().copied());
                                let pending = first_pending_indexes(c, &indexes, &taken, diff);
                                if per_index {
                                    // Upstream's `getPodCreationInfoForIndependentIndexes`: the
                                    // indexes out of back-off now, else a sync when the first
                                    // one is.
                                    let config = input.config;
                                    let wait = |i: &i32| {
                                        remaining_index_backoff(
                                            delayed.get(i).map(|p| p.as_ref()),
                                            config.backoff_base,
                                            config.backoff_max,
                                            now,
                                        )
                                    };
                                    let ready: Vec<i32> = pending
                                        .iter()
                                        .copied()
                                        .filter(|i| wait(i).is_zero())
                                        .collect();
                                    if ready.is_empty()
                                        && let Some(w) = pending.iter().map(wait).min()
                                    {
                                        plan.requeue = Some(plan.requeue.map_or(w, |r| r.min(w)));
                                    }
                                    for i in &ready {
                                        let replaced = delayed.get(i).map(|p| p.as_ref());
                                        plan.index_failures
                                            .insert(*i, IndexFailures::after(&spec, replaced));
                                    }
                                    ready.into_iter().map(Some).collect()
                                } else {
                                    pending.into_iter().map(Some).collect()
                                }
                            } else {
                                vec![None; diff]
                            };
                            active += plan.create.len();
                        }
                    }
                }
            }
        }
        let complete = match completions {
            // Without completions, the first success ends the Job once nothing runs.
            None => total_succeeded > 0 && active == 0,
            Some(c) => succeeded_for_completion >= c && active == 0,
        };
        if complete {
            finish = Some(Finish {
                success: true,
                reason: "CompletionsReached".into(),
                message: "Reached expected number of succeeded pods".into(),
            });
        } else if managed {
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            if suspended {
                if ensure_condition(
                    conditions,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                ) {
                    plan.events.push(event(false, "Suspended", "Job suspended"));
                }
            } else if ensure_condition(
                conditions,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            ) {
                plan.events.push(event(false, "Resumed", "Job resumed"));
                // activeDeadlineSeconds counts from the resumption, as upstream.
                status.start_time = Some(Time(now));
            }
            if conditions.is_empty() {
                status.conditions = None;
            }
        }
    }

    // Upstream's `trackJobStatusAndRemoveFinalizers`.
    let failing = finish.as_ref().is_some_and(|f| !f.success);
    let mut new_indexes = BTreeSet::new();
    let mut added = 0;
    for p in pods.iter().filter(|p| has_finalizer(p)) {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        if in_uncounted.contains(&uid) {
            // Written as uncounted before: the finalizer can go (again, if a removal was lost).
            plan.remove_finalizers.push(p.clone());
            continue;
        }
        if added >= MAX_UNCOUNTED_PODS {
            break;
        }
        let pod_failed = is_failed(p, &spec);
        // Upstream's `canRemoveFinalizer`: a failed pod whose index awaits its replacement
        // keeps the finalizer until then.
        let awaits_replacement = completion_index(p)
            .and_then(|i| delayed.get(&i))
            .is_some_and(|d| d.metadata.uid == p.metadata.uid);
        let can_remove = deleting
            || finish.is_some()
            || phase(p) == "Succeeded"
            || (pod_failed && !(policy.is_some() && phase(p) != "Failed") && !awaits_replacement);
        if !can_remove {
            continue;
        }
        plan.remove_finalizers.push(p.clone());
        if phase(p) == "Succeeded" {
            if indexed {
                match completion_index(p) {
                    Some(i) if i < c && !prev_indexes.contains(&i) && new_indexes.insert(i) => {}
                    _ => continue,
                }
            }
            unc_succeeded.push(uid);
            added += 1;
        } else if pod_failed || failing {
            if indexed && completion_index(p).is_none_or(|i| i >= c) {
                continue;
            }
            if matches!(action(p), Some((PolicyAction::Ignore, _))) {
                continue;
            }
            unc_failed.push(uid);
            added += 1;
        }
    }

    status.active = (active > 0).then_some(active as i32);
    status.ready = Some(ready as i32);
    status.terminating = Some(terminating as i32);
    status.succeeded = (succeeded > 0).then_some(succeeded);
    status.failed = (failed > 0).then_some(failed);
    if indexed {
        status.completed_indexes = Some(format_indexes(&indexes));
    }
    if per_index {
        status.failed_indexes = Some(format_indexes(&failed_indexes));
    }
    let no_uncounted = unc_succeeded.is_empty() && unc_failed.is_empty();
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: (!unc_succeeded.is_empty()).then_some(unc_succeeded),
        failed: (!unc_failed.is_empty()).then_some(unc_failed),
    });

    if let Some(f) = finish {
        let (interim, terminal) = if f.success {
            ("SuccessCriteriaMet", "Complete")
        } else {
            ("FailureTarget", "Failed")
        };
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        if !conditions
            .iter()
            .any(|c| c.type_ == interim && c.status == "True")
        {
            conditions.push(new_condition(interim, "True", &f.reason, &f.message, now));
        }
        // Upstream's `enactJobFinished`: only once every pod is counted and none terminates.
        if no_uncounted && terminating == 0 && plan.delete.is_empty() {
            conditions.push(new_condition(terminal, "True", &f.reason, &f.message, now));
            if f.success {
                status.completion_time = Some(Time(now));
                plan.events.push(event(false, "Completed", "Job completed"));
            } else {
                plan.events.push(event(true, &f.reason, &f.message));
            }
        }
    }
    plan.status = status;
    plan
}

/// Upstream's `podGenerateNameWithIndex`: `<job>-<index>-`, the job name cut so the prefix
/// leaves room for the random suffix.
pub fn generate_name(job: &str, index: Option<i32>) -> String {
    match index {
        None => format!("{job}-"),
        Some(i) => {
            let suffix = format!("-{i}-");
            let mut prefix = format!("{job}{suffix}");
            if prefix.len() > MAX_GENERATED_NAME_LENGTH {
                let keep = MAX_GENERATED_NAME_LENGTH - suffix.len();
                let cut = (0..=keep)
                    .rev()
                    .find(|n| job.is_char_boundary(*n))
                    .unwrap_or(0);
                prefix = format!("{}{suffix}", &job[..cut]);
            }
            prefix
        }
    }
}

/// The pod the Job creates (upstream's `manageJob` on top of `GetPodFromTemplate`): the
/// tracking finalizer, and for Indexed Jobs the completion index annotation and label, the
/// hostname `<job>-<index>` and `JOB_COMPLETION_INDEX` from the annotation through the
/// downward API (upstream's `addCompletionIndexEnvVariables`). With `backoffLimitPerIndex`,
/// `failures` are the index's failure count annotations (upstream's
/// `addIndexFailureCountAnnotation`: the ignored count only when there is one).
pub fn job_pod(job: &Job, index: Option<i32>, failures: Option<IndexFailures>) -> Pod {
    let spec = job.spec.clone().unwrap_or_default();
    let name = job.name_any();
    let ns = job.namespace().unwrap_or_default();
    let owner = owner_ref("batch/v1", "Job", &job.metadata);
    let mut pod = pod_from_template(&spec.template, &ns, generate_name(&name, index), owner);
    let finalizers = pod.metadata.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    if let Some(i) = index {
        let annotations = pod
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.insert(COMPLETION_INDEX.into(), i.to_string());
        if let Some(f) = failures {
            annotations.insert(INDEX_FAILURE_COUNT.into(), f.counted.to_string());
            if f.ignored > 0 {
                annotations.insert(INDEX_IGNORED_FAILURE_COUNT.into(), f.ignored.to_string());
            }
        }
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), i.to_string());
        if let Some(ps) = pod.spec.as_mut() {
            ps.hostname = Some(format!("{name}-{i}"));
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    }),
                    ..EnvVarSource::default()
                }),
            };
            let containers = ps
                .init_containers
                .iter_mut()
                .flatten()
                .chain(ps.containers.iter_mut());
            for c in containers {
                let vars = c.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == env.name) {
                    vars.push(env.clone());
                }
            }
        }
    }
    pod
}

// ---- the controller ----

/// The running Job controller.
pub struct Controller {
    client: Client,
    config: Config,
    jobs: Arc<Informer<Job>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<WorkQueue>,
    expectations: Expectations,
    backoff: Mutex<HashMap<String, BackoffRecord>>,
    events: Events,
}

/// The key of the Job that controls `pod` by name (the Job need not exist any more).
fn owner_key(pod: &Pod) -> Option<String> {
    let owner = controller_of(pod)?;
    (owner.kind == "Job" && owner.api_version == "batch/v1")
        .then(|| format!("{}/{}", pod.namespace().unwrap_or_default(), owner.name))
}

impl Controller {
    /// Wires the handlers; run the informers and then [`Controller::run`].
    pub fn new(
        client: Client,
        config: Config,
        jobs: Arc<Informer<Job>>,
        pods: Arc<Informer<Pod>>,
    ) -> Arc<Self> {
        let events = Events::start(client.clone(), "job-controller");
        let this = Arc::new(Controller {
            client,
            config,
            jobs,
            pods,
            queue: WorkQueue::new(),
            expectations: Expectations::default(),
            backoff: Mutex::new(HashMap::new()),
            events,
        });
        let weak = Arc::downgrade(&this);
        this.jobs.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                match change {
                    Change::Applied { new, .. } => c.queue.add(key_of(new.as_ref())),
                    Change::Deleted(old) => {
                        let key = key_of(old.as_ref());
                        c.expectations.forget(&key);
                        lock(&c.backoff).remove(&key);
                        c.queue.add(key);
                    }
                }
            }
        });
        let weak = Arc::downgrade(&this);
        this.pods.on_change(move |change| {
            let Some(c) = weak.upgrade() else { return };
            match change {
                Change::Applied { old, new } => {
                    if let Some(k) = owner_key(new) {
                        let uid = new.metadata.uid.as_deref().unwrap_or_default();
                        if new.metadata.deletion_timestamp.is_some() {
                            c.expectations.observe_delete(&k, uid);
                        } else if old.is_none() {
                            c.expectations.observe_add(&k);
                        }
                        c.queue.add(k);
                    }
                }
                Change::Deleted(pod) => {
                    if let Some(k) = owner_key(pod) {
                        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                        c.expectations.observe_delete(&k, uid);
                        c.queue.add(k);
                    }
                }
            }
        });
        this
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.jobs.wait_synced().await;
        self.pods.wait_synced().await;
        let this = self.clone();
        let workers = run_workers("job-controller", self.queue.clone(), WORKERS, move |key| {
            let this = this.clone();
            async move { this.sync(&key).await }
        });
        let resync = super::informer::resync(self.jobs.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    /// The pods of the Job: those it controls that its selector selects, plus active orphans
    /// it adopts (upstream's `getPodsForJob` with `PodControllerRefManager`).
    async fn claim(&self, job: &Job) -> Result<Vec<Arc<Pod>>, kube::Error> {
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let selector = job
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let mut pods: Vec<Arc<Pod>> = self
            .pods
            .controlled_by(&uid)
            .into_iter()
            .filter(|p| selects_some(&selector, p.labels()))
            .collect();
        if job.metadata.deletion_timestamp.is_some() || is_finished(job) {
            return Ok(pods);
        }
        let ns = job.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        for pod in self.pods.list_namespace(&ns) {
            if controller_of(pod.as_ref()).is_some()
                || !is_active(&pod)
                || !selects_some(&selector, pod.labels())
            {
                continue;
            }
            let owner = owner_ref("batch/v1", "Job", &job.metadata);
            if let Some(p) = adopt(&api, pod.as_ref(), owner).await? {
                pods.push(Arc::new(p));
            }
        }
        Ok(pods)
    }

    /// Upstream's `syncJob`.
    pub async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        let (ns, name) = split_key(key);
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let Some(job) = self.jobs.get(key) else {
            // The Job is gone: its pods keep no tracking finalizer (upstream's orphan pod
            // cleanup).
            self.expectations.forget(key);
            for pod in self.pods.list_namespace(ns) {
                if owner_key(&pod).as_deref() == Some(key) && has_finalizer(&pod) {
                    remove_finalizer(&pods_api, &pod).await?;
                }
            }
            return Ok(None);
        };
        let pods = self.claim(&job).await?;
        let record = lock(&self.backoff).get(key).copied().unwrap_or_default();
        let input = Input {
            job: &job,
            pods: &pods,
            backoff: record,
            manage: self.expectations.satisfied(key),
            config: &self.config,
            now: Timestamp::now(),
        };
        let plan = plan(&input);
        let reference = reference(&job);
        let old_status = job.status.clone().unwrap_or_default();
        if plan.status != old_status {
            // A compare-and-swap on the Job's resourceVersion: a status computed from a stale
            // cache is refused (409) and the sync retried, so nothing is counted twice.
            let mut updated = (*job).clone();
            updated.status = Some(plan.status.clone());
            let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
            api.replace_status(name, &PostParams::default(), &updated)
                .await?;
        }
        lock(&self.backoff).insert(key.to_string(), plan.backoff);
        for e in &plan.events {
            if e.warning {
                self.events
                    .warning(reference.clone(), &e.reason, e.message.clone());
            } else {
                self.events
                    .normal(reference.clone(), &e.reason, e.message.clone());
            }
        }
        for pod in &plan.remove_finalizers {
            remove_finalizer(&pods_api, pod).await?;
        }
        if !plan.delete.is_empty() {
            self.expectations.expect(
                key,
                0,
                plan.delete.iter().filter_map(|p| p.metadata.uid.clone()),
            );
            for pod in &plan.delete {
                let deleted =
                    delete_pod(&pods_api, &pod.name_any(), &self.events, reference.clone()).await;
                if !matches!(deleted, Ok(true)) {
                    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                    self.expectations.observe_delete(key, uid);
                }
                deleted?;
            }
        }
        if !plan.create.is_empty() {
            let count = plan.create.len();
            self.expectations.expect(key, count as i64, []);
            let next = std::sync::atomic::AtomicUsize::new(0);
            let (created, error) = slow_start(count, || {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let index = plan.create.get(i).copied().flatten();
                let failures = index.and_then(|x| plan.index_failures.get(&x).copied());
                let pod = job_pod(&job, index, failures);
                let (api, events, reference) = (&pods_api, &self.events, reference.clone());
                async move { create_pod(api, &pod, events, reference).await.map(|_| ()) }
            })
            .await;
            self.expectations.lower_adds(key, (count - created) as i64);
            if let Some(e) = error {
                return Err(e);
            }
        }
        Ok(plan.requeue)
    }
}

fn reference(job: &Job) -> ObjectReference {
    kube::Resource::object_ref(job, &())
}

/// Upstream's `removeTrackingFinalizerPatch`: a strategic merge patch that deletes only our
/// finalizer, whatever else the list holds.
async fn remove_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"metadata": {
        "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER],
    }});
    ignore_gone(
        api.patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule, SuccessPolicyRule,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec, PodStatus,
        PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn job(completions: Option<i32>, parallelism: i32, indexed: bool) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("pi".into()),
                namespace: Some("default".into()),
                uid: Some("job-uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(6),
                completion_mode: Some(if indexed { "Indexed" } else { "NonIndexed" }.into()),
                selector: Some(LabelSelector {
                    match_labels: Some(
                        [(
                            "batch.kubernetes.io/controller-uid".to_string(),
                            "job-uid".to_string(),
                        )]
                        .into(),
                    ),
                    ..LabelSelector::default()
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            [(
                                "batch.kubernetes.io/controller-uid".to_string(),
                                "job-uid".to_string(),
                            )]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        containers: vec![Default::default()],
                        ..PodSpec::default()
                    }),
                },
                ..JobSpec::default()
            }),
            status: None,
        }
    }

    /// A pod of the job in `phase`, finished at `finished` if it is terminal, with the
    /// tracking finalizer.
    fn pod(uid: &str, phase: &str, index: Option<i32>, finished: i64, code: i32) -> Arc<Pod> {
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let mut p = job_pod(&job(Some(3), 2, index.is_some()), index, None);
        p.metadata.name = Some(format!("pod-{uid}"));
        p.metadata.uid = Some(uid.into());
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: terminal.then(|| {
                vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: code,
                            finished_at: Some(Time(at(finished))),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]
            }),
            ..PodStatus::default()
        });
        Arc::new(p)
    }

    fn without_finalizer(p: &Arc<Pod>) -> Arc<Pod> {
        let mut p = (**p).clone();
        p.metadata.finalizers = None;
        Arc::new(p)
    }

    fn run(job: &Job, pods: &[Arc<Pod>], now: i64) -> Plan {
        plan(&Input {
            job,
            pods,
            backoff: BackoffRecord::default(),
            manage: true,
            config: &Config::default(),
            now: at(now),
        })
    }

    fn with_status(mut j: Job, status: JobStatus) -> Job {
        j.status = Some(status);
        j
    }

    fn types(s: &JobStatus) -> Vec<String> {
        s.conditions
            .iter()
            .flatten()
            .map(|c| c.type_.clone())
            .collect()
    }

    #[test]
    fn completed_indexes_are_compressed_ranges() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format_indexes(&set), "0-2,4,6,7");
        assert_eq!(parse_indexes("0-2,4,6,7", 10), set);
        assert_eq!(parse_indexes("0-9", 3), [0, 1, 2].into());
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn backoff_doubles_from_the_base_and_resets_on_success() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(360);
        let r = next_backoff_record(BackoffRecord::default(), vec![], vec![at(0)]);
        assert_eq!(r.failures_after_last_success, 1);
        assert_eq!(
            remaining_backoff(r, base, max, at(4)),
            Duration::from_secs(6)
        );
        let r = next_backoff_record(r, vec![], vec![at(10), at(12)]);
        // Three failures: 10 s doubled twice, counted from the last failure.
        assert_eq!(
            remaining_backoff(r, base, max, at(12)),
            Duration::from_secs(40)
        );
        let r7 = BackoffRecord {
            failures_after_last_success: 7,
            last_failure: Some(at(0)),
        };
        assert_eq!(remaining_backoff(r7, base, max, at(0)), max);
        // A success resets the count to the failures after it.
        let r = next_backoff_record(r, vec![at(20)], vec![at(15), at(25)]);
        assert_eq!(
            r,
            BackoffRecord {
                failures_after_last_success: 1,
                last_failure: Some(at(25))
            }
        );
        assert_eq!(remaining_backoff(r, base, max, at(100)), Duration::ZERO);
    }

    #[test]
    fn a_new_job_creates_parallelism_pods_and_starts() {
        let j = job(Some(3), 2, false);
        let p = run(&j, &[], 0);
        assert_eq!(p.create, vec![None, None]);
        assert_eq!(p.status.active, Some(2));
        assert_eq!(p.status.start_time, Some(Time(at(0))));
        let pod = job_pod(&j, None, None);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
        assert_eq!(
            pod.metadata.finalizers,
            Some(vec![TRACKING_FINALIZER.to_string()])
        );
        assert_eq!(pod.owner_references()[0].kind, "Job");
    }

    #[test]
    fn finished_pods_are_uncounted_first_then_counted_once_the_finalizer_is_gone() {
        let j = job(Some(3), 2, false);
        let done = pod("a", "Succeeded", None, 5, 0);
        let running = pod("b", "Running", None, 0, 0);
        let p = run(&j, &[done.clone(), running.clone()], 10);
        let unc = p.status.uncounted_terminated_pods.clone().unwrap();
        assert_eq!(unc.succeeded, Some(vec!["a".to_string()]));
        assert_eq!(p.status.succeeded, None);
        assert_eq!(p.remove_finalizers.len(), 1);
        // One more pod to reach min(3 - 1, 2) active.
        assert_eq!(p.create.len(), 1);
        // Next sync: the finalizer is gone, so "a" is counted and leaves the uncounted list.
        let j2 = with_status(j.clone(), p.status);
        let p2 = run(&j2, &[without_finalizer(&done), running.clone()], 11);
        assert_eq!(p2.status.succeeded, Some(1));
        assert_eq!(
            p2.status.uncounted_terminated_pods,
            Some(UncountedTerminatedPods::default())
        );
        // A stale pod (finalizer still there) stays uncounted, never counted twice.
        let p3 = run(&j2, &[done, running], 11);
        assert_eq!(p3.status.succeeded, None);
        assert_eq!(
            p3.status
                .uncounted_terminated_pods
                .unwrap()
                .succeeded
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_job_completes_through_success_criteria_met() {
        let j = with_status(
            job(Some(2), 2, false),
            JobStatus {
                succeeded: Some(1),
                start_time: Some(Time(at(0))),
                ..JobStatus::default()
            },
        );
        let last = pod("b", "Succeeded", None, 5, 0);
        let p = run(&j, std::slice::from_ref(&last), 10);
        assert_eq!(types(&p.status), ["SuccessCriteriaMet"]);
        assert!(p.create.is_empty());
        let j = with_status(j, p.status);
        let p = run(&j, &[without_finalizer(&last)], 11);
        assert_eq!(types(&p.status), ["SuccessCriteriaMet", "Complete"]);
        assert_eq!(p.status.succeeded, Some(2));
        assert_eq!(p.status.completion_time, Some(Time(at(11))));
        assert_eq!(p.events, [event(false, "Completed", "Job completed")]);
        let c = &p.status.conditions.unwrap()[1];
        assert_eq!(c.reason.as_deref(), Some("CompletionsReached"));
    }

    #[test]
    fn indexed_jobs_create_the_lowest_missing_indexes() {
        let j = with_status(
            job(Some(5), 3, true),
            JobStatus {
                completed_indexes: Some("0".into()),
                succeeded: Some(1),
                ..JobStatus::default()
            },
        );
        let pods = [
            pod("a", "Running", Some(2), 0, 0),
            pod("b", "Succeeded", Some(1), 3, 0),
        ];
        let p = run(&j, &pods, 10);
        assert_eq!(p.status.completed_indexes.as_deref(), Some("0,1"));
        // Indexes 0 and 1 succeeded, 2 runs: 3 and 4 are created.
        assert_eq!(p.create, vec![Some(3), Some(4)]);
        let pod = job_pod(&j, Some(3), None);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-3-"));
        assert_eq!(pod.annotations()[COMPLETION_INDEX], "3");
        assert_eq!(pod.labels()[COMPLETION_INDEX], "3");
        assert_eq!(pod.spec.as_ref().unwrap().hostname.as_deref(), Some("pi-3"));
        let env = &pod.spec.unwrap().containers[0].env.clone().unwrap()[0];
        assert_eq!(env.name, "JOB_COMPLETION_INDEX");
    }

    #[test]
    fn duplicated_indexes_are_deleted() {
        let j = job(Some(3), 3, true);
        let pods = [
            pod("a", "Running", Some(0), 0, 0),
            pod("b", "Running", Some(0), 0, 0),
            pod("c", "Running", Some(1), 0, 0),
            pod("d", "Running", Some(2), 0, 0),
        ];
        let p = run(&j, &pods, 10);
        assert_eq!(p.delete.len(), 1);
        assert_eq!(completion_index(&p.delete[0]), Some(0));
        assert!(p.create.is_empty());
    }

    #[test]
    fn failures_back_off_and_then_exceed_the_backoff_limit() {
        let mut j = job(Some(1), 1, false);
        j.spec.as_mut().unwrap().backoff_limit = Some(1);
        let first = pod("a", "Failed", None, 0, 1);
        let p = run(&j, std::slice::from_ref(&first), 2);
        // One failure: no new pod until 10 s after it.
        assert!(p.create.is_empty());
        assert_eq!(p.requeue, Some(Duration::from_secs(8)));
        assert_eq!(
            p.status
                .uncounted_terminated_pods
                .clone()
                .unwrap()
                .failed
                .unwrap(),
            ["a"]
        );
        let j = with_status(j, p.status);
        let gone = without_finalizer(&first);
        let p = plan(&Input {
            job: &j,
            pods: std::slice::from_ref(&gone),
            backoff: p.backoff,
            manage: true,
            config: &Config::default(),
            now: at(10),
        });
        assert_eq!(p.status.failed, Some(1));
        assert_eq!(p.create, vec![None]);
        let j = with_status(j, p.status);
        let second = pod("b", "Failed", None, 20, 1);
        let p = run(&j, &[gone.clone(), second.clone()], 21);
        assert_eq!(types(&p.status), ["FailureTarget"]);
        let j = with_status(j, p.status);
        let p = run(&j, &[gone, without_finalizer(&second)], 22);
        assert_eq!(types(&p.status), ["FailureTarget", "Failed"]);
        let failed = &p.status.conditions.as_ref().unwrap()[1];
        assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(p.status.failed, Some(2));
        assert_eq!(
            p.events,
            [event(
                true,
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit"
            )]
        );
    }

    #[test]
    fn past_the_active_deadline_active_pods_are_deleted_and_counted_failed() {
        let mut j = job(Some(1), 1, false);
        j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
        let j = with_status(
            j,
            JobStatus {
                start_time: Some(Time(at(0))),
                ..JobStatus::default()
            },
        );
        let running = pod("a", "Running", None, 0, 0);
        let p = run(&j, std::slice::from_ref(&running), 10);
        assert_eq!(p.requeue, Some(Duration::from_secs(20)));
        let p = run(&j, std::slice::from_ref(&running), 30);
        assert_eq!(p.delete.len(), 1);
        assert_eq!(types(&p.status), ["FailureTarget"]);
        assert_eq!(
            p.status
                .uncounted_terminated_pods
                .clone()
                .unwrap()
                .failed
                .unwrap(),
            ["a"]
        );
        let j = with_status(j, p.status);
        let p = run(&j, &[], 31);
        assert_eq!(types(&p.status), ["FailureTarget", "Failed"]);
        assert_eq!(
            p.status.conditions.unwrap()[1].reason.as_deref(),
            Some("DeadlineExceeded")
        );
        assert_eq!(p.status.failed, Some(1));
    }

    #[test]
    fn pod_failure_policy_fails_the_job_or_ignores_the_pod() {
        let rule = |action: &str, codes: Vec<i32>| PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: "In".into(),
                values: codes,
            }),
            on_pod_conditions: None,
        };
        let policy = PodFailurePolicy {
            rules: vec![rule("Ignore", vec![2]), rule("FailJob", vec![42])],
        };
        let failed42 = pod("a", "Failed", None, 0, 42);
        let (action, message) = match_pod_failure_policy(&policy, &failed42).unwrap();
        assert_eq!(action, PolicyAction::FailJob);
        assert_eq!(
            message.unwrap(),
            "Container main for pod default/pod-a failed with exit code 42 matching FailJob rule at index 1"
        );
        let mut j = job(Some(1), 1, false);
        j.spec.as_mut().unwrap().pod_failure_policy = Some(policy);
        let p = run(&j, &[failed42], 1);
        let c = &p.status.conditions.clone().unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.reason.as_deref()),
            ("FailureTarget", Some("PodFailurePolicy"))
        );
        // An ignored failure is not counted and replaced at once.
        let p = run(&j, &[pod("b", "Failed", None, 0, 2)], 1);
        assert_eq!(p.status.uncounted_terminated_pods.unwrap().failed, None);
        assert_eq!(p.remove_finalizers.len(), 1);
        assert_eq!(p.create, vec![None]);
    }

    #[test]
    fn a_suspended_job_deletes_its_pods_and_resumes_with_a_new_start_time() {
        let mut j = job(Some(2), 2, false);
        j.spec.as_mut().unwrap().suspend = Some(true);
        let p = run(&j, &[], 0);
        assert!(p.create.is_empty());
        assert_eq!(p.status.start_time, None);
        assert_eq!(types(&p.status), ["Suspended"]);
        assert_eq!(p.events, [event(false, "Suspended", "Job suspended")]);
        let p = run(&j, &[pod("a", "Running", None, 0, 0)], 0);
        assert_eq!(p.delete.len(), 1);
        let mut resumed = with_status(j, p.status);
        resumed.spec.as_mut().unwrap().suspend = Some(false);
        let p = run(&resumed, &[], 50);
        assert_eq!(p.create.len(), 2);
        assert_eq!(p.status.start_time, Some(Time(at(50))));
        let c = &p.status.conditions.clone().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("False", Some("JobResumed"))
        );
    }

    #[test]
    fn without_completions_the_first_success_ends_the_job_once_nothing_runs() {
        let j = job(None, 2, false);
        let done = pod("a", "Succeeded", None, 0, 0);
        let running = pod("b", "Running", None, 0, 0);
        let p = run(&j, &[done.clone(), running.clone()], 1);
        assert!(p.create.is_empty());
        assert_eq!(types(&p.status), Vec::<String>::new());
        let p = run(&j, &[done], 1);
        assert_eq!(types(&p.status), ["SuccessCriteriaMet"]);
    }

    /// An Indexed Job of `completions` pods at once with `backoffLimitPerIndex`.
    fn per_index_job(completions: i32, limit: i32, max_failed: Option<i32>) -> Job {
        let mut j = job(Some(completions), completions, true);
        let spec = j.spec.as_mut().unwrap();
        spec.backoff_limit = Some(i32::MAX);
        spec.backoff_limit_per_index = Some(limit);
        spec.max_failed_indexes = max_failed;
        j
    }

    /// `p` carrying the index failure count annotation.
    fn with_failures(p: &Arc<Pod>, counted: i32) -> Arc<Pod> {
        let mut p = (**p).clone();
        p.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(INDEX_FAILURE_COUNT.into(), counted.to_string());
        Arc::new(p)
    }

    fn reason_of(s: &JobStatus, type_: &str) -> Option<String> {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .and_then(|c| c.reason.clone())
    }

    #[test]
    fn index_failure_counts_come_from_the_annotations_and_bad_values_count_as_zero() {
        let spec = per_index_job(2, 1, None).spec.unwrap();
        let p = with_failures(&pod("a", "Failed", Some(0), 0, 1), 2);
        assert_eq!(
            IndexFailures::of(&p),
            IndexFailures {
                counted: 2,
                ignored: 0
            }
        );
        assert_eq!(IndexFailures::after(&spec, Some(&p)).counted, 3);
        assert_eq!(IndexFailures::after(&spec, None), IndexFailures::default());
        let mut bad = (*p).clone();
        bad.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(INDEX_FAILURE_COUNT.into(), "-4".into());
        assert_eq!(IndexFailures::of(&bad).counted, 0);
        // An ignored failure (podFailurePolicy Ignore) goes to the ignored count.
        let mut spec = spec;
        spec.pod_failure_policy = Some(PodFailurePolicy {
            rules: vec![PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: None,
                    operator: "In".into(),
                    values: vec![1],
                }),
                on_pod_conditions: None,
            }],
        });
        assert_eq!(
            IndexFailures::after(&spec, Some(&p)),
            IndexFailures {
                counted: 2,
                ignored: 1
            }
        );
        assert!(!is_index_failed(&spec, &p));
    }

    #[test]
    fn a_failed_index_backs_off_on_its_own_then_fails_past_its_limit() {
        let j = per_index_job(3, 1, None);
        let first = with_failures(&pod("a", "Failed", Some(0), 0, 1), 0);
        let others = [
            pod("b", "Running", Some(1), 0, 0),
            pod("c", "Running", Some(2), 0, 0),
        ];
        let all = |extra: &[Arc<Pod>]| -> Vec<Arc<Pod>> {
            extra.iter().chain(others.iter()).cloned().collect()
        };
        // The index's first failure: 10 s of back-off, and the failed pod keeps its finalizer
        // until its replacement exists.
        let p = run(&j, &all(std::slice::from_ref(&first)), 2);
        assert!(p.create.is_empty());
        assert_eq!(p.requeue, Some(Duration::from_secs(8)));
        assert!(p.remove_finalizers.is_empty());
        assert_eq!(p.status.failed_indexes.as_deref(), Some(""));
        assert_eq!(types(&p.status), Vec::<String>::new());
        let p = run(&j, &all(std::slice::from_ref(&first)), 10);
        assert_eq!(p.create, vec![Some(0)]);
        assert_eq!(p.index_failures[&0].counted, 1);
        let replacement = job_pod(&j, Some(0), Some(p.index_failures[&0]));
        assert_eq!(replacement.annotations()[INDEX_FAILURE_COUNT], "1");
        assert!(
            !replacement
                .annotations()
                .contains_key(INDEX_IGNORED_FAILURE_COUNT)
        );
        // Once the replacement runs, the failed pod is counted.
        let second = with_failures(&pod("d", "Running", Some(0), 0, 0), 1);
        let p = run(&j, &all(&[first.clone(), second]), 11);
        assert_eq!(p.remove_finalizers.len(), 1);
        assert_eq!(
            p.status.uncounted_terminated_pods.unwrap().failed.unwrap(),
            ["a"]
        );
        assert!(p.create.is_empty());
        // The replacement fails too: the index is given up, not retried.
        let j = with_status(
            j,
            JobStatus {
                failed: Some(1),
                failed_indexes: Some(String::new()),
                ..JobStatus::default()
            },
        );
        let second = with_failures(&pod("d", "Failed", Some(0), 20, 1), 1);
        let p = run(&j, &all(std::slice::from_ref(&second)), 21);
        assert_eq!(p.status.failed_indexes.as_deref(), Some("0"));
        assert!(p.create.is_empty());
        assert_eq!(p.requeue, None);
        assert_eq!(p.remove_finalizers.len(), 1);
        assert_eq!(types(&p.status), Vec::<String>::new());
        // The other indexes succeed: every index is finished, one failed.
        let j = with_status(j, p.status);
        let gone = without_finalizer(&second);
        let done = [
            pod("b", "Succeeded", Some(1), 30, 0),
            pod("c", "Succeeded", Some(2), 30, 0),
        ];
        let pods: Vec<Arc<Pod>> = std::iter::once(gone).chain(done).collect();
        let p = run(&j, &pods, 31);
        assert_eq!(p.status.completed_indexes.as_deref(), Some("1,2"));
        assert_eq!(
            reason_of(&p.status, "FailureTarget").as_deref(),
            Some("FailedIndexes")
        );
        let j = with_status(j, p.status);
        let counted: Vec<Arc<Pod>> = pods.iter().map(without_finalizer).collect();
        let p = run(&j, &counted, 32);
        assert_eq!(
            reason_of(&p.status, "Failed").as_deref(),
            Some("FailedIndexes")
        );
        assert_eq!(p.status.failed, Some(2));
        assert_eq!(
            p.events,
            [event(true, "FailedIndexes", "Job has failed indexes")]
        );
    }

    #[test]
    fn more_failed_indexes_than_allowed_fail_the_job_and_stop_its_pods() {
        let j = per_index_job(4, 0, Some(1));
        let pods = [
            pod("a", "Failed", Some(0), 0, 1),
            pod("b", "Running", Some(1), 0, 0),
            pod("c", "Running", Some(2), 0, 0),
            pod("d", "Running", Some(3), 0, 0),
        ];
        // One failed index is allowed.
        let p = run(&j, &pods, 1);
        assert_eq!(p.status.failed_indexes.as_deref(), Some("0"));
        assert!(p.delete.is_empty());
        assert_eq!(types(&p.status), Vec::<String>::new());
        let mut pods = pods.to_vec();
        pods[1] = pod("b", "Failed", Some(1), 2, 1);
        let p = run(&j, &pods, 3);
        assert_eq!(p.status.failed_indexes.as_deref(), Some("0,1"));
        assert_eq!(
            reason_of(&p.status, "FailureTarget").as_deref(),
            Some("MaxFailedIndexesExceeded")
        );
        assert_eq!(p.delete.len(), 2);
    }

    #[test]
    fn a_fail_index_rule_fails_the_index_at_once() {
        let mut j = per_index_job(2, 3, None);
        j.spec.as_mut().unwrap().pod_failure_policy = Some(PodFailurePolicy {
            rules: vec![PodFailurePolicyRule {
                action: "FailIndex".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: None,
                    operator: "In".into(),
                    values: vec![42],
                }),
                on_pod_conditions: None,
            }],
        });
        let pods = [
            pod("a", "Failed", Some(0), 0, 42),
            pod("b", "Running", Some(1), 0, 0),
        ];
        let p = run(&j, &pods, 1);
        assert_eq!(p.status.failed_indexes.as_deref(), Some("0"));
        assert!(p.create.is_empty());
        assert_eq!(
            p.status.uncounted_terminated_pods.unwrap().failed.unwrap(),
            ["a"]
        );
        // Another exit code is retried within the index's limit.
        let pods = [
            pod("a", "Failed", Some(0), 0, 3),
            pod("b", "Running", Some(1), 0, 0),
        ];
        let p = run(&j, &pods, 30);
        assert_eq!(p.status.failed_indexes.as_deref(), Some(""));
        assert_eq!(p.create, vec![Some(0)]);
    }

    #[test]
    fn success_policy_rules_match_indexes_or_counts() {
        let rule = |indexes: Option<&str>, count: Option<i32>| SuccessPolicyRule {
            succeeded_indexes: indexes.map(str::to_string),
            succeeded_count: count,
        };
        let policy = SuccessPolicy {
            rules: vec![rule(Some("0,2-4"), None), rule(None, Some(3))],
        };
        let done = |v: &[i32]| v.iter().copied().collect::<BTreeSet<i32>>();
        assert_eq!(match_success_policy(Some(&policy), 6, &done(&[0, 2])), None);
        assert_eq!(
            match_success_policy(Some(&policy), 6, &done(&[0, 2, 3, 4])).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(
            match_success_policy(Some(&policy), 6, &done(&[1, 2, 5])).as_deref(),
            Some("Matched rules at index 1")
        );
        let some_of = SuccessPolicy {
            rules: vec![rule(Some("1-3"), Some(2))],
        };
        assert!(match_success_policy(Some(&some_of), 6, &done(&[0, 2])).is_none());
        assert!(match_success_policy(Some(&some_of), 6, &done(&[1, 3])).is_some());
        assert!(match_success_policy(None, 6, &done(&[1, 3])).is_none());
    }

    #[test]
    fn a_met_success_policy_stops_the_other_pods_then_completes() {
        let mut j = job(Some(3), 3, true);
        j.spec.as_mut().unwrap().success_policy = Some(SuccessPolicy {
            rules: vec![SuccessPolicyRule {
                succeeded_indexes: Some("0".into()),
                succeeded_count: None,
            }],
        });
        let pods = [
            pod("a", "Succeeded", Some(0), 1, 0),
            pod("b", "Running", Some(1), 0, 0),
            pod("c", "Running", Some(2), 0, 0),
        ];
        let p = run(&j, &pods, 2);
        assert_eq!(types(&p.status), ["SuccessCriteriaMet"]);
        let c = &p.status.conditions.clone().unwrap()[0];
        assert_eq!(c.reason.as_deref(), Some("SuccessPolicy"));
        assert_eq!(c.message.as_deref(), Some("Matched rules at index 0"));
        assert_eq!(p.delete.len(), 2);
        assert!(p.create.is_empty());
        let j = with_status(j, p.status);
        let p = run(&j, &[without_finalizer(&pods[0])], 3);
        assert_eq!(types(&p.status), ["SuccessCriteriaMet", "Complete"]);
        assert_eq!(
            reason_of(&p.status, "Complete").as_deref(),
            Some("SuccessPolicy")
        );
        assert_eq!(p.status.completed_indexes.as_deref(), Some("0"));
        assert!(p.status.completion_time.is_some());
    }

    #[test]
    fn indexed_generate_names_leave_room_for_the_suffix() {
        let long = "j".repeat(70);
        let g = generate_name(&long, Some(12));
        assert_eq!(g.len(), MAX_GENERATED_NAME_LENGTH);
        assert!(g.ends_with("-12-"));
    }
}
