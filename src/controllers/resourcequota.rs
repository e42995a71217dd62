//! The resource quota controller (upstream's `pkg/controller/resourcequota`, with the usage
//! evaluators of `crate::quota`): every ResourceQuota's `status.hard` mirrors `spec.hard` and
//! `status.used` holds the namespace's usage of exactly those resources, honouring the quota's
//! scopes. Enforcement happens at admission in the API server (`apiserver::quota`), which
//! charges new objects to `status.used` before they are stored; this controller recomputes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};

use super::informer::{Change, Informer, Requeue, WorkQueue, key_of, lock, run_workers};
use crate::quota::{
    Amount, Usage, charged, claim_matches_scope, claim_usage, is_claim_resource, is_pod_resource,
    is_service_resource, merge, object_count_resource, pod_matches_scope, pod_usage,
    scope_requirements, service_usage,
};

const WORKERS: usize = 5;

/// The status a quota should have: `hard` is the spec's, `used` the usage masked to the hard
/// resources, with 0 for what nothing uses (upstream's `syncResourceQuota`).
pub fn desired_status(quota: &ResourceQuota, usage: &Usage) -> ResourceQuotaStatus {
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let used = hard
        .keys()
        .map(|k| {
            let a = usage.get(k).copied().unwrap_or(Amount::ZERO);
            (k.clone(), Quantity(a.canonical()))
        })
        .collect();
    ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(used),
    }
}

/// Whether the written status equals the desired one, comparing quantities by value.
fn status_equal(current: Option<&ResourceQuotaStatus>, desired: &ResourceQuotaStatus) -> bool {
    let Some(current) = current else {
        return false;
    };
    let same = |a: &Option<BTreeMap<String, Quantity>>, b: &Option<BTreeMap<String, Quantity>>| {
        let (a, b) = (a.clone().unwrap_or_default(), b.clone().unwrap_or_default());
        a.len() == b.len()
            && a.iter().all(|(k, q)| {
                b.get(k).is_some_and(|o| {
                    o.0 == q.0
                        || Amount::parse(&o.0).map(|x| x.nanos)
                            == Amount::parse(&q.0).map(|x| x.nanos)
                })
            })
    };
    same(&current.hard, &desired.hard) && same(&current.used, &desired.used)
}

// ---- the controller ----

pub struct Controller {
    client: Client,
    quotas: Arc<Informer<ResourceQuota>>,
    pods: Arc<Informer<Pod>>,
    services: Arc<Informer<Service>>,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    queue: Arc<WorkQueue>,
    /// Resolved `count/<resource>.<group>` names.
    resources: Mutex<HashMap<(String, String), ApiResource>>,
}

impl Controller {
    pub fn new(
        client: Client,
        quotas: Arc<Informer<ResourceQuota>>,
        pods: Arc<Informer<Pod>>,
        services: Arc<Informer<Service>>,
        claims: Arc<Informer<PersistentVolumeClaim>>,
    ) -> Arc<Self> {
        let this = Arc::new(Controller {
            client,
            quotas,
            pods,
            services,
            claims,
            queue: WorkQueue::new(),
            resources: Mutex::default(),
        });
        // Upstream's controller looks at a quota again when it is new or its spec changed,
        // not when its status did: status writes are its own and quota admission's charges,
        // and a recount then could undo a charge for an object its caches do not show yet.
        let weak = Arc::downgrade(&this);
        this.quotas.on_change(move |change| {
            if let (Some(c), Change::Applied { old, new }) = (weak.upgrade(), change)
                && old.as_ref().is_none_or(|o| o.spec != new.spec)
            {
                c.queue.add(key_of(new.as_ref()));
            }
        });
        // Upstream's replenishment (the quota monitor): what frees usage looks at the
        // namespace's quotas again: deletions, and pods that stop being charged (finished,
        // past their grace period) or change their spec. Creations are charged by admission.
        let weak = Arc::downgrade(&this);
        this.pods.on_change(move |change| {
            if let Some(c) = weak.upgrade() {
                let relevant = match change {
                    Change::Applied { old: Some(o), new } => {
                        let now = Timestamp::now();
                        (charged(o, now) && !charged(new, now)) || o.spec != new.spec
                    }
                    Change::Applied { old: None, .. } => false,
                    Change::Deleted(_) => true,
                };
                if relevant {
                    c.enqueue_namespace(change_namespace(change));
                }
            }
        });
        let weak = Arc::downgrade(&this);
        this.services.on_change(move |change| {
            if let Some(c) = weak.upgrade()
                && !matches!(change, Change::Applied { old: None, .. })
            {
                c.enqueue_namespace(change_namespace(change));
            }
        });
        let weak = Arc::downgrade(&this);
        this.claims.on_change(move |change| {
            if let Some(c) = weak.upgrade()
                && !matches!(change, Change::Applied { old: None, .. })
            {
                c.enqueue_namespace(change_namespace(change));
            }
        });
        this
    }

