//! ResourceQuota admission (upstream's `ResourceQuota` plugin, the last validating step): a
//! new object, or an update that grows a Service's or claim's usage, is checked against every
//! quota of its namespace with the evaluators of `crate::quota`, and its usage is added to the
//! quotas' `status.used` by compare-and-swap writes before the object is stored, so that two
//! quick creates cannot both take the last slot. The quota controller recomputes `status.used`
//! from the stored objects afterwards (and so gives back what a failed create charged).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::handlers::Call;
use super::status::{ApiError, Result};
use super::storage::{Stored, Written};
use crate::quota::{Evaluator, check};

/// How often the charge is retried when a quota changed underneath.
const RETRIES: usize = 8;

/// Checks and charges `obj` (`old` on updates) against the quotas of its namespace; a refusal
/// is 403 Forbidden with upstream's message. Dry runs are checked but charge nothing.
pub async fn admit(call: &Call<'_>, obj: &Value, old: Option<&Value>) -> Result<()> {
    // Upstream ignores subresources and cluster-scoped objects.
    if call.path.subresource.is_some() || !call.resource.namespaced {
        return Ok(());
    }
    let Some(ns) = call.path.namespace.as_deref() else {
        return Ok(());
    };
    let Some(evaluator) = Evaluator::for_resource(&call.resource.group, &call.resource.plural)
    else {
        return Ok(());
    };
    if old.is_some() && !evaluator.handles_update() {
        return Ok(());
    }
    let quotas = call
        .api
        .resource("", "v1", "resourcequotas")
        .ok_or_else(|| ApiError::internal("resourcequotas are not registered"))?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let forbidden = |why: &str| {
        ApiError::forbidden_object(
            &call.resource.group,
            &call.resource.plural,
            &call.resource.qualified(),
            name,
            why,
        )
    };
    let dry_run = call.query.get("dryRun") == Some("All");
    // After a lost race only the quotas whose write failed are checked again, as upstream's
    // `checkQuotas` retries them (the others already hold this object's charge).
    let mut only: Option<BTreeSet<String>> = None;
    for _ in 0..RETRIES {
        let page = call
            .api
            .storage
            .list(&quotas.key_prefix(Some(ns)), 0, None, 0)
            .await?;
        let stored: Vec<Stored> = page
            .items
            .into_iter()
            .filter(|s| {
                only.as_ref().is_none_or(|names| {
                    s.object
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| names.contains(n))
                })
            })
            .collect();
        if stored.is_empty() {
            return Ok(());
        }
        let typed: Vec<ResourceQuota> = stored
            .iter()
            .map(|s| serde_json::from_value(s.object.clone()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| ApiError::internal(format!("decoding a stored ResourceQuota: {e}")))?;
        let charges =
            check(&typed, &evaluator, obj, old, Timestamp::now()).map_err(|why| forbidden(&why))?;
        if dry_run {
            return Ok(());
        }
        let mut failed = BTreeSet::new();
        for charge in charges {
            let current = &stored[charge.quota];
            let mut next = current.object.clone();
            next["status"]["used"] = json!(charge.used);
            let quota_name = typed[charge.quota]
                .metadata
                .name
                .clone()
                .unwrap_or_default();
            let key = quotas.key(Some(ns), &quota_name);
            if let Written::Conflict = call
                .api
                .storage
                .update(&key, &next, current.revision)
                .await?
            {
                failed.insert(quota_name);
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        only = Some(failed);
    }
    Err(ApiError::conflict(
        "",
        "resourcequotas",
        "resourcequotas",
        &only
            .and_then(|names| names.into_iter().next())
            .unwrap_or_default(),
    ))
}
