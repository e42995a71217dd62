//! `kubectl top` against rk3s's native metrics.k8s.io: a pod burning CPU and an idle one on a
//! real node, with kubectl 1.33 and 1.27. Root only, one at a time with the other node tests
//! (nextest group `node`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kubectl::Cluster;
use crate::node::{NODE, phase, start, wait_pod};

macro_rules! top_test {
    ($name:ident) => {
        mod $name {
            #[test]
            fn kubectl_1_33() {
                if let Some((c, _r, image, _dir)) = super::start(33) {
                    super::$name(&c, &image);
                }
            }
            #[test]
            fn kubectl_1_27() {
                if let Some((c, _r, image, _dir)) = super::start(27) {
                    super::$name(&c, &image);
                }
            }
        }
    };
}

/// Polls `kubectl <args>` until it succeeds and `check` holds for its output.
fn poll(c: &Cluster, args: &[&str], what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = c.run(args, None);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && check(&stdout) {
            return stdout;
        }
        if Instant::now() > deadline {
            panic!(
                "kubectl {args:?} never showed {what}: {stdout}{}\n--- server log ---\n{}",
                String::from_utf8_lossy(&out.stderr),
                c.server_log()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The row of `table` whose first column is `name`, split on whitespace.
fn row<'a>(table: &'a str, name: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&name))
}

/// `998m` → 998, `1` → 1000.
fn millicores(q: &str) -> u64 {
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => q.parse::<u64>().map(|c| c * 1000).unwrap_or(0),
    }
}

top_test!(top_pods_and_nodes);
fn top_pods_and_nodes(c: &Cluster, image: &str) {
    // Before any pod has samples the API is there but has nothing to say about them.
    let groups = c.ok(&["api-versions"]);
    assert!(
        groups.lines().any(|l| l == "metrics.k8s.io/v1beta1"),
        "{groups}"
    );
    let resources = c.ok(&["api-resources", "--api-group=metrics.k8s.io"]);
    let nodes = row(&resources, "nodes").unwrap_or_default();
    let pods = row(&resources, "pods").unwrap_or_default();
    assert!(
        nodes.contains(&"NodeMetrics") && nodes.contains(&"false"),
        "{resources}"
    );
    assert!(
        pods.contains(&"PodMetrics") && pods.contains(&"true"),
        "{resources}"
    );

    for (name, script) in [
        ("busy", "while true; do :; done"),
        ("idle", "trap 'exit 0' TERM; while true; do sleep 1; done"),
    ] {
        c.ok(&[
            "run",
            name,
            &format!("--image={image}"),
            "--restart=Never",
            "--",
            "sh",
            "-c",
            script,
        ]);
    }
    for name in ["busy", "idle"] {
        wait_pod(c, name, "Running", |v| phase(v) == "Running");
    }

    // `kubectl top pod`: both pods, the busy one well above 100m (it spins a whole core).
    let table = poll(c, &["top", "pod"], "both pods", |t| {
        row(t, "busy").is_some() && row(t, "idle").is_some()
    });
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.contains("CPU(cores)") && header.contains("MEMORY(bytes)"),
        "{table}"
    );
    let table = poll(c, &["top", "pod"], "the busy pod above 100m", |t| {
        row(t, "busy").is_some_and(|r| millicores(r[1]) > 100)
    });
    let idle = row(&table, "idle").unwrap_or_default();
    assert!(millicores(idle[1]) < 100, "{table}");
    assert!(idle[2].ends_with("Mi"), "{table}");

    // Per container, and a label selector (`kubectl run` labels run=<name>).
    let containers = c.ok(&["top", "pod", "--containers"]);
    let busy = row(&containers, "busy").unwrap_or_default();
    assert_eq!(busy.get(1), Some(&"busy"), "{containers}");
    let selected = c.ok(&["top", "pod", "-l", "run=idle"]);
    assert!(
        row(&selected, "idle").is_some() && row(&selected, "busy").is_none(),
        "{selected}"
    );
    let err = c.fails(&["top", "pod", "nope"], None);
    assert!(err.contains("not found"), "{err}");

    // `kubectl top node`: the node with usage and percentages of its allocatable.
    let nodes = poll(c, &["top", "node"], "the node", |t| row(t, NODE).is_some());
    let r = row(&nodes, NODE).unwrap_or_default();
    assert_eq!(r.len(), 5, "{nodes}");
    assert!(
        millicores(r[1]) > 100,
        "the busy pod runs on this node: {nodes}"
    );
    assert!(r[2].ends_with('%') && r[4].ends_with('%'), "{nodes}");
    assert!(r[3].ends_with("Mi"), "{nodes}");

    // The raw objects, as metrics-server serves them.
    let raw = c.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy",
    ]);
    let v: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    assert_eq!(v["kind"], "PodMetrics", "{raw}");
    assert_eq!(v["metadata"]["labels"]["run"], "busy", "{raw}");
    assert!(
        v["window"].as_str().is_some_and(|w| w.ends_with('s')),
        "{raw}"
    );
    let cpu = v["containers"][0]["usage"]["cpu"]
        .as_str()
        .unwrap_or_default();
    assert!(
        cpu.ends_with('n') || cpu.ends_with('m') || cpu.ends_with('u'),
        "{raw}"
    );
    let raw = c.ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes"]);
    let v: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    assert_eq!(v["kind"], "NodeMetricsList", "{raw}");
    assert_eq!(v["items"][0]["metadata"]["name"], NODE, "{raw}");

    c.ok(&[
        "delete",
        "pod",
        "busy",
        "idle",
        "--grace-period=1",
        "--timeout=60s",
    ]);
}

/// The API server reads the kubelet's summary through its own mirror of the JSON (components
/// do not import each other): what the kubelet writes must be what the API server reads.
#[test]
fn the_api_server_reads_the_kubelets_summary_json() {
    use rk3s::kubelet::stats;
    let rate = stats::Rate {
        timestamp: std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        window: Duration::from_secs(10),
        cpu_nano_cores: 2_517_229,
        memory_working_set_bytes: 2_826_240,
    };
    let summary = stats::Summary {
        node: Some(rate),
        pods: vec![stats::PodStats {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            containers: vec![stats::ContainerStats {
                name: "c".into(),
                usage: rate,
            }],
        }],
    };
    let json = serde_json::to_vec(&summary).unwrap();
    let read: rk3s::apiserver::metrics::Summary = serde_json::from_slice(&json).unwrap();
    let node = read.node.unwrap();
    assert_eq!(node.cpu_nano_cores, 2_517_229);
    assert_eq!(node.memory_working_set_bytes, 2_826_240);
    assert_eq!(node.window, Duration::from_secs(10));
    assert_eq!(node.timestamp, rate.timestamp);
    assert_eq!(read.pods[0].name, "web");
    assert_eq!(read.pods[0].containers[0].usage.cpu_nano_cores, 2_517_229);
}
