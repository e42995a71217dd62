//! Resource usage of the node and of its containers, for the API server's `metrics.k8s.io`
//! (`kubectl top`): what cAdvisor and metrics-server compute, read straight from the cgroups.
//!
//! Per container: cumulative CPU time (v1 `cpuacct.usage`, v2 `cpu.stat usage_usec`) and the
//! memory working set (usage minus `inactive_file`, v1 `memory.usage_in_bytes` −
//! `total_inactive_file`, v2 `memory.current` − `inactive_file`). For the node: the root
//! cgroup's CPU time and `/proc/meminfo`'s working set (MemTotal − MemFree − Inactive(file)),
//! since the root cgroup has no memory usage file on v2. CPU is a rate, so the kubelet samples
//! every [`PERIOD`] and keeps the last two samples of each container and of the node; the rate
//! is the CPU time between them over their window, as metrics-server reports it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::Kubelet;
use super::worker;

/// How often the kubelet samples (metrics-server's default resolution is 15 s, cAdvisor's
/// housekeeping 10 s).
pub const PERIOD: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no {field} in {content:?}")]
    Parse {
        path: PathBuf,
        field: &'static str,
        content: String,
    },
    #[error("no cgroup v1 cpuacct and memory hierarchies and no cgroup v2 mount")]
    NoCgroups,
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(path: &Path, field: &'static str, content: &str) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        field,
        content: content.chars().take(200).collect(),
    }
}

/// The value of `key` in a flat-keyed file (`memory.stat`, `cpu.stat`: `<key> <number>`).
pub fn flat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// The value in kB of `key` in `/proc/meminfo` (`MemTotal:   24684084 kB`), in bytes.
pub fn meminfo_bytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k != key {
            return None;
        }
        let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().ok()?;
        kb.checked_mul(1024)
    })
}

/// The node's memory working set from `/proc/meminfo`.
pub fn node_working_set(meminfo: &str) -> Option<u64> {
    let total = meminfo_bytes(meminfo, "MemTotal")?;
    let free = meminfo_bytes(meminfo, "MemFree")?;
    let inactive = meminfo_bytes(meminfo, "Inactive(file)").unwrap_or(0);
    Some(total.saturating_sub(free).saturating_sub(inactive))
}

/// Where the counters live: the v1 `cpuacct` and `memory` hierarchies (a hybrid host like this
/// one runs containers there even with a unified mount beside them, as libcontainer does), or
/// the v2 unified hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    V1 { cpuacct: PathBuf, memory: PathBuf },
    V2 { root: PathBuf },
}

impl Cgroups {
    /// From this process's `/proc/self/mountinfo`.
    pub fn detect() -> Result<Cgroups, Error> {
        let path = Path::new("/proc/self/mountinfo");
        Cgroups::from_mountinfo(&read(path)?).ok_or(Error::NoCgroups)
    }

    /// The mount points of `cgroup` (v1) filesystems carrying `cpuacct` and `memory` in their
    /// super options, else of the `cgroup2` filesystem.
    pub fn from_mountinfo(text: &str) -> Option<Cgroups> {
        let (mut cpuacct, mut memory, mut unified) = (None, None, None);
        for line in text.lines() {
            // `<id> <parent> <maj:min> <root> <mount point> <options> [optional…] - <fs> <source> <super options>`
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = left.split(' ').nth(4) else {
                continue;
            };
            let mut right = right.split(' ');
            let fs = right.next().unwrap_or_default();
            let options = right.nth(1).unwrap_or_default();
            let mount_point = PathBuf::from(unescape_mount(mount_point));
            match fs {
                "cgroup" => {
                    let has = |o: &str| options.split(',').any(|x| x == o);
                    if has("cpuacct") && cpuacct.is_none() {
                        cpuacct = Some(mount_point.clone());
                    }
                    if has("memory") && memory.is_none() {
                        memory = Some(mount_point);
                    }
                }
                "cgroup2" if unified.is_none() => unified = Some(mount_point),
                _ => {}
            }
        }
        match (cpuacct, memory, unified) {
            (Some(cpuacct), Some(memory), _) => Some(Cgroups::V1 { cpuacct, memory }),
            (_, _, Some(root)) => Some(Cgroups::V2 { root }),
            _ => None,
        }
    }

