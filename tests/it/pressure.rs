//! Node-pressure eviction end to end: the data dir is a small tmpfs, a pod fills its emptyDir
//! until `nodefs.available` falls below the `--kubelet-arg eviction-hard` threshold, and the
//! kubelet reports DiskPressure, evicts that pod (not the quiet one), rejects a new pod while
//! the pressure lasts, and admits pods again once it is over. Root only (tmpfs, the kubelet).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kubectl::Cluster;
use crate::node::{NODE, is_root, phase, wait_node_ready, wait_pod};
use crate::support::registry::Registry;

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: quiet}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: IMAGE, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    command: [sh, -c, "dd if=/dev/zero of=/data/fill bs=1M count=200 && sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
"#;

/// A pod bound to the node directly (the scheduler would not place it on a tainted node).
const LATE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: PODNAME}
spec:
  nodeName: BOUND
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: IMAGE, command: [sleep, "3600"]}
"#;

fn node(c: &Cluster) -> Value {
    let out = c.run(&["get", "node", NODE, "-o", "json"], None);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn condition(node: &Value, kind: &str) -> String {
    node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn wait_node(c: &Cluster, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = node(c);
        if check(&n) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the node never got {what}: {}\n--- server log ---\n{}",
            n["status"]["conditions"],
            c.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn disk_pressure_evicts_the_pod_filling_the_disk() {
    if !is_root() {
        assert!(
            std::env::var_os("RK3S_TESTS_STRICT").is_none_or(|v| v != "1"),
            "the pressure test needs root and RK3S_TESTS_STRICT=1"
        );
        println!("SKIP: the pressure test needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::start(tmp.path()) else {
        return;
    };
    let image = registry.push_busybox("busybox:1");
    // The data dir (state, images, pod directories with their emptyDirs) on a 300 MiB tmpfs.
    let dir = tempfile::tempdir().unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        dir.path(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=300m"),
    )
    .expect("mount a tmpfs for the data dir");
    let Some(c) = Cluster::start_in(
        33,
        dir,
        &[
            "--enable-agent",
            &format!("--node-name={NODE}"),
            "--kubelet-arg=eviction-hard=nodefs.available<120Mi",
            "--kubelet-arg=eviction-pressure-transition-period=5s",
        ],
    ) else {
        return;
    };
    wait_node_ready(&c);
    let n = node(&c);
    assert_eq!(condition(&n, "DiskPressure"), "False", "{}", n["status"]);
    // Allocatable ephemeral storage is capacity less the hard nodefs threshold.
    let capacity = n["status"]["capacity"]["ephemeral-storage"]
        .as_str()
        .and_then(|s| s.strip_suffix("Ki"))
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap()
        * 1024;
    assert_eq!(
        n["status"]["allocatable"]["ephemeral-storage"],
        (capacity - (120 << 20)).to_string()
    );

    c.ok_in(&["apply", "-f", "-"], Some(&PODS.replace("IMAGE", &image)));
    // The hog fills its emptyDir: the node reports DiskPressure and gets its taint.
    let n = wait_node(&c, "DiskPressure", |n| {
        condition(n, "DiskPressure") == "True"
    });
    let pressured = condition(&n, "DiskPressure");
    // While the pressure lasts, a new pod bound to the node is rejected at admission.
    c.ok_in(
        &["apply", "-f", "-"],
        Some(
            &LATE
                .replace("PODNAME", "late")
                .replace("BOUND", NODE)
                .replace("IMAGE", &image),
        ),
    );
    let late = wait_pod(&c, "late", "rejected", |v| phase(v) == "Failed");
    assert_eq!(late["status"]["reason"], "Evicted", "{}", late["status"]);
    assert_eq!(
        late["status"]["message"], "The node had condition: [DiskPressure]. ",
        "{}",
        late["status"]
    );
    wait_node(&c, "the disk-pressure taint", |n| {
        n["spec"]["taints"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| {
                t["key"] == "node.kubernetes.io/disk-pressure" && t["effect"] == "NoSchedule"
            })
        })
    });
    assert_eq!(pressured, "True");

    // The hog, which uses the most beyond its (zero) request, is evicted; the quiet pod stays.
    let hog = wait_pod(&c, "hog", "evicted", |v| phase(v) == "Failed");
    let status = &hog["status"];
    assert_eq!(status["reason"], "Evicted", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "The node was low on resource: ephemeral-storage. Threshold quantity: 120Mi, available: "
        ),
        "{message}"
    );
    let disruption = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(disruption["reason"], "TerminationByKubelet", "{status}");
    assert_eq!(disruption["message"], message);
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=hog,reason=Evicted",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("The node was low on resource"), "{events}");
    let quiet = wait_pod(&c, "quiet", "Running", |v| phase(v) == "Running");
    assert_eq!(phase(&quiet), "Running");

    // The evicted pod's emptyDir is gone: the pressure ends after the transition period and
    // pods are admitted again.
    wait_node(&c, "no DiskPressure", |n| {
        condition(n, "DiskPressure") == "False"
    });
    c.ok_in(
        &["apply", "-f", "-"],
        Some(
            &LATE
                .replace("PODNAME", "after")
                .replace("BOUND", NODE)
                .replace("IMAGE", &image),
        ),
    );
    wait_pod(&c, "after", "Running", |v| phase(v) == "Running");
    let quiet = wait_pod(&c, "quiet", "Running", |v| phase(v) == "Running");
    assert_eq!(quiet["status"]["containerStatuses"][0]["restartCount"], 0);
    // An evicted pod stays Failed (the kubelet never brings it back).
    let hog = wait_pod(&c, "hog", "Failed", |v| phase(v) == "Failed");
    assert_eq!(hog["status"]["reason"], "Evicted");

    // The kubelet also fails pods past their activeDeadlineSeconds.
    let deadline = LATE
        .replace("PODNAME", "deadline")
        .replace("BOUND", NODE)
        .replace("IMAGE", &image)
        .replace(
            "  terminationGracePeriodSeconds: 1",
            "  terminationGracePeriodSeconds: 1\n  activeDeadlineSeconds: 3",
        );
    c.ok_in(&["apply", "-f", "-"], Some(&deadline));
    let v = wait_pod(&c, "deadline", "DeadlineExceeded", |v| phase(v) == "Failed");
    assert_eq!(v["status"]["reason"], "DeadlineExceeded", "{}", v["status"]);
    assert_eq!(
        v["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    assert!(
        v["status"]["containerStatuses"][0]["state"]["terminated"].is_object(),
        "{}",
        v["status"]
    );

    // Pods over their own local storage limits are evicted whatever the node's state.
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&LIMITS.replace("IMAGE", &image)),
    );
    for (pod, message) in [
        (
            "scratch",
            "Usage of EmptyDir volume \"data\" exceeds the limit \"10Mi\". ",
        ),
        (
            "layer",
            "Pod ephemeral local storage usage exceeds the total limit of containers 8Mi. ",
        ),
    ] {
        let v = wait_pod(&c, pod, "evicted", |v| phase(v) == "Failed");
        assert_eq!(v["status"]["reason"], "Evicted", "{}", v["status"]);
        assert_eq!(v["status"]["message"], message, "{}", v["status"]);
    }
    let n = node(&c);
    assert_eq!(condition(&n, "DiskPressure"), "False", "{}", n["status"]);
}

