//! The node, end to end: `rk3s server` with its kubelet runs real containers (busybox from a
//! registry on loopback) for kubectl. Root only (namespaces, cgroups, overlayfs, a bridge);
//! the tests run one at a time (nextest group `node`): one pod bridge per machine.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kubectl::Cluster;
use crate::support::registry::Registry;

pub(crate) const NODE: &str = "rk3s-test-node";

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A server with its kubelet, a registry holding busybox, and the image reference.
pub(crate) fn start(minor: u32) -> Option<(Cluster, Registry, String, tempfile::TempDir)> {
    start_with(minor, &[])
}

/// Like [`start`], with more server flags.
pub(crate) fn start_with(
    minor: u32,
    extra: &[&str],
) -> Option<(Cluster, Registry, String, tempfile::TempDir)> {
    if !is_root() {
        if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
            panic!("the node tests need root and RK3S_TESTS_STRICT=1");
        }
        println!("SKIP: the node tests need root");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path())?;
    let image = registry.push_busybox("busybox:1");
    let node_name = format!("--node-name={NODE}");
    let mut args = vec!["--enable-agent", node_name.as_str()];
    args.extend_from_slice(extra);
    let c = Cluster::start_with(minor, &args)?;
    wait_node_ready(&c);
    Some((c, registry, image, dir))
}