    /// Cumulative CPU time (ns) and memory working set (bytes) of the cgroup at `cgroup_path`
    /// (absolute, as in the OCI spec's `cgroupsPath`).
    pub fn container(&self, cgroup_path: &str) -> Result<Usage, Error> {
        let rel = cgroup_path.trim_start_matches('/');
        match self {
            Cgroups::V1 { cpuacct, memory } => {
                let cpu_file = cpuacct.join(rel).join("cpuacct.usage");
                let text = read(&cpu_file)?;
                let cpu_ns = text
                    .trim()
                    .parse()
                    .map_err(|_| parse_error(&cpu_file, "usage", &text))?;
                let usage_file = memory.join(rel).join("memory.usage_in_bytes");
                let text = read(&usage_file)?;
                let usage: u64 = text
                    .trim()
                    .parse()
                    .map_err(|_| parse_error(&usage_file, "usage", &text))?;
                let stat_file = memory.join(rel).join("memory.stat");
                let stat = read(&stat_file)?;
                let inactive = flat_value(&stat, "total_inactive_file")
                    .ok_or_else(|| parse_error(&stat_file, "total_inactive_file", &stat))?;
                Ok(Usage {
                    cpu_ns,
                    memory_working_set: usage.saturating_sub(inactive),
                })
            }
            Cgroups::V2 { root } => {
                let dir = root.join(rel);
                let cpu_file = dir.join("cpu.stat");
                let text = read(&cpu_file)?;
                let usec = flat_value(&text, "usage_usec")
                    .ok_or_else(|| parse_error(&cpu_file, "usage_usec", &text))?;
                let current_file = dir.join("memory.current");
                let text = read(&current_file)?;
                let usage: u64 = text
                    .trim()
                    .parse()
                    .map_err(|_| parse_error(&current_file, "usage", &text))?;
                let stat_file = dir.join("memory.stat");
                let stat = read(&stat_file)?;
                let inactive = flat_value(&stat, "inactive_file")
                    .ok_or_else(|| parse_error(&stat_file, "inactive_file", &stat))?;
                Ok(Usage {
                    cpu_ns: usec.saturating_mul(1000),
                    memory_working_set: usage.saturating_sub(inactive),
                })
            }
        }
    }

    /// The directory of the cgroup at `cgroup_path` in the memory hierarchy (v1) or the
    /// unified one (v2): where its tasks are listed.
    pub fn memory_dir(&self, cgroup_path: &str) -> PathBuf {
        let rel = cgroup_path.trim_start_matches('/');
        match self {
            Cgroups::V1 { memory, .. } => memory.join(rel),
            Cgroups::V2 { root } => root.join(rel),
        }
    }

    /// The node: the root cgroup's CPU time and `/proc/meminfo`'s working set.
    pub fn node(&self) -> Result<Usage, Error> {
        let cpu_ns = match self {
            Cgroups::V1 { cpuacct, .. } => {
                let f = cpuacct.join("cpuacct.usage");
                let text = read(&f)?;
                text.trim()
                    .parse()
                    .map_err(|_| parse_error(&f, "usage", &text))?
            }
            Cgroups::V2 { root } => {
                let f = root.join("cpu.stat");
                let text = read(&f)?;
                flat_value(&text, "usage_usec")
                    .ok_or_else(|| parse_error(&f, "usage_usec", &text))?
                    .saturating_mul(1000)
            }
        };
        let f = Path::new("/proc/meminfo");
        let text = read(f)?;
        let memory_working_set =
            node_working_set(&text).ok_or_else(|| parse_error(f, "MemTotal/MemFree", &text))?;
        Ok(Usage {
            cpu_ns,
            memory_working_set,
        })
    }
}

/// `\040` and friends in mountinfo paths.
pub fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .and_then(|o| std::str::from_utf8(o).ok())
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match (b[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One reading of a cgroup's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Cumulative CPU time.
    pub cpu_ns: u64,
    pub memory_working_set: u64,
}

/// A reading and when it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at: SystemTime,
    pub usage: Usage,
}

/// The last two samples of one cgroup.
#[derive(Debug, Clone, Copy, Default)]
pub struct Series {
    previous: Option<Sample>,
    last: Option<Sample>,
}

impl Series {
    pub fn push(&mut self, s: Sample) {
        self.previous = self.last.replace(s);
    }

