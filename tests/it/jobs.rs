//! The Job, TTL-after-finished and CronJob controllers against `rk3s server` with simulated
//! nodes (`support::simnodes`): the scheduler binds the Jobs' pods, the kubelet stand-in runs
//! them and ends them as their `sim.rk3s.io/exit` label says, and kubectl 1.33 and 1.27 (or
//! kube-rs) watch the Jobs finish. The CronJob controller's firing is driven by an injected
//! clock against a server whose own controller-manager is off, so no test waits for a real
//! minute.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rk3s::controllers::cronjob;
use rk3s::controllers::informer::Informer;
use serde_json::{Value, json};

use crate::kubectl::kubectl_bin;
use crate::support::simnodes::{self, Kubelet, NodeSpec};
use crate::support::{Process, have_etcdctl};

/// A server with three simulated nodes and their kubelet stand-in, a kube-rs client and one
/// kubectl.
struct Sim {
    dir: tempfile::TempDir,
    server: Process,
    kubectl: PathBuf,
    client: kube::Client,
    _kubelet: Option<Kubelet>,
    rt: tokio::runtime::Runtime,
}

impl Sim {
    fn start(minor: u32, extra: &[&str]) -> Option<Sim> {
        let kubectl = kubectl_bin(minor)?;
        if !have_etcdctl() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let server = Process::server(dir.path(), extra);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = rt.block_on(client(&dir.path().join("kubeconfig.yaml")));
        let mut sim = Sim {
            dir,
            server,
            kubectl,
            client,
            _kubelet: None,
            rt,
        };
        sim.eventually("the default namespace", || {
            sim.run(&["get", "ns", "default", "-o", "name"], None)
                .status
                .success()
        });
        let nodes = sim.rt.block_on(register_nodes(&sim.client, 3));
        let kubelet = {
            let _guard = sim.rt.enter();
            Kubelet::start(sim.client.clone(), &nodes)
        };
        sim._kubelet = Some(kubelet);
        Some(sim)
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&self.kubectl);
        cmd.env("KUBECONFIG", self.dir.path().join("kubeconfig.yaml"))
            .env("HOME", self.dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match stdin {
            None => cmd.stdin(Stdio::null()).output().expect("run kubectl"),
            Some(input) => {
                use std::io::Write;
                let mut child = cmd.stdin(Stdio::piped()).spawn().expect("run kubectl");
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(input.as_bytes())
                    .unwrap();
                child.wait_with_output().expect("wait for kubectl")
            }
        }
    }

    /// Runs kubectl, failing the test (with the server's log) on a non-zero exit.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.server.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.ok(&all, None);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Polls `check` until it holds, failing the test with the server's log after 60 s (a
    /// deadline against hanging, not a timing assertion).
    fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; server log:\n{}",
                self.server.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `kubectl wait --for=condition=<c> job/<name>`.
    fn wait_for(&self, name: &str, condition: &str) {
        let job = format!("job/{name}");
        let cond = format!("--for=condition={condition}");
        self.ok(&["wait", &cond, &job, "--timeout=90s"], None);
    }

    /// The pods of a Job (by the label the API server's defaulting puts on them).
    fn pods_of(&self, job: &str) -> Vec<Value> {
        let selector = format!("batch.kubernetes.io/job-name={job}");
        self.json(&["get", "pods", "-l", &selector])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The reasons of the events about `kind/name`, oldest first.
    fn event_reasons(&self, kind: &str, name: &str) -> Vec<String> {
        let events = self.json(&["get", "events"]);
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["involvedObject"]["kind"] == kind && e["involvedObject"]["name"] == name)
            .filter_map(|e| e["reason"].as_str().map(str::to_string))
            .collect()
    }
}