pub(crate) fn wait_node_ready(c: &Cluster) {
    let out = c.run(
        &[
            "wait",
            "--for=condition=Ready",
            &format!("node/{NODE}"),
            "--timeout=60s",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "the node never got Ready: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.server_log()
    );
}

/// Polls `pod` until `check` holds for its JSON, failing with the last state and the log.
pub(crate) fn wait_pod(
    c: &Cluster,
    pod: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c.run(&["get", "pod", pod, "-o", "json"], None);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if check(&v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "pod {pod} never got {what}: {}\n--- server log ---\n{}",
                serde_json::to_string_pretty(&v["status"]).unwrap_or_default(),
                c.server_log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn phase(v: &Value) -> &str {
    v["status"]["phase"].as_str().unwrap_or_default()
}

macro_rules! node_test {
    ($name:ident) => {
        mod $name {
            #[test]
            fn kubectl_1_33() {
                if let Some((mut c, r, image, _dir)) = super::start(33) {
                    super::$name(&mut c, &r, &image);
                }
            }
            #[test]
            fn kubectl_1_27() {
                if let Some((mut c, r, image, _dir)) = super::start(27) {
                    super::$name(&mut c, &r, &image);
                }
            }
        }
    };
}

/// Behaviour that does not depend on the kubectl version runs with the newest only.
macro_rules! node_test_once {
    ($name:ident) => {
        mod $name {
            #[test]
            fn kubectl_1_33() {
                if let Some((mut c, r, image, _dir)) = super::start(33) {
                    super::$name(&mut c, &r, &image);
                }
            }
        }
    };
}

/// Polls the events of `pod` until one has `reason` and a message containing `text`.
fn wait_event(c: &Cluster, pod: &str, reason: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
            "-o",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let found = v["items"].as_array().is_some_and(|items| {
            items.iter().any(|e| {
                e["reason"] == reason && e["message"].as_str().is_some_and(|m| m.contains(text))
            })
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {reason} event containing {text:?} for {pod}: {out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn container_status<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["status"]["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

node_test_once!(probes_and_termination_messages);
fn probes_and_termination_messages(c: &mut Cluster, _r: &Registry, image: &str) {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().display();
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: live
    image: {image}
    command: [sh, -c, "mkdir /www && echo ok > /www/index.html && httpd -p 8080 -h /www && sleep 3 && rm /www/index.html && sleep 600"]
    ports: [{{name: web, containerPort: 8080}}]
    livenessProbe:
      httpGet: {{path: /index.html, port: web}}
      periodSeconds: 1
      failureThreshold: 1
  - name: unready
    image: {image}
    command: [sleep, "600"]
    readinessProbe:
      tcpSocket: {{port: 9999}}
      periodSeconds: 1
  - name: slowstart
    image: {image}
    command: [sleep, "600"]
    startupProbe:
      tcpSocket: {{port: 9998}}
      periodSeconds: 1
      failureThreshold: 2
  - name: hooks
    image: {image}
    command: [sh, -c, "trap 'exit 0' TERM; while true; do sleep 1; done"]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "echo started > /tmp/started"]}}}}
      preStop: {{exec: {{command: [sh, -c, "echo stopping > /data/prestop"]}}}}
    readinessProbe:
      exec: {{command: [cat, /tmp/started]}}
      periodSeconds: 1
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, hostPath: {{path: "{data_dir}", type: DirectoryOrCreate}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: messages}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: badhook
    image: {image}
    command: [sleep, "600"]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, "echo no way; exit 7"]}}}}
  - name: msg
    image: {image}
    command: [sh, -c, "echo -n bye > /dev/termination-log; exit 3"]
  - name: fallback
    image: {image}
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, "echo oops; exit 1"]
"#
    );
    c.ok_in(&["apply", "-f", "-"], Some(&manifest));

    // The failing liveness probe restarts `live`; `slowstart` never passes its startup probe
    // and is restarted too; `unready` runs but is never ready, so neither is the pod.
    let v = wait_pod(c, "probed", "restarts from its probes", |v| {
        container_status(v, "live")["restartCount"].as_i64() >= Some(1)
            && container_status(v, "slowstart")["restartCount"].as_i64() >= Some(1)
            && container_status(v, "unready")["state"]["running"].is_object()
            && container_status(v, "hooks")["ready"] == true
    });
    let live = container_status(&v, "live");
    assert!(live["lastState"]["terminated"].is_object(), "{live}");
    let unready = container_status(&v, "unready");
    assert_eq!(unready["ready"], false, "{unready}");
    assert_eq!(unready["started"], true, "{unready}");
    assert_eq!(container_status(&v, "slowstart")["started"], false);
    let ready = v["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(ready["status"], "False", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("unready")),
        "{ready}"
    );
    wait_event(
        c,
        "probed",
        "Unhealthy",
        "Liveness probe failed: HTTP probe failed with statuscode: 404",
    );
    wait_event(
        c,
        "probed",
        "Killing",
        "Container live failed liveness probe, will be restarted",
    );
    wait_event(c, "probed", "Unhealthy", "Readiness probe failed: dial tcp");
    wait_event(c, "probed", "Unhealthy", "Startup probe failed: dial tcp");

    // Termination messages: the file the container wrote, or the log's tail on failure; a
    // failed postStart hook kills its container.
    let v = wait_pod(c, "messages", "Failed", |v| phase(v) == "Failed");
    wait_event(
        c,
        "messages",
        "FailedPostStartHook",
        "Exec lifecycle hook ([sh -c echo no way; exit 7]) for Container \"badhook\"",
    );
    assert!(container_status(&v, "badhook")["state"]["terminated"].is_object());
    let msg = &container_status(&v, "msg")["state"]["terminated"];
    assert_eq!(msg["exitCode"], 3, "{msg}");
    assert_eq!(msg["message"], "bye", "{msg}");
    let fallback = &container_status(&v, "fallback")["state"]["terminated"];
    assert_eq!(fallback["message"], "oops\n", "{fallback}");
    c.ok(&["delete", "pod", "probed", "messages", "--timeout=60s"]);
    // preStop ran before the container was stopped.
    let prestop = std::fs::read_to_string(data.path().join("prestop")).unwrap_or_default();
    assert_eq!(prestop, "stopping\n");
}

