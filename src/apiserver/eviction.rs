//! The `pods/eviction` subresource, as upstream's `EvictionREST`
//! (pkg/registry/core/pod/storage/eviction.go): a policy/v1 (or v1beta1) Eviction deletes the
//! pod when its PodDisruptionBudget allows one more disruption, and records the disruption in
//! the budget's `status.disruptedPods` first (a compare-and-swap status write), so that two
//! evictions racing for the last allowed disruption cannot both pass. `kubectl drain` uses it.
//!
//! The decisions are pure functions ([`can_ignore_budgets`], [`matching_budgets`],
//! [`unhealthy_may_go`], [`check_and_decrement`]); [`evict`] does the reads and writes.

use http::StatusCode;
use serde_json::{Value, json};

use super::handlers::{Call, DeleteOptions, delete_one, parse_delete_options};
use super::selector::LabelSelector;
use super::status::{ApiError, Cause, Result};
use super::storage::{Stored, Written};
use super::{Reply, meta};

/// Upstream's `MaxDisruptedPodSize`: a budget with more unconfirmed evictions than this refuses
/// further ones until the disruption controller has caught up.
pub const MAX_DISRUPTED_PODS: usize = 2000;
/// How often a budget's status write or the pod's deletion is retried after losing a race
/// (upstream's `EvictionsRetry` has 20 steps).
const RETRIES: usize = 20;
/// The message of every 429 an eviction answers.
pub const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
/// The cause type upstream puts on those 429s (`policyv1.DisruptionBudgetCause`).
pub const CAUSE: &str = "DisruptionBudget";

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Upstream's `podutil.IsPodReady`: the Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Upstream's `canIgnorePDB`: a pod that is finished, not running yet (Pending), or already
/// being deleted has disrupted nothing a budget protects, so it is deleted directly.
pub fn can_ignore_budgets(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || is_deleting(pod)
}

/// Upstream's `shouldEnforceResourceVersion`: a Pending pod deleted without a budget check is
/// deleted only as it was read, so it cannot become ready (and protected) in between.
fn should_enforce_resource_version(pod: &Value) -> bool {
    !(matches!(phase(pod), "Succeeded" | "Failed") || is_deleting(pod))
}

/// The budgets of `pod`'s namespace whose selector matches its labels (upstream's
/// `getPodDisruptionBudgets`): an invalid, absent or empty selector matches nothing.
pub fn matching_budgets<'a>(pod: &Value, budgets: &'a [Value]) -> Vec<&'a Value> {
    let labels = pod.pointer("/metadata/labels").unwrap_or(&Value::Null);
    budgets
        .iter()
        .filter(|b| {
            let Some(sel) = b.pointer("/spec/selector").filter(|s| !s.is_null()) else {
                return false;
            };
            LabelSelector::from_label_selector_json(sel)
                .is_ok_and(|s| !s.is_empty() && s.matches(labels))
        })
        .collect()
}

