//! Table tests for the scheduler's pure core: decisions, per-plugin verdicts and the exact
//! FailedScheduling messages upstream prints.

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use super::*;

fn node(name: &str, cpu: &str, memory: &str, extra: Value) -> Node {
    let mut v = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

fn pod(name: &str, cpu: &str, memory: &str, extra: Value) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "default", "uid": name},
        "spec": {"containers": [{"name": "c", "image": "nginx",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).unwrap()
}

/// JSON merge patch, enough to write each case as a small overlay.
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

fn info(n: Node) -> NodeInfo {
    NodeInfo::new(n, vec![])
}

fn control_plane(name: &str) -> Node {
    node(
        name,
        "4",
        "8Gi",
        json!({"spec": {"taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}}),
    )
}

fn verdict(p: &Pod, nodes: &[NodeInfo], i: usize) -> Result<(), Rejection> {
    filter::run(&Cycle::new(p, nodes), &nodes[i])
}

fn reason(r: Result<(), Rejection>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(r) => r.reasons.join("; "),
    }
}

#[test]
fn picks_the_only_node_that_fits_and_reports_why_others_do_not() {
    let nodes = vec![
        info(control_plane("cp")),
        info(node("small", "500m", "1Gi", json!({}))),
        info(node("worker", "4", "8Gi", json!({}))),
    ];
    let p = pod("web", "1", "128Mi", json!({}));
    assert_eq!(schedule(&p, &nodes), Ok("worker".to_string()));

    let nodes = &nodes[..2];
    let err = schedule(&p, nodes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/2 nodes are available: 1 Insufficient cpu, \
         1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
    );
}

#[test]
fn failure_message_counts_reasons_and_appends_preemption() {
    // "small" is full of other pods (preemption might help); the control planes are tainted
    // (it cannot).
    let nodes = vec![
        info(control_plane("cp1")),
        info(control_plane("cp2")),
        NodeInfo::new(
            node("small", "1", "1Gi", json!({})),
            vec![pod("old", "800m", "1Mi", json!({}))],
        ),
    ];
    let p = pod("web", "1", "128Mi", json!({}));
    let err = schedule(&p, &nodes).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/3 nodes are available: 1 Insufficient cpu, \
         2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
    );
    let rs: Vec<&Rejection> = err.rejections.iter().map(|(_, r)| r).collect();
    assert_eq!(
        failure_message_with_preemption(3, &rs),
        "0/3 nodes are available: 1 Insufficient cpu, \
         2 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
         2 Preemption is not helpful for scheduling.."
    );
    assert_eq!(
        failure_message(0, &[]),
        "no nodes available to schedule pods"
    );
}

#[test]
fn failure_message_sorts_counts_as_strings_like_go() {
    let a = Rejection::new("NodeName", Code::UnschedulableAndUnresolvable, "b reason");
    let b = Rejection::new("NodePorts", Code::Unschedulable, "a reason");
    let mut rs = vec![&a; 10];
    rs.extend([&b, &b]);
    assert_eq!(
        failure_message(12, &rs),
        "0/12 nodes are available: 10 b reason, 2 a reason."
    );
}

#[test]
fn a_node_can_give_several_resource_reasons() {
    let nodes = vec![info(node(
        "n",
        "1",
        "1Gi",
        json!({"status": {"allocatable": {"pods": "0"}}}),
    ))];
    let p = pod("p", "2", "2Gi", json!({}));
    let r = verdict(&p, &nodes, 0).unwrap_err();
    assert_eq!(
        r.reasons,
        ["Too many pods", "Insufficient cpu", "Insufficient memory"]
    );
    assert_eq!(r.code, Code::UnschedulableAndUnresolvable);
    assert_eq!(
        failure_message(1, &[&r]),
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory, 1 Too many pods."
    );
}

#[test]
fn node_unschedulable_name_and_taints() {
    let cordoned = node("c", "4", "8Gi", json!({"spec": {"unschedulable": true}}));
    let tainted = node(
        "t",
        "4",
        "8Gi",
        json!({"spec": {"taints": [
            {"key": "soft", "value": "x", "effect": "PreferNoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]}}),
    );
    let nodes = vec![info(cordoned), info(tainted)];
    let cases = [
        (json!({}), 0, "node(s) were unschedulable"),
        (
            json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
            0,
            "ok",
        ),
        (
            json!({"spec": {"tolerations": [{"operator": "Exists"}]}}),
            0,
            "ok",
        ),
        (
            json!({"spec": {"nodeName": "other"}}),
            1,
            "node(s) didn't match the requested node name",
        ),
        (
            json!({}),
            1,
            "node(s) had untolerated taint {dedicated: gpu}",
        ),
        (
            json!({"spec": {"tolerations": [{"key": "dedicated", "value": "cpu", "effect": "NoExecute"}]}}),
            1,
            "node(s) had untolerated taint {dedicated: gpu}",
        ),
        (
            json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}}),
            1,
            "ok",
        ),
    ];
    for (extra, i, want) in cases {
        let p = pod("p", "1", "1Mi", extra.clone());
        assert_eq!(reason(verdict(&p, &nodes, i)), want, "{extra}");
    }
}

#[test]
fn node_selector_and_required_node_affinity() {
    let n = node(
        "n1",
        "4",
        "8Gi",
        json!({"metadata": {"labels": {"zone": "a", "gen": "5", "disk": "ssd"}}}),
    );
    let nodes = vec![info(n)];
    let affinity = |terms: Value| json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}});
    let expr = |key: &str, op: &str, values: Value| json!([{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]);
    let bad = "node(s) didn't match Pod's node affinity/selector";
    let cases = [
        (json!({"spec": {"nodeSelector": {"zone": "a"}}}), "ok"),
        (json!({"spec": {"nodeSelector": {"zone": "b"}}}), bad),
        (affinity(expr("zone", "In", json!(["a", "b"]))), "ok"),
        (affinity(expr("zone", "NotIn", json!(["a"]))), bad),
        (affinity(expr("missing", "NotIn", json!(["a"]))), "ok"),
        (affinity(expr("disk", "Exists", json!(null))), "ok"),
        (affinity(expr("disk", "DoesNotExist", json!(null))), bad),
        (affinity(expr("gen", "Gt", json!(["4"]))), "ok"),
        (affinity(expr("gen", "Lt", json!(["5"]))), bad),
        (affinity(expr("zone", "Gt", json!(["1"]))), bad),
        (
            affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
            ),
            "ok",
        ),
        (
            affinity(
                json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]),
            ),
            bad,
        ),
        // Terms are ORed; an empty term matches nothing.
        (
            affinity(
                json!([{}, {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]),
            ),
            "ok",
        ),
        (affinity(json!([{}])), bad),
    ];
    for (extra, want) in cases {
        let p = pod("p", "1", "1Mi", extra.clone());
        assert_eq!(reason(verdict(&p, &nodes, 0)), want, "{extra}");
    }
}

