//! The writes controllers share: upstream's `PodControl` (create and delete a pod with the
//! `SuccessfulCreate`/`FailedCreate`/`SuccessfulDelete`/`FailedDelete` events) and the
//! `ControllerRefManager`'s adopt and release patches.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::events::Events;

/// What upstream's events and conditions say of a failed write: the API's own message for an API error
/// (`pods "web-x" is forbidden: exceeded quota: …`), not kube's wrapping of it.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Creates `pod`, recording the outcome as an event on the controller.
pub async fn create_pod(
    api: &Api<Pod>,
    pod: &Pod,
    events: &Events,
    reference: ObjectReference,
) -> Result<Pod, kube::Error> {
    match api.create(&PostParams::default(), pod).await {
        Ok(p) => {
            events.normal(
                reference,
                "SuccessfulCreate",
                format!("Created pod: {}", p.name_any()),
            );
            Ok(p)
        }
        Err(e) => {
            events.warning(
                reference,
                "FailedCreate",
                format!("Error creating: {}", api_message(&e)),
            );
            Err(e)
        }
    }
}

/// Deletes the pod `name`, recording the outcome as an event on the controller. `Ok(false)`:
/// it was already gone (no event). Either way but `Ok(true)` the deletion will never be
/// observed, so the caller lowers its expectation.
pub async fn delete_pod(
    api: &Api<Pod>,
    name: &str,
    events: &Events,
    reference: ObjectReference,
) -> Result<bool, kube::Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            events.normal(
                reference,
                "SuccessfulDelete",
                format!("Deleted pod: {name}"),
            );
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => {
            events.warning(
                reference,
                "FailedDelete",
                format!("Error deleting: {}", api_message(&e)),
            );
            Err(e)
        }
    }
}

/// Makes `owner` the controller of the orphan `obj`, preconditioned on its UID. `None`: it
/// is gone or was replaced meanwhile, so it is not ours.
pub async fn adopt<K>(
    api: &Api<K>,
    obj: &K,
    owner: OwnerReference,
) -> Result<Option<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut refs = obj.owner_references().to_vec();
    refs.push(owner);
    let patch = json!({"metadata": {"ownerReferences": refs, "uid": obj.meta().uid}});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(adopted) => Ok(Some(adopted)),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Drops the owner reference of `owner_uid` from `obj` (it no longer matches the selector),
/// preconditioned on its UID; an object gone or replaced meanwhile needs nothing.
pub async fn release<K>(api: &Api<K>, obj: &K, owner_uid: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let refs: Vec<&OwnerReference> = obj
        .owner_references()
        .iter()
        .filter(|o| o.uid != owner_uid)
        .collect();
    let patch = json!({"metadata": {"ownerReferences": refs, "uid": obj.meta().uid}});
    match api
        .patch(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
