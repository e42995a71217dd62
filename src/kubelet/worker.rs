//! One pod's worker: brings the pod's containers to what its spec asks for and reports the
//! pod status, until the pod is deleted.
//!
//! The loop follows upstream's pod worker: sandbox (network namespace), volumes, init
//! containers one at a time in order, then all containers, each restarted under the pod's
//! restartPolicy with the crash-loop back-off; graceful termination on deletion (SIGTERM,
//! the grace period, SIGKILL), then the final delete of the API object. Each pass ends with a
//! status write when the computed status changed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event as KEvent, EventType, Recorder, Reporter};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::images::{ImageService, PullPolicy};
use super::pod::{self, Phase, Record, Terminated};
use super::probe::{self, Kind, Report, ReportEvent};
use super::runtime::{self, ContainerConfig, ExecSpec, Mount, MountKind, Runtime, State};
use super::{Kubelet, env, eviction, logs, volumes};
use crate::network::{PodAddress, hostport};

/// Labels the kubelet puts on its containers, read back when re-adopting them.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER: &str = "io.kubernetes.container.name";
pub const LABEL_RESTARTS: &str = "io.kubernetes.container.restartCount";
pub const LABEL_INIT: &str = "io.rk3s.container.init";

/// Upstream's default grace period when a pod is gone without one.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// How often a pod without other news is re-synced (volumes refreshed, status checked).
const RESYNC: Duration = Duration::from_secs(60);

/// What the log server needs about a pod's containers.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub uid: String,
    pub containers: BTreeMap<String, ContainerView>,
}

/// What the log and stream endpoints need to know of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    /// The current instance's restart count (its log file is `<restarts>.log`).
    pub restarts: i32,
    /// Whether it ever started.
    pub started: bool,
    pub waiting: Option<String>,
    /// Whether the current instance is running (a follower stops when it is not).
    pub running: bool,
}

/// Where the CRI logs of one pod go (`<ns>_<name>_<uid>`).
pub fn pod_log_dir(log_dir: &Path, ns: &str, name: &str, uid: &str) -> PathBuf {
    log_dir.join(format!("{ns}_{name}_{uid}"))
}

/// Where the CRI logs of one container instance go.
pub fn log_path(
    log_dir: &Path,
    ns: &str,
    name: &str,
    uid: &str,
    container: &str,
    restart: i32,
) -> PathBuf {
    pod_log_dir(log_dir, ns, name, uid)
        .join(container)
        .join(format!("{restart}.log"))
}

