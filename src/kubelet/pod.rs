//! Pure decisions about one pod: the container's argv and environment, its QoS class and
//! cgroup, the restart back-off, and the pod status computed from what the runtime reports.
//!
//! Everything here is a function of its arguments, so the upstream behaviours it reproduces
//! (kubelet's `getPhase`, `generateAPIPodStatus`, container restart back-off) are unit-tested
//! without a runtime.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, ResourceRequirements};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// The container runtime's prefix of `containerID`s.
pub const RUNTIME_SCHEME: &str = "rk3s";

/// Upstream's initial crash-loop back-off.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// Upstream's back-off cap.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long resets its back-off (upstream: twice the cap).
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The container's argv, as the container runtime interface defines the merge of the pod's
/// `command`/`args` with the image's `Entrypoint`/`Cmd`: `command` replaces the entrypoint and
/// drops the image's Cmd; `args` alone replaces Cmd.
pub fn argv(container: &Container, entrypoint: &[String], cmd: &[String]) -> Vec<String> {
    let command = container.command.clone().unwrap_or_default();
    let args = container.args.clone().unwrap_or_default();
    let (mut out, tail) = match (command.is_empty(), args.is_empty()) {
        (false, _) => (command, args),
        (true, false) => (entrypoint.to_vec(), args),
        (true, true) => (entrypoint.to_vec(), cmd.to_vec()),
    };
    out.extend(tail);
    out
}

/// Expands `$(VAR)` references the way upstream does for env values, command and args:
/// `$$` escapes, unknown references stay verbatim.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match vars.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The pod's QoS class, as upstream's `GetPodQOS`: Guaranteed when every container has equal
/// cpu and memory requests and limits, BestEffort when none sets any, Burstable otherwise.
pub fn qos_class(pod: &Pod) -> &'static str {
    let spec = pod.spec.as_ref();
    let containers: Vec<&Container> = spec
        .map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .collect()
        })
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let r = c.resources.clone().unwrap_or_default();
        let requests = r.requests.unwrap_or_default();
        let limits = r.limits.unwrap_or_default();
        for res in ["cpu", "memory"] {
            let (req, lim) = (requests.get(res), limits.get(res));
            if req.is_some() || lim.is_some() {
                any = true;
            }
            // A limit without a request defaults the request to the limit.
            match (req, lim) {
                (_, None) => guaranteed = false,
                (Some(q), Some(l)) if q != l => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The pod's cgroup under the node's pod tree (upstream's cgroupfs layout: Guaranteed pods sit
/// directly under `kubepods`).
pub fn pod_cgroup(pod: &Pod) -> String {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    match qos_class(pod) {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        "Burstable" => format!("/kubepods/burstable/pod{uid}"),
        _ => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// Millicores of a cpu quantity ("250m", "1", "0.5").
pub fn millicores(q: &str) -> Option<i64> {
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().ok();
    }
    q.parse::<f64>().ok().map(|c| (c * 1000.0).round() as i64)
}

/// Bytes of a memory quantity ("64Mi", "1G", "1e9", "128974848").
pub fn bytes(q: &str) -> Option<i64> {
    let units: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, mult) in units {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|n| (n * mult).round() as i64);
        }
    }
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<f64>().ok().map(|n| (n / 1000.0).ceil() as i64);
    }
    q.parse::<f64>().ok().map(|n| n.round() as i64)
}

/// The cgroup settings of one container, as upstream's cgroupfs conversion: shares from the
/// cpu request (2 minimum), CFS quota from the cpu limit over a 100 ms period, the memory
/// limit as is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
}

pub fn limits(resources: Option<&ResourceRequirements>) -> Limits {
    let r = resources.cloned().unwrap_or_default();
    let requests = r.requests.unwrap_or_default();
    let limits = r.limits.unwrap_or_default();
    let cpu_request = requests
        .get("cpu")
        .or(limits.get("cpu"))
        .and_then(|q| millicores(&q.0));
    let cpu_limit = limits.get("cpu").and_then(|q| millicores(&q.0));
    Limits {
        cpu_shares: Some(cpu_request.map_or(2, |m| ((m * 1024) / 1000).max(2) as u64)),
        cpu_quota: cpu_limit.map(|m| (m * 100_000 / 1000).max(1000)),
        cpu_period: cpu_limit.map(|_| 100_000),
        memory_limit: limits.get("memory").and_then(|q| bytes(&q.0)),
    }
}