/// Registers `n` simulated nodes. A node whose status write lost a race has it written again:
/// the API server answers a patch that races another writer of the object (here the node
/// lifecycle controller's pod CIDR patch) with 409 instead of retrying it, although the patch
/// carries no resourceVersion (`apiserver::handlers::write` takes the precondition from the
/// patched object, which always has the current resourceVersion).
async fn register_nodes(client: &kube::Client, n: usize) -> Vec<simnodes::SimNode> {
    let mut nodes = Vec::new();
    for index in 1..=n {
        let spec = NodeSpec {
            first: index,
            ..NodeSpec::default()
        };
        if let Ok(mut created) = simnodes::create_nodes(client, 1, &spec).await {
            nodes.append(&mut created);
            continue;
        }
        let name = simnodes::node_name("sim", index);
        let resources = json!({"cpu": "4", "memory": "16Gi", "pods": "110"});
        let now = Timestamp::now().to_string();
        let status = json!({"status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": simnodes::node_ip(index)}],
        }});
        let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        let mut tries = 0;
        while let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            tries += 1;
            assert!(tries < 50, "write the status of node {name}: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        nodes.push(simnodes::SimNode {
            name,
            ip: simnodes::node_ip(index),
        });
    }
    nodes
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kubeconfig to config");
    kube::Client::try_from(config).expect("client")
}

/// A Job manifest whose pods exit with `exit`.
fn job_yaml(name: &str, extra_spec: &str, exit: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}
  template:
    metadata:
      labels:
        sim.rk3s.io/exit: "{exit}"
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox
"#
    )
}

/// Every pod's tracking finalizer is gone and nothing is left uncounted.
fn assert_fully_counted(sim: &Sim, name: &str, job: &Value) {
    for p in sim.pods_of(name) {
        let finalizers = p["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !finalizers
                .iter()
                .any(|f| f == "batch.kubernetes.io/job-tracking"),
            "{p}"
        );
    }
    assert_eq!(job["status"]["uncountedTerminatedPods"], json!({}), "{job}");
}