/// Removes a pod's kubelet directory, unmounting anything still mounted in it first.
pub fn remove_pod_dir(dir: &Path) {
    let rootfs = dir.join("rootfs");
    if let Ok(entries) = std::fs::read_dir(&rootfs) {
        for e in entries.flatten() {
            let _ = ImageService::unmount_rootfs(&e.path());
        }
    }
    let mem = dir.join("volumes").join("kubernetes.io~empty-dir");
    if let Ok(entries) = std::fs::read_dir(&mem) {
        for e in entries.flatten() {
            let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A container's exit as its watcher reports it: (is init, name, final state).
type Exit = (bool, String, Result<State, runtime::Error>);

pub struct Worker {
    k: Arc<Kubelet>,
    uid: String,
    pod: Pod,
    init: Vec<Record>,
    containers: Vec<Record>,
    init_done: bool,
    sandbox: Option<PodAddress>,
    sandbox_error: Option<String>,
    start_time: Option<SystemTime>,
    /// Container name → (current back-off, when it may start again).
    backoff: HashMap<String, (Duration, Instant)>,
    /// Containers whose next start is a restart (a new instance).
    pending_restart: std::collections::HashSet<String>,
    /// Exit watchers of running containers: (is init, name, final state).
    exits: FuturesUnordered<BoxFuture<'static, Exit>>,
    last_status: Value,
    volumes: BTreeMap<String, volumes::Prepared>,
    volume_error: Option<String>,
    recorder: Events,
    /// Probe tasks of the running containers, by container name.
    probes: HashMap<String, Vec<tokio::task::JoinHandle<()>>>,
    probe_tx: tokio::sync::mpsc::UnboundedSender<Report>,
    probe_rx: tokio::sync::mpsc::UnboundedReceiver<Report>,
    /// Set when this kubelet failed the pod (eviction, admission, active deadline).
    failure: Option<pod::Failure>,
    /// Whether the pod passed admission (checked once, before anything runs).
    admitted: bool,
}

impl Worker {
    pub async fn run(k: Arc<Kubelet>, uid: String, mut rx: watch::Receiver<Option<Pod>>) {
        let Some(pod) = rx.borrow_and_update().clone() else {
            return;
        };
        let recorder = Events::new(k.client.clone(), &k.config.node_name);
        let (probe_tx, probe_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut w = Worker {
            k,
            uid,
            init: records(&pod, true),
            containers: records(&pod, false),
            last_status: serde_json::to_value(&pod.status).unwrap_or(Value::Null),
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| SystemTime::from(t.0)),
            pod,
            init_done: false,
            sandbox: None,
            sandbox_error: None,
            backoff: HashMap::new(),
            pending_restart: Default::default(),
            exits: FuturesUnordered::new(),
            volumes: BTreeMap::new(),
            volume_error: None,
            recorder,
            probes: HashMap::new(),
            probe_tx,
            probe_rx,
            failure: None,
            admitted: false,
        };
        w.adopt();
        let mut wake;
        loop {
            let latest = rx.borrow_and_update().clone();
            match latest {
                None => {
                    w.terminate(None).await;
                    break;
                }
                Some(p) if p.metadata.deletion_timestamp.is_some() => {
                    w.pod = p;
                    let grace = w
                        .pod
                        .metadata
                        .deletion_grace_period_seconds
                        .map(|s| Duration::from_secs(s.max(0) as u64));
                    w.terminate(grace).await;
                    w.finish_deletion().await;
                    break;
                }
                Some(p) => {
                    w.pod = p;
                    if let Some(kill) = w.k.take_kill(&w.uid) {
                        w.fail(kill.failure, Some(kill.grace)).await;
                    }
                    let next = w.sync().await;
                    w.write_status().await;
                    wake = next;
                }
            }
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake));
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        w.terminate(None).await;
                        break;
                    }
                }
                Some((init, name, state)) = w.exits.next(), if !w.exits.is_empty() => {
                    w.exited(init, &name, state);
                }
                Some(report) = w.probe_rx.recv() => w.probed(report),
                _ = sleep => {}
            }
        }
        for (_, tasks) in w.probes.drain() {
            tasks.iter().for_each(|t| t.abort());
        }
        if let Ok(mut views) = w.k.views.lock() {
            views.remove(&w.key());
        }
    }

    fn key(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.clone().unwrap_or_default(),
            self.pod.metadata.name.clone().unwrap_or_default()
        )
    }

    fn spec_container(&self, init: bool, name: &str) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        let list = if init {
            spec.init_containers.clone().unwrap_or_default()
        } else {
            spec.containers.clone()
        };
        list.into_iter().find(|c| c.name == name)
    }

    fn record_mut(&mut self, init: bool, name: &str) -> Option<&mut Record> {
        let list = if init {
            &mut self.init
        } else {
            &mut self.containers
        };
        list.iter_mut().find(|r| r.name == name)
    }

    /// Containers of this pod that the runtime already has (after a restart of rk3s): their
    /// state and restart counts carry on; running ones get exit watchers.
    fn adopt(&mut self) {
        let Ok(list) = self.k.runtime.list() else {
            return;
        };
        let mut mine: Vec<(ContainerConfig, State)> = list
            .into_iter()
            .filter(|(c, _)| c.labels.get(LABEL_POD_UID) == Some(&self.uid))
            .collect();
        mine.sort_by_key(|(c, _)| restarts_of(c));
        for (config, state) in mine {
            let name = config
                .labels
                .get(LABEL_CONTAINER)
                .cloned()
                .unwrap_or_default();
            let init = config.labels.contains_key(LABEL_INIT);
            let restart = restarts_of(&config);
            let id = config.id.clone();
            let Some(r) = self.record_mut(init, &name) else {
                continue;
            };
            if r.id.is_some() && r.restart_count > restart {
                continue;
            }
            r.id = Some(id.clone());
            r.restart_count = restart;
            match &state {
                State::Running { started_at, .. } => {
                    r.state = Phase::Running {
                        started_at: *started_at,
                    };
                }
                State::Exited { .. } => r.state = Phase::Terminated(terminated(&id, &state)),
            }
            if matches!(state, State::Running { .. }) {
                self.start_probes(init, &name, &id);
                self.watch_exit(init, name, id);
            } else if let State::Exited { exit_code, .. } = state {
                self.read_termination_message(init, &name, &id, exit_code);
            }
        }
        // Init containers that all succeeded before the restart stay done, and so do those of
        // a pod whose regular containers already ran.
        self.init_done =
            self.init.iter().all(succeeded) || self.containers.iter().any(|r| r.id.is_some());
    }

    fn watch_exit(&mut self, init: bool, name: String, id: String) {
        let rt = self.k.runtime.clone();
        self.exits.push(
            async move {
                let state = rt.wait(&id).await;
                (init, name, state)
            }
            .boxed(),
        );
    }

    fn exited(&mut self, init: bool, name: &str, state: Result<State, runtime::Error>) {
        let Some(r) = self.record_mut(init, name) else {
            return;
        };
        let id = r.id.clone().unwrap_or_default();
        match state {
            Ok(s @ State::Exited { .. }) => {
                r.state = Phase::Terminated(terminated(&id, &s));
                r.ready = false;
                r.started = false;
                if let State::Exited { exit_code, .. } = s {
                    self.read_termination_message(init, name, &id, exit_code);
                }
                self.stop_probes(name);
            }
            Ok(State::Running { .. }) => {}
            Err(e) => tracing::warn!(container = name, error = %e, "waiting for a container"),
        }
    }

    /// The message of a terminated container: what it wrote to its terminationMessagePath
    /// (at most 4096 bytes), else with `FallbackToLogsOnError` and a failure the tail of its
    /// log (80 lines, 2048 bytes), as upstream.
    fn read_termination_message(&mut self, init: bool, name: &str, id: &str, exit_code: i32) {
        let Some(c) = self.spec_container(init, name) else {
            return;
        };
        let file = self
            .k
            .pod_dir(&self.uid)
            .join("containers")
            .join(name)
            .join(id);
        let mut message = std::fs::read(&file).unwrap_or_default();
        message.truncate(4096);
        if message.is_empty()
            && exit_code != 0
            && c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
        {
            let restart = self.record_mut(init, name).map(|r| r.restart_count);
            let meta = &self.pod.metadata;
            let path = log_path(
                &self.k.config.log_dir,
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
                &self.uid,
                name,
                restart.unwrap_or(0),
            );
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let tail = logs::select(
                &text,
                &logs::Options {
                    tail_lines: Some(80),
                    ..Default::default()
                },
            );
            message = tail[tail.len().saturating_sub(2048)..].to_vec();
        }
        if message.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&message).into_owned();
        if let Some(r) = self.record_mut(init, name)
            && let Phase::Terminated(t) = &mut r.state
        {
            t.message = text;
        }
    }

    /// Runs `args` in container `id` and collects its output, for exec probes and hooks.
    fn exec_fn(&self, id: &str) -> probe::ExecFn {
        let rt = self.k.runtime.clone();
        let id = id.to_string();
        Arc::new(move |args| {
            let (rt, id) = (rt.clone(), id.clone());
            async move { exec_capture(rt.as_ref(), &id, args).await }.boxed()
        })
    }

    fn probe_target(&self, c: &Container, id: &str) -> probe::Target {
        probe::Target::new(self.pod_ip(), c, self.exec_fn(id))
    }

    /// A container instance started running (or was adopted): its startup probe runs first;
    /// liveness and readiness once it has passed. Without probes it is started and ready.
    fn start_probes(&mut self, init: bool, name: &str, id: &str) {
        self.stop_probes(name);
        let Some(c) = self.spec_container(init, name) else {
            return;
        };
        if init {
            // Probes apply to regular containers (init containers must simply finish).
            if let Some(r) = self.record_mut(init, name) {
                r.started = true;
                r.ready = true;
            }
            return;
        }
        match c.startup_probe.clone() {
            Some(p) => {
                if let Some(r) = self.record_mut(init, name) {
                    r.started = false;
                    r.ready = false;
                }
                let task = probe::spawn(
                    Kind::Startup,
                    p,
                    name.to_string(),
                    id.to_string(),
                    self.probe_target(&c, id),
                    self.probe_tx.clone(),
                );
                self.probes.insert(name.to_string(), vec![task]);
            }
            None => self.started(&c, id),
        }
    }

    /// The startup probe passed (or there is none): liveness and readiness probes begin.
    fn started(&mut self, c: &Container, id: &str) {
        let name = c.name.clone();
        let readiness = c.readiness_probe.is_some();
        if let Some(r) = self.record_mut(false, &name) {
            r.started = true;
            r.ready = !readiness;
        }
        let mut tasks = Vec::new();
        for kind in [Kind::Liveness, Kind::Readiness] {
            if let Some(p) = kind.of(c) {
                tasks.push(probe::spawn(
                    kind,
                    p.clone(),
                    name.clone(),
                    id.to_string(),
                    self.probe_target(c, id),
                    self.probe_tx.clone(),
                ));
            }
        }
        self.probes.entry(name).or_default().extend(tasks);
    }

    fn stop_probes(&mut self, name: &str) {
        if let Some(tasks) = self.probes.remove(name) {
            tasks.iter().for_each(|t| t.abort());
        }
    }

    /// A probe's news: events for failed attempts; readiness marks the container; a failed
    /// liveness or startup probe kills it, and the restart policy takes it from there.
    fn probed(&mut self, report: Report) {
        let current = self
            .containers
            .iter()
            .find(|r| r.name == report.container)
            .and_then(|r| r.id.clone());
        if current.as_deref() != Some(report.id.as_str()) {
            return;
        }
        let Some(c) = self.spec_container(false, &report.container) else {
            return;
        };
        match report.event {
            ReportEvent::Failed(msg) => self.event(
                EventType::Warning,
                "Unhealthy",
                "Probe",
                format!("{} probe failed: {msg}", report.kind.title()),
            ),
            ReportEvent::Result(ok) => match (report.kind, ok) {
                (Kind::Startup, true) => {
                    self.stop_probes(&report.container);
                    self.started(&c, &report.id);
                }
                (Kind::Readiness, ok) => {
                    if let Some(r) = self.record_mut(false, &report.container) {
                        r.ready = ok;
                    }
                }
                (Kind::Liveness, true) => {}
                (kind @ (Kind::Liveness | Kind::Startup), false) => {
                    self.stop_probes(&report.container);
                    self.event(
                        EventType::Normal,
                        "Killing",
                        "Kill",
                        format!(
                            "Container {} failed {} probe, will be restarted",
                            report.container,
                            kind.title().to_lowercase()
                        ),
                    );
                    let grace = kind
                        .of(&c)
                        .and_then(|p| p.termination_grace_period_seconds)
                        .map(|s| Duration::from_secs(s.max(0) as u64))
                        .unwrap_or_else(|| self.grace());
                    let kill = self.kill(&c, report.id.clone(), grace);
                    tokio::spawn(kill);
                }
            },
        }
    }

    /// The pod's terminationGracePeriodSeconds.
    fn grace(&self) -> Duration {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(DEFAULT_GRACE)
    }

    /// Upstream's killContainer: the preStop hook within the grace period, then SIGTERM and
    /// SIGKILL after what is left of it (at least 2 s, as upstream). Resolves with the exit.
    fn kill(
        &self,
        c: &Container,
        id: String,
        grace: Duration,
    ) -> BoxFuture<'static, Result<State, runtime::Error>> {
        let rt = self.k.runtime.clone();
        let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone());
        let target = self.probe_target(c, &id);
        let what = self.hook_subject(&c.name);
        let recorder = self.hook_events();
        async move {
            let begun = Instant::now();
            if let Some(h) = pre_stop
                && let Err(e) = probe::run_handler(&h, &target, Some(grace)).await
            {
                recorder(
                    "FailedPreStopHook",
                    format!("PreStopHook failed: {}", hook_message(&h, &what, &e)),
                );
            }
            let left = grace
                .saturating_sub(begun.elapsed())
                .max(Duration::from_secs(2).min(grace));
            rt.stop(&id, left).await
        }
        .boxed()
    }

    /// `Container "c" in Pod "p_ns(uid)"`, how upstream's hook failures name the container.
    fn hook_subject(&self, container: &str) -> String {
        let meta = &self.pod.metadata;
        format!(
            "Container {container:?} in Pod \"{}_{}({})\"",
            meta.name.as_deref().unwrap_or_default(),
            meta.namespace.as_deref().unwrap_or_default(),
            self.uid
        )
    }

    /// Records Warning events from tasks that outlive a borrow of the worker.
    fn hook_events(&self) -> impl Fn(&str, String) + Send + 'static {
        let reference = kube::Resource::object_ref(&self.pod, &());
        let recorder = self.recorder.clone();
        move |reason: &str, note: String| {
            recorder.publish(&reference, EventType::Warning, reason, "Hook", note);
        }
    }

    /// One pass: returns when the worker should look again without news.
    async fn sync(&mut self) -> Instant {
        let now = Instant::now();
        let mut next = now + RESYNC;
        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let current_phase = pod::phase(&policy, &self.init, &self.containers, self.init_done);
        if self.failure.is_some() {
            return next;
        }
        if !self.admitted {
            // Upstream admits a pod once, when the kubelet first sees it; pods already
            // running (adopted after a restart) are not judged again.
            let started = self.sandbox.is_some()
                || self
                    .init
                    .iter()
                    .chain(&self.containers)
                    .any(|r| r.id.is_some());
            if !started
                && !is_terminal_in_api(&self.pod)
                && let Some(message) = eviction::admit(&self.pod, self.k.pressure())
            {
                self.event(
                    EventType::Warning,
                    eviction::REASON,
                    "Admit",
                    message.clone(),
                );
                self.failure = Some(pod::Failure {
                    reason: eviction::REASON.into(),
                    message,
                    disruption: false,
                });
                return next;
            }
            self.admitted = true;
        }
        if self.start_time.is_none() {
            self.start_time = Some(SystemTime::now());
        }
        // activeDeadlineSeconds counts from the pod's start on this node.
        if let (Some(seconds), Some(start)) = (spec.active_deadline_seconds, self.start_time)
            && !is_terminal_in_api(&self.pod)
        {
            let deadline = start + Duration::from_secs(seconds.max(0) as u64);
            match deadline.duration_since(SystemTime::now()) {
                Ok(left) if !left.is_zero() => next = next.min(now + left),
                _ => {
                    let message = "Pod was active on the node longer than the specified deadline";
                    self.event(
                        EventType::Normal,
                        "DeadlineExceeded",
                        "Kill",
                        message.into(),
                    );
                    let failure = pod::Failure {
                        reason: "DeadlineExceeded".into(),
                        message: message.into(),
                        disruption: false,
                    };
                    self.fail(failure, None).await;
                    return next;
                }
            }
        }
        if pod::is_terminal(current_phase)
            || self
                .pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(pod::is_terminal)
        {
            return next;
        }
        // The sandbox.
        let host_network = spec.host_network.unwrap_or(false);
        if !host_network && self.sandbox.is_none() {
            match self.k.network.setup_pod(&self.uid).await {
                Ok(a) => {
                    self.sandbox = Some(a);
                    self.sandbox_error = None;
                }
                Err(e) => {
                    let msg = format!("Failed to create pod sandbox: {e}");
                    if self.sandbox_error.as_deref() != Some(msg.as_str()) {
                        self.event(
                            EventType::Warning,
                            "FailedCreatePodSandBox",
                            "Sync",
                            msg.clone(),
                        );
                    }
                    self.sandbox_error = Some(msg);
                    return now + Duration::from_secs(2);
                }
            }
        }
        if let Some(sandbox) = &self.sandbox {
            let mappings = host_port_mappings(&spec, sandbox.ip);
            self.k.publish_host_ports(&self.uid, mappings).await;
        }
        // Volumes (re-written each pass so updates reach running pods).
        let pod_dir = self.k.pod_dir(&self.uid);
        match volumes::prepare(
            &self.k.client,
            &self.pod,
            &pod_dir,
            &self.host_ip(),
            &self.pod_ip(),
        )
        .await
        {
            Ok(v) => {
                self.volumes = v;
                self.volume_error = None;
            }
            Err(e) => {
                let msg = e.to_string();
                if self.volume_error.as_deref() != Some(msg.as_str()) {
                    self.event(EventType::Warning, "FailedMount", "Mount", msg.clone());
                }
                self.volume_error = Some(msg);
                return now + Duration::from_secs(2);
            }
        }
        // Init containers, in order, one at a time.
        if !self.init_done {
            let names: Vec<String> = self.init.iter().map(|r| r.name.clone()).collect();
            for name in names {
                let r = self
                    .init
                    .iter()
                    .find(|r| r.name == name)
                    .cloned()
                    .unwrap_or_default();
                match &r.state {
                    Phase::Terminated(t) if t.exit_code == 0 => continue,
                    Phase::Running { .. } => return next,
                    Phase::Terminated(t) => {
                        // Init containers restart unless the pod's policy is Never.
                        if policy == "Never" {
                            return next;
                        }
                        let t = t.clone();
                        match self.restart_gate(true, &name, &t) {
                            Some(at) => return at,
                            None => {
                                self.start(true, &name).await;
                                return next;
                            }
                        }
                    }
                    Phase::Created | Phase::Waiting { .. } => {
                        if let Some(at) = self.gate(&name) {
                            return at;
                        }
                        self.start(true, &name).await;
                        return next;
                    }
                }
            }
            self.init_done = true;
        }
        let names: Vec<String> = self.containers.iter().map(|r| r.name.clone()).collect();
        for name in names {
            let r = self
                .containers
                .iter()
                .find(|r| r.name == name)
                .cloned()
                .unwrap_or_default();
            match &r.state {
                Phase::Running { .. } => {}
                Phase::Terminated(t) => {
                    if !pod::restarts(&policy, t.exit_code) {
                        continue;
                    }
                    let t = t.clone();
                    match self.restart_gate(false, &name, &t) {
                        Some(at) => next = next.min(at),
                        None => self.start(false, &name).await,
                    }
                }
                Phase::Created | Phase::Waiting { .. } => match self.gate(&name) {
                    Some(at) => next = next.min(at),
                    None => self.start(false, &name).await,
                },
            }
        }
        next
    }

    /// Whether a container waiting after a failure may start yet.
    fn gate(&self, name: &str) -> Option<Instant> {
        let (_, at) = self.backoff.get(name)?;
        (*at > Instant::now()).then_some(*at)
    }

    /// A terminated container that restarts: its state becomes lastState, and upstream's
    /// crash-loop back-off applies: the first restart is immediate, then 10 s doubling to
    /// 5 min, reset once a run lasted 10 min. Returns when it may start, or None to start now.
    fn restart_gate(&mut self, init: bool, name: &str, t: &Terminated) -> Option<Instant> {
        let ran = match t.started_at {
            Some(s) => t.finished_at.duration_since(s).unwrap_or_default(),
            None => Duration::ZERO,
        };
        let delay = match self.backoff.get(name) {
            _ if ran >= pod::BACKOFF_RESET => Duration::ZERO,
            None => Duration::ZERO,
            Some((d, _)) => pod::backoff(Some(*d).filter(|d| !d.is_zero()), ran),
        };
        let at = Instant::now() + delay;
        self.backoff.insert(name.to_string(), (delay, at));
        self.pending_restart.insert(name.to_string());
        let pod_name = self.pod.metadata.name.clone().unwrap_or_default();
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let uid = self.uid.clone();
        let r = self.record_mut(init, name)?;
        r.last = Some(t.clone());
        if delay.is_zero() {
            return None;
        }
        r.state = Phase::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: format!(
                "back-off {}s restarting failed container={name} pod={pod_name}_{ns}({uid})",
                delay.as_secs()
            ),
        };
        self.event(
            EventType::Warning,
            "BackOff",
            "Restart",
            format!("Back-off restarting failed container {name} in pod {pod_name}_{ns}({uid})"),
        );
        Some(at)
    }

    fn host_ip(&self) -> String {
        self.k.config.node_ip.to_string()
    }

    fn pod_ip(&self) -> String {
        let host_network = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        if host_network {
            return self.host_ip();
        }
        self.sandbox
            .as_ref()
            .map(|a| a.ip.to_string())
            .unwrap_or_default()
    }

    /// Pulls, prepares and starts one container; its record says how it went.
    async fn start(&mut self, init: bool, name: &str) {
        let Some(c) = self.spec_container(init, name) else {
            return;
        };
        // A restart is a new instance: its own id, log file and restart count.
        if self.pending_restart.remove(name)
            && let Some(r) = self.record_mut(init, name)
        {
            r.restart_count += 1;
        }
        let restart = self
            .record_mut(init, name)
            .map(|r| r.restart_count)
            .unwrap_or(0);
        let image_name = c.image.clone().unwrap_or_default();
        let policy = match c.image_pull_policy.as_deref() {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            Some(_) => PullPolicy::IfNotPresent,
            None if image_name.ends_with(":latest")
                || !image_name.rsplit('/').next().unwrap_or("").contains(':') =>
            {
                PullPolicy::Always
            }
            None => PullPolicy::IfNotPresent,
        };
        let present = self.k.images.get(&image_name).is_some();
        if (!present || matches!(policy, PullPolicy::Always))
            && !matches!(policy, PullPolicy::Never)
        {
            self.event(
                EventType::Normal,
                "Pulling",
                "Pull",
                format!("Pulling image \"{image_name}\""),
            );
        }
        let pulled_at = Instant::now();
        let image = match self.k.images.ensure(&image_name, policy, &[]).await {
            Ok(i) => {
                if present && !matches!(policy, PullPolicy::Always) {
                    self.event(
                        EventType::Normal,
                        "Pulled",
                        "Pull",
                        format!("Container image \"{image_name}\" already present on machine"),
                    );
                } else {
                    self.event(
                        EventType::Normal,
                        "Pulled",
                        "Pull",
                        format!(
                            "Successfully pulled image \"{image_name}\" in {:.3}s",
                            pulled_at.elapsed().as_secs_f64()
                        ),
                    );
                }
                i
            }
            Err(e) => {
                let backing_off = self.backoff.contains_key(name);
                let reason = if backing_off && e.reason == "ErrImagePull" {
                    "ImagePullBackOff"
                } else {
                    e.reason
                };
                self.event(EventType::Warning, "Failed", "Pull", e.message.clone());
                self.event(
                    EventType::Warning,
                    "Failed",
                    "Pull",
                    format!("Error: {}", e.reason),
                );
                self.wait_with(init, name, reason, &e.message, true);
                return;
            }
        };
        let env = env::build(&env::Inputs {
            client: &self.k.client,
            pod: &self.pod,
            container: &c,
            image_env: &image.config.env,
            host_ip: &self.host_ip(),
            pod_ip: &self.pod_ip(),
            node_cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            node_memory: super::node::allocatable_memory(&self.k.config.eviction),
        })
        .await;
        let env = match env {
            Ok(e) => e,
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "Failed",
                    "Create",
                    format!("Error: {e}"),
                );
                self.wait_with(init, name, "CreateContainerConfigError", &e.0, true);
                return;
            }
        };
        let id = container_id(&self.uid, init, name, restart);
        let pod_dir = self.k.pod_dir(&self.uid);
        let rootfs_dir = pod_dir.join("rootfs").join(&id);
        let rootfs = match self.k.images.mount_rootfs(&image, &rootfs_dir) {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("failed to prepare the root filesystem: {e}");
                self.wait_with(init, name, "CreateContainerError", &msg, true);
                return;
            }
        };
        let config =
            match self.container_config(&c, init, restart, &id, rootfs, &image, env, &pod_dir) {
                Ok(cfg) => cfg,
                Err(msg) => {
                    self.event(
                        EventType::Warning,
                        "Failed",
                        "Create",
                        format!("Error: {msg}"),
                    );
                    self.wait_with(init, name, "CreateContainerConfigError", &msg, true);
                    return;
                }
            };
        self.event(
            EventType::Normal,
            "Created",
            "Create",
            format!("Created container: {name}"),
        );
        let image_id = image.repo_digest.clone();
        match self.k.runtime.start(config).await {
            Ok(State::Running { started_at, .. }) => {
                self.event(
                    EventType::Normal,
                    "Started",
                    "Start",
                    format!("Started container {name}"),
                );
                if let Some(r) = self.record_mut(init, name) {
                    r.id = Some(id.clone());
                    r.image_id = image_id;
                    r.state = Phase::Running { started_at };
                }
                self.watch_exit(init, name.to_string(), id.clone());
                // Upstream runs postStart before the container counts as started; when it
                // fails the container is killed and restarted under the restart policy.
                if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.clone()) {
                    let target = self.probe_target(&c, &id);
                    if let Err(e) = probe::run_handler(&h, &target, None).await {
                        let msg = hook_message(&h, &self.hook_subject(name), &e);
                        self.event(
                            EventType::Warning,
                            "FailedPostStartHook",
                            "Hook",
                            format!("PostStartHook failed: {msg}"),
                        );
                        let kill = self.kill(&c, id, self.grace());
                        tokio::spawn(kill);
                        return;
                    }
                }
                self.start_probes(init, name, &id);
            }
            Ok(s @ State::Exited { .. }) => {
                let mut t = terminated(&id, &s);
                t.reason = "StartError".into();
                self.event(
                    EventType::Warning,
                    "Failed",
                    "Start",
                    format!("Error: {}", t.message),
                );
                if let Some(r) = self.record_mut(init, name) {
                    r.id = Some(id);
                    r.image_id = image_id;
                    r.state = Phase::Terminated(t);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                self.event(
                    EventType::Warning,
                    "Failed",
                    "Start",
                    format!("Error: {msg}"),
                );
                let _ = ImageService::unmount_rootfs(&rootfs_dir);
                self.wait_with(init, name, "RunContainerError", &msg, true);
            }
        }
    }

    /// A container that could not be created waits with `reason`; with `backoff`, the next
    /// attempt is delayed like a crash loop.
    fn wait_with(&mut self, init: bool, name: &str, reason: &str, message: &str, backoff: bool) {
        if backoff {
            let previous = self
                .backoff
                .get(name)
                .map(|(d, _)| *d)
                .filter(|d| !d.is_zero());
            let delay = pod::backoff(previous, Duration::ZERO);
            self.backoff
                .insert(name.to_string(), (delay, Instant::now() + delay));
        }
        if let Some(r) = self.record_mut(init, name) {
            r.state = Phase::Waiting {
                reason: reason.into(),
                message: message.into(),
            };
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn container_config(
        &self,
        c: &Container,
        init: bool,
        restart: i32,
        id: &str,
        rootfs: PathBuf,
        image: &super::images::Image,
        env: Vec<String>,
        pod_dir: &Path,
    ) -> Result<ContainerConfig, String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let meta = &self.pod.metadata;
        let (ns, name) = (
            meta.namespace.clone().unwrap_or_default(),
            meta.name.clone().unwrap_or_default(),
        );
        let vars: BTreeMap<String, String> = env
            .iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let mut c2 = c.clone();
        c2.command = c
            .command
            .as_ref()
            .map(|v| v.iter().map(|s| pod::expand(s, &vars)).collect());
        c2.args = c
            .args
            .as_ref()
            .map(|v| v.iter().map(|s| pod::expand(s, &vars)).collect());
        let args = pod::argv(&c2, &image.config.entrypoint, &image.config.cmd);
        if args.is_empty() {
            return Err(format!("no command specified for container {:?}", c.name));
        }
        let psc = spec.security_context.clone().unwrap_or_default();
        let sc = c.security_context.clone().unwrap_or_default();
        if let Some(p) = sc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref())
            && p.type_ != "Unconfined"
        {
            return Err(format!(
                "seccomp profile {:?} cannot be enforced: this rk3s build has no seccomp support (use type Unconfined)",
                p.type_
            ));
        }
        let (image_uid, image_gid) = image_user(&rootfs, &image.config.user)?;
        let uid = sc
            .run_as_user
            .or(psc.run_as_user)
            .map(|u| u as u32)
            .unwrap_or(image_uid);
        let gid = sc
            .run_as_group
            .or(psc.run_as_group)
            .map(|g| g as u32)
            .unwrap_or(image_gid);
        if sc.run_as_non_root.or(psc.run_as_non_root) == Some(true) && uid == 0 {
            return Err("container has runAsNonRoot and image will run as root".into());
        }
        let mut additional: Vec<u32> = psc
            .supplemental_groups
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|g| g as u32)
            .collect();
        if let Some(fs) = psc.fs_group {
            additional.push(fs as u32);
        }
        // Volume mounts.
        let mut mounts = Vec::new();
        for vm in c.volume_mounts.clone().unwrap_or_default() {
            let Some(v) = self.volumes.get(&vm.name) else {
                return Err(format!(
                    "volume mount {:?} names no volume of the pod",
                    vm.name
                ));
            };
            let mut source = v.path.clone();
            if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                    return Err(format!("invalid subPath {sub:?}"));
                }
                source = source.join(sub);
                if !source.exists() {
                    let _ = std::fs::create_dir_all(&source);
                }
            }
            let kind = match v.tmpfs {
                Some(size) if vm.sub_path.is_none() => MountKind::Tmpfs { size_bytes: size },
                _ => MountKind::Bind,
            };
            mounts.push(Mount {
                destination: vm.mount_path.clone(),
                source,
                kind,
                readonly: vm.read_only.unwrap_or(false) || v.read_only,
            });
        }
        // /etc/hosts, /etc/hostname, /etc/resolv.conf.
        let hostname = spec.hostname.clone().unwrap_or_else(|| name.clone());
        let host_network = spec.host_network.unwrap_or(false);
        let etc = pod_dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
        let hosts = if host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            etc_hosts(
                &self.pod_ip(),
                &hostname,
                &spec,
                &ns,
                &self.k.config.cluster_domain,
            )
        };
        std::fs::write(etc.join("hosts"), hosts).map_err(|e| e.to_string())?;
        std::fs::write(etc.join("hostname"), format!("{hostname}\n")).map_err(|e| e.to_string())?;
        std::fs::write(
            etc.join("resolv.conf"),
            resolv_conf(&self.pod, &self.k.config),
        )
        .map_err(|e| e.to_string())?;
        for (file, dest) in [
            ("hosts", "/etc/hosts"),
            ("hostname", "/etc/hostname"),
            ("resolv.conf", "/etc/resolv.conf"),
        ] {
            if !mounts.iter().any(|m| m.destination == dest) {
                mounts.push(Mount {
                    destination: dest.into(),
                    source: etc.join(file),
                    kind: MountKind::Bind,
                    readonly: false,
                });
            }
        }
        // The termination message file.
        let term_dir = pod_dir.join("containers").join(&c.name);
        std::fs::create_dir_all(&term_dir).map_err(|e| e.to_string())?;
        let term_file = term_dir.join(id);
        std::fs::write(&term_file, b"").map_err(|e| e.to_string())?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&term_file, std::fs::Permissions::from_mode(0o666));
        }
        let term_path = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        mounts.push(Mount {
            destination: term_path,
            source: term_file,
            kind: MountKind::Bind,
            readonly: false,
        });
        let limits = pod::limits(c.resources.as_ref());
        let log_path = log_path(
            &self.k.config.log_dir,
            &ns,
            &name,
            &self.uid,
            &c.name,
            restart,
        );
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let caps = sc.capabilities.clone().unwrap_or_default();
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_POD_UID.to_string(), self.uid.clone());
        labels.insert(LABEL_POD_NAME.to_string(), name.clone());
        labels.insert(LABEL_POD_NAMESPACE.to_string(), ns.clone());
        labels.insert(LABEL_CONTAINER.to_string(), c.name.clone());
        labels.insert(LABEL_RESTARTS.to_string(), restart.to_string());
        if init {
            labels.insert(LABEL_INIT.to_string(), "true".into());
        }
        let cwd = c
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| image.config.working_dir.clone());
        Ok(ContainerConfig {
            id: id.to_string(),
            labels,
            rootfs,
            readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
            args,
            env,
            cwd: if cwd.is_empty() { "/".into() } else { cwd },
            uid,
            gid,
            additional_gids: additional,
            hostname,
            netns: self.sandbox.as_ref().map(|a| a.netns.clone()),
            mounts,
            cgroup_path: format!("{}/{id}", pod::pod_cgroup(&self.pod)),
            resources: runtime::Resources {
                cpu_shares: limits.cpu_shares,
                cpu_quota: limits.cpu_quota,
                cpu_period: limits.cpu_period,
                memory_limit: limits.memory_limit,
                pids_limit: None,
            },
            privileged: sc.privileged.unwrap_or(false),
            capabilities_add: caps.add.unwrap_or_default(),
            capabilities_drop: caps.drop.unwrap_or_default(),
            no_new_privileges: sc.allow_privilege_escalation == Some(false),
            log_path,
            tty: c.tty.unwrap_or(false),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
        })
    }

    /// Stops every container (preStop hooks first, within the grace period), tears down the
    /// sandbox and removes the pod's files.
    async fn terminate(&mut self, grace: Option<Duration>) {
        let grace = grace.unwrap_or_else(|| self.grace());
        let running: Vec<(bool, String, String)> = self
            .init
            .iter()
            .map(|r| (true, r))
            .chain(self.containers.iter().map(|r| (false, r)))
            .filter(|(_, r)| matches!(r.state, Phase::Running { .. }))
            .filter_map(|(i, r)| r.id.clone().map(|id| (i, r.name.clone(), id)))
            .collect();
        for (_, name, _) in &running {
            self.event(
                EventType::Normal,
                "Killing",
                "Kill",
                format!("Stopping container {name}"),
            );
        }
        for (_, tasks) in self.probes.drain() {
            tasks.iter().for_each(|t| t.abort());
        }
        let stops: Vec<_> = running
            .iter()
            .map(|(init, name, id)| {
                let kill = match self.spec_container(*init, name) {
                    Some(c) => self.kill(&c, id.clone(), grace),
                    None => {
                        let (rt, id) = (self.k.runtime.clone(), id.clone());
                        async move { rt.stop(&id, grace).await }.boxed()
                    }
                };
                let (init, name) = (*init, name.clone());
                async move { (init, name, kill.await) }
            })
            .collect();
        for (init, name, state) in futures_util::future::join_all(stops).await {
            self.exited(init, &name, state);
        }
        // Every instance of this pod the runtime still knows.
        if let Ok(list) = self.k.runtime.list() {
            for (c, state) in list {
                if c.labels.get(LABEL_POD_UID) == Some(&self.uid) {
                    if matches!(state, State::Running { .. }) {
                        let _ = self.k.runtime.stop(&c.id, Duration::from_secs(1)).await;
                    }
                    let _ = self.k.runtime.remove(&c.id).await;
                }
            }
        }
        self.k.publish_host_ports(&self.uid, Vec::new()).await;
        if let Err(e) = self.k.network.teardown_pod(&self.uid).await {
            tracing::warn!(pod = %self.uid, error = %e, "tearing down the pod network");
        }
        remove_pod_dir(&self.k.pod_dir(&self.uid));
    }

    /// The containers are gone: the API object can go (upstream's final delete with grace 0,
    /// preconditioned on the UID so a new pod of the same name is never deleted).
    /// Stops the pod and fails it (upstream's killPod with a status update): its containers
    /// get `grace` (default: the pod's own), then the pod is Failed for good with the reason.
    async fn fail(&mut self, failure: pod::Failure, grace: Option<Duration>) {
        if failure.disruption {
            self.event(
                EventType::Warning,
                &failure.reason,
                "Evict",
                failure.message.clone(),
            );
        }
        self.failure = Some(failure);
        self.terminate(grace).await;
    }

    async fn finish_deletion(&mut self) {
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.k.client.clone(), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = pods.delete(&name, &dp).await {
            match e {
                kube::Error::Api(a) if a.code == 404 || a.code == 409 => {}
                e => tracing::warn!(pod = %name, error = %e, "deleting the pod"),
            }
        }
    }

    async fn write_status(&mut self) {
        let now = SystemTime::now();
        let input = pod::StatusInput {
            pod: &self.pod,
            init: &self.init,
            containers: &self.containers,
            init_done: self.init_done,
            sandbox_ready: self.sandbox.is_some()
                || self
                    .pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false),
            pod_ip: Some(self.pod_ip()).filter(|s| !s.is_empty()),
            host_ip: self.host_ip(),
            start_time: self.start_time,
            failure: self.failure.as_ref(),
        };
        let status = pod::status(&input, &self.last_status, now);
        self.update_view();
        // A pod the API has as finished never goes back (after a restart this worker may not
        // know why it finished: its containers are gone).
        if is_terminal_in_api(&self.pod) && !status["phase"].as_str().is_some_and(pod::is_terminal)
        {
            return;
        }
        let current = serde_json::to_value(&self.pod.status).unwrap_or(Value::Null);
        if same_status(&status, &current) {
            self.last_status = current;
            return;
        }
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.k.client.clone(), &ns);
        match pods
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(p) => {
                self.last_status = serde_json::to_value(&p.status).unwrap_or(Value::Null);
                self.pod.status = p.status;
            }
            Err(e) => tracing::debug!(pod = %name, error = %e, "writing the pod status"),
        }
    }

    fn update_view(&self) {
        let mut view = View {
            uid: self.uid.clone(),
            containers: BTreeMap::new(),
        };
        for r in self.init.iter().chain(self.containers.iter()) {
            let waiting = match &r.state {
                Phase::Waiting { reason, .. } => Some(reason.clone()),
                Phase::Created => Some("ContainerCreating".into()),
                _ => None,
            };
            view.containers.insert(
                r.name.clone(),
                ContainerView {
                    restarts: r.restart_count,
                    started: r.id.is_some(),
                    running: matches!(r.state, Phase::Running { .. }),
                    waiting,
                },
            );
        }
        if let Ok(mut views) = self.k.views.lock() {
            views.insert(self.key(), view);
        }
    }

    fn event(&self, type_: EventType, reason: &str, action: &str, note: String) {
        let reference = kube::Resource::object_ref(&self.pod, &());
        self.recorder
            .publish(&reference, type_, reason, action, note);
    }
}