    /// The usage over the window between the last two samples; `None` until there are two,
    /// or when the counter went backwards (a reset cgroup) or time did not advance.
    pub fn rate(&self) -> Option<Rate> {
        let (prev, last) = (self.previous?, self.last?);
        let window = last.at.duration_since(prev.at).ok()?;
        if window.is_zero() || last.usage.cpu_ns < prev.usage.cpu_ns {
            return None;
        }
        let cpu =
            u128::from(last.usage.cpu_ns - prev.usage.cpu_ns) * 1_000_000_000 / window.as_nanos();
        Some(Rate {
            timestamp: last.at,
            window,
            cpu_nano_cores: u64::try_from(cpu).unwrap_or(u64::MAX),
            memory_working_set_bytes: last.usage.memory_working_set,
        })
    }
}

/// Usage over a window, in the units metrics.k8s.io reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    /// The end of the window.
    pub timestamp: SystemTime,
    pub window: Duration,
    pub cpu_nano_cores: u64,
    pub memory_working_set_bytes: u64,
}

/// One running container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    pub name: String,
    pub usage: Rate,
}

/// One pod whose running containers all have a rate (metrics-server leaves out the others).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStats {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub containers: Vec<ContainerStats>,
}

/// What `GET /stats/summary` answers (the kubelet's own shape; served in-process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Summary {
    pub node: Option<Rate>,
    pub pods: Vec<PodStats>,
}

/// A container as the runtime lists it: labels and cgroup.
#[derive(Debug, Clone)]
struct Tracked {
    namespace: String,
    pod: String,
    uid: String,
    container: String,
    series: Series,
}

/// The samples the kubelet keeps between collections.
#[derive(Debug, Default)]
pub struct Collector {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    node: Series,
    /// By container id; containers no longer running are dropped at the next collection.
    containers: HashMap<String, Tracked>,
}

impl Collector {
    /// Takes one sample of the node and of every running, non-init container.
    pub fn collect(&self, cgroups: &Cgroups, kubelet: &Kubelet) {
        let now = SystemTime::now();
        let node = cgroups
            .node()
            .inspect_err(|e| tracing::debug!(error = %e, "reading node stats"));
        let listed = match kubelet.runtime.list() {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "listing containers for stats");
                Vec::new()
            }
        };
        let mut readings = Vec::new();
        for (config, state) in listed {
            if !state.is_running() || config.labels.contains_key(worker::LABEL_INIT) {
                continue;
            }
            let label = |k: &str| config.labels.get(k).cloned().unwrap_or_default();
            match cgroups.container(&config.cgroup_path) {
                Ok(usage) => readings.push((
                    config.id.clone(),
                    Tracked {
                        namespace: label(worker::LABEL_POD_NAMESPACE),
                        pod: label(worker::LABEL_POD_NAME),
                        uid: label(worker::LABEL_POD_UID),
                        container: label(worker::LABEL_CONTAINER),
                        series: Series::default(),
                    },
                    usage,
                )),
                // A container that just ended: it is gone at the next listing.
                Err(e) => tracing::debug!(id = %config.id, error = %e, "reading container stats"),
            }
        }
        self.record(now, node.ok(), readings);
    }

    /// Adds one sample of the node (when it could be read) and of each container read; the
    /// containers not in `readings` are forgotten.
    fn record(
        &self,
        now: SystemTime,
        node: Option<Usage>,
        readings: Vec<(String, Tracked, Usage)>,
    ) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(usage) = node {
            state.node.push(Sample { at: now, usage });
        }
        let mut next = HashMap::new();
        for (id, fresh, usage) in readings {
            let mut t = state.containers.remove(&id).unwrap_or(fresh);
            t.series.push(Sample { at: now, usage });
            next.insert(id, t);
        }
        state.containers = next;
    }

    /// The last memory working set of each running container, by pod UID.
    pub fn memory_by_pod(&self) -> HashMap<String, Vec<(String, u64)>> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: HashMap<String, Vec<(String, u64)>> = HashMap::new();
        for t in state.containers.values() {
            if let Some(last) = t.series.last {
                out.entry(t.uid.clone())
                    .or_default()
                    .push((t.container.clone(), last.usage.memory_working_set));
            }
        }
        out
    }

    /// The node's rate and the pods whose running containers all have one.
    pub fn summary(&self) -> Summary {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut pods: HashMap<&str, (PodStats, bool)> = HashMap::new();
        for t in state.containers.values() {
            let entry = pods.entry(&t.uid).or_insert_with(|| {
                (
                    PodStats {
                        namespace: t.namespace.clone(),
                        name: t.pod.clone(),
                        uid: t.uid.clone(),
                        containers: Vec::new(),
                    },
                    true,
                )
            });
            match t.series.rate() {
                Some(usage) => entry.0.containers.push(ContainerStats {
                    name: t.container.clone(),
                    usage,
                }),
                None => entry.1 = false,
            }
        }
        let mut pods: Vec<PodStats> = pods
            .into_values()
            .filter(|(_, complete)| *complete)
            .map(|(mut p, _)| {
                p.containers.sort_by(|a, b| a.name.cmp(&b.name));
                p
            })
            .collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Summary {
            node: state.node.rate(),
            pods,
        }
    }
}

