//! Static pods: Pod manifests in `<data-dir>/agent/pod-manifests/` run on this node without a
//! scheduler or controller, as upstream's kubelet `--pod-manifest-path` (k3s's
//! `agent/pod-manifests`).
//!
//! Upstream runs static pods from the file source and writes a *mirror pod* to the API so
//! that they can be seen. rk3s keeps one source of truth instead: the mirror pod (named
//! `<name>-<node>`, bound to this node, with upstream's `kubernetes.io/config.*` annotations
//! and the Node as owner) is what the pod watch runs. Files are re-read every 20 s (upstream's
//! `fileCheckFrequency`); a changed manifest replaces its pod, a removed one deletes it, and a
//! deleted mirror pod is recreated. The difference from upstream: deleting a mirror pod
//! restarts the static pod's containers (upstream keeps them running).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use serde_json::{Value, json};

/// Upstream's `fileCheckFrequency`.
pub const CHECK: Duration = Duration::from_secs(20);
pub const SOURCE: &str = "kubernetes.io/config.source";
pub const MIRROR: &str = "kubernetes.io/config.mirror";
pub const HASH: &str = "kubernetes.io/config.hash";
/// Marks the pods this node made from files, to find them again.
pub const NODE_LABEL: &str = "static.rk3s.io/node";

/// A manifest file that could not be used, with why.
#[derive(Debug, PartialEq)]
pub struct Invalid {
    pub file: String,
    pub reason: String,
}