/// The pod's event recorder. kube's `Recorder` folds every event with the same reason and
/// action into one series, whatever its message, so "Created container: a" would hide
/// "Created container: b"; upstream's correlator only folds identical events. So each distinct
/// (type, reason, action, message) gets its own `Recorder`, whose series counts repeats.
#[derive(Clone)]
struct Events {
    client: kube::Client,
    reporter: Reporter,
    by_event: Arc<std::sync::Mutex<HashMap<String, Recorder>>>,
}

impl Events {
    /// Distinct events remembered per pod; beyond it the oldest series simply restart.
    const MAX: usize = 64;

    fn new(client: kube::Client, node: &str) -> Events {
        Events {
            client,
            reporter: Reporter {
                controller: "kubelet".into(),
                instance: Some(node.to_string()),
            },
            by_event: Default::default(),
        }
    }

    fn publish(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let key = format!("{type_:?}\0{reason}\0{action}\0{note}");
        let recorder = {
            let Ok(mut map) = self.by_event.lock() else {
                return;
            };
            if map.len() >= Self::MAX && !map.contains_key(&key) {
                map.clear();
            }
            map.entry(key)
                .or_insert_with(|| Recorder::new(self.client.clone(), self.reporter.clone()))
                .clone()
        };
        let event = KEvent {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        let reference = reference.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, "writing an event");
            }
        });
    }
}