/// Samples every [`PERIOD`] until the task is aborted.
pub async fn run(kubelet: Arc<Kubelet>) {
    let cgroups = match Cgroups::detect() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "no resource metrics: cannot find the cgroups");
            return;
        }
    };
    tracing::debug!(?cgroups, "resource metrics from these cgroups");
    let cgroups = Arc::new(cgroups);
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (k, c) = (kubelet.clone(), cgroups.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || k.stats.collect(&c, &k)).await {
            tracing::warn!(error = %e, "collecting resource metrics");
        }
    }
}

/// `GET /stats/summary`.
pub async fn summary_route(
    axum::extract::State(k): axum::extract::State<Arc<Kubelet>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = serde_json::to_vec(&k.stats.summary()).unwrap_or_default();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const JOINED: &str = "\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory
";
    const UNIFIED: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn mountinfo_finds_v1_hierarchies_before_the_unified_one() {
        assert_eq!(
            Cgroups::from_mountinfo(HYBRID),
            Some(Cgroups::V1 {
                cpuacct: "/sys/fs/cgroup/cpuacct".into(),
                memory: "/sys/fs/cgroup/memory".into(),
            })
        );
        assert_eq!(
            Cgroups::from_mountinfo(JOINED),
            Some(Cgroups::V1 {
                cpuacct: "/sys/fs/cgroup/cpu,cpuacct".into(),
                memory: "/sys/fs/cgroup/memory".into(),
            })
        );
        assert_eq!(
            Cgroups::from_mountinfo(UNIFIED),
            Some(Cgroups::V2 {
                root: "/sys/fs/cgroup".into()
            })
        );
        assert_eq!(Cgroups::from_mountinfo("garbage\n1 2 3\n"), None);
        assert_eq!(
            unescape_mount("/mnt/with\\040space"),
            "/mnt/with space".to_string()
        );
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn v1_container_usage_is_cpuacct_and_usage_minus_inactive_file() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Cgroups::V1 {
            cpuacct: tmp.path().join("cpuacct"),
            memory: tmp.path().join("memory"),
        };
        let cg = "/kubepods/besteffort/podu/c1";
        write(
            &tmp.path().join("cpuacct").join(&cg[1..]),
            "cpuacct.usage",
            "123456789\n",
        );
        let mem = tmp.path().join("memory").join(&cg[1..]);
        write(&mem, "memory.usage_in_bytes", "10485760\n");
        write(
            &mem,
            "memory.stat",
            "cache 4096\nrss 8192\ninactive_file 1\ntotal_cache 4096\ntotal_inactive_file 2097152\ntotal_active_file 0\n",
        );
        assert_eq!(
            c.container(cg).unwrap(),
            Usage {
                cpu_ns: 123_456_789,
                memory_working_set: 10_485_760 - 2_097_152,
            }
        );
        // A missing field is an error, not a zero.
        write(&mem, "memory.stat", "cache 4096\n");
        assert!(matches!(c.container(cg), Err(Error::Parse { .. })));
        assert!(matches!(c.container("/nope"), Err(Error::Io { .. })));
    }

    #[test]
    fn v2_container_usage_is_usage_usec_and_current_minus_inactive_file() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Cgroups::V2 {
            root: tmp.path().into(),
        };
        let dir = tmp.path().join("kubepods/podu/c1");
        write(
            &dir,
            "cpu.stat",
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n",
        );
        write(&dir, "memory.current", "5000000\n");
        write(
            &dir,
            "memory.stat",
            "anon 1000\nfile 4000\nactive_file 100\ninactive_file 1000000\n",
        );
        assert_eq!(
            c.container("/kubepods/podu/c1").unwrap(),
            Usage {
                cpu_ns: 2_500_000_000,
                memory_working_set: 4_000_000,
            }
        );
        // More inactive file pages than usage (racy reads) is zero, not an underflow.
        write(&dir, "memory.current", "10\n");
        assert_eq!(
            c.container("/kubepods/podu/c1").unwrap().memory_working_set,
            0
        );
    }

    #[test]
    fn node_working_set_from_meminfo() {
        let meminfo = "MemTotal:       24684084 kB\nMemFree:         4605124 kB\nMemAvailable:   18000000 kB\nActive(file):    1000 kB\nInactive(file):  9364104 kB\n";
        assert_eq!(
            node_working_set(meminfo),
            Some((24_684_084 - 4_605_124 - 9_364_104) * 1024)
        );
        assert_eq!(node_working_set("MemFree: 1 kB\n"), None);
        assert_eq!(flat_value("a 1\nab 2\n", "ab"), Some(2));
        assert_eq!(flat_value("a x\n", "a"), None);
    }

    #[test]
    fn rate_is_cpu_time_over_the_window_between_the_last_two_samples() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let sample = |secs: u64, cpu_ns: u64, mem: u64| Sample {
            at: t0 + Duration::from_secs(secs),
            usage: Usage {
                cpu_ns,
                memory_working_set: mem,
            },
        };
        let mut s = Series::default();
        assert_eq!(s.rate(), None);
        s.push(sample(0, 1_000_000_000, 100));
        assert_eq!(s.rate(), None, "one sample has no rate");
        // 2.5 CPU seconds in 10 s: a quarter core.
        s.push(sample(10, 3_500_000_000, 200));
        let r = s.rate().unwrap();
        assert_eq!(r.cpu_nano_cores, 250_000_000);
        assert_eq!(r.window, Duration::from_secs(10));
        assert_eq!(r.timestamp, t0 + Duration::from_secs(10));
        assert_eq!(r.memory_working_set_bytes, 200);
        // Only the last two count: 1 s of CPU over the next 20 s.
        s.push(sample(30, 4_500_000_000, 50));
        let r = s.rate().unwrap();
        assert_eq!(r.cpu_nano_cores, 50_000_000);
        assert_eq!(r.window, Duration::from_secs(20));
        // A counter that went backwards has no rate.
        s.push(sample(40, 10, 50));
        assert_eq!(s.rate(), None);
        // Nor a clock that did not move.
        let mut s = Series::default();
        s.push(sample(5, 1, 1));
        s.push(sample(5, 2, 1));
        assert_eq!(s.rate(), None);
    }

    #[test]
    fn summary_lists_only_pods_whose_running_containers_all_have_a_rate() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let tracked = |pod: &str, container: &str| Tracked {
            namespace: "default".into(),
            pod: pod.into(),
            uid: format!("uid-{pod}"),
            container: container.into(),
            series: Series::default(),
        };
        let usage = |cpu_ns: u64| Usage {
            cpu_ns,
            memory_working_set: 4096,
        };
        let c = Collector::default();
        c.record(
            t0,
            Some(usage(0)),
            vec![
                ("a1".into(), tracked("a", "main"), usage(0)),
                ("a2".into(), tracked("a", "side"), usage(0)),
                ("b1".into(), tracked("b", "main"), usage(0)),
            ],
        );
        assert_eq!(c.summary(), Summary::default(), "no rates after one sample");
        // b's container restarted under a new id: b has no rate yet, a has two containers.
        c.record(
            t0 + Duration::from_secs(10),
            Some(usage(20_000_000_000)),
            vec![
                ("a1".into(), tracked("a", "main"), usage(10_000_000_000)),
                ("a2".into(), tracked("a", "side"), usage(1_000_000)),
                ("b2".into(), tracked("b", "main"), usage(5)),
            ],
        );
        let s = c.summary();
        assert_eq!(s.node.map(|n| n.cpu_nano_cores), Some(2_000_000_000));
        assert_eq!(s.pods.len(), 1, "{s:?}");
        let a = &s.pods[0];
        assert_eq!((a.name.as_str(), a.uid.as_str()), ("a", "uid-a"));
        let names: Vec<(&str, u64)> = a
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.usage.cpu_nano_cores))
            .collect();
        assert_eq!(names, [("main", 1_000_000_000), ("side", 100_000)]);
        // The JSON survives the trip to the API server.
        let back: Summary = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