#[test]
fn pod_requests_count_init_containers_sidecars_and_overhead() {
    let c = |cpu: &str| json!({"name": "c", "resources": {"requests": {"cpu": cpu}}});
    let sidecar = |cpu: &str| json!({"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": cpu}}});
    let cases = [
        // max(sum of containers, largest init container)
        (
            json!({"containers": [c("1"), c("500m")], "initContainers": [c("2")]}),
            2000,
        ),
        (
            json!({"containers": [c("1"), c("500m")], "initContainers": [c("1")]}),
            1500,
        ),
        // sidecars add to the containers and to later init containers
        (
            json!({"containers": [c("1")], "initContainers": [sidecar("200m"), c("1")]}),
            1200,
        ),
        (
            json!({"containers": [c("100m")], "initContainers": [sidecar("200m"), c("1")]}),
            1200,
        ),
        (
            json!({"containers": [c("100m")], "initContainers": [c("1"), sidecar("200m")]}),
            1000,
        ),
        (
            json!({"containers": [c("1")], "overhead": {"cpu": "250m"}}),
            1250,
        ),
    ];
    for (spec, want) in cases {
        let p: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec.clone()}))
                .unwrap();
        assert_eq!(pod_requests(&p, false).milli_cpu, want, "{spec}");
    }
    let empty: Pod =
        serde_json::from_value(json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}))
            .unwrap();
    let nz = pod_requests(&empty, true);
    assert_eq!((nz.milli_cpu, nz.memory), (200, 2 * DEFAULT_MEMORY_REQUEST));
}

