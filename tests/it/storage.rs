//! PersistentVolumeClaims through the built-in local-path provisioner, with kubectl 1.33: the
//! default StorageClass, WaitForFirstConsumer provisioning and binding, the scheduler's
//! handling of claims, reclaiming on claim deletion, and (root, real kubelet) data that
//! outlives the pod that wrote it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::kubectl::Cluster;
use crate::node;

const CLAIM: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 128Mi}}
"#;

fn pod_with_claim(name: &str, claim: &str, image: &str, script: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: {image}
    command: [sh, -c, "{script}"]
    volumeMounts: [{{name: v, mountPath: /data}}]
  volumes:
  - name: v
    persistentVolumeClaim: {{claimName: {claim}}}
"#
    )
}

/// A Node object for the scheduler (no kubelet behind it): Ready, room for pods.
fn add_node(c: &Cluster, name: &str) {
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: {{kubernetes.io/hostname: {name}}}\n"
        )),
    );
    let status = r#"{"status":{"allocatable":{"cpu":"4","memory":"8Gi","pods":"110"},"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ready","lastHeartbeatTime":null,"lastTransitionTime":null}]}}"#;
    c.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
}

fn claim_dir(c: &Cluster, ns: &str, claim: &Value) -> PathBuf {
    let uid = claim["metadata"]["uid"].as_str().unwrap();
    let name = claim["metadata"]["name"].as_str().unwrap();
    c.data_dir()
        .join("storage")
        .join(format!("pvc-{uid}_{ns}_{name}"))
}

fn exists(c: &Cluster, args: &[&str]) -> bool {
    c.run(args, None).status.success()
}

#[test]
fn default_class_waits_for_a_consumer_then_provisions_binds_and_reclaims() {
    let Some(c) = Cluster::start(33) else { return };
    // The class k3s installs, marked default.
    let sc = c.ok(&["get", "sc"]);
    let line = sc
        .lines()
        .find(|l| l.starts_with("local-path"))
        .unwrap_or_else(|| panic!("{sc}"));
    for word in [
        "local-path (default)",
        "rancher.io/local-path",
        "Delete",
        "WaitForFirstConsumer",
    ] {
        assert!(line.contains(word), "{word} in {sc}");
    }
    add_node(&c, "storage-node");
    // A claim without a class gets the default one (DefaultStorageClass admission) and waits.
    c.ok_in(&["apply", "-f", "-"], Some(CLAIM));
    c.eventually("the provisioner annotation", || {
        let v = c.json(&["get", "pvc", "data"]);
        v["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"]
            == "rancher.io/local-path"
    });
    let claim = c.json(&["get", "pvc", "data"]);
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let claim = c.json(&["get", "pvc", "data"]);
    assert_eq!(claim["status"]["phase"], "Pending", "{claim}");
    assert_eq!(c.ok(&["get", "pv", "-o", "name"]).trim(), "");

    // A consumer: the scheduler picks the node, the claim is provisioned there and bound, then
    // the pod is bound.
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&pod_with_claim("user", "data", "busybox", "true")),
    );
    c.eventually("the pod bound to the node", || {
        c.json(&["get", "pod", "user"])["spec"]["nodeName"] == "storage-node"
    });
    let claim = c.json(&["get", "pvc", "data"]);
    let uid = claim["metadata"]["uid"].as_str().unwrap().to_string();
    let pv_name = format!("pvc-{uid}");
    assert_eq!(claim["spec"]["volumeName"], pv_name.as_str(), "{claim}");
    let a = &claim["metadata"]["annotations"];
    assert_eq!(a["volume.kubernetes.io/selected-node"], "storage-node");
    assert_eq!(a["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!(a["pv.kubernetes.io/bound-by-controller"], "yes");
    c.eventually("both phases Bound", || {
        c.json(&["get", "pvc", "data"])["status"]["phase"] == "Bound"
            && c.json(&["get", "pv", &pv_name])["status"]["phase"] == "Bound"
    });
    let claim = c.json(&["get", "pvc", "data"]);
    assert_eq!(claim["status"]["capacity"]["storage"], "128Mi");
    assert_eq!(claim["status"]["accessModes"][0], "ReadWriteOnce");
    let pv = c.json(&["get", "pv", &pv_name]);
    let dir = claim_dir(&c, "default", &claim);
    assert_eq!(
        pv["spec"]["hostPath"]["path"],
        dir.to_str().unwrap(),
        "{pv}"
    );
    assert_eq!(pv["spec"]["hostPath"]["type"], "DirectoryOrCreate");
    assert_eq!(pv["spec"]["claimRef"]["uid"], uid.as_str());
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "rancher.io/local-path"
    );
    assert_eq!(
        pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
            [0],
        "storage-node"
    );
    assert!(dir.is_dir(), "{} exists", dir.display());
    let table = c.ok(&["get", "pvc", "data"]);
    assert!(
        table.contains("Bound") && table.contains(&pv_name) && table.contains("local-path"),
        "{table}"
    );

    // Deleting the claim (after its pod) reclaims the volume: PV and directory go.
    // No kubelet runs here, so the pod goes at once (kubectl warns about that on stderr).
    let out = c.run(
        &["delete", "pod", "user", "--grace-period=0", "--force"],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    c.ok(&["delete", "pvc", "data"]);
    c.eventually("the volume deleted", || {
        !exists(&c, &["get", "pv", &pv_name])
    });
    assert!(!dir.exists(), "{} removed", dir.display());
}

/// Polls the pod's `PodScheduled` condition until its message satisfies `check`.
fn wait_scheduled_message(c: &Cluster, pod: &str, check: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v = c.json(&["get", "pod", pod]);
        let message = v["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
            .and_then(|c| c["message"].as_str())
            .unwrap_or_default()
            .to_string();
        if check(&message) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pod {pod}: PodScheduled message {message:?}; pod {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn pods_with_missing_or_node_bound_claims_are_placed_as_upstream() {
    let Some(c) = Cluster::start(33) else { return };
    add_node(&c, "node-a");
    add_node(&c, "node-b");
    // A missing claim: unschedulable with upstream's PreFilter message.
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&pod_with_claim("lost", "nope", "busybox", "true")),
    );
    // The doubled final "." is upstream's (see `scheduler::failure_message_with_preemption`).
    let want = "0/2 nodes are available: persistentvolumeclaim \"nope\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling..";
    wait_scheduled_message(&c, "lost", |m| m == want);
    // Once the claim exists the pod is scheduled.
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&CLAIM.replace("name: data", "name: nope")),
    );
    c.eventually("the pod scheduled once its claim exists", || {
        c.json(&["get", "pod", "lost"])["spec"]["nodeName"].is_string()
    });
    let node = c.json(&["get", "pod", "lost"])["spec"]["nodeName"]
        .as_str()
        .unwrap()
        .to_string();
    // A second pod of the same claim must go where the volume is, whatever the scores say.
    for i in 0..4 {
        c.ok_in(
            &["apply", "-f", "-"],
            Some(&pod_with_claim(
                &format!("again-{i}"),
                "nope",
                "busybox",
                "true",
            )),
        );
    }
    for i in 0..4 {
        let name = format!("again-{i}");
        c.eventually("the follower scheduled", || {
            c.json(&["get", "pod", &name])["spec"]["nodeName"].is_string()
        });
        assert_eq!(
            c.json(&["get", "pod", &name])["spec"]["nodeName"],
            node.as_str()
        );
    }
    // A claim of a class that binds immediately and has no volume cannot be waited for.
    c.ok_in(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: manual}\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: Immediate\n",
        ),
    );
    c.ok_in(
        &["apply", "-f", "-"],
        Some(
            &CLAIM
                .replace("name: data}", "name: manual}\n")
                .replace("spec:\n", "spec:\n  storageClassName: manual\n"),
        ),
    );
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&pod_with_claim("stuck", "manual", "busybox", "true")),
    );
    wait_scheduled_message(&c, "stuck", |m| {
        m.starts_with("0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims.")
    });
}