/// Runs `args` in a running container without stdin or tty: (exit code, stdout and stderr
/// as they came, at most 10 KiB kept).
async fn exec_capture(
    rt: &dyn Runtime,
    id: &str,
    args: Vec<String>,
) -> Result<(i32, Vec<u8>), String> {
    use tokio::io::AsyncReadExt;
    const KEEP: usize = 10 * 1024;
    let p = rt
        .exec(
            id,
            ExecSpec {
                args,
                tty: false,
                stdin: false,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let runtime::ExecProcess {
        stdout,
        stderr,
        exit,
        ..
    } = p;
    let out = std::sync::Mutex::new(Vec::new());
    let drain = |mut r: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>| {
        let out = &out;
        async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut o) = out.lock()
                    && o.len() < KEEP
                {
                    let take = n.min(KEEP - o.len());
                    o.extend_from_slice(&buf[..take]);
                }
            }
        }
    };
    let errs = async {
        if let Some(e) = stderr {
            drain(e).await;
        }
    };
    let (_, _, code) = tokio::join!(drain(stdout), errs, exit);
    let code = code.map_err(|e| e.to_string())?;
    Ok((code, out.into_inner().unwrap_or_default()))
}

/// Upstream's hook failure text: `Exec lifecycle hook ([cmd]) for Container "c" in Pod
/// "p_ns(uid)" failed - error: …`.
fn hook_message(h: &k8s_openapi::api::core::v1::LifecycleHandler, what: &str, e: &str) -> String {
    let kind = if let Some(x) = &h.exec {
        format!(
            "Exec lifecycle hook ([{}])",
            x.command.clone().unwrap_or_default().join(" ")
        )
    } else if let Some(g) = &h.http_get {
        format!(
            "HTTP lifecycle hook ({})",
            g.path.clone().unwrap_or_default()
        )
    } else if h.tcp_socket.is_some() {
        "TCP lifecycle hook".to_string()
    } else {
        "Sleep lifecycle hook".to_string()
    };
    format!("{kind} for {what} failed - error: {e}")
}