#[test]
fn resources_fit_against_what_other_pods_use() {
    let gpu_node = node(
        "n",
        "2",
        "4Gi",
        json!({"status": {"allocatable": {"example.com/gpu": "1", "ephemeral-storage": "10Gi"}}}),
    );
    let running = pod("old", "1500m", "1Gi", json!({}));
    let nodes = vec![NodeInfo::new(gpu_node, vec![running])];
    let gpu = |n: &str| json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m", "example.com/gpu": n}}}]}});
    let cases = [
        (pod("p", "500m", "1Gi", json!({})), "ok"),
        (pod("p", "600m", "1Gi", json!({})), "Insufficient cpu"),
        (pod("p", "100m", "3073Mi", json!({})), "Insufficient memory"),
        (pod("p", "0", "0", gpu("1")), "ok"),
        (pod("p", "0", "0", gpu("2")), "Insufficient example.com/gpu"),
        (
            pod(
                "p",
                "0",
                "0",
                json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"ephemeral-storage": "11Gi"}}}]}}),
            ),
            "Insufficient ephemeral-storage",
        ),
    ];
    for (p, want) in cases {
        assert_eq!(reason(verdict(&p, &nodes, 0)), want);
    }
    // Short only because of other pods: preemption could help.
    let r = verdict(&pod("p", "600m", "1Mi", json!({})), &nodes, 0).unwrap_err();
    assert_eq!(r.code, Code::Unschedulable);
}

#[test]
fn host_ports_conflict_by_protocol_and_ip() {
    let ports = |port: i32, proto: &str, ip: &str| json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": port, "protocol": proto, "hostIP": ip}]}]}});
    let used = pod("old", "0", "0", ports(8080, "TCP", "10.0.0.1"));
    let nodes = vec![NodeInfo::new(node("n", "4", "8Gi", json!({})), vec![used])];
    let bad = "node(s) didn't have free ports for the requested pod ports";
    let cases = [
        (ports(8080, "TCP", "10.0.0.1"), bad),
        (ports(8080, "TCP", ""), bad),
        (ports(8080, "TCP", "0.0.0.0"), bad),
        (ports(8080, "TCP", "10.0.0.2"), "ok"),
        (ports(8080, "UDP", "10.0.0.1"), "ok"),
        (ports(8081, "TCP", "10.0.0.1"), "ok"),
    ];
    for (extra, want) in cases {
        let p = pod("p", "0", "0", extra.clone());
        assert_eq!(reason(verdict(&p, &nodes, 0)), want, "{extra}");
    }
}

fn zoned(name: &str, zone: &str, pods: Vec<Pod>) -> NodeInfo {
    NodeInfo::new(
        node(
            name,
            "8",
            "16Gi",
            json!({"metadata": {"labels": {"zone": zone}}}),
        ),
        pods,
    )
}

fn labelled(name: &str, app: &str, extra: Value) -> Pod {
    let mut extra = extra;
    merge(&mut extra, json!({"metadata": {"labels": {"app": app}}}));
    pod(name, "100m", "64Mi", extra)
}