/// Data written into a claim by one pod is read back by the next; deleting the claim removes
/// the volume and its directory.
fn claim_data_outlives_its_pod(c: &Cluster, image: &str) {
    c.ok_in(&["apply", "-f", "-"], Some(CLAIM));
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&pod_with_claim(
            "writer",
            "data",
            image,
            "echo kept-across-pods > /data/file",
        )),
    );
    node::wait_pod(c, "writer", "Succeeded", |v| node::phase(v) == "Succeeded");
    let claim = c.json(&["get", "pvc", "data"]);
    assert_eq!(claim["status"]["phase"], "Bound");
    let dir = claim_dir(c, "default", &claim);
    assert_eq!(
        std::fs::read_to_string(dir.join("file")).unwrap().trim(),
        "kept-across-pods"
    );
    c.ok(&["delete", "pod", "writer"]);
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&pod_with_claim("reader", "data", image, "cat /data/file")),
    );
    node::wait_pod(c, "reader", "Succeeded", |v| node::phase(v) == "Succeeded");
    assert_eq!(c.ok(&["logs", "reader"]).trim(), "kept-across-pods");
    c.ok(&["delete", "pod", "reader"]);
    c.ok(&["delete", "pvc", "data"]);
    let pv = claim["spec"]["volumeName"].as_str().unwrap().to_string();
    c.eventually("the volume deleted", || !exists(c, &["get", "pv", &pv]));
    assert!(!Path::new(&dir).exists(), "{} removed", dir.display());
}

mod node_storage {
    #[test]
    fn kubectl_1_33() {
        if let Some((c, _registry, image, _dir)) = crate::node::start(33) {
            super::claim_data_outlives_its_pod(&c, &image);
        }
    }
}