fn status_i64(budget: &Value, field: &str) -> i64 {
    budget
        .pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Whether an unready pod may go without using up a disruption (upstream, with
/// `unhealthyPodEvictionPolicy`): always under `AlwaysAllow`; under `IfHealthyBudget` (the
/// default) only while the budget has its desired healthy pods, since the unready pod counts
/// for nothing then.
pub fn unhealthy_may_go(pod: &Value, budget: &Value) -> bool {
    if is_ready(pod) {
        return false;
    }
    if budget
        .pointer("/spec/unhealthyPodEvictionPolicy")
        .and_then(Value::as_str)
        == Some("AlwaysAllow")
    {
        return true;
    }
    let desired = status_i64(budget, "desiredHealthy");
    status_i64(budget, "currentHealthy") >= desired && desired > 0
}

fn budget_name(budget: &Value) -> &str {
    budget
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Upstream's `NewTooManyRequests` with one `DisruptionBudget` cause.
fn too_many_requests(retry_after: u64, cause: String) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", VIOLATION);
    e.retry_after = (retry_after > 0).then_some(retry_after);
    e.causes = vec![Cause {
        reason: CAUSE,
        message: cause,
        field: String::new(),
    }];
    e
}

/// Upstream's `createTooManyRequestsError`: the budget's status is not current yet.
fn still_processing(name: &str) -> ApiError {
    too_many_requests(
        10,
        format!("The disruption budget {name} is still being processed by the server."),
    )
}

fn forbidden_budget(name: &str, why: &str) -> ApiError {
    ApiError::forbidden_object(
        "policy",
        "poddisruptionbudget",
        "poddisruptionbudget.policy",
        name,
        why,
    )
}

/// Upstream's `checkAndDecrement`: the budget's new status when it allows this disruption
/// (one fewer allowed, `pod` recorded in `disruptedPods` at `now`, the DisruptionAllowed
/// condition updated when none are left), or the refusal.
pub fn check_and_decrement(budget: &Value, pod: &str, now: &str) -> Result<Value> {
    let name = budget_name(budget);
    let generation = budget
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_i64(budget, "observedGeneration") < generation {
        return Err(still_processing(name));
    }
    let allowed = status_i64(budget, "disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden_budget(
            name,
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = budget
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden_budget(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            0,
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                status_i64(budget, "desiredHealthy"),
                status_i64(budget, "currentHealthy")
            ),
        ));
    }
    let mut new = budget.clone();
    let left = allowed - 1;
    new["status"]["disruptionsAllowed"] = json!(left);
    if left == 0 {
        set_disruption_allowed_false(&mut new, now);
    }
    if !new["status"]["disruptedPods"].is_object() {
        new["status"]["disruptedPods"] = json!({});
    }
    new["status"]["disruptedPods"][pod] = json!(now);
    Ok(new)
}

/// Upstream's `UpdateDisruptionAllowedCondition` for a budget with no disruptions left: the
/// condition False with reason InsufficientPods, its transition time moved only when the
/// status changes (`meta.SetStatusCondition`).
fn set_disruption_allowed_false(budget: &mut Value, now: &str) {
    let observed = budget["status"]["observedGeneration"].clone();
    let mut conditions = budget["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match conditions
        .iter_mut()
        .find(|c| c["type"] == "DisruptionAllowed")
    {
        Some(c) => {
            if c["status"] != "False" {
                c["status"] = json!("False");
                c["lastTransitionTime"] = json!(now);
            }
            c["reason"] = json!("InsufficientPods");
            c["message"] = json!("");
            c["observedGeneration"] = observed;
        }
        None => conditions.push(json!({
            "type": "DisruptionAllowed",
            "status": "False",
            "reason": "InsufficientPods",
            "message": "",
            "observedGeneration": observed,
            "lastTransitionTime": now,
        })),
    }
    budget["status"]["conditions"] = json!(conditions);
}

/// The pod with upstream's `DisruptionTarget` condition (reason `EvictionByEvictionAPI`),
/// which tells the pod's owners (Jobs' podFailurePolicy) that it was evicted.
pub fn with_disruption_target(pod: &Value, now: &str) -> Value {
    let mut new = pod.clone();
    let mut conditions = new
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let condition = |transition: Value| {
        json!({
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting",
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        })
    };
    match conditions
        .iter_mut()
        .find(|c| c["type"] == "DisruptionTarget")
    {
        Some(c) => {
            let transition = if c["status"] == "True" {
                c["lastTransitionTime"].clone()
            } else {
                json!(now)
            };
            *c = condition(transition);
        }
        None => conditions.push(condition(json!(now))),
    }
    if !new["status"].is_object() {
        new["status"] = json!({});
    }
    new["status"]["conditions"] = json!(conditions);
    new
}

/// What `Create` on the subresource answers when the pod went (upstream returns a bare
/// success Status, which the create handler gives the 201 code).
fn success() -> Reply {
    Reply::object(
        StatusCode::CREATED,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }),
    )
}

/// The decoded Eviction of the request: its kind and version checked, its name matching the
/// pod's, and its DeleteOptions.
fn decode(call: &Call<'_>, pod_name: &str) -> Result<DeleteOptions> {
    let body = call.body_object()?;
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if !matches!(api_version, "" | "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version (policy/v1)"
        )));
    }
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if !matches!(kind, "" | "Eviction") {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind (Eviction)"
        )));
    }
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name != pod_name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let options = match body.get("deleteOptions") {
        Some(o) if o.is_object() => o.clone(),
        Some(Value::Null) | None => json!({}),
        Some(_) => {
            return Err(ApiError::bad_request(
                "Eviction in version \"v1\" cannot be handled as a Eviction: deleteOptions must be an object",
            ));
        }
    };
    parse_delete_options(call, &options)
}