#[test]
fn jobs_run_to_completion_with_kubectl_1_33() {
    let Some(sim) = Sim::start(33, &[]) else {
        return;
    };

    // NonIndexed: 3 completions, 2 at a time.
    sim.ok(
        &["apply", "-f", "-"],
        Some(&job_yaml("pi", "  completions: 3\n  parallelism: 2", "0")),
    );
    sim.wait_for("pi", "complete");
    let job = sim.json(&["get", "job", "pi"]);
    assert_eq!(job["status"]["succeeded"], 3, "{job}");
    assert!(job["status"]["completionTime"].is_string(), "{job}");
    let types: Vec<&str> = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(types, ["SuccessCriteriaMet", "Complete"], "{job}");
    assert_fully_counted(&sim, "pi", &job);
    let pods = sim.pods_of("pi");
    assert_eq!(pods.len(), 3);
    for p in &pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("pi-"), "{name}");
        assert_eq!(p["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "Job");
    }
    // Events are written off the sync path: they may trail the status a little.
    sim.eventually("three SuccessfulCreate events and Completed", || {
        let reasons = sim.event_reasons("Job", "pi");
        reasons.iter().filter(|r| *r == "SuccessfulCreate").count() == 3
            && reasons.iter().any(|r| r == "Completed")
    });

    // Indexed: every index gets its pod, with the index in an annotation and the hostname.
    sim.ok(
        &["apply", "-f", "-"],
        Some(&job_yaml(
            "idx",
            "  completions: 3\n  parallelism: 3\n  completionMode: Indexed",
            "0",
        )),
    );
    sim.wait_for("idx", "complete");
    let job = sim.json(&["get", "job", "idx"]);
    assert_eq!(job["status"]["completedIndexes"], "0-2", "{job}");
    assert_eq!(job["status"]["succeeded"], 3, "{job}");
    assert_fully_counted(&sim, "idx", &job);
    let mut indexes: Vec<String> = sim
        .pods_of("idx")
        .iter()
        .map(|p| {
            let index = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap()
                .to_string();
            let name = p["metadata"]["name"].as_str().unwrap();
            assert!(name.starts_with(&format!("idx-{index}-")), "{name}");
            assert_eq!(p["spec"]["hostname"], format!("idx-{index}"));
            index
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);

    // ttlSecondsAfterFinished: the finished Job and its pods are deleted.
    sim.ok(
        &["apply", "-f", "-"],
        Some(&job_yaml("short", "  ttlSecondsAfterFinished: 0", "0")),
    );
    sim.eventually("the finished job to be deleted after its TTL", || {
        let out = sim.run(&["get", "job", "short"], None);
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
    });
    sim.eventually("the pods of the deleted job to be gone", || {
        sim.pods_of("short").is_empty()
    });

    // A running pod deleted by hand is held by the tracking finalizer until it is counted as
    // failed exactly once, then replaced.
    sim.ok(
        &["apply", "-f", "-"],
        Some(
            &job_yaml("forever", "  completions: 2\n  parallelism: 2", "never")
                .replace("sim.rk3s.io/exit: \"never\"", "app: forever"),
        ),
    );
    sim.eventually("two running pods", || {
        sim.pods_of("forever")
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            == 2
    });
    let victim = sim.pods_of("forever")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    sim.ok(&["delete", "pod", &victim, "--wait=false"], None);
    sim.eventually("the deleted pod to be counted and gone", || {
        let job = sim.json(&["get", "job", "forever"]);
        job["status"]["failed"] == 1
            && !sim
                .pods_of("forever")
                .iter()
                .any(|p| p["metadata"]["name"] == victim.as_str())
    });
    sim.eventually("a replacement pod after the back-off", || {
        sim.pods_of("forever")
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .count()
            == 2
    });
    let job = sim.json(&["get", "job", "forever"]);
    assert_eq!(job["status"]["failed"], 1, "{job}");
    assert_eq!(job["status"]["active"], 2, "{job}");

    // Deleting the Job (background cascade): its pods lose the finalizer and go too.
    sim.ok(&["delete", "job", "forever"], None);
    sim.eventually("the pods of the deleted job to be gone", || {
        sim.pods_of("forever").is_empty()
    });

    // `kubectl create job --from=cronjob/...` makes a Job from the CronJob's template.
    sim.ok(
        &[
            "create",
            "cronjob",
            "nightly",
            "--image=busybox",
            "--schedule=0 3 1 1 *",
        ],
        None,
    );
    sim.ok(
        &[
            "patch",
            "cronjob",
            "nightly",
            "--type=merge",
            "-p",
            r#"{"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"labels":{"sim.rk3s.io/exit":"0"}}}}}}}"#,
        ],
        None,
    );
    sim.ok(&["create", "job", "manual", "--from=cronjob/nightly"], None);
    sim.wait_for("manual", "complete");
    let job = sim.json(&["get", "job", "manual"]);
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
}

#[test]
fn failing_and_suspended_jobs_with_kubectl_1_27() {
    let Some(sim) = Sim::start(27, &[]) else {
        return;
    };

    // Every pod fails: one retry after the back-off, then BackoffLimitExceeded.
    sim.ok(
        &["apply", "-f", "-"],
        Some(&job_yaml("fails", "  backoffLimit: 1", "1")),
    );
    sim.wait_for("fails", "failed");
    let job = sim.json(&["get", "job", "fails"]);
    assert_eq!(job["status"]["failed"], 2, "{job}");
    assert_eq!(job["status"].get("succeeded"), None, "{job}");
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert_fully_counted(&sim, "fails", &job);
    assert_eq!(sim.pods_of("fails").len(), 2);
    sim.eventually("the BackoffLimitExceeded event", || {
        let reasons = sim.event_reasons("Job", "fails");
        reasons.iter().any(|r| r == "BackoffLimitExceeded")
    });

    // Suspended: no pods until resumed.
    sim.ok(
        &["apply", "-f", "-"],
        Some(&job_yaml("later", "  suspend: true\n  completions: 2", "0")),
    );
    sim.wait_for("later", "suspended");
    assert!(sim.pods_of("later").is_empty());
    let job = sim.json(&["get", "job", "later"]);
    assert!(job["status"].get("startTime").is_none(), "{job}");
    sim.ok(
        &[
            "patch",
            "job",
            "later",
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":false}}"#,
        ],
        None,
    );
    sim.wait_for("later", "complete");
    let job = sim.json(&["get", "job", "later"]);
    assert_eq!(job["status"]["succeeded"], 2, "{job}");
    let suspended = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Suspended")
        .cloned()
        .unwrap();
    assert_eq!(
        (&suspended["status"], &suspended["reason"]),
        (&json!("False"), &json!("JobResumed"))
    );
    sim.eventually("the Suspended and Resumed events", || {
        let reasons = sim.event_reasons("Job", "later");
        reasons.iter().any(|r| r == "Suspended") && reasons.iter().any(|r| r == "Resumed")
    });
}

/// The CronJob controller on an injected clock: the server's own controller-manager is off,
/// and this test runs the controller and calls its sync as the clock moves.
#[test]
fn cronjobs_fire_on_an_injected_clock() {
    let Some(sim) = Sim::start(33, &["--disable-controller-manager"]) else {
        return;
    };
    let client = sim.client.clone();
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}],
            }}}},
        },
    }))
    .unwrap();
    let created = sim
        .rt
        .block_on(cronjobs.create(&PostParams::default(), &cj))
        .unwrap();
    let born = created.metadata.creation_timestamp.unwrap().0.as_second();
    // The first */5 minute after creation, plus 30 s.
    let first = (born / 300 + 1) * 300;
    let clock = Arc::new(AtomicI64::new(first - 60));
    let now = clock.clone();
    let config = cronjob::Config {
        now: Arc::new(move || Timestamp::from_second(now.load(Ordering::SeqCst)).unwrap()),
        ..cronjob::Config::default()
    };
    let _guard = sim.rt.enter();
    let cj_informer = Informer::<CronJob>::new(Api::all(client.clone()));
    let job_informer = Informer::<Job>::new(Api::all(client.clone()));
    let controller = cronjob::Controller::new(
        client.clone(),
        config,
        cj_informer.clone(),
        job_informer.clone(),
    );
    sim.rt.spawn(cj_informer.clone().run());
    sim.rt.spawn(job_informer.clone().run());
    sim.rt.block_on(async {
        cj_informer.wait_synced().await;
        job_informer.wait_synced().await;
    });
    // A sync may meet a cache that has not seen its own last status write yet (409): retry.
    let sync = || {
        sim.eventually("a cronjob sync", || {
            sim.rt.block_on(controller.sync("default/tick")).is_ok()
        })
    };
    let cached_active = |n: usize| {
        let informer = cj_informer.clone();
        move || {
            informer.get("default/tick").is_some_and(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.active.as_ref())
                    .map_or(0, Vec::len)
                    == n
            })
        }
    };

    // A minute before the time: nothing.
    sync();
    let names = |sim: &Sim| -> Vec<String> {
        let mut v: Vec<String> = sim
            .rt
            .block_on(jobs.list(&Default::default()))
            .unwrap()
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect();
        v.sort();
        v
    };
    assert!(names(&sim).is_empty());

    // 30 s past the time: one Job, named after the scheduled minute.
    clock.store(first + 30, Ordering::SeqCst);
    sync();
    let first_job = format!("tick-{}", first / 60);
    assert_eq!(names(&sim), std::slice::from_ref(&first_job));
    let job = sim.rt.block_on(jobs.get(&first_job)).unwrap();
    let stamp = Timestamp::from_second(first)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    assert_eq!(
        job.metadata.annotations.unwrap()["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        stamp
    );
    sim.eventually("the cronjob status in the cache", cached_active(1));
    let cj = sim.rt.block_on(cronjobs.get("tick")).unwrap();
    let status = cj.status.unwrap();
    assert_eq!(status.last_schedule_time.unwrap().0.as_second(), first);
    // The same time is never run twice.
    sync();
    assert_eq!(names(&sim).len(), 1);

    // Five minutes later the next one (concurrencyPolicy Allow: both are active).
    clock.store(first + 300 + 5, Ordering::SeqCst);
    sync();
    let second_job = format!("tick-{}", (first + 300) / 60);
    assert_eq!(names(&sim), [first_job.clone(), second_job.clone()]);
    sim.eventually("two active jobs in the cache", cached_active(2));

    // The first Job completes: it leaves the active list and sets lastSuccessfulTime.
    let done = json!({"status": {
        "conditions": [{"type": "Complete", "status": "True"}],
        "completionTime": Timestamp::from_second(first + 60).unwrap().to_string(),
        "startTime": Timestamp::from_second(first + 1).unwrap().to_string(),
        "succeeded": 1,
    }});
    sim.rt
        .block_on(jobs.patch_status(&first_job, &PatchParams::default(), &Patch::Merge(&done)))
        .unwrap();
    let informer = job_informer.clone();
    let fj = first_job.clone();
    sim.eventually("the completed job in the cache", move || {
        informer
            .get(&format!("default/{fj}"))
            .and_then(|j| j.status.clone())
            .is_some_and(|s| s.succeeded == Some(1))
    });
    sync();
    sim.eventually("one active job in the cache", cached_active(1));
    let cj = sim.rt.block_on(cronjobs.get("tick")).unwrap();
    let status = cj.status.unwrap();
    assert_eq!(
        status.active.unwrap()[0].name.as_deref(),
        Some(second_job.as_str())
    );
    assert_eq!(
        status.last_successful_time.unwrap().0.as_second(),
        first + 60
    );

    // Forbid: with a Job still active, the next time starts nothing.
    sim.rt
        .block_on(cronjobs.patch(
            "tick",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"concurrencyPolicy": "Forbid"}})),
        ))
        .unwrap();
    let informer = cj_informer.clone();
    sim.eventually("the Forbid policy in the cache", move || {
        informer.get("default/tick").is_some_and(|c| {
            c.spec
                .as_ref()
                .and_then(|s| s.concurrency_policy.as_deref())
                == Some("Forbid")
        })
    });
    clock.store(first + 600 + 5, Ordering::SeqCst);
    sync();
    assert_eq!(names(&sim).len(), 2);
    sim.eventually("the SuccessfulCreate and SawCompletedJob events", || {
        let reasons = sim.event_reasons("CronJob", "tick");
        reasons.iter().any(|r| r == "SuccessfulCreate")
            && reasons.iter().any(|r| r == "SawCompletedJob")
            && reasons.iter().any(|r| r == "JobAlreadyActive")
    });
}

