//! Two per-namespace controllers: upstream's serviceaccounts controller
//! (`pkg/controller/serviceaccount`), which keeps a `default` ServiceAccount in every active
//! namespace and recreates it when it is deleted, and the root-ca-cert-publisher
//! (`pkg/controller/certificates/rootcacertpublisher`), which keeps the ConfigMap
//! `kube-root-ca.crt` with the cluster CA under `ca.crt` in every namespace and restores it
//! when it is deleted or edited. Both are keyed by namespace name.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use super::informer::{Change, Informer, Requeue, WorkQueue, run_workers};

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The ConfigMap holding the cluster CA.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// Its key.
pub const ROOT_CA_KEY: &str = "ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's `Description` for the ConfigMap, word for word.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

const WORKERS: usize = 2;

/// Whether a namespace takes new objects (upstream skips terminating namespaces, where
/// creations are refused anyway).
pub fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// What the root-ca-cert-publisher does with a namespace's ConfigMap (upstream's
/// `syncNamespace`): create it when missing, rewrite it when its data is not exactly the CA
/// or the description annotation is empty, else nothing. Other labels and annotations stay.
pub fn desired_root_ca(current: Option<&ConfigMap>, ns: &str, ca: &str) -> Option<ConfigMap> {
    let data = BTreeMap::from([(ROOT_CA_KEY.to_string(), ca.to_string())]);
    match current {
        None => Some(ConfigMap {
            metadata: ObjectMeta {
                name: Some(ROOT_CA_CONFIG_MAP.into()),
                namespace: Some(ns.into()),
                annotations: Some(BTreeMap::from([(
                    DESCRIPTION_ANNOTATION.to_string(),
                    DESCRIPTION.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }),
        Some(cm) => {
            let described = cm
                .annotations()
                .get(DESCRIPTION_ANNOTATION)
                .is_some_and(|d| !d.is_empty());
            if cm.data.as_ref() == Some(&data) && cm.binary_data.is_none() && described {
                return None;
            }
            let mut next = cm.clone();
            next.data = Some(data);
            next.binary_data = None;
            next.annotations_mut()
                .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            Some(next)
        }
    }
}

pub struct Controller {
    client: Client,
    root_ca: String,
    namespaces: Arc<Informer<Namespace>>,
    accounts: Arc<Informer<ServiceAccount>>,
    config_maps: Arc<Informer<ConfigMap>>,
    queue: Arc<WorkQueue>,
}

impl Controller {
    pub fn new(
        client: Client,
        root_ca: String,
        namespaces: Arc<Informer<Namespace>>,
        accounts: Arc<Informer<ServiceAccount>>,
        config_maps: Arc<Informer<ConfigMap>>,
    ) -> Arc<Self> {
        let this = Arc::new(Controller {
            client,
            root_ca,
            namespaces,
            accounts,
            config_maps,
            queue: WorkQueue::new(),
        });
        let weak = Arc::downgrade(&this);
        this.namespaces.on_change(move |change| {
            if let (Some(c), Change::Applied { new, .. }) = (weak.upgrade(), change) {
                c.queue.add(new.name_any());
            }
        });
        // Upstream's serviceAccountDeleted: a deleted `default` comes back.
        let weak = Arc::downgrade(&this);
        this.accounts.on_change(move |change| {
            if let (Some(c), Change::Deleted(sa)) = (weak.upgrade(), change)
                && sa.name_any() == DEFAULT_SERVICE_ACCOUNT
            {
                c.queue.add(sa.namespace().unwrap_or_default());
            }
        });
        // Upstream's configMapUpdated/Deleted for the one ConfigMap name it owns.
        let weak = Arc::downgrade(&this);
        this.config_maps.on_change(move |change| {
            let cm = match change {
                Change::Applied { new, .. } => new,
                Change::Deleted(old) => old,
            };
            if let Some(c) = weak.upgrade()
                && cm.name_any() == ROOT_CA_CONFIG_MAP
            {
                c.queue.add(cm.namespace().unwrap_or_default());
            }
        });
        this
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.namespaces.wait_synced().await;
        self.accounts.wait_synced().await;
        self.config_maps.wait_synced().await;
        let this = self.clone();
        let workers = run_workers("serviceaccount-controller", self.queue.clone(), WORKERS, {
            move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            }
        });
        let resync = super::informer::resync(self.namespaces.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    async fn sync(&self, ns: &str) -> Result<Requeue, kube::Error> {
        let Some(namespace) = self.namespaces.get(ns) else {
            return Ok(None);
        };
        if !is_active(&namespace) {
            return Ok(None);
        }
        if self
            .accounts
            .get(&format!("{ns}/{DEFAULT_SERVICE_ACCOUNT}"))
            .is_none()
        {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
                    namespace: Some(ns.into()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
            created(api.create(&PostParams::default(), &sa).await)?;
        }
        let current = self.config_maps.get(&format!("{ns}/{ROOT_CA_CONFIG_MAP}"));
        if let Some(cm) = desired_root_ca(current.as_deref(), ns, &self.root_ca) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
            if current.is_some() {
                api.replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &cm)
                    .await?;
            } else {
                created(api.create(&PostParams::default(), &cm).await)?;
            }
        }
        Ok(None)
    }
}

/// AlreadyExists (the cache is behind) and Forbidden for a namespace that started terminating
/// meanwhile are not failures.
fn created<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("terminat") => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_ca_config_map_is_created_restored_and_otherwise_left_alone() {
        let cm = desired_root_ca(None, "apps", "PEM").unwrap();
        assert_eq!(cm.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(cm.data.as_ref().unwrap()[ROOT_CA_KEY], "PEM");
        assert_eq!(cm.annotations()[DESCRIPTION_ANNOTATION], DESCRIPTION);
        assert!(desired_root_ca(Some(&cm), "apps", "PEM").is_none());
        // Edited data comes back; extra labels survive.
        let mut edited = cm.clone();
        edited.labels_mut().insert("team".into(), "a".into());
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("extra".into(), "x".into());
        let restored = desired_root_ca(Some(&edited), "apps", "PEM").unwrap();
        assert_eq!(restored.data.as_ref().unwrap().len(), 1);
        assert_eq!(restored.labels()["team"], "a");
        // A removed description comes back.
        let mut bare = cm.clone();
        bare.metadata.annotations = None;
        assert!(desired_root_ca(Some(&bare), "apps", "PEM").is_some());
        // A rotated CA is written.
        assert!(desired_root_ca(Some(&cm), "apps", "NEW").is_some());
    }

    #[test]
    fn terminating_namespaces_are_not_active() {
        let mut ns = Namespace::default();
        assert!(is_active(&ns));
        ns.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        assert!(!is_active(&ns));
    }
}