#[test]
fn required_inter_pod_affinity_and_anti_affinity() {
    let term = |app: &str| json!([{"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "zone"}]);
    let affinity = |app: &str| json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term(app)}}}});
    let anti = |app: &str| json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term(app)}}}});
    let nodes = vec![
        zoned("a1", "a", vec![labelled("db", "db", json!({}))]),
        zoned("a2", "a", vec![]),
        zoned("b1", "b", vec![labelled("guard", "guard", anti("web"))]),
        NodeInfo::new(node("nozone", "8", "16Gi", json!({})), vec![]),
    ];
    let run = |p: &Pod| -> Vec<String> {
        (0..nodes.len())
            .map(|i| reason(verdict(p, &nodes, i)))
            .collect()
    };
    let no_aff = "node(s) didn't match pod affinity rules";
    let no_anti = "node(s) didn't match pod anti-affinity rules";
    let existing = "node(s) didn't satisfy existing pods anti-affinity rules";

    // Affinity to db: zone a only (a2 too: same domain); nodes without the key fail.
    assert_eq!(
        run(&labelled("p", "api", affinity("db"))),
        ["ok", "ok", no_aff, no_aff]
    );
    // Anti-affinity to db: not zone a; a node without the key passes.
    assert_eq!(
        run(&labelled("p", "api", anti("db"))),
        [no_anti, no_anti, "ok", "ok"]
    );
    // The guard's anti-affinity keeps web pods out of zone b.
    assert_eq!(
        run(&labelled("p", "web", json!({}))),
        ["ok", "ok", existing, "ok"]
    );
    // First pod of a self-affine group: nothing matches anywhere, it matches itself.
    assert_eq!(
        run(&labelled("p", "cache", affinity("cache"))),
        ["ok", "ok", "ok", no_aff]
    );
    // ...but not when it does not match its own term.
    assert_eq!(
        run(&labelled("p", "api", affinity("cache"))),
        [no_aff, no_aff, no_aff, no_aff]
    );
    // Other namespaces are invisible unless listed.
    let mut p = labelled("p", "api", affinity("db"));
    p.metadata.namespace = Some("other".into());
    assert_eq!(run(&p)[0], no_aff);
}

#[test]
fn topology_spread_do_not_schedule() {
    let spread = |skew: i32, min_domains: Option<i32>| {
        json!({"spec": {"topologySpreadConstraints": [{"maxSkew": skew, "minDomains": min_domains,
            "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}}]}})
    };
    let web = |n: &str| labelled(n, "web", json!({}));
    let nodes = vec![
        zoned("a1", "a", vec![web("w1"), web("w2")]),
        zoned("b1", "b", vec![web("w3")]),
        NodeInfo::new(node("nozone", "8", "16Gi", json!({})), vec![]),
    ];
    let run = |p: &Pod| -> Vec<String> {
        (0..nodes.len())
            .map(|i| reason(verdict(p, &nodes, i)))
            .collect()
    };
    let skew = "node(s) didn't match pod topology spread constraints";
    let missing = "node(s) didn't match pod topology spread constraints (missing required label)";
    assert_eq!(
        run(&labelled("p", "web", spread(1, None))),
        [skew, "ok", missing]
    );
    assert_eq!(
        run(&labelled("p", "web", spread(2, None))),
        ["ok", "ok", missing]
    );
    // With fewer domains than minDomains the global minimum counts as 0.
    assert_eq!(
        run(&labelled("p", "web", spread(2, Some(3)))),
        [skew, "ok", missing]
    );
    // A pod that does not match its own selector adds nothing to the skew.
    assert_eq!(
        run(&labelled("p", "api", spread(1, None))),
        ["ok", "ok", missing]
    );
}

fn choose(p: &Pod, nodes: &[NodeInfo]) -> String {
    schedule(p, nodes).unwrap()
}

#[test]
fn scores_pick_the_least_allocated_node() {
    let busy = pod("busy", "3", "6Gi", json!({}));
    let nodes = vec![
        NodeInfo::new(node("a", "4", "8Gi", json!({})), vec![busy]),
        info(node("b", "4", "8Gi", json!({}))),
    ];
    let p = pod("p", "500m", "512Mi", json!({}));
    assert_eq!(choose(&p, &nodes), "b");
    let cycle = Cycle::new(&p, &nodes);
    let feasible: Vec<&NodeInfo> = nodes.iter().collect();
    // (4000-3500)/4000 -> 12, (8192-6656)/8192 -> 18: (12+18)/2 = 15; b: (87+93)/2 = 90.
    assert_eq!(score::least_allocated(&cycle, &feasible), [15, 90]);
    // a: fractions 0.875 and 0.8125 -> 1 - 0.03125 -> 96; b: 0.125, 0.0625 -> 96.
    assert_eq!(score::balanced_allocation(&cycle, &feasible), [96, 96]);
}

#[test]
fn ties_go_to_the_first_node_name() {
    let nodes = vec![
        info(node("zeta", "4", "8Gi", json!({}))),
        info(node("alpha", "4", "8Gi", json!({}))),
    ];
    assert_eq!(choose(&pod("p", "1", "1Gi", json!({})), &nodes), "alpha");
}

#[test]
fn preferred_node_affinity_and_prefer_no_schedule_taints() {
    let nodes = vec![
        info(node(
            "a",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"disk": "hdd"}}}),
        )),
        info(node(
            "b",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"disk": "ssd"}}}),
        )),
        info(node(
            "c",
            "4",
            "8Gi",
            json!({"metadata": {"labels": {"disk": "ssd"}},
                   "spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
        )),
    ];
    let p = pod(
        "p",
        "1",
        "1Gi",
        json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 30, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}}]}}}}),
    );
    let cycle = Cycle::new(&p, &nodes);
    let feasible: Vec<&NodeInfo> = nodes.iter().collect();
    assert_eq!(score::node_affinity(&cycle, &feasible), [0, 25, 100]);
    assert_eq!(score::taint_toleration(&cycle, &feasible), [100, 100, 0]);
    // c: 2*100 + 3*0 = 200; b: 2*25 + 3*100 = 350.
    assert_eq!(choose(&p, &nodes), "b");
}