/// Statuses equal apart from fields the API server owns.
/// Whether the API has the pod as Succeeded or Failed.
pub fn is_terminal_in_api(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(pod::is_terminal)
}

fn same_status(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("nominatedNodeName");
            o.remove("resize");
        }
        v
    };
    strip(a) == strip(b)
}

fn succeeded(r: &Record) -> bool {
    matches!(&r.state, Phase::Terminated(t) if t.exit_code == 0)
}

fn restarts_of(c: &ContainerConfig) -> i32 {
    c.labels
        .get(LABEL_RESTARTS)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn records(pod: &Pod, init: bool) -> Vec<Record> {
    let spec = pod.spec.clone().unwrap_or_default();
    let list = if init {
        spec.init_containers.unwrap_or_default()
    } else {
        spec.containers
    };
    list.into_iter()
        .map(|c| Record {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            ..Record::default()
        })
        .collect()
}

/// The runtime id of one container instance: short, unique on the node, and readable.
pub fn container_id(uid: &str, init: bool, name: &str, restart: i32) -> String {
    let short: String = uid.chars().filter(|c| *c != '-').take(12).collect();
    let mut n: String = name.chars().take(40).collect();
    if init {
        n = format!("init-{n}");
    }
    format!("{short}-{n}-{restart}")
}

fn terminated(id: &str, state: &State) -> Terminated {
    match state {
        State::Exited {
            exit_code,
            signal,
            oom_killed,
            started_at,
            finished_at,
            message,
        } => Terminated {
            exit_code: *exit_code,
            signal: *signal,
            reason: Terminated::reason_for(*exit_code, *oom_killed).into(),
            message: message.clone(),
            started_at: *started_at,
            finished_at: *finished_at,
            container_id: format!("{}://{id}", pod::RUNTIME_SCHEME),
        },
        State::Running { started_at, .. } => Terminated {
            exit_code: 0,
            signal: None,
            reason: "Unknown".into(),
            message: String::new(),
            started_at: Some(*started_at),
            finished_at: SystemTime::now(),
            container_id: format!("{}://{id}", pod::RUNTIME_SCHEME),
        },
    }
}

/// The image's `User` as uid/gid, names looked up in the rootfs's /etc/passwd and /etc/group.
pub fn image_user(rootfs: &Path, user: &str) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let lookup = |name: &str, file: &str, field: usize| -> Option<u32> {
        file.lines().find_map(|l| {
            let parts: Vec<&str> = l.split(':').collect();
            (parts.first() == Some(&name)).then(|| parts.get(field)?.parse().ok())?
        })
    };
    let (uid, default_gid) = match u.parse::<u32>() {
        Ok(n) => (n, lookup_gid_of_uid(&passwd, n).unwrap_or(0)),
        Err(_) => {
            let uid = lookup(u, &passwd, 2).ok_or_else(|| {
                format!("unable to find user {u}: no matching entries in passwd file")
            })?;
            (uid, lookup(u, &passwd, 3).unwrap_or(0))
        }
    };
    let gid = match g {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
                lookup(g, &group, 2).ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?
            }
        },
    };
    Ok((uid, gid))
}