/// POST `pods/<name>/eviction`.
pub async fn evict(call: &Call<'_>) -> Result<Reply> {
    let pod_name = call.path.name.clone().unwrap_or_default();
    let ns = call.path.namespace.clone().unwrap_or_default();
    let options = decode(call, &pod_name)?;
    let pod_key = call.resource.key(Some(&ns), &pod_name);
    let not_found = || ApiError::not_found("", "pods", "pods", &pod_name);
    // A caller's resourceVersion precondition is never retried past (upstream's shouldRetry).
    let caller_rv = options.resource_version.is_some();

    // Pods a budget does not protect are deleted at once.
    let mut pod = None;
    for _ in 0..RETRIES {
        let current = call
            .api
            .storage
            .get(&pod_key)
            .await?
            .ok_or_else(not_found)?;
        if !can_ignore_budgets(&current.object) {
            pod = Some(current);
            break;
        }
        let enforce = should_enforce_resource_version(&current.object) && !caller_rv;
        match delete_evicted(call, &pod_key, current, &options, enforce).await {
            Ok(Some(())) => return Ok(success()),
            Ok(None) => continue,
            Err(e) if e.code == 409 && !caller_rv => continue,
            Err(e) => return Err(e),
        }
    }
    let Some(pod) = pod else {
        return Err(ApiError::conflict("", "pods", "pods", &pod_name));
    };

    let budgets = call
        .api
        .resource("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not registered"))?;
    let page = call
        .api
        .storage
        .list(&budgets.key_prefix(Some(&ns)), 0, None, 0)
        .await?;
    let all: Vec<Value> = page.items.into_iter().map(|s| s.object).collect();
    let matching = matching_budgets(&pod.object, &all);
    if matching.len() > 1 {
        return Ok(Reply::object(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                "code": 500,
            }),
        ));
    }
    let Some(budget) = matching.first() else {
        return match delete_evicted(call, &pod_key, pod, &options, false).await? {
            Some(()) => Ok(success()),
            None => Err(ApiError::conflict("", "pods", "pods", &pod_name)),
        };
    };
    let budget_name = budget_name(budget).to_string();
    if unhealthy_may_go(&pod.object, budget) {
        // The pod is deleted only as it was read: had it become ready meanwhile, the budget
        // would protect it, so a lost race is a 429 the client retries.
        return match delete_evicted(call, &pod_key, pod, &options, !caller_rv).await {
            Ok(Some(())) => Ok(success()),
            Ok(None) => Err(still_processing(&budget_name)),
            Err(e) if e.code == 409 && !caller_rv => Err(still_processing(&budget_name)),
            Err(e) => Err(e),
        };
    }
    let budget_key = budgets.key(Some(&ns), &budget_name);
    let mut current: Stored = match call.api.storage.get(&budget_key).await? {
        Some(b) => b,
        None => {
            return Err(ApiError::not_found(
                "policy",
                "poddisruptionbudgets",
                "poddisruptionbudgets.policy",
                &budget_name,
            ));
        }
    };
    let mut recorded = false;
    for _ in 0..RETRIES {
        let new = check_and_decrement(&current.object, &pod_name, &meta::now_rfc3339())?;
        if options.dry_run {
            recorded = true;
            break;
        }
        match call
            .api
            .storage
            .update(&budget_key, &new, current.revision)
            .await?
        {
            Written::Done(_) => {
                recorded = true;
                break;
            }
            Written::Conflict => {
                current = call.api.storage.get(&budget_key).await?.ok_or_else(|| {
                    ApiError::not_found(
                        "policy",
                        "poddisruptionbudgets",
                        "poddisruptionbudgets.policy",
                        &budget_name,
                    )
                })?;
            }
        }
    }
    if !recorded {
        let mut e = ApiError::timeout(format!(
            "couldn't update PodDisruptionBudget \"{budget_name}\" due to conflicts"
        ));
        e.retry_after = Some(10);
        return Err(e);
    }
    // The budget has counted this disruption: delete the pod as it is now.
    for _ in 0..RETRIES {
        let current = call
            .api
            .storage
            .get(&pod_key)
            .await?
            .ok_or_else(not_found)?;
        if let Some(()) = delete_evicted(call, &pod_key, current, &options, false).await? {
            return Ok(success());
        }
    }
    Err(ApiError::conflict("", "pods", "pods", &pod_name))
}