#[test]
fn image_locality_prefers_nodes_with_the_image() {
    let with_image = |name: &str, size: i64| {
        node(
            name,
            "4",
            "8Gi",
            json!({"status": {"images": [{"names": ["nginx:latest"], "sizeBytes": size}]}}),
        )
    };
    let nodes = vec![
        info(node("a", "4", "8Gi", json!({}))),
        info(with_image("b", 500 * 1024 * 1024)),
    ];
    let p = pod("p", "1", "1Gi", json!({}));
    let cycle = Cycle::new(&p, &nodes);
    let feasible: Vec<&NodeInfo> = nodes.iter().collect();
    // 500Mi * 1/2 nodes = 250Mi; (250-23)*100/(1000-23) = 23.
    assert_eq!(score::image_locality(&cycle, &feasible), [0, 23]);
    assert_eq!(choose(&p, &nodes), "b");
}

#[test]
fn preferred_pod_affinity_and_spread_scores() {
    let nodes = vec![
        zoned(
            "a1",
            "a",
            vec![
                labelled("db", "db", json!({})),
                labelled("w1", "web", json!({})),
            ],
        ),
        zoned("b1", "b", vec![]),
    ];
    let feasible: Vec<&NodeInfo> = nodes.iter().collect();
    let near_db = labelled(
        "p",
        "web",
        json!({"spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone"}}]}}}}),
    );
    let cycle = Cycle::new(&near_db, &nodes);
    assert_eq!(score::inter_pod_affinity(&cycle, &feasible), [100, 0]);

    let spread = labelled(
        "p",
        "web",
        json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
    );
    let cycle = Cycle::new(&spread, &nodes);
    // a1: 1 * ln(4) = 1.39 -> 1; b1: 0. Normalized: 100*(1+0-1)/1 = 0, 100*(1+0-0)/1 = 100.
    assert_eq!(score::pod_topology_spread(&cycle, &feasible), [0, 100]);
    assert_eq!(choose(&spread, &nodes), "b1");
}

#[test]
fn quantities_round_up_like_upstream() {
    let cases = [
        ("1", 1, 1000),
        ("100m", 1, 100),
        ("1.5", 2, 1500),
        ("0.1m", 1, 1),
        ("1Ki", 1024, 1_024_000),
        ("128Mi", 134_217_728, 134_217_728_000),
        ("1G", 1_000_000_000, 1_000_000_000_000),
        ("1e3", 1000, 1_000_000),
        ("2E", 2_000_000_000_000_000_000, i64::MAX),
        ("junk", 0, 0),
    ];
    for (q, v, m) in cases {
        assert_eq!((value(q), milli_value(q)), (v, m), "{q}");
    }
}