/// Upstream's container restart back-off: 10 s doubling to 5 min, reset after the container
/// ran 10 min without trouble.
pub fn backoff(previous: Option<Duration>, ran: Duration) -> Duration {
    match previous {
        _ if ran >= BACKOFF_RESET => BACKOFF_INITIAL,
        None => BACKOFF_INITIAL,
        Some(d) => (d * 2).min(BACKOFF_MAX),
    }
}

/// What the kubelet knows about one container of the pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub name: String,
    /// The runtime's id of the current (or last) instance.
    pub id: Option<String>,
    pub state: Phase,
    /// The previous instance's final state (`lastState`).
    pub last: Option<Terminated>,
    pub restart_count: i32,
    pub image: String,
    pub image_id: String,
    /// Readiness from probes (a running container without a readiness probe is ready).
    pub ready: bool,
    /// `started`: the startup probe passed (or there is none) and the container runs.
    pub started: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub enum Phase {
    /// Not yet created, or waiting to be restarted.
    #[default]
    Created,
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: SystemTime,
    },
    Terminated(Terminated),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub message: String,
    pub started_at: Option<SystemTime>,
    pub finished_at: SystemTime,
    pub container_id: String,
}

impl Terminated {
    /// Upstream's reasons: OOMKilled, Completed for 0, Error otherwise (StartError is set by
    /// the caller when the process never started).
    pub fn reason_for(exit_code: i32, oom_killed: bool) -> &'static str {
        if oom_killed {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

fn time(t: SystemTime) -> String {
    Timestamp::try_from(t)
        .map(|t| {
            t.round(k8s_openapi::jiff::Unit::Second)
                .unwrap_or(t)
                .to_string()
        })
        .unwrap_or_default()
}

fn state_json(phase: &Phase) -> Value {
    match phase {
        Phase::Created => json!({"waiting": {"reason": "ContainerCreating"}}),
        Phase::Waiting { reason, message } if message.is_empty() => {
            json!({"waiting": {"reason": reason}})
        }
        Phase::Waiting { reason, message } => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        Phase::Running { started_at } => json!({"running": {"startedAt": time(*started_at)}}),
        Phase::Terminated(t) => terminated_json(t),
    }
}

fn terminated_json(t: &Terminated) -> Value {
    let mut v = json!({
        "exitCode": t.exit_code,
        "reason": t.reason,
        "finishedAt": time(t.finished_at),
        "containerID": t.container_id,
    });
    if let Some(s) = t.signal {
        v["signal"] = json!(s);
    }
    if let Some(s) = t.started_at {
        v["startedAt"] = json!(time(s));
    }
    if !t.message.is_empty() {
        v["message"] = json!(t.message);
    }
    json!({ "terminated": v })
}

/// One entry of `containerStatuses`/`initContainerStatuses`.
pub fn container_status(r: &Record) -> Value {
    let mut v = json!({
        "name": r.name,
        "state": state_json(&r.state),
        "lastState": r.last.as_ref().map(terminated_json).unwrap_or_else(|| json!({})),
        "ready": r.ready && matches!(r.state, Phase::Running { .. }),
        "restartCount": r.restart_count,
        "image": r.image,
        "imageID": r.image_id,
        "started": r.started && matches!(r.state, Phase::Running { .. }),
    });
    if let Some(id) = &r.id {
        v["containerID"] = json!(format!("{RUNTIME_SCHEME}://{id}"));
    }
    v
}

/// The pod phase from its containers, as upstream's `getPhase`.
pub fn phase(
    restart_policy: &str,
    init: &[Record],
    containers: &[Record],
    init_done: bool,
) -> &'static str {
    if !init_done {
        // A failed init container with restartPolicy Never fails the pod.
        let failed = init
            .iter()
            .any(|r| matches!(&r.state, Phase::Terminated(t) if t.exit_code != 0));
        if failed && restart_policy == "Never" {
            return "Failed";
        }
        return "Pending";
    }
    let (mut running, mut waiting, mut succeeded, mut failed, mut stopped) = (0, 0, 0, 0, 0);
    for r in containers {
        match &r.state {
            Phase::Running { .. } => running += 1,
            Phase::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1
                } else {
                    failed += 1
                }
            }
            Phase::Waiting { .. } | Phase::Created => {
                if r.last.is_some() {
                    // Restarting after it ran: the pod keeps running.
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
        }
    }
    let _ = succeeded;
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == containers.len() && !containers.is_empty() {
        return match restart_policy {
            "Always" => "Running",
            "OnFailure" if failed > 0 => "Running",
            _ if failed > 0 => "Failed",
            _ => "Succeeded",
        };
    }
    "Pending"
}

/// Whether the pod reached a phase from which the kubelet never restarts anything.
pub fn is_terminal(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed")
}

/// Whether a container that ended with `exit_code` is started again under `restart_policy`.
pub fn restarts(restart_policy: &str, exit_code: i32) -> bool {
    match restart_policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Everything the pod status is computed from.
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub init: &'a [Record],
    pub containers: &'a [Record],
    pub init_done: bool,
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<SystemTime>,
    /// Set when the kubelet itself fails the pod (e.g. activeDeadlineSeconds, eviction).
    pub failure: Option<&'a Failure>,
}

/// Why the kubelet failed a pod: the status `reason` and `message`, and whether it was a
/// disruption (node-pressure eviction), which upstream records as the `DisruptionTarget`
/// condition with reason `TerminationByKubelet`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub message: String,
    pub disruption: bool,
}