node_test!(containers_survive_kill_9_of_rk3s);
fn containers_survive_kill_9_of_rk3s(c: &mut Cluster, _r: &Registry, image: &str) {
    c.ok(&[
        "run",
        "survivor",
        &format!("--image={image}"),
        "--",
        "sh",
        "-c",
        "echo $$ > /tmp/pid; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done",
    ]);
    let before = wait_pod(c, "survivor", "Running", |v| phase(v) == "Running");
    let id = before["status"]["containerStatuses"][0]["containerID"].clone();
    std::thread::sleep(Duration::from_millis(600));
    c.kill9_and_restart();
    // The node comes back Ready, the container is the same instance, never restarted, and its
    // log went on while rk3s was down.
    wait_node_ready(c);
    std::thread::sleep(Duration::from_secs(1));
    let after = wait_pod(c, "survivor", "Running again", |v| phase(v) == "Running");
    let cs = &after["status"]["containerStatuses"][0];
    assert_eq!(cs["containerID"], id, "{cs}");
    assert_eq!(cs["restartCount"], 0, "{cs}");
    let logs = c.ok(&["logs", "survivor"]);
    let ticks: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    assert!(ticks.len() >= 8, "{logs}");
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "the log is continuous: {logs}"
    );
    c.ok(&[
        "delete",
        "pod",
        "survivor",
        "--grace-period=1",
        "--timeout=60s",
    ]);
}