/// Reads the manifests in `dir` (`.yaml`, `.yml`, `.json`; one pod per file, as upstream;
/// hidden files skipped) into the mirror pods this node should have, by `namespace/name`.
pub fn desired(dir: &Path, node: &str, node_uid: &str) -> (BTreeMap<String, Value>, Vec<Invalid>) {
    let mut pods = BTreeMap::new();
    let mut invalid = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (pods, invalid);
    };
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let known = [".yaml", ".yml", ".json"].iter().any(|s| name.ends_with(s));
        if name.starts_with('.') || !known || !path.is_file() {
            continue;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                invalid.push(Invalid {
                    file: name,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        match mirror_pod(&text, node, node_uid) {
            Ok(pod) => {
                let key = format!(
                    "{}/{}",
                    pod["metadata"]["namespace"].as_str().unwrap_or_default(),
                    pod["metadata"]["name"].as_str().unwrap_or_default()
                );
                if let std::collections::btree_map::Entry::Vacant(e) = pods.entry(key.clone()) {
                    e.insert(pod);
                } else {
                    invalid.push(Invalid {
                        file: name,
                        reason: format!("another manifest already defines pod {key}"),
                    });
                }
            }
            Err(reason) => invalid.push(Invalid { file: name, reason }),
        }
    }
    (pods, invalid)
}

/// The mirror pod of one manifest: `<name>-<node>` in its namespace (default `default`),
/// bound to `node`, annotated with the source and a hash of the manifest.
pub fn mirror_pod(text: &str, node: &str, node_uid: &str) -> Result<Value, String> {
    let mut pod: Value =
        serde_saphyr::from_str(text).map_err(|e| format!("not a YAML or JSON pod: {e}"))?;
    if pod["kind"] != "Pod" || pod["apiVersion"] != "v1" {
        return Err(format!(
            "want apiVersion v1 and kind Pod, got {} {}",
            pod["apiVersion"], pod["kind"]
        ));
    }
    let name = pod["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is required")?
        .to_string();
    if !pod["spec"]["containers"].is_array() {
        return Err("spec.containers is required".into());
    }
    let hash = {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        digest.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
        .to_string();
    let meta = &mut pod["metadata"];
    meta["name"] = json!(format!("{name}-{node}"));
    meta["namespace"] = json!(namespace);
    for k in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generateName",
    ] {
        if let Some(m) = meta.as_object_mut() {
            m.remove(k);
        }
    }
    meta["annotations"][SOURCE] = json!("file");
    meta["annotations"][MIRROR] = json!(hash);
    meta["annotations"][HASH] = json!(hash);
    meta["labels"][NODE_LABEL] = json!(node);
    meta["ownerReferences"] = json!([{
        "apiVersion": "v1",
        "kind": "Node",
        "name": node,
        "uid": node_uid,
        "controller": true,
    }]);
    pod["spec"]["nodeName"] = json!(node);
    if let Some(s) = pod.as_object_mut() {
        s.remove("status");
    }
    Ok(pod)
}

/// One pass: creates missing mirror pods, replaces changed ones, deletes those whose file is
/// gone. Logs (once per change of reason) the manifests that cannot be used.
pub async fn sync(
    client: &kube::Client,
    dir: &Path,
    node: &str,
    node_uid: &str,
    reported: &mut BTreeSet<String>,
) {
    let (want, invalid) = desired(dir, node, node_uid);
    let now: BTreeSet<String> = invalid
        .iter()
        .map(|i| format!("{}: {}", i.file, i.reason))
        .collect();
    for line in now.difference(reported) {
        tracing::error!("static pod manifest {}/{line}", dir.display());
    }
    *reported = now;
    let all: Api<Pod> = Api::all(client.clone());
    let Ok(have) = all
        .list(&ListParams::default().labels(&format!("{NODE_LABEL}={node}")))
        .await
    else {
        return;
    };
    let mut existing: BTreeMap<String, (String, String)> = BTreeMap::new();
    for p in have.items {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let hash = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(HASH).cloned())
            .unwrap_or_default();
        let uid = p.metadata.uid.clone().unwrap_or_default();
        if p.metadata.deletion_timestamp.is_some() {
            // Being deleted: recreated once it is gone.
            existing.insert(format!("{ns}/{name}"), (String::new(), String::new()));
            continue;
        }
        existing.insert(format!("{ns}/{name}"), (hash, uid));
    }
    for (key, (hash, uid)) in &existing {
        if hash.is_empty() {
            continue;
        }
        let stale = match want.get(key) {
            None => true,
            Some(p) => p["metadata"]["annotations"][HASH].as_str() != Some(hash),
        };
        if stale {
            let (ns, name) = key.split_once('/').unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = pods.delete(name, &dp).await {
                tracing::warn!(pod = %key, error = %e, "deleting a static pod");
            }
        }
    }
    for (key, pod) in want {
        if existing.contains_key(&key) {
            continue;
        }
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pod: Pod = match serde_json::from_value(pod.clone()) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(pod = %key, error = %e, "static pod manifest");
                continue;
            }
        };
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => tracing::info!(pod = %key, "static pod created"),
            Err(kube::Error::Api(a)) if a.code == 409 => {}
            Err(e) => tracing::warn!(pod = %key, error = %e, "creating a static pod"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: kube-system\nspec:\n  containers:\n  - name: c\n    image: busybox\n";

    #[test]
    fn mirror_pods_are_named_for_the_node_and_bound_to_it() {
        let p = mirror_pod(WEB, "n1", "u1").unwrap();
        assert_eq!(p["metadata"]["name"], "web-n1");
        assert_eq!(p["metadata"]["namespace"], "kube-system");
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["metadata"]["annotations"][SOURCE], "file");
        assert_eq!(
            p["metadata"]["annotations"][HASH],
            p["metadata"]["annotations"][MIRROR]
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "u1");
        let other = mirror_pod(&WEB.replace("busybox", "nginx"), "n1", "u1").unwrap();
        assert_ne!(
            p["metadata"]["annotations"][HASH],
            other["metadata"]["annotations"][HASH]
        );
    }

    #[test]
    fn bad_manifests_are_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), WEB).unwrap();
        std::fs::write(dir.path().join("dup.yml"), WEB).unwrap();
        std::fs::write(dir.path().join("broken.yaml"), "kind: [").unwrap();
        std::fs::write(
            dir.path().join("svc.json"),
            r#"{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), WEB).unwrap();
        let (pods, invalid) = desired(dir.path(), "n1", "u1");
        assert_eq!(pods.keys().collect::<Vec<_>>(), vec!["kube-system/web-n1"]);
        let files: Vec<&str> = invalid.iter().map(|i| i.file.as_str()).collect();
        assert_eq!(files, vec!["broken.yaml", "svc.json", "web.yaml"]);
        assert!(invalid[2].reason.contains("already defines"), "{invalid:?}");
        assert!(invalid[1].reason.contains("kind Pod"), "{invalid:?}");
    }
}