/// The `status` object the kubelet writes, as upstream's `generateAPIPodStatus`.
/// `previous` keeps condition transition times.
pub fn status(input: &StatusInput, previous: &Value, now: SystemTime) -> Value {
    let spec = input.pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let mut phase = phase(policy, input.init, input.containers, input.init_done);
    if input.failure.is_some() {
        phase = "Failed";
    }
    let containers_ready = input
        .containers
        .iter()
        .all(|r| r.ready && matches!(r.state, Phase::Running { .. }));
    let not_ready: Vec<&str> = input
        .containers
        .iter()
        .filter(|r| !(r.ready && matches!(r.state, Phase::Running { .. })))
        .map(|r| r.name.as_str())
        .collect();
    let uninitialized: Vec<&str> = if input.init_done {
        vec![]
    } else {
        input
            .init
            .iter()
            .filter(|r| !matches!(&r.state, Phase::Terminated(t) if t.exit_code == 0))
            .map(|r| r.name.as_str())
            .collect()
    };
    let mut conditions = Vec::new();
    let transition = |kind: &str, status: &str| -> String {
        previous["conditions"]
            .as_array()
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == kind && c["status"] == status)
                    .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
            })
            .unwrap_or_else(|| time(now))
    };
    let mut cond = |kind: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let mut c = json!({
            "type": kind, "status": status,
            "lastProbeTime": null,
            "lastTransitionTime": transition(kind, status),
        });
        if let (false, Some(r)) = (ok, reason) {
            c["reason"] = json!(r);
        }
        if let (false, Some(m)) = (ok, message) {
            c["message"] = json!(m);
        }
        conditions.push(c);
    };
    let terminal_done = is_terminal(phase);
    cond(
        "PodReadyToStartContainers",
        input.sandbox_ready && !terminal_done,
        None,
        None,
    );
    cond(
        "Initialized",
        input.init_done,
        Some("ContainersNotInitialized"),
        Some(format!(
            "containers with incomplete status: [{}]",
            uninitialized.join(" ")
        )),
    );
    let (reason, message) = if terminal_done {
        ("PodCompleted", None)
    } else {
        (
            "ContainersNotReady",
            Some(format!(
                "containers with unready status: [{}]",
                not_ready.join(" ")
            )),
        )
    };
    let ready = containers_ready && !terminal_done && input.init_done;
    cond("ContainersReady", ready, Some(reason), message.clone());
    cond("Ready", ready, Some(reason), message);
    if let Some(f) = input.failure.filter(|f| f.disruption) {
        conditions.push(json!({
            "type": "DisruptionTarget", "status": "True",
            "reason": "TerminationByKubelet", "message": f.message,
            "lastProbeTime": null,
            "lastTransitionTime": transition("DisruptionTarget", "True"),
        }));
    }
    // The scheduler's condition is kept as it was written.
    if let Some(s) = previous["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
    {
        conditions.push(s.clone());
    } else {
        conditions.push(
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": time(now)}),
        );
    }
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": input.host_ip,
        "hostIPs": [{"ip": input.host_ip}],
        "qosClass": qos_class(input.pod),
        "containerStatuses": input.containers.iter().map(container_status).collect::<Vec<_>>(),
    });
    if !input.init.is_empty() {
        status["initContainerStatuses"] =
            json!(input.init.iter().map(container_status).collect::<Vec<_>>());
    }
    if let Some(ip) = &input.pod_ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{ "ip": ip }]);
    }
    if let Some(t) = input.start_time {
        status["startTime"] = json!(time(t));
    }
    if let Some(f) = input.failure {
        status["reason"] = json!(f.reason);
        status["message"] = json!(f.message);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(v: Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argv_merges_command_and_args_with_the_image_as_the_cri_says() {
        let ep = strings(&["/entry"]);
        let cmd = strings(&["run", "--x"]);
        let c = |v| container(v);
        assert_eq!(
            argv(&c(json!({"name": "a"})), &ep, &cmd),
            strings(&["/entry", "run", "--x"])
        );
        assert_eq!(
            argv(&c(json!({"name": "a", "args": ["y"]})), &ep, &cmd),
            strings(&["/entry", "y"])
        );
        assert_eq!(
            argv(&c(json!({"name": "a", "command": ["sh"]})), &ep, &cmd),
            strings(&["sh"])
        );
        assert_eq!(
            argv(
                &c(json!({"name": "a", "command": ["sh"], "args": ["-c", "x"]})),
                &ep,
                &cmd
            ),
            strings(&["sh", "-c", "x"])
        );
        assert_eq!(
            argv(&c(json!({"name": "a"})), &[], &strings(&["sh"])),
            strings(&["sh"])
        );
    }

    #[test]
    fn references_expand_like_upstream() {
        let vars: BTreeMap<String, String> =
            [("A".to_string(), "1".to_string())].into_iter().collect();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "1-$(B)-$(A)-$");
        assert_eq!(expand("x$(A", &vars), "x$(A");
        assert_eq!(expand("é$(A)", &vars), "é1");
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let pod = |resources: Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"uid": "u"}, "spec": {"containers": [
                {"name": "a", "resources": resources}]}}))
            .unwrap()
        };
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        let g = pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}));
        assert_eq!(qos_class(&g), "Guaranteed");
        assert_eq!(pod_cgroup(&g), "/kubepods/podu");
        let b = pod(json!({"requests": {"cpu": "100m"}}));
        assert_eq!(qos_class(&b), "Burstable");
        assert_eq!(pod_cgroup(&b), "/kubepods/burstable/podu");
    }

    #[test]
    fn quantities_become_cgroup_limits() {
        assert_eq!(millicores("250m"), Some(250));
        assert_eq!(millicores("1.5"), Some(1500));
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
        assert_eq!(bytes("1e3"), Some(1000));
        let r: ResourceRequirements = serde_json::from_value(
            json!({"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "32Mi"}}),
        )
        .unwrap();
        assert_eq!(
            limits(Some(&r)),
            Limits {
                cpu_shares: Some(256),
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                memory_limit: Some(32 << 20),
            }
        );
        assert_eq!(limits(None).cpu_shares, Some(2));
    }

    #[test]
    fn backoff_doubles_to_five_minutes_and_resets_after_a_long_run() {
        let s = Duration::from_secs;
        assert_eq!(backoff(None, s(0)), s(10));
        assert_eq!(backoff(Some(s(10)), s(1)), s(20));
        assert_eq!(backoff(Some(s(160)), s(1)), s(300));
        assert_eq!(backoff(Some(s(300)), s(1)), s(300));
        assert_eq!(backoff(Some(s(300)), s(601)), s(10));
    }

    fn running(name: &str) -> Record {
        Record {
            name: name.into(),
            state: Phase::Running {
                started_at: SystemTime::UNIX_EPOCH,
            },
            ready: true,
            started: true,
            ..Record::default()
        }
    }

    fn exited(name: &str, code: i32) -> Record {
        Record {
            name: name.into(),
            state: Phase::Terminated(Terminated {
                exit_code: code,
                signal: None,
                reason: Terminated::reason_for(code, false).into(),
                message: String::new(),
                started_at: None,
                finished_at: SystemTime::UNIX_EPOCH,
                container_id: "rk3s://x".into(),
            }),
            ..Record::default()
        }
    }

    #[test]
    fn phases_follow_upstream_get_phase() {
        assert_eq!(phase("Always", &[], &[running("a")], true), "Running");
        assert_eq!(phase("Always", &[], &[Record::default()], true), "Pending");
        assert_eq!(phase("Never", &[], &[exited("a", 0)], true), "Succeeded");
        assert_eq!(
            phase("Never", &[], &[exited("a", 0), exited("b", 2)], true),
            "Failed"
        );
        assert_eq!(
            phase("OnFailure", &[], &[exited("a", 0)], true),
            "Succeeded"
        );
        assert_eq!(phase("OnFailure", &[], &[exited("a", 1)], true), "Running");
        assert_eq!(phase("Always", &[], &[exited("a", 0)], true), "Running");
        assert_eq!(
            phase("Never", &[exited("i", 1)], &[Record::default()], false),
            "Failed"
        );
        assert_eq!(
            phase("Always", &[exited("i", 1)], &[Record::default()], false),
            "Pending"
        );
        assert!(restarts("OnFailure", 1) && !restarts("OnFailure", 0) && !restarts("Never", 1));
    }

    #[test]
    fn status_has_upstream_conditions_and_container_states() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"uid": "u"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}))
        .unwrap();
        let records = [
            running("a"),
            Record {
                name: "b".into(),
                image: "busybox".into(),
                ..Record::default()
            },
        ];
        let input = StatusInput {
            pod: &pod,
            init: &[],
            containers: &records,
            init_done: true,
            sandbox_ready: true,
            pod_ip: Some("10.42.0.5".into()),
            host_ip: "192.168.1.2".into(),
            start_time: Some(SystemTime::UNIX_EPOCH),
            failure: None,
        };
        let s = status(&input, &json!({}), SystemTime::UNIX_EPOCH);
        assert_eq!(s["phase"], "Pending");
        assert_eq!(s["podIP"], "10.42.0.5");
        assert_eq!(s["qosClass"], "BestEffort");
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "ContainersNotReady");
        assert_eq!(ready["message"], "containers with unready status: [b]");
        assert_eq!(
            s["containerStatuses"][1]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert_eq!(
            s["containerStatuses"][0]["state"]["running"]["startedAt"],
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(s["startTime"], "1970-01-01T00:00:00Z");
        // Evicted: Failed with the reason, message and DisruptionTarget condition.
        let failure = Failure {
            reason: "Evicted".into(),
            message: "The node was low on resource: memory. ".into(),
            disruption: true,
        };
        let input = StatusInput {
            failure: Some(&failure),
            ..input
        };
        let s = status(&input, &json!({}), SystemTime::UNIX_EPOCH);
        assert_eq!(
            (&s["phase"], &s["reason"], &s["message"]),
            (&json!("Failed"), &json!("Evicted"), &json!(failure.message))
        );
        let disruption = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "DisruptionTarget")
            .unwrap();
        assert_eq!(disruption["reason"], "TerminationByKubelet");
        assert_eq!(disruption["status"], "True");
    }
}