/// Upstream's `addConditionAndDeletePod`: checks the preconditions, marks the pod with the
/// DisruptionTarget condition, then deletes it with `options` (its grace period). With
/// `enforce`, the pod must still be at the revision read. `None` when the pod changed
/// underneath (retry with a fresh read).
async fn delete_evicted(
    call: &Call<'_>,
    key: &str,
    current: Stored,
    options: &DeleteOptions,
    enforce: bool,
) -> Result<Option<()>> {
    let name = current.object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let precondition_failed = |why: String| {
        ApiError::conflict_message(
            "",
            "pods",
            "pods",
            &name,
            &format!("Precondition failed: {why}"),
        )
    };
    let uid = current.object["metadata"]["uid"]
        .as_str()
        .unwrap_or_default();
    if let Some(want) = &options.uid
        && want != uid
    {
        return Err(precondition_failed(format!(
            "UID in precondition: {want}, UID in object meta: {uid}"
        )));
    }
    let mut expected_rv = options.resource_version.clone();
    if enforce && expected_rv.is_none() {
        expected_rv = Some(current.revision.to_string());
    }
    if let Some(want) = &expected_rv
        && *want != current.revision.to_string()
    {
        return Err(precondition_failed(format!(
            "ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
            current.revision
        )));
    }
    if options.dry_run {
        return delete_one(call, key, current, options)
            .await
            .map(|r| r.map(|_| ()));
    }
    let marked = with_disruption_target(&current.object, &meta::now_rfc3339());
    let current = match call
        .api
        .storage
        .update(key, &marked, current.revision)
        .await?
    {
        Written::Done(rev) => {
            let mut object = marked;
            super::storage::set_resource_version(&mut object, rev);
            Stored {
                object,
                revision: rev,
            }
        }
        Written::Conflict if expected_rv.is_some() => {
            return Err(ApiError::conflict("", "pods", "pods", &name));
        }
        Written::Conflict => return Ok(None),
    };
    // The precondition guarded the condition write; the delete follows that write.
    let mut options = options.clone();
    options.resource_version = expected_rv.map(|_| current.revision.to_string());
    Ok(delete_one(call, key, current, &options).await?.map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, ready: bool, labels: Value) -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": labels},
            "status": {
                "phase": phase,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            },
        })
    }

    fn budget(name: &str, selector: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "ns", "generation": 1},
            "spec": {"selector": selector, "minAvailable": 1},
            "status": status,
        })
    }

    #[test]
    fn finished_pending_and_deleting_pods_skip_budgets() {
        assert!(can_ignore_budgets(&pod("Succeeded", false, json!({}))));
        assert!(can_ignore_budgets(&pod("Failed", false, json!({}))));
        assert!(can_ignore_budgets(&pod("Pending", false, json!({}))));
        assert!(!can_ignore_budgets(&pod("Running", true, json!({}))));
        let mut deleting = pod("Running", true, json!({}));
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(can_ignore_budgets(&deleting));
        // A pending pod must still be as read; a finished one need not.
        assert!(should_enforce_resource_version(&pod(
            "Pending",
            false,
            json!({})
        )));
        assert!(!should_enforce_resource_version(&pod(
            "Failed",
            false,
            json!({})
        )));
    }

    #[test]
    fn empty_or_invalid_selectors_match_nothing() {
        let p = pod("Running", true, json!({"app": "web"}));
        let budgets = vec![
            budget("web", json!({"matchLabels": {"app": "web"}}), json!({})),
            budget("other", json!({"matchLabels": {"app": "db"}}), json!({})),
            budget("empty", json!({}), json!({})),
            budget("none", Value::Null, json!({})),
            budget(
                "bad",
                json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]}),
                json!({}),
            ),
        ];
        let names: Vec<&str> = matching_budgets(&p, &budgets)
            .into_iter()
            .map(budget_name)
            .collect();
        assert_eq!(names, ["web"]);
    }

    #[test]
    fn unready_pods_go_while_the_budget_is_healthy_or_always_allowed() {
        let healthy = budget(
            "b",
            json!({}),
            json!({"currentHealthy": 2, "desiredHealthy": 2}),
        );
        let short = budget(
            "b",
            json!({}),
            json!({"currentHealthy": 1, "desiredHealthy": 2}),
        );
        let unready = pod("Running", false, json!({}));
        assert!(unhealthy_may_go(&unready, &healthy));
        assert!(!unhealthy_may_go(&unready, &short));
        assert!(!unhealthy_may_go(
            &pod("Running", true, json!({})),
            &healthy
        ));
        let mut always = short.clone();
        always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert!(unhealthy_may_go(&unready, &always));
        // desiredHealthy 0 (a budget that asks for nothing) is not "healthy" upstream.
        let zero = budget(
            "b",
            json!({}),
            json!({"currentHealthy": 0, "desiredHealthy": 0}),
        );
        assert!(!unhealthy_may_go(&unready, &zero));
    }

    #[test]
    fn a_budget_without_disruptions_refuses_with_a_429() {
        let b = budget(
            "web",
            json!({}),
            json!({"observedGeneration": 1, "disruptionsAllowed": 0,
                   "currentHealthy": 2, "desiredHealthy": 2}),
        );
        let e = check_and_decrement(&b, "p", "2026-01-01T00:00:00Z").unwrap_err();
        assert_eq!(e.code, 429);
        assert_eq!(e.reason, "TooManyRequests");
        assert_eq!(e.message, VIOLATION);
        assert_eq!(e.retry_after, None);
        assert_eq!(e.causes.len(), 1);
        assert_eq!(e.causes[0].reason, CAUSE);
        assert_eq!(
            e.causes[0].message,
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        );
    }

    #[test]
    fn a_stale_budget_asks_to_retry_later() {
        let mut b = budget(
            "web",
            json!({}),
            json!({"observedGeneration": 1, "disruptionsAllowed": 3}),
        );
        b["metadata"]["generation"] = json!(2);
        let e = check_and_decrement(&b, "p", "2026-01-01T00:00:00Z").unwrap_err();
        assert_eq!(e.code, 429);
        assert_eq!(e.retry_after, Some(10));
        assert_eq!(
            e.causes[0].message,
            "The disruption budget web is still being processed by the server."
        );
        let negative = budget(
            "web",
            json!({}),
            json!({"observedGeneration": 1, "disruptionsAllowed": -1}),
        );
        let e = check_and_decrement(&negative, "p", "t").unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }

    #[test]
    fn an_allowed_disruption_is_recorded_and_counted() {
        let b = budget(
            "web",
            json!({}),
            json!({"observedGeneration": 1, "disruptionsAllowed": 2,
                   "disruptedPods": {"old": "2026-01-01T00:00:00Z"},
                   "conditions": [{"type": "DisruptionAllowed", "status": "True",
                                   "reason": "SufficientPods", "message": "",
                                   "lastTransitionTime": "2025-01-01T00:00:00Z"}]}),
        );
        let now = "2026-02-02T00:00:00Z";
        let one = check_and_decrement(&b, "p", now).unwrap();
        assert_eq!(one["status"]["disruptionsAllowed"], 1);
        assert_eq!(one["status"]["disruptedPods"]["p"], now);
        assert_eq!(
            one["status"]["disruptedPods"]["old"],
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(one["status"]["conditions"][0]["status"], "True");
        let zero = check_and_decrement(&one, "q", now).unwrap();
        assert_eq!(zero["status"]["disruptionsAllowed"], 0);
        let c = &zero["status"]["conditions"][0];
        assert_eq!(c["status"], "False");
        assert_eq!(c["reason"], "InsufficientPods");
        assert_eq!(c["lastTransitionTime"], now);
        assert_eq!(c["observedGeneration"], 1);
        assert_eq!(check_and_decrement(&zero, "r", now).unwrap_err().code, 429);
    }

    #[test]
    fn the_disruption_target_condition_is_added_once() {
        let p = pod("Running", true, json!({}));
        let marked = with_disruption_target(&p, "t1");
        let again = with_disruption_target(&marked, "t2");
        let conditions = again["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1]["type"], "DisruptionTarget");
        assert_eq!(conditions[1]["reason"], "EvictionByEvictionAPI");
        assert_eq!(conditions[1]["lastTransitionTime"], "t1");
    }
}