node_test!(run_logs_and_delete_a_pod);
fn run_logs_and_delete_a_pod(c: &mut Cluster, _r: &Registry, image: &str) {
    c.ok(&[
        "run",
        "hello",
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo hello from rk3s; echo to stderr >&2; trap 'exit 0' TERM; while true; do sleep 1; done",
    ]);
    let v = wait_pod(c, "hello", "Ready", |v| {
        v["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    });
    assert_eq!(phase(&v), "Running");
    let status = &v["status"];
    assert!(
        status["podIP"]
            .as_str()
            .unwrap_or_default()
            .starts_with("10.42."),
        "{status}"
    );
    assert_eq!(status["qosClass"], "BestEffort");
    let cs = &status["containerStatuses"][0];
    assert_eq!(cs["name"], "hello");
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    assert!(
        cs["containerID"]
            .as_str()
            .unwrap_or_default()
            .starts_with("rk3s://"),
        "{cs}"
    );
    assert!(
        cs["imageID"]
            .as_str()
            .unwrap_or_default()
            .contains("@sha256:"),
        "{cs}"
    );

    // Logs: both streams, in order, with and without timestamps and tails.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = c.ok(&["logs", "hello"]);
        if logs == "hello from rk3s\nto stderr\n" {
            break;
        }
        assert!(Instant::now() < deadline, "logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.ok(&["logs", "hello", "--tail=1"]), "to stderr\n");
    let stamped = c.ok(&["logs", "hello", "--timestamps"]);
    let first = stamped.lines().next().unwrap_or_default();
    assert!(
        first.ends_with(" hello from rk3s") && first.contains('T') && first.contains('Z'),
        "{stamped}"
    );
    let err = c.fails(&["logs", "hello", "-c", "nope"], None);
    assert!(
        err.contains("container nope is not valid for pod hello"),
        "{err}"
    );

    // Graceful deletion: the TERM trap ends the container, the kubelet deletes the object.
    let started = Instant::now();
    c.ok(&["delete", "pod", "hello", "--timeout=60s"]);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the TERM trap should end the pod well before its 30 s grace period"
    );
    let out = c.run(&["get", "pod", "hello"], None);
    assert!(!out.status.success());
}

node_test!(exit_codes_restarts_and_bad_images);
fn exit_codes_restarts_and_bad_images(c: &mut Cluster, r: &Registry, image: &str) {
    // A container that fails once with restartPolicy Never fails the pod.
    c.ok(&[
        "run",
        "fails",
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "sh",
        "-c",
        "echo bye; exit 3",
    ]);
    let v = wait_pod(c, "fails", "Failed", |v| phase(v) == "Failed");
    let t = &v["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 3, "{t}");
    assert_eq!(t["reason"], "Error", "{t}");
    assert_eq!(c.ok(&["logs", "fails"]), "bye\n");

    // Success.
    c.ok(&[
        "run",
        "works",
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "true",
    ]);
    let v = wait_pod(c, "works", "Succeeded", |v| phase(v) == "Succeeded");
    assert_eq!(
        v["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );

    // restartPolicy Always: the container restarts, the old state becomes lastState.
    c.ok(&[
        "run",
        "crashes",
        &format!("--image={image}"),
        "--",
        "sh",
        "-c",
        "echo attempt; exit 1",
    ]);
    let v = wait_pod(c, "crashes", "restarted", |v| {
        v["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .is_some_and(|n| n >= 1)
    });
    let cs = &v["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1, "{cs}");
    let v = wait_pod(c, "crashes", "CrashLoopBackOff", |v| {
        v["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    assert_eq!(phase(&v), "Running");
    assert_eq!(c.ok(&["logs", "crashes", "--previous"]), "attempt\n");

    // A missing image: ErrImagePull with the registry's words, then back-off.
    let missing = format!("{}/nope:1", r.addr);
    c.ok(&[
        "run",
        "ghost",
        &format!("--image={missing}"),
        "--restart=Never",
    ]);
    let v = wait_pod(c, "ghost", "ErrImagePull", |v| {
        let reason = &v["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    let waiting = &v["status"]["containerStatuses"][0]["state"]["waiting"];
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not found"),
        "{waiting}"
    );
    assert_eq!(phase(&v), "Pending");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector=involvedObject.name=ghost",
    ]);
    assert!(events.contains("Failed"), "{events}");

    // A command that does not exist: StartError.
    c.ok(&[
        "run",
        "badcmd",
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "/no/such/binary",
    ]);
    let v = wait_pod(c, "badcmd", "Failed", |v| phase(v) == "Failed");
    let t = &v["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "StartError", "{t}");
    assert!(
        t["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/no/such/binary"),
        "{t}"
    );

    // The node keeps serving: every pod above is cleaned up on deletion.
    c.ok(&["delete", "pods", "--all", "--timeout=60s"]);
    let left = c.ok(&["get", "pods", "-o", "name"]);
    assert_eq!(left, "");
}

const VOLUMES: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {color: blue, size: large}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Pod
metadata:
  name: volumes
  labels: {app: demo}
spec:
  restartPolicy: Never
  initContainers:
  - name: first
    image: IMAGE
    command: [sh, -c, "echo one > /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: IMAGE
    command: [sh, -c, "echo two >> /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: IMAGE
    env:
    - {name: COLOR, valueFrom: {configMapKeyRef: {name: settings, key: color}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: GREETING, value: "hi $(POD_NAME)"}
    command: [sh, -c]
    args:
    - |
      cat /work/order
      echo color=$COLOR greeting=$GREETING
      cat /config/size; echo
      cat /secret/password; echo
      cat /info/labels; echo
      echo host=$(cat /host/marker)
      hostname
      id -u
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: config, mountPath: /config}
    - {name: secret, mountPath: /secret}
    - {name: info, mountPath: /info}
    - {name: host, mountPath: /host, readOnly: true}
    securityContext: {runAsUser: 65534}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: config, configMap: {name: settings}}
  - {name: secret, secret: {secretName: creds}}
  - name: info
    downwardAPI:
      items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]
  - {name: host, hostPath: {path: HOSTDIR, type: Directory}}
"#;

node_test!(init_containers_volumes_and_env);
fn init_containers_volumes_and_env(c: &mut Cluster, _r: &Registry, image: &str) {
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("marker"), "from-the-host").unwrap();
    let manifest = VOLUMES
        .replace("IMAGE", image)
        .replace("HOSTDIR", &host.path().display().to_string());
    c.ok_in(&["apply", "-f", "-"], Some(&manifest));
    let v = wait_pod(c, "volumes", "Succeeded", |v| {
        matches!(phase(v), "Succeeded" | "Failed")
    });
    let logs = c.ok(&["logs", "volumes"]);
    assert_eq!(phase(&v), "Succeeded", "{logs}\n{}", v["status"]);
    assert_eq!(
        logs,
        "one\ntwo\ncolor=blue greeting=hi volumes\nlarge\nhunter2\napp=\"demo\"\nhost=from-the-host\nvolumes\n65534\n"
    );
    let init = &v["status"]["initContainerStatuses"];
    assert_eq!(
        init[0]["state"]["terminated"]["reason"], "Completed",
        "{init}"
    );
    assert_eq!(
        init[1]["state"]["terminated"]["reason"], "Completed",
        "{init}"
    );
    let initialized = v["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Initialized").cloned())
        .unwrap_or_default();
    assert_eq!(initialized["status"], "True");

    // A volume whose ConfigMap is missing keeps the pod waiting with FailedMount.
    let broken = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "broken"},
        "spec": {"containers": [{"name": "c", "image": "IMAGE", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                 "volumes": [{"name": "v", "configMap": {"name": "absent"}}]}}"#
        .replace("IMAGE", image);
    c.ok_in(&["apply", "-f", "-"], Some(&broken));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = c.ok(&[
            "get",
            "events",
            "--field-selector=involvedObject.name=broken",
        ]);
        if events.contains("FailedMount") {
            assert!(
                events.contains("configmap \"absent\" not found"),
                "{events}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no FailedMount event: {events}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let v: Value = serde_json::from_str(&c.ok(&["get", "pod", "broken", "-o", "json"])).unwrap();
    assert_eq!(phase(&v), "Pending");
    c.ok(&["delete", "pod", "broken", "--timeout=60s"]);
}

node_test!(a_deployment_runs_on_the_node);
fn a_deployment_runs_on_the_node(c: &mut Cluster, _r: &Registry, image: &str) {
    c.ok(&[
        "create",
        "deployment",
        "web",
        &format!("--image={image}"),
        "--replicas=20",
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
    ]);
    let out = c.run(
        &["rollout", "status", "deployment/web", "--timeout=120s"],
        None,
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.server_log()
    );
    let pods: Value =
        serde_json::from_str(&c.ok(&["get", "pods", "-l", "app=web", "-o", "json"])).unwrap();
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 20);
    let mut ips: Vec<String> = items
        .iter()
        .map(|p| {
            p["status"]["podIP"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "distinct pod IPs: {ips:?}");
    // The pods answer on their IPs from the host (the bridge routes to them).
    let ip = &ips[0];
    let mut ok = false;
    for _ in 0..50 {
        if std::net::TcpStream::connect_timeout(
            &format!("{ip}:8080").parse().unwrap(),
            Duration::from_millis(200),
        )
        .is_ok()
        {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "no answer from {ip}:8080");
    c.ok(&["delete", "deployment", "web"]);
}

node_test_once!(static_pods_run_from_manifest_files);
fn static_pods_run_from_manifest_files(c: &mut Cluster, _r: &Registry, image: &str) {
    let dir = c.data_dir().join("agent/pod-manifests");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("web.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {image}\n    command: [sleep, \"3600\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("broken.yaml"), "kind: [").unwrap();
    // The files are read every 20 s, as upstream's fileCheckFrequency.
    let name = format!("web-{NODE}");
    let v = wait_pod(c, &name, "Running", |v| phase(v) == "Running");
    assert_eq!(
        v["metadata"]["annotations"]["kubernetes.io/config.source"], "file",
        "{v}"
    );
    assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "Node", "{v}");
    assert_eq!(v["spec"]["nodeName"], NODE);
    let log = c.server_log();
    assert!(
        log.lines()
            .any(|l| l.contains("static pod manifest") && l.contains("broken.yaml")),
        "{log}"
    );
    // A removed manifest takes its pod with it.
    std::fs::remove_file(dir.join("web.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = c.run(&["get", "pod", &name, "-o", "name"], None);
        if !out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the static pod was never deleted"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

node_test_once!(container_logs_rotate_by_size);
/// A container writing ~27 MB of CRI log: the file rotates at 10 MiB (upstream's
/// containerLogMaxSize) keeping at most 5 files, `logs -f` follows across the rotations
/// without losing a line, and `logs` reads the current file.
fn container_logs_rotate_by_size(c: &mut Cluster, _r: &Registry, image: &str) {
    use std::io::{BufRead, BufReader};
    const LINES: usize = 250_000;
    let script = format!(
        "echo ready; until [ -e /tmp/go ]; do sleep 0.1; done; \
         yes 0123456789012345678901234567890123456789012345678901234567890123456789 | head -n {LINES}; \
         echo last line"
    );
    c.ok(&[
        "run",
        "chatty",
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    wait_pod(c, "chatty", "Running", |v| phase(v) == "Running");
    let mut follow = c
        .command(&["logs", "-f", "chatty"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // The follower is attached: let the container write.
    c.ok(&["exec", "chatty", "--", "touch", "/tmp/go"]);
    let mut count = 0;
    let mut last = String::new();
    for line in lines {
        last = line.unwrap();
        count += 1;
    }
    follow.wait().unwrap();
    assert_eq!(count, LINES + 1, "followed lines; last {last:?}");
    assert_eq!(last, "last line");
    let v = wait_pod(c, "chatty", "Succeeded", |v| phase(v) == "Succeeded");
    let uid = v["metadata"]["uid"].as_str().unwrap();
    let dir = std::path::PathBuf::from(format!("/var/log/pods/default_chatty_{uid}/chatty"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(files.len() >= 3 && files.len() <= 5, "{files:?}");
    assert_eq!(files[0], "0.log", "{files:?}");
    for f in &files[1..] {
        assert!(f.starts_with("0.log.20"), "{files:?}");
        let size = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(size <= 10 * 1024 * 1024, "{f}: {size} bytes");
    }
    assert_eq!(c.ok(&["logs", "chatty", "--tail=1"]), "last line\n");
    c.ok(&["delete", "pod", "chatty", "--wait=false"]);
}

node_test_once!(a_memory_hog_is_oom_killed);
/// A container going over its memory limit is killed by the kernel and reported as upstream
/// does: terminated with reason OOMKilled and exit code 137.
fn a_memory_hog_is_oom_killed(c: &mut Cluster, _r: &Registry, image: &str) {
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: hog}}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: hog\n    image: {image}\n    command: [tail, /dev/zero]\n    resources:\n      limits: {{memory: 32Mi}}\n"
    );
    c.ok_in(&["apply", "-f", "-"], Some(&manifest));
    let v = wait_pod(c, "hog", "Failed", |v| phase(v) == "Failed");
    let terminated = &container_status(&v, "hog")["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{v}");
    assert_eq!(terminated["exitCode"], 137, "{v}");
    c.ok(&["delete", "pod", "hog", "--wait=false"]);
}

node_test_once!(host_port_publishes_on_the_node_address);
/// hostPort: the container's port answers on the node's address (from the host here), through
/// a DNAT rule in `ip rk3s-hostports` that goes away with the pod.
fn host_port_publishes_on_the_node_address(c: &mut Cluster, _r: &Registry, image: &str) {
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: published
spec:
  containers:
  - name: httpd
    image: {image}
    command: [sh, -c, "mkdir -p /www && echo from-hostport > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports:
    - containerPort: 8080
      hostPort: 18080
"#
    );
    c.ok_in(&["apply", "-f", "-"], Some(&manifest));
    let pod = wait_pod(c, "published", "Running", |v| phase(v) == "Running");
    let pod_ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    let node = c.json(&["get", "node", NODE, "-o", "json"]);
    let node_ip = node["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .unwrap()
        .to_string();
    let nft = || {
        let out = std::process::Command::new("nft")
            .args(["list", "table", "ip", "rk3s-hostports"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        nft().contains(&format!("tcp dport 18080 dnat to {pod_ip}:8080")),
        "{}",
        nft()
    );
    let url = format!("http://{node_ip}:18080/");
    c.eventually("the hostPort answering on the node address", || {
        let out = std::process::Command::new("busybox")
            .args(["wget", "-q", "-O-", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "from-hostport"
    });
    c.ok(&[
        "delete",
        "pod",
        "published",
        "--grace-period=1",
        "--wait=true",
    ]);
    c.eventually("the hostPort rule removed", || !nft().contains("18080"));
}