fn lookup_gid_of_uid(passwd: &str, uid: u32) -> Option<u32> {
    passwd.lines().find_map(|l| {
        let parts: Vec<&str> = l.split(':').collect();
        (parts.get(2)?.parse::<u32>().ok()? == uid).then(|| parts.get(3)?.parse().ok())?
    })
}

/// The pod's /etc/hosts, as upstream's kubelet writes it.
fn etc_hosts(
    ip: &str,
    hostname: &str,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    ns: &str,
    domain: &str,
) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !ip.is_empty() {
        match &spec.subdomain {
            Some(sub) if !sub.is_empty() => out.push_str(&format!(
                "{ip}\t{hostname}.{sub}.{ns}.svc.{domain}\t{hostname}\n"
            )),
            _ => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    for h in spec.host_aliases.clone().unwrap_or_default() {
        out.push_str(&format!(
            "\n# Entries added by HostAliases.\n{}\t{}\n",
            h.ip,
            h.hostnames.unwrap_or_default().join("\t")
        ));
    }
    out
}

/// resolv.conf from dnsPolicy, as upstream: ClusterFirst points at the cluster DNS with the
/// search path and ndots:5; Default copies the host's; None uses only dnsConfig.
pub fn resolv_conf(pod: &Pod, config: &super::Config) -> String {
    resolv_conf_with(pod, config, host_resolv())
}

/// [`resolv_conf`] with the host's (nameservers, searches, options) given.
fn resolv_conf_with(
    pod: &Pod,
    config: &super::Config,
    host: (Vec<String>, Vec<String>, Vec<String>),
) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let d = &config.cluster_domain;
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec
        .dns_policy
        .clone()
        .unwrap_or_else(|| "ClusterFirst".into());
    let (mut servers, mut searches, mut options) = match policy.as_str() {
        "ClusterFirst" if host_network => host.clone(),
        "ClusterFirst" | "ClusterFirstWithHostNet" => {
            // Upstream's generateSearchesForDNSClusterFirst: the cluster's three domains, then
            // the host's search domains, without duplicates.
            let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            for h in &host.1 {
                if !searches.contains(h) {
                    searches.push(h.clone());
                }
            }
            (
                vec![config.cluster_dns.to_string()],
                searches,
                vec!["ndots:5".to_string()],
            )
        }
        "None" => (vec![], vec![], vec![]),
        _ => host,
    };
    if let Some(c) = &spec.dns_config {
        servers.extend(c.nameservers.clone().unwrap_or_default());
        searches.extend(c.searches.clone().unwrap_or_default());
        for o in c.options.clone().unwrap_or_default() {
            let opt = match o.value {
                Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let key = opt.split(':').next().unwrap_or_default().to_string();
            options.retain(|x| x.split(':').next() != Some(key.as_str()));
            options.push(opt);
        }
    }
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in servers.iter().take(3) {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// The host's resolvers, skipping systemd-resolved's stub as the upstream kubelet does.
fn host_resolv() -> (Vec<String>, Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string("/run/systemd/resolve/resolv.conf")
        .ok()
        .filter(|_| {
            std::fs::read_to_string("/etc/resolv.conf").is_ok_and(|r| r.contains("127.0.0.53"))
        })
        .or_else(|| std::fs::read_to_string("/etc/resolv.conf").ok())
        .unwrap_or_default();
    let (mut s, mut q, mut o) = (vec![], vec![], vec![]);
    for l in text.lines() {
        let mut w = l.split_whitespace();
        match w.next() {
            Some("nameserver") => s.extend(w.next().map(String::from)),
            Some("search") => q.extend(w.map(String::from)),
            Some("options") => o.extend(w.map(String::from)),
            _ => {}
        }
    }
    (s, q, o)
}

/// The hostPorts the pod's containers publish (`ports[].hostPort` > 0), to its address; a
/// `hostIP` of 0.0.0.0, an IPv6 one or none means every node address.
pub fn host_port_mappings(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    pod_ip: std::net::Ipv4Addr,
) -> Vec<hostport::Mapping> {
    let mut out = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.and_then(|h| u16::try_from(h).ok()) else {
                continue;
            };
            let Ok(container_port) = u16::try_from(p.container_port) else {
                continue;
            };
            if host_port == 0 || container_port == 0 {
                continue;
            }
            out.push(hostport::Mapping {
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                host_ip: p
                    .host_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<std::net::Ipv4Addr>().ok())
                    .filter(|ip| !ip.is_unspecified()),
                host_port,
                pod_ip,
                container_port,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_of_the_containers_map_to_the_pod_address() {
        let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(json!({
            "containers": [
                {"name": "a", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "192.168.1.5"},
                    {"containerPort": 9090},
                    {"containerPort": 81, "hostPort": 8081, "hostIP": "0.0.0.0"},
                ]},
                {"name": "b"},
            ]
        }))
        .unwrap();
        let ip = std::net::Ipv4Addr::new(10, 42, 0, 9);
        let m = host_port_mappings(&spec, ip);
        let summary: Vec<String> = m
            .iter()
            .map(|m| {
                format!(
                    "{} {:?} {}->{}:{}",
                    m.protocol, m.host_ip, m.host_port, m.pod_ip, m.container_port
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                "tcp None 8080->10.42.0.9:80",
                "udp Some(192.168.1.5) 5353->10.42.0.9:53",
                "tcp None 8081->10.42.0.9:81",
            ]
        );
    }

    #[test]
    fn container_ids_are_short_and_unique_per_instance() {
        let uid = "3fa85f64-5717-4562-b3fc-2c963f66afa6";
        assert_eq!(container_id(uid, false, "web", 0), "3fa85f645717-web-0");
        assert_eq!(
            container_id(uid, true, "setup", 2),
            "3fa85f645717-init-setup-2"
        );
        let long = "a".repeat(63);
        assert!(container_id(uid, true, &long, 12).len() <= 64);
    }

    #[test]
    fn image_users_resolve_through_the_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(
            tmp.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65533::/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(image_user(tmp.path(), "").unwrap(), (0, 0));
        assert_eq!(image_user(tmp.path(), "nobody").unwrap(), (65534, 65533));
        assert_eq!(image_user(tmp.path(), "1000:staff").unwrap(), (1000, 50));
        assert_eq!(image_user(tmp.path(), "65534").unwrap(), (65534, 65533));
        assert!(
            image_user(tmp.path(), "ghost")
                .unwrap_err()
                .contains("unable to find user ghost")
        );
    }

    #[test]
    fn resolv_conf_follows_the_dns_policy() {
        let config = super::super::Config {
            node_name: "n".into(),
            node_ip: "10.0.0.1".parse().unwrap(),
            labels: Default::default(),
            taints: vec![],
            control_plane: true,
            data_dir: crate::data_dir::DataDir::new("/tmp/x"),
            log_dir: "/tmp/logs".into(),
            run_dir: "/tmp/run".into(),
            cluster_dns: "10.43.0.10".parse().unwrap(),
            cluster_domain: "cluster.local".into(),
            private_registry: "/nonexistent".into(),
            version: "v1.33.0".into(),
            eviction: Default::default(),
        };
        let pod: Pod = serde_json::from_value(json!({"metadata": {"namespace": "shop"},
            "spec": {"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}}}))
        .unwrap();
        let host = (
            vec!["192.0.2.1".to_string()],
            vec!["corp.example".to_string(), "cluster.local".to_string()],
            vec!["rotate".to_string()],
        );
        assert_eq!(
            resolv_conf_with(&pod, &config, host.clone()),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.43.0.10\noptions ndots:2\n"
        );
        let none: Pod = serde_json::from_value(json!({"metadata": {"namespace": "x"},
            "spec": {"containers": [], "dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.1.1.1"]}}}))
        .unwrap();
        assert_eq!(
            resolv_conf_with(&none, &config, host.clone()),
            "nameserver 1.1.1.1\n"
        );
        let default: Pod = serde_json::from_value(json!({"metadata": {"namespace": "x"},
            "spec": {"containers": [], "dnsPolicy": "Default"}}))
        .unwrap();
        assert_eq!(
            resolv_conf_with(&default, &config, host),
            "search corp.example cluster.local\nnameserver 192.0.2.1\noptions rotate\n"
        );
    }

    #[test]
    fn hosts_files_name_the_pod() {
        let spec: k8s_openapi::api::core::v1::PodSpec =
            serde_json::from_value(json!({"containers": [], "subdomain": "db"})).unwrap();
        let h = etc_hosts("10.42.0.9", "web-0", &spec, "shop", "cluster.local");
        assert!(
            h.contains("10.42.0.9\tweb-0.db.shop.svc.cluster.local\tweb-0\n"),
            "{h}"
        );
    }
}