    fn enqueue_namespace(&self, ns: String) {
        for q in self.quotas.list_namespace(&ns) {
            self.queue.add(key_of(q.as_ref()));
        }
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.quotas.wait_synced().await;
        self.pods.wait_synced().await;
        self.services.wait_synced().await;
        self.claims.wait_synced().await;
        let this = self.clone();
        let workers = run_workers("resourcequota-controller", self.queue.clone(), WORKERS, {
            move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            }
        });
        let resync = super::informer::resync(self.quotas.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        let Some(quota) = self.quotas.get(key) else {
            return Ok(None);
        };
        let ns = quota.namespace().unwrap_or_default();
        let hard: Vec<String> = quota
            .spec
            .as_ref()
            .and_then(|s| s.hard.as_ref())
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default();
        let scopes = scope_requirements(&quota);
        let mut usage = Usage::new();
        if hard.iter().any(|h| is_pod_resource(h)) {
            let now = Timestamp::now();
            for pod in self.pods.list_namespace(&ns) {
                if scopes.iter().all(|r| pod_matches_scope(&pod, r)) {
                    merge(&mut usage, pod_usage(&pod, now));
                }
            }
        }
        // Claims are selected by the VolumeAttributesClass scope (upstream's
        // `pvcMatchesScopeFunc`); any other scope selects none of them.
        if hard.iter().any(|h| is_claim_resource(h)) {
            for pvc in self.claims.list_namespace(&ns) {
                if scopes.iter().all(|r| claim_matches_scope(&pvc, r)) {
                    merge(&mut usage, claim_usage(&pvc));
                }
            }
        }
        // Only pods and claims have scopes: a scoped quota counts no other object.
        if scopes.is_empty() {
            if hard.iter().any(|h| is_service_resource(h)) {
                for svc in self.services.list_namespace(&ns) {
                    merge(&mut usage, service_usage(&svc));
                }
            }
            for name in &hard {
                let Some((group, plural)) = object_count_resource(name) else {
                    continue;
                };
                let n = if group.is_empty() && plural == "resourcequotas" {
                    self.quotas.list_namespace(&ns).len()
                } else {
                    match self.count(&ns, &group, &plural).await? {
                        Some(n) => n,
                        None => continue,
                    }
                };
                usage.insert(name.clone(), Amount::count(n));
            }
        }
        let status = desired_status(&quota, &usage);
        if status_equal(quota.status.as_ref(), &status) {
            return Ok(None);
        }
        let mut next = (*quota).clone();
        next.status = Some(status);
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), &ns);
        api.replace_status(&quota.name_any(), &PostParams::default(), &next)
            .await?;
        Ok(None)
    }

    /// How many objects of a resource the namespace holds; `None` when the resource is not
    /// served (upstream leaves such a quota's usage at 0 as well).
    async fn count(
        &self,
        ns: &str,
        group: &str,
        plural: &str,
    ) -> Result<Option<usize>, kube::Error> {
        let id = (group.to_string(), plural.to_string());
        let known = lock(&self.resources).get(&id).cloned();
        let resource = match known {
            Some(r) => r,
            None => {
                let found = match kube::discovery::group(&self.client, group).await {
                    Ok(g) => g
                        .recommended_resources()
                        .into_iter()
                        .map(|(r, _)| r)
                        .find(|r| r.plural == plural),
                    Err(kube::Error::Api(s)) if s.code == 404 => None,
                    Err(e) => return Err(e),
                };
                let Some(r) = found else {
                    return Ok(None);
                };
                lock(&self.resources).insert(id, r.clone());
                r
            }
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &resource);
        Ok(Some(api.list(&ListParams::default()).await?.items.len()))
    }
}

fn change_namespace<K: kube::Resource>(change: &Change<K>) -> String {
    let obj = match change {
        Change::Applied { new, .. } => new,
        Change::Deleted(old) => old,
    };
    obj.meta().namespace.clone().unwrap_or_default()
}
#[cfg(test)]
mod tests {
    use super::*;

    fn pod(cpu: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": "Running"},
        }))
        .unwrap()
    }

    #[test]
    fn status_mirrors_hard_and_masks_usage() {
        let quota = ResourceQuota {
            spec: Some(k8s_openapi::api::core::v1::ResourceQuotaSpec {
                hard: Some(
                    [
                        ("pods".to_string(), Quantity("10".into())),
                        ("requests.cpu".to_string(), Quantity("2".into())),
                        ("configmaps".to_string(), Quantity("5".into())),
                    ]
                    .into(),
                ),
                ..k8s_openapi::api::core::v1::ResourceQuotaSpec::default()
            }),
            ..ResourceQuota::default()
        };
        let mut usage = pod_usage(&pod("250m"), Timestamp::UNIX_EPOCH);
        merge(&mut usage, pod_usage(&pod("250m"), Timestamp::UNIX_EPOCH));
        let status = desired_status(&quota, &usage);
        let used = status.used.clone().unwrap();
        assert_eq!(used["pods"].0, "2");
        assert_eq!(used["requests.cpu"].0, "500m");
        assert_eq!(used["configmaps"].0, "0");
        assert_eq!(used.len(), 3);
        assert_eq!(status.hard, quota.spec.as_ref().unwrap().hard);
        assert!(status_equal(Some(&status), &status));
    }
}