/// Ends `pod` as a kubelet would when its container exits with `code`.
fn end_pod(sim: &Sim, pod: &str, code: i32) {
    let now = Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "containerStatuses": [{
            "name": "main", "image": "busybox", "imageID": "sim://busybox",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": now, "finishedAt": now}},
        }],
    }});
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(sim.client.clone(), "default");
    sim.rt
        .block_on(api.patch_status(pod, &PatchParams::default(), &Patch::Merge(&status)))
        .unwrap_or_else(|e| panic!("end pod {pod}: {e}"));
}

/// The name of the live (not deleted, not finished) pod of `index` of Job `job`, once it runs.
fn running_pod_of_index(sim: &Sim, job: &str, index: &str) -> String {
    let mut name = String::new();
    sim.eventually(&format!("a running pod for index {index} of {job}"), || {
        let found = sim.pods_of(job).into_iter().find(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == index
                && p["metadata"]["deletionTimestamp"].is_null()
                && p["status"]["phase"] == "Running"
        });
        if let Some(p) = found {
            name = p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        !name.is_empty()
    });
    name
}

fn condition_of(job: &Value, type_: &str) -> Value {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

/// A Job whose pods run until the test ends them.
fn open_ended_job(name: &str, extra_spec: &str) -> String {
    job_yaml(name, extra_spec, "never").replace("sim.rk3s.io/exit: \"never\"", "app: open")
}

#[test]
fn per_index_back_off_and_success_policy_with_kubectl_1_33() {
    let Some(sim) = Sim::start(33, &[]) else {
        return;
    };

    // The API server refuses what upstream refuses, naming the field.
    let out = sim.run(
        &["apply", "-f", "-"],
        Some(&job_yaml("bad", "  backoffLimitPerIndex: 1", "0")),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode"
        ),
        "{err}"
    );

    // Every pod fails and backoffLimitPerIndex 0 gives each index one try: the second failed
    // index is one more than maxFailedIndexes allows.
    sim.ok(
        &["apply", "-f", "-"],
        Some(&job_yaml(
            "maxfail",
            "  completions: 4\n  parallelism: 4\n  completionMode: Indexed\n  backoffLimitPerIndex: 0\n  maxFailedIndexes: 1",
            "1",
        )),
    );
    sim.wait_for("maxfail", "failed");
    let job = sim.json(&["get", "job", "maxfail"]);
    let failed = condition_of(&job, "Failed");
    assert_eq!(failed["reason"], "MaxFailedIndexesExceeded", "{job}");
    assert_eq!(
        failed["message"],
        "Job has exceeded the specified maximal number of failed indexes"
    );
    assert_eq!(
        condition_of(&job, "FailureTarget")["status"],
        "True",
        "{job}"
    );
    let failed_indexes = job["status"]["failedIndexes"].as_str().unwrap_or_default();
    assert!(
        failed_indexes.split(',').count() >= 2 || failed_indexes.contains('-'),
        "{job}"
    );
    assert_fully_counted(&sim, "maxfail", &job);
    for p in sim.pods_of("maxfail") {
        assert_eq!(
            p["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"], "0",
            "{p}"
        );
    }

    // backoffLimitPerIndex 1 with a FailIndex rule for exit code 42.
    let spec = "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  backoffLimitPerIndex: 1\n  podFailurePolicy:\n    rules:\n    - action: FailIndex\n      onExitCodes:\n        operator: In\n        values: [42]";
    sim.ok(
        &["apply", "-f", "-"],
        Some(&open_ended_job("perindex", spec)),
    );
    let zero = running_pod_of_index(&sim, "perindex", "0");
    let one = running_pod_of_index(&sim, "perindex", "1");
    let two = running_pod_of_index(&sim, "perindex", "2");
    // Exit code 42: the index fails at once and gets no new pod.
    end_pod(&sim, &zero, 42);
    sim.eventually("index 0 in failedIndexes", || {
        sim.json(&["get", "job", "perindex"])["status"]["failedIndexes"] == "0"
    });
    // Another failure: the index is retried after its back-off, by a pod carrying the count.
    end_pod(&sim, &one, 1);
    let retry = running_pod_of_index(&sim, "perindex", "1");
    assert_ne!(retry, one);
    let retried = sim.json(&["get", "pod", &retry]);
    assert_eq!(
        retried["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"], "1",
        "{retried}"
    );
    assert!(
        !sim.pods_of("perindex").iter().any(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "0"
                && p["metadata"]["name"] != zero.as_str()
        }),
        "index 0 was retried"
    );
    // The other indexes succeed: every index is finished and one failed.
    end_pod(&sim, &retry, 0);
    end_pod(&sim, &two, 0);
    sim.wait_for("perindex", "failed");
    let job = sim.json(&["get", "job", "perindex"]);
    assert_eq!(
        condition_of(&job, "Failed")["reason"],
        "FailedIndexes",
        "{job}"
    );
    assert_eq!(job["status"]["failedIndexes"], "0", "{job}");
    assert_eq!(job["status"]["completedIndexes"], "1,2", "{job}");
    assert_eq!(job["status"]["failed"], 2, "{job}");
    assert_eq!(job["status"]["succeeded"], 2, "{job}");
    assert_fully_counted(&sim, "perindex", &job);
    sim.eventually("the FailedIndexes event", || {
        sim.event_reasons("Job", "perindex")
            .iter()
            .any(|r| r == "FailedIndexes")
    });

    // successPolicy: index 0 succeeding is enough; the other pods are stopped.
    let spec = "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  successPolicy:\n    rules:\n    - succeededIndexes: \"0\"";
    sim.ok(&["apply", "-f", "-"], Some(&open_ended_job("leader", spec)));
    let leader = running_pod_of_index(&sim, "leader", "0");
    running_pod_of_index(&sim, "leader", "1");
    running_pod_of_index(&sim, "leader", "2");
    end_pod(&sim, &leader, 0);
    sim.wait_for("leader", "complete");
    let job = sim.json(&["get", "job", "leader"]);
    for type_ in ["SuccessCriteriaMet", "Complete"] {
        let c = condition_of(&job, type_);
        assert_eq!(c["reason"], "SuccessPolicy", "{job}");
        assert_eq!(c["message"], "Matched rules at index 0", "{job}");
    }
    assert_eq!(job["status"]["completedIndexes"], "0", "{job}");
    assert_eq!(job["status"]["succeeded"], 1, "{job}");
    sim.eventually("the other pods of leader gone", || {
        sim.pods_of("leader").len() == 1
    });
}