const LIMITS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: scratch}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    command: [sh, -c, "dd if=/dev/zero of=/data/fill bs=1M count=20 && sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {sizeLimit: 10Mi}}]
---
apiVersion: v1
kind: Pod
metadata: {name: layer}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    command: [sh, -c, "dd if=/dev/zero of=/tmp/fill bs=1M count=16 && sleep 3600"]
    resources: {limits: {ephemeral-storage: 8Mi}}
"#;

#[test]
fn bad_kubelet_args_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = |arg: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rk3s"))
            .arg(format!("--data-dir={}", dir.path().display()))
            .args(["server", arg])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("--kubelet-arg=eviction-hard=memory.free<1Gi");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--kubelet-arg") && err.contains("memory.free"),
        "{err}"
    );
    let (code, err) = run("--kubelet-arg=feature-gates=Foo=true");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unsupported kubelet flag"), "{err}");
    // Soft thresholds need a grace period: checked across the flags, before anything starts.
    let (code, err) = run("--kubelet-arg=eviction-soft=memory.available<1Gi");
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--kubelet-arg: eviction-soft: memory.available needs a grace period"),
        "{err}"
    );
    assert!(!dir.path().join("server").exists(), "nothing was started");
}

const MEMORY_PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: besteffort}
spec:
  nodeName: BOUND
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: IMAGE, command: [sleep, "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: burstable}
spec:
  nodeName: BOUND
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    command: [sleep, "3600"]
    resources: {requests: {memory: 1Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: critical, namespace: kube-system}
spec:
  nodeName: BOUND
  priorityClassName: system-node-critical
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: IMAGE, command: [sleep, "3600"]}
"#;

/// A memory threshold no machine meets: the node is under MemoryPressure from the start.
/// BestEffort pods are refused at admission, a Burstable one is admitted and then evicted
/// with the memory message, and a system-node-critical pod is never evicted.
#[test]
fn memory_pressure_refuses_and_evicts_but_spares_critical_pods() {
    let Some((c, _registry, image, _dir)) = crate::node::start_with(
        33,
        &[
            "--kubelet-arg=eviction-hard=memory.available<1Ti",
            "--kubelet-arg=eviction-pressure-transition-period=0s",
        ],
    ) else {
        return;
    };
    wait_node(&c, "MemoryPressure", |n| {
        condition(n, "MemoryPressure") == "True"
    });
    let n = node(&c);
    assert_eq!(n["status"]["allocatable"]["memory"], "0", "{}", n["status"]);
    c.ok_in(
        &["apply", "-f", "-"],
        Some(&MEMORY_PODS.replace("BOUND", NODE).replace("IMAGE", &image)),
    );
    let v = wait_pod(&c, "besteffort", "refused", |v| phase(v) == "Failed");
    assert_eq!(
        v["status"]["message"], "The node had condition: [MemoryPressure]. ",
        "{}",
        v["status"]
    );
    let v = wait_pod(&c, "burstable", "evicted", |v| {
        v["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "DisruptionTarget"))
    });
    assert_eq!(phase(&v), "Failed", "{}", v["status"]);
    assert_eq!(v["status"]["reason"], "Evicted");
    let message = v["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 1Ti, available: "
        ),
        "{message}"
    );
    // The critical pod runs and stays through several eviction passes.
    let critical = |c: &Cluster| {
        let out = c.run(
            &["get", "pod", "-n", "kube-system", "critical", "-o", "json"],
            None,
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while phase(&critical(&c)) != "Running" {
        assert!(Instant::now() < deadline, "{}", critical(&c)["status"]);
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(25));
    let v = critical(&c);
    assert_eq!(phase(&v), "Running", "{}", v["status"]);
    assert_eq!(v["spec"]["priority"], 2000001000);
}