#[test]
fn topology_spread_node_inclusion_policies() {
    let spread = |taints_policy: &str| {
        json!({"spec": {"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": taints_policy,
            "labelSelector": {"matchLabels": {"app": "web"}}}]}})
    };
    let web = |n: &str| labelled(n, "web", json!({}));
    let tainted = node(
        "c1",
        "8",
        "16Gi",
        json!({"metadata": {"labels": {"zone": "c"}},
               "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
    );
    let nodes = vec![
        zoned("a1", "a", vec![web("w1")]),
        zoned("b1", "b", vec![web("w2")]),
        NodeInfo::new(tainted, vec![]),
    ];
    let skew = "node(s) didn't match pod topology spread constraints";
    // Ignore (default): empty zone c still counts, so a and b are one pod ahead.
    let p = labelled("p", "web", spread("Ignore"));
    assert_eq!(reason(verdict(&p, &nodes, 1)), skew);
    // Honor: the tainted node's zone is not a domain for this pod.
    let p = labelled("p", "web", spread("Honor"));
    assert_eq!(reason(verdict(&p, &nodes, 1)), "ok");
}

#[test]
fn balanced_allocation_skips_best_effort_pods() {
    let nodes = vec![
        NodeInfo::new(
            node("a", "4", "8Gi", json!({})),
            vec![pod("x", "3", "1Gi", json!({}))],
        ),
        info(node("b", "4", "8Gi", json!({}))),
    ];
    let p: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}}),
    )
    .unwrap();
    let cycle = Cycle::new(&p, &nodes);
    let feasible: Vec<&NodeInfo> = nodes.iter().collect();
    assert_eq!(score::balanced_allocation(&cycle, &feasible), [0, 0]);
    // LeastAllocated still counts it with the non-zero defaults.
    assert_eq!(choose(&p, &nodes), "b");
}

// ---- preemption ----

fn prio(name: &str, cpu: &str, priority: i32) -> Pod {
    pod(name, cpu, "1Mi", json!({"spec": {"priority": priority}}))
}

fn preempt_on(
    nodes: &[NodeInfo],
    p: &Pod,
    pdbs: &[k8s_openapi::api::policy::v1::PodDisruptionBudget],
) -> Option<(String, Vec<String>, usize)> {
    let fit = schedule(p, nodes).expect_err("the pod must not fit as is");
    preempt::preempt(p, nodes, &fit, pdbs).map(|c| {
        let names = c
            .victims
            .iter()
            .map(|v| v.metadata.name.clone().unwrap())
            .collect();
        (c.node, names, c.pdb_violations)
    })
}

#[test]
fn preemption_evicts_only_what_is_needed_and_only_lower_priority() {
    let n = NodeInfo::new(
        node("n1", "1", "1Gi", json!({})),
        vec![prio("low", "600m", 0), prio("mid", "300m", 5)],
    );
    let high = prio("high", "500m", 10);
    assert_eq!(
        preempt_on(std::slice::from_ref(&n), &high, &[]),
        Some(("n1".into(), vec!["low".into()], 0))
    );
    // A pod of equal priority preempts nothing.
    let same = prio("same", "500m", 0);
    assert_eq!(preempt_on(std::slice::from_ref(&n), &same, &[]), None);
    // preemptionPolicy Never opts out.
    let polite = pod(
        "polite",
        "500m",
        "1Mi",
        json!({"spec": {"priority": 10, "preemptionPolicy": "Never"}}),
    );
    assert_eq!(preempt_on(&[n], &polite, &[]), None);
}

#[test]
fn preemption_prefers_nodes_whose_victims_no_budget_protects_then_cheaper_victims() {
    let guarded = NodeInfo::new(
        node("a", "1", "1Gi", json!({})),
        vec![pod(
            "db",
            "800m",
            "1Mi",
            json!({"metadata": {"labels": {"app": "db"}}, "spec": {"priority": 0}}),
        )],
    );
    let busier = NodeInfo::new(
        node("b", "1", "1Gi", json!({})),
        vec![prio("batch", "800m", 3)],
    );
    let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "db"}}},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1},
    }))
    .unwrap();
    let high = prio("high", "500m", 10);
    // Without the budget the lower-priority victim (on a) wins; with it, b's victim does.
    assert_eq!(
        preempt_on(&[guarded.clone(), busier.clone()], &high, &[])
            .unwrap()
            .0,
        "a"
    );
    assert_eq!(
        preempt_on(&[guarded, busier], &high, &[pdb]),
        Some(("b".into(), vec!["batch".into()], 0))
    );
}