/// The API server refuses a bad `podFailurePolicy` and a bad `jobs/status` write with
/// upstream's field paths and messages (no controllers: validation only).
#[test]
fn bad_pod_failure_policies_and_job_statuses_are_refused_with_kubectl_1_33() {
    let Some(c) = crate::kubectl::Cluster::start_api_only(33) else {
        return;
    };
    let policy = "  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        \
                  containerName: sidecar\n        operator: In\n        values: [5, 0, 3]\n    \
                  - action: Ignore\n      onPodConditions:\n      - type: DisruptionTarget\n      \
                  onExitCodes:\n        operator: NotIn\n        values: [1]";
    let bad = job_yaml("bad-policy", policy, "0");
    let err = c.fails(&["apply", "-f", "-"], Some(&bad));
    for want in [
        "spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: \"sidecar\": \
         must be one of the container or initContainer names in the pod template",
        "spec.podFailurePolicy.rules[0].onExitCodes.values[1]: Invalid value: 0: must not be 0 \
         for the In operator",
        "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: []int32{5, 0, 3}: \
         must be ordered",
        "spec.podFailurePolicy.rules[1]: Invalid value: specifying both OnExitCodes and \
         OnPodConditions is not supported",
    ] {
        assert!(err.contains(want), "{want}\nnot in:\n{err}");
    }
    let on_failure = job_yaml(
        "on-failure",
        "  podFailurePolicy:\n    rules:\n    - action: Ignore\n      onPodConditions:\n      \
         - type: DisruptionTarget",
        "0",
    )
    .replace("restartPolicy: Never", "restartPolicy: OnFailure");
    let err = c.fails(&["apply", "-f", "-"], Some(&on_failure));
    assert!(
        err.contains(
            "spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is \
             supported when podFailurePolicy is specified"
        ),
        "{err}"
    );

    // A good Indexed Job, then status writes through the subresource.
    let indexed = job_yaml(
        "indexed",
        "  completions: 4\n  completionMode: Indexed\n  backoffLimitPerIndex: 1",
        "0",
    );
    c.ok_in(&["apply", "-f", "-"], Some(&indexed));
    let patch = |status: &str| {
        let body = format!("{{\"status\": {status}}}");
        c.run(
            &[
                "patch",
                "job",
                "indexed",
                "--subresource=status",
                "--type=merge",
                "-p",
                &body,
            ],
            None,
        )
    };
    let out = patch(r#"{"completedIndexes": "0,2-3", "failedIndexes": "1", "active": 1}"#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = patch(r#"{"completedIndexes": "0,2-3,x", "failedIndexes": "2", "ready": -1}"#);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "status.ready: Invalid value: -1: must be greater than or equal to 0",
        "status.completedIndexes: Invalid value: \"0,2-3,x\": error parsing completedIndexes: \
         cannot convert string to integer for index: \"x\"",
        "status.failedIndexes: Invalid value: \"2\": failedIndexes and completedIndexes overlap \
         at index: 2",
    ] {
        assert!(err.contains(want), "{want}\nnot in:\n{err}");
    }
    let job = c.json(&["get", "job", "indexed"]);
    assert_eq!(job["status"]["completedIndexes"], "0,2-3", "{job}");
}
