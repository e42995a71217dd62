//! Node-pressure eviction: upstream's kubelet eviction manager (`pkg/kubelet/eviction`).
//!
//! Every [`INTERVAL`] the manager observes the node's signals (`memory.available`,
//! `nodefs.available`, `nodefs.inodesFree`, `imagefs.available`, `imagefs.inodesFree`,
//! `pid.available`) and compares them with the hard and soft thresholds of `--kubelet-arg
//! eviction-hard=…` / `eviction-soft=…` (the defaults are upstream's). A met threshold sets its
//! node condition (MemoryPressure, DiskPressure, PIDPressure), which stays for the pressure
//! transition period after the signal recovers; the node lifecycle controller turns conditions
//! into `node.kubernetes.io/*-pressure` taints. A hard threshold, or a soft one met for its
//! whole grace period, makes the kubelet reclaim: for disk signals it first removes unused
//! images, and if that is not enough it evicts one pod per interval, ranked as upstream does
//! (pods using more than they requested first, then lower priority, then larger usage above
//! the request). Critical pods (static, mirror, or priority ≥ 2000000000) are never evicted.
//! While a condition is set, new pods are admitted as upstream's eviction admit handler
//! decides (only memory pressure: all but BestEffort pods, unless they tolerate the taint).
//!
//! Thresholds, the observation and the ranking are pure functions of their inputs; the I/O
//! (statvfs, /proc, cgroups, the per-pod disk walk) is in the `observe_*` functions.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::Kubelet;
use super::node::{Machine, Pressure};
use super::pod::Failure;
use super::stats::Cgroups;
use crate::quota::{Amount, Format};

/// How often signals are observed and at most one pod is evicted (upstream's
/// `monitoringInterval`).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The grace period of a pod evicted for a hard threshold (upstream's
/// `immediateEvictionGracePeriodSeconds`).
pub const HARD_EVICTION_GRACE: Duration = Duration::from_secs(1);

/// Pods with at least this priority are critical (`scheduling.SystemCriticalPriority`).
const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// The `reason` of an evicted or rejected pod.
pub const REASON: &str = "Evicted";

/// An eviction signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    MemoryAvailable,
    NodefsAvailable,
    NodefsInodesFree,
    ImagefsAvailable,
    ImagefsInodesFree,
    PidAvailable,
}

impl Signal {
    const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodefsAvailable,
        Signal::NodefsInodesFree,
        Signal::ImagefsAvailable,
        Signal::ImagefsInodesFree,
        Signal::PidAvailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
            Signal::ImagefsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The resource named in eviction messages (upstream's `signalToResource`).
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodefsAvailable | Signal::ImagefsAvailable => "ephemeral-storage",
            Signal::NodefsInodesFree | Signal::ImagefsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    fn is_disk(self) -> bool {
        matches!(
            self,
            Signal::NodefsAvailable
                | Signal::NodefsInodesFree
                | Signal::ImagefsAvailable
                | Signal::ImagefsInodesFree
        )
    }

    /// Quantities of byte signals print in binary units, counts as plain numbers.
    fn format(self) -> Format {
        match self {
            Signal::MemoryAvailable | Signal::NodefsAvailable | Signal::ImagefsAvailable => {
                Format::BinarySI
            }
            _ => Format::DecimalSI,
        }
    }
}

/// A threshold's value: an absolute quantity or a percentage of the signal's capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    Quantity(u64),
    Percent(f64),
}

impl Value {
    fn parse(s: &str) -> Result<Value, String> {
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{:?} is not a percentage", s))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("{s:?} is not between 0% and 100%"));
            }
            return Ok(Value::Percent(p));
        }
        let a = Amount::parse(s).ok_or_else(|| format!("{s:?} is not a quantity"))?;
        if a.nanos < 0 {
            return Err(format!("{s:?} is negative"));
        }
        // Byte quantities round up, as `Quantity.Value()` does.
        let whole = (a.nanos + 999_999_999) / 1_000_000_000;
        Ok(Value::Quantity(u64::try_from(whole).unwrap_or(u64::MAX)))
    }

    /// The quantity against a capacity (upstream's `GetThresholdQuantity`).
    pub fn quantity(self, capacity: u64) -> u64 {
        match self {
            Value::Quantity(q) => q,
            Value::Percent(p) => (capacity as f64 * p / 100.0) as u64,
        }
    }
}

/// One `signal<value` threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
    /// Soft thresholds: how long the signal must stay below before pods are evicted.
    pub grace: Option<Duration>,
    /// `eviction-minimum-reclaim`: once met, the threshold holds until this much more than it
    /// is available again.
    pub min_reclaim: Option<Value>,
}

impl Threshold {
    pub fn is_hard(&self) -> bool {
        self.grace.is_none()
    }
}

/// What `--kubelet-arg` configures: eviction, reservations and the pod count.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub hard: Vec<Threshold>,
    pub soft: Vec<Threshold>,
    /// `eviction-max-pod-grace-period` (seconds) for soft evictions.
    pub max_pod_grace_seconds: i64,
    /// `eviction-pressure-transition-period`.
    pub transition: Duration,
    /// `kube-reserved` plus `system-reserved`, by resource (`cpu` in millicores, `memory` and
    /// `ephemeral-storage` in bytes, `pid` as a count).
    pub reserved: BTreeMap<String, u64>,
    /// `max-pods`.
    pub max_pods: u32,
}

impl Default for Config {
    /// k3s's kubelet defaults, which rk3s follows: `eviction-hard=imagefs.available<5%,
    /// nodefs.available<5%` with `eviction-minimum-reclaim` of 10% for both (k3s replaces
    /// upstream's `memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,…`, so
    /// that small disks and small memories stay usable); upstream's 5 minute transition period.
    fn default() -> Config {
        let hard = [Signal::ImagefsAvailable, Signal::NodefsAvailable]
            .into_iter()
            .map(|signal| Threshold {
                signal,
                value: Value::Percent(5.0),
                grace: None,
                min_reclaim: Some(Value::Percent(10.0)),
            })
            .collect();
        Config {
            hard,
            soft: Vec::new(),
            max_pod_grace_seconds: 0,
            transition: Duration::from_secs(5 * 60),
            reserved: BTreeMap::new(),
            max_pods: super::node::MAX_PODS,
        }
    }
}

/// The kubelet flags `--kubelet-arg` accepts (k3s passes any; rk3s has no separate kubelet,
/// so it takes those it implements and names the others as unsupported).
pub const KUBELET_ARGS: [&str; 9] = [
    "eviction-hard",
    "eviction-soft",
    "eviction-soft-grace-period",
    "eviction-minimum-reclaim",
    "eviction-max-pod-grace-period",
    "eviction-pressure-transition-period",
    "kube-reserved",
    "system-reserved",
    "max-pods",
];

/// `signal<value` pairs, comma separated.
fn parse_thresholds(list: &str) -> Result<Vec<(Signal, Value)>, String> {
    let mut out: Vec<(Signal, Value)> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item
            .split_once('<')
            .ok_or_else(|| format!("{item:?} is not SIGNAL<VALUE"))?;
        let signal = Signal::parse(name.trim()).ok_or_else(|| unknown_signal(name))?;
        if out.iter().any(|(s, _)| *s == signal) {
            return Err(format!("{} is given twice", signal.name()));
        }
        out.push((signal, Value::parse(value.trim())?));
    }
    Ok(out)
}

fn unknown_signal(name: &str) -> String {
    let known: Vec<&str> = Signal::ALL.iter().map(|s| s.name()).collect();
    format!(
        "unknown eviction signal {:?} (known: {})",
        name.trim(),
        known.join(", ")
    )
}

/// `signal=value` pairs, comma separated.
fn parse_pairs(list: &str) -> Result<Vec<(String, String)>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("{item:?} is not KEY=VALUE"))
        })
        .collect()
}

/// Go durations as the kubelet's flags take them (`1m30s`, `1.5h`, `500ms`, `0`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use e.g. 30s, 5m, 1m30s or 0");
    let text = s.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| bad())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

impl Config {
    /// Builds the configuration from `--kubelet-arg KEY=VALUE` flags. Setting `eviction-hard`
    /// replaces all the default hard thresholds, as upstream's flag does.
    pub fn from_kubelet_args(args: &[(String, String)]) -> Result<Config, String> {
        let mut config = Config::default();
        let mut soft_grace: Vec<(String, String)> = Vec::new();
        // k3s passes its minimum reclaim as its own flag: it stays when only eviction-hard
        // is given.
        let mut min_reclaim: Vec<(String, String)> = ["imagefs.available", "nodefs.available"]
            .iter()
            .map(|s| (s.to_string(), "10%".to_string()))
            .collect();
        for (key, value) in args {
            config.apply(&mut soft_grace, &mut min_reclaim, key, value)?;
        }
        for t in &mut config.soft {
            let grace = soft_grace
                .iter()
                .find(|(s, _)| s == t.signal.name())
                .ok_or_else(|| {
                    format!(
                        "eviction-soft: {} needs a grace period in eviction-soft-grace-period",
                        t.signal.name()
                    )
                })?;
            t.grace = Some(
                parse_duration(&grace.1).map_err(|e| format!("eviction-soft-grace-period: {e}"))?,
            );
        }
        for (name, _) in &soft_grace {
            let signal = Signal::parse(name)
                .ok_or_else(|| format!("eviction-soft-grace-period: {}", unknown_signal(name)))?;
            if !config.soft.iter().any(|t| t.signal == signal) {
                return Err(format!(
                    "eviction-soft-grace-period: {name} has no eviction-soft threshold"
                ));
            }
        }
        for (name, value) in &min_reclaim {
            let signal = Signal::parse(name)
                .ok_or_else(|| format!("eviction-minimum-reclaim: {}", unknown_signal(name)))?;
            let v = Value::parse(value)
                .map_err(|e| format!("eviction-minimum-reclaim: {name}: {e}"))?;
            for t in config.hard.iter_mut().chain(config.soft.iter_mut()) {
                if t.signal == signal {
                    t.min_reclaim = Some(v);
                }
            }
        }
        Ok(config)
    }

    /// Checks one `--kubelet-arg` by itself (what can be checked without the others).
    pub fn check_arg(key: &str, value: &str) -> Result<(), String> {
        Config::default().apply(&mut Vec::new(), &mut Vec::new(), key, value)
    }

    fn apply(
        &mut self,
        soft_grace: &mut Vec<(String, String)>,
        min_reclaim: &mut Vec<(String, String)>,
        key: &str,
        value: &str,
    ) -> Result<(), String> {
        let config = self;
        let bad = |e: String| format!("{key}: {e}");
        match key {
            "eviction-hard" => {
                config.hard = parse_thresholds(value)
                    .map_err(bad)?
                    .into_iter()
                    .map(|(signal, value)| Threshold {
                        signal,
                        value,
                        grace: None,
                        min_reclaim: None,
                    })
                    .collect();
            }
            "eviction-soft" => {
                config.soft = parse_thresholds(value)
                    .map_err(bad)?
                    .into_iter()
                    .map(|(signal, value)| Threshold {
                        signal,
                        value,
                        grace: Some(Duration::ZERO),
                        min_reclaim: None,
                    })
                    .collect();
            }
            "eviction-soft-grace-period" => {
                *soft_grace = parse_pairs(value).map_err(bad)?;
                for (name, d) in soft_grace.iter() {
                    Signal::parse(name).ok_or_else(|| bad(unknown_signal(name)))?;
                    parse_duration(d).map_err(bad)?;
                }
            }
            "eviction-minimum-reclaim" => {
                *min_reclaim = parse_pairs(value).map_err(bad)?;
                for (name, v) in min_reclaim.iter() {
                    Signal::parse(name).ok_or_else(|| bad(unknown_signal(name)))?;
                    Value::parse(v).map_err(|e| bad(format!("{name}: {e}")))?;
                }
            }
            "eviction-max-pod-grace-period" => {
                config.max_pod_grace_seconds = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("{value:?} is not a number of seconds")))?;
            }
            "eviction-pressure-transition-period" => {
                config.transition = parse_duration(value).map_err(bad)?;
            }
            "kube-reserved" | "system-reserved" => {
                for (resource, q) in parse_pairs(value).map_err(bad)? {
                    let amount = parse_reserved(&resource, &q).map_err(bad)?;
                    *config.reserved.entry(resource).or_default() += amount;
                }
            }
            "max-pods" => {
                config.max_pods = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad(format!("{value:?} is not a positive number")))?;
            }
            other => {
                return Err(format!(
                    "unsupported kubelet flag {other:?} (supported: {})",
                    KUBELET_ARGS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Everything subtracted from capacity to give allocatable: the reservations plus the
    /// hard memory and nodefs thresholds (upstream's node allocatable).
    pub fn reserved_for(&self, machine: &Machine) -> Reserved {
        let hard = |signal: Signal, capacity: u64| {
            self.hard
                .iter()
                .find(|t| t.signal == signal)
                .map(|t| t.value.quantity(capacity))
                .unwrap_or(0)
        };
        let r = |k: &str| self.reserved.get(k).copied().unwrap_or(0);
        Reserved {
            cpu_milli: r("cpu"),
            memory_bytes: r("memory") + hard(Signal::MemoryAvailable, machine.memory_bytes),
            storage_bytes: r("ephemeral-storage")
                + hard(Signal::NodefsAvailable, machine.storage_bytes),
            pids: r("pid"),
        }
    }

    fn thresholds(&self) -> impl Iterator<Item = &Threshold> {
        self.hard.iter().chain(self.soft.iter())
    }
}

fn parse_reserved(resource: &str, q: &str) -> Result<u64, String> {
    let amount = Amount::parse(q).ok_or_else(|| format!("{resource}={q:?} is not a quantity"))?;
    if amount.nanos < 0 {
        return Err(format!("{resource}={q:?} is negative"));
    }
    let ceil = |n: i128, unit: i128| u64::try_from((n + unit - 1) / unit).unwrap_or(u64::MAX);
    match resource {
        "cpu" => Ok(ceil(amount.nanos, 1_000_000)),
        "memory" | "ephemeral-storage" | "pid" => Ok(ceil(amount.nanos, 1_000_000_000)),
        other => Err(format!(
            "cannot reserve {other:?} (cpu, memory, ephemeral-storage or pid)"
        )),
    }
}

/// What is subtracted from capacity to give allocatable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu_milli: u64,
    pub memory_bytes: u64,
    pub storage_bytes: u64,
    pub pids: u64,
}

/// One signal's reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    pub available: u64,
    pub capacity: u64,
}

pub type Observations = BTreeMap<Signal, Observation>;

/// The node condition a signal sets.
fn condition_of(signal: Signal) -> &'static str {
    match signal {
        Signal::MemoryAvailable => "MemoryPressure",
        Signal::PidAvailable => "PIDPressure",
        _ => "DiskPressure",
    }
}

fn met(t: &Threshold, o: &Observation, with_min_reclaim: bool) -> bool {
    let mut quantity = t.value.quantity(o.capacity);
    if with_min_reclaim && let Some(m) = t.min_reclaim {
        quantity = quantity.saturating_add(m.quantity(o.capacity));
    }
    o.available < quantity
}

/// What one pass decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The node conditions to report.
    pub pressure: Pressure,
    /// The threshold to reclaim for now (hard, or soft past its grace period), with its
    /// observation; `None`: nothing to reclaim.
    pub reclaim: Option<(Threshold, Observation)>,
}

/// The manager's memory between passes.
#[derive(Debug, Default)]
pub struct Manager {
    /// Thresholds that were met at the last pass (they hold until min-reclaim is recovered).
    met: Vec<Threshold>,
    /// When each currently met threshold was first seen met.
    first_observed: Vec<(Threshold, Instant)>,
    /// When each condition was last seen.
    last_seen: HashMap<&'static str, Instant>,
}

impl Manager {
    /// One pass of upstream's `synchronize` up to choosing the threshold to reclaim.
    pub fn step(&mut self, config: &Config, observations: &Observations, now: Instant) -> Decision {
        let mut thresholds: Vec<Threshold> = Vec::new();
        for t in config.thresholds() {
            let Some(o) = observations.get(&t.signal) else {
                continue;
            };
            let held = self.met.contains(t);
            if met(t, o, false) || (held && met(t, o, true)) {
                thresholds.push(t.clone());
            }
        }
        // First-observed times of the thresholds still met.
        let mut first_observed = Vec::new();
        for t in &thresholds {
            let at = self
                .first_observed
                .iter()
                .find(|(x, _)| x == t)
                .map(|(_, at)| *at)
                .unwrap_or(now);
            first_observed.push((t.clone(), at));
        }
        self.first_observed = first_observed;
        // Conditions follow every met threshold (soft ones at once), then stay for the
        // transition period.
        for t in &thresholds {
            self.last_seen.insert(condition_of(t.signal), now);
        }
        let active = |name: &str| {
            self.last_seen
                .get(name)
                .is_some_and(|at| now.duration_since(*at) < config.transition || *at == now)
        };
        let pressure = Pressure {
            memory: active("MemoryPressure"),
            disk: active("DiskPressure"),
            pid: active("PIDPressure"),
        };
        // Only thresholds past their grace period reclaim.
        let due: Vec<Threshold> = self
            .first_observed
            .iter()
            .filter(|(t, at)| t.grace.is_none_or(|g| now.duration_since(*at) >= g))
            .map(|(t, _)| t.clone())
            .collect();
        self.met = due.clone();
        // Memory first (upstream's `byEvictionPriority`), then in configuration order.
        let reclaim = due
            .iter()
            .find(|t| t.signal == Signal::MemoryAvailable)
            .or_else(|| due.first())
            .and_then(|t| observations.get(&t.signal).map(|o| (t.clone(), *o)));
        Decision { pressure, reclaim }
    }
}

/// Reads every signal: memory from /proc/meminfo (the working set as `kubectl top node`
/// reports it), nodefs and imagefs from the filesystem holding `agent_dir` (the image store
/// lives there too, so both report the same filesystem, as on a default k3s node), pids from
/// the kernel's limits and the number of tasks.
pub fn observe(agent_dir: &Path) -> Observations {
    let mut out = Observations::new();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    if let (Some(total), Some(ws)) = (
        super::stats::meminfo_bytes(&meminfo, "MemTotal"),
        super::stats::node_working_set(&meminfo),
    ) {
        out.insert(
            Signal::MemoryAvailable,
            Observation {
                available: total.saturating_sub(ws),
                capacity: total,
            },
        );
    }
    if let Ok(st) = nix::sys::statvfs::statvfs(agent_dir) {
        // The field types differ between targets (u32 on some 32-bit ones).
        #[allow(clippy::unnecessary_cast)]
        let (bytes, inodes) = {
            let block = st.fragment_size() as u64;
            (
                Observation {
                    available: (st.blocks_available() as u64).saturating_mul(block),
                    capacity: (st.blocks() as u64).saturating_mul(block),
                },
                Observation {
                    available: st.files_available() as u64,
                    capacity: st.files() as u64,
                },
            )
        };
        out.insert(Signal::NodefsAvailable, bytes);
        out.insert(Signal::ImagefsAvailable, bytes);
        // Filesystems without inode accounting (btrfs) report zero files: no signal.
        if inodes.capacity > 0 {
            out.insert(Signal::NodefsInodesFree, inodes);
            out.insert(Signal::ImagefsInodesFree, inodes);
        }
    }
    let read_u64 = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    let tasks = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| tasks_of_loadavg(&s));
    if let (Some(pid_max), Some(tasks)) = (read_u64("/proc/sys/kernel/pid_max"), tasks) {
        let max = read_u64("/proc/sys/kernel/threads-max").map_or(pid_max, |t| t.min(pid_max));
        out.insert(
            Signal::PidAvailable,
            Observation {
                available: max.saturating_sub(tasks),
                capacity: max,
            },
        );
    }
    out
}

/// The number of tasks from `/proc/loadavg` (`0.1 0.2 0.3 2/345 6789`: 345).
fn tasks_of_loadavg(s: &str) -> Option<u64> {
    s.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
}

/// Bytes and inodes a pod uses on the node's filesystem: its directory (container upper
/// layers, disk emptyDirs, volume files), not crossing into mounts (root filesystems, tmpfs
/// volumes), and its log directory.
pub fn pod_disk_usage(pod_dir: &Path, log_dir: &Path) -> (u64, u64) {
    let (a, b) = (disk_usage(pod_dir), disk_usage(log_dir));
    (a.0 + b.0, a.1 + b.1)
}

/// Allocated bytes and inodes under `dir` on `dir`'s own filesystem (hard links counted
/// once).
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let dev = root.dev();
    let mut seen = std::collections::HashSet::new();
    let mut total = root.blocks() * 512;
    let mut inodes = 1;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            if m.dev() != dev {
                continue;
            }
            if m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino()) {
                continue;
            }
            total += m.blocks() * 512;
            inodes += 1;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (total, inodes)
}

/// Tasks in a cgroup directory and all its children.
pub fn cgroup_tasks(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
            total += s.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    total
}

/// A pod's local storage use: each disk-backed emptyDir volume and each container (its
/// writable layer and its logs), in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodStorage {
    pub volumes: BTreeMap<String, u64>,
    pub containers: BTreeMap<String, u64>,
}

/// The whole units of an amount (negative ones are 0).
fn whole(a: Amount) -> u64 {
    u64::try_from(a.nanos.max(0) / 1_000_000_000).unwrap_or(u64::MAX)
}

fn bytes_of(q: &str) -> Option<u64> {
    Amount::parse(q).map(whole)
}

/// Whether the pod declares any local storage limit (only those pods are measured).
pub fn has_storage_limits(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let volume_limit = spec.volumes.iter().flatten().any(|v| {
        v.empty_dir
            .as_ref()
            .is_some_and(|e| e.medium.as_deref() != Some("Memory") && e.size_limit.is_some())
    });
    let container_limit = spec.containers.iter().any(|c| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .is_some_and(|l| l.contains_key("ephemeral-storage"))
    });
    volume_limit || container_limit
}

/// Upstream's local storage eviction (`localStorageEviction`): the message for a pod whose
/// disk-backed emptyDir exceeds its `sizeLimit`, whose total use exceeds the sum of its
/// containers' `ephemeral-storage` limits, or with a container over its own limit; `None`
/// when it is within them. Checked in that order, as upstream.
pub fn storage_violation(pod: &Pod, usage: &PodStorage) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    for v in spec.volumes.iter().flatten() {
        let Some(e) = v.empty_dir.as_ref() else {
            continue;
        };
        if e.medium.as_deref() == Some("Memory") {
            continue;
        }
        let (Some(limit), Some(used)) = (e.size_limit.as_ref(), usage.volumes.get(&v.name)) else {
            continue;
        };
        if bytes_of(&limit.0).is_some_and(|l| l > 0 && *used > l) {
            return Some(format!(
                "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                v.name, limit.0
            ));
        }
    }
    let limit_of = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("ephemeral-storage"))
            .map(|q| q.0.clone())
    };
    if let Some(limit) = crate::quota::pod_resources(pod, true).get("ephemeral-storage")
        && spec.containers.iter().any(|c| limit_of(c).is_some())
    {
        let total: u64 = usage
            .volumes
            .values()
            .chain(usage.containers.values())
            .sum();
        if total > whole(*limit) {
            return Some(format!(
                "Pod ephemeral local storage usage exceeds the total limit of containers {}. ",
                limit.canonical()
            ));
        }
    }
    for c in &spec.containers {
        let (Some(limit), Some(used)) = (limit_of(c), usage.containers.get(&c.name)) else {
            continue;
        };
        if bytes_of(&limit).is_some_and(|l| *used > l) {
            return Some(format!(
                "Container {} exceeded its local ephemeral storage limit {limit:?}. ",
                c.name
            ));
        }
    }
    None
}

/// Static and mirror pods and pods of system-critical priority (upstream's `IsCriticalPod`).
pub fn is_critical(pod: &Pod) -> bool {
    let annotations = pod.metadata.annotations.as_ref();
    let static_or_mirror = annotations.is_some_and(|a| {
        a.contains_key(super::static_pods::MIRROR)
            || a.get("kubernetes.io/config.source")
                .is_some_and(|s| s != "api")
    });
    static_or_mirror
        || pod
            .spec
            .as_ref()
            .and_then(|s| s.priority)
            .is_some_and(|p| p >= SYSTEM_CRITICAL_PRIORITY)
}

/// Upstream's eviction admit handler: `None` admits the pod, `Some(message)` rejects it.
pub fn admit(pod: &Pod, pressure: Pressure) -> Option<String> {
    let mut conditions = Vec::new();
    if pressure.memory {
        conditions.push("MemoryPressure");
    }
    if pressure.disk {
        conditions.push("DiskPressure");
    }
    if pressure.pid {
        conditions.push("PIDPressure");
    }
    if conditions.is_empty() || is_critical(pod) {
        return None;
    }
    if conditions == ["MemoryPressure"] {
        if super::pod::qos_class(pod) != "BestEffort" {
            return None;
        }
        let tolerates =
            pod.spec
                .as_ref()
                .and_then(|s| s.tolerations.as_ref())
                .is_some_and(|ts| {
                    ts.iter().any(|t| {
                        let key_ok = t.key.as_deref().is_none_or(|k| {
                            k.is_empty() || k == "node.kubernetes.io/memory-pressure"
                        });
                        let effect_ok = t
                            .effect
                            .as_deref()
                            .is_none_or(|e| e.is_empty() || e == "NoSchedule");
                        // The taint has no value: `Equal` tolerates it only with an empty one.
                        let op_ok = t.operator.as_deref() == Some("Exists")
                            || t.value.as_deref().unwrap_or("").is_empty();
                        key_ok && effect_ok && op_ok
                    })
                });
        if tolerates {
            return None;
        }
    }
    Some(format!(
        "The node had condition: [{}]. ",
        conditions.join(" ")
    ))
}

/// One candidate pod with its usage of the resource being reclaimed.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub pod: Pod,
    /// Usage of the resource (bytes, inodes or tasks); `None` when unknown.
    pub usage: Option<u64>,
    /// Per-container usage, for the message (memory and disk only).
    pub containers: Vec<(String, u64)>,
}

/// The pod's request of the reclaimed resource (`memory` or `ephemeral-storage`) in bytes.
fn request(pod: &Pod, resource: &str) -> u64 {
    crate::quota::pod_resources(pod, false)
        .get(resource)
        .map(|a| whole(*a))
        .unwrap_or(0)
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Orders the candidates for eviction as upstream's rankers: for memory and disk, pods whose
/// usage exceeds their request first, then by priority (lowest first), then by usage above
/// the request (largest first); for pids by priority, then by task count.
pub fn rank(signal: Signal, candidates: &mut [Candidate]) {
    let resource = signal.resource();
    let by_request = matches!(resource, "memory" | "ephemeral-storage");
    candidates.sort_by(|a, b| {
        let usage = |c: &Candidate| c.usage.unwrap_or(0);
        if by_request {
            let exceeds = |c: &Candidate| usage(c) > request(&c.pod, resource);
            let above = |c: &Candidate| usage(c) as i128 - request(&c.pod, resource) as i128;
            exceeds(b)
                .cmp(&exceeds(a))
                .then(priority(&a.pod).cmp(&priority(&b.pod)))
                .then(above(b).cmp(&above(a)))
        } else {
            priority(&a.pod)
                .cmp(&priority(&b.pod))
                .then(usage(b).cmp(&usage(a)))
        }
    });
}

fn quantity_text(bytes: u64, format: Format) -> String {
    Amount {
        nanos: i128::from(bytes) * 1_000_000_000,
        format,
    }
    .canonical()
}

/// Upstream's eviction message: the resource, the threshold and what is available, and the
/// containers that use more than they requested.
pub fn message(threshold: &Threshold, observed: &Observation, candidate: &Candidate) -> String {
    let resource = threshold.signal.resource();
    let format = threshold.signal.format();
    let mut m = format!("The node was low on resource: {resource}. ");
    m += &format!(
        "Threshold quantity: {}, available: {}. ",
        quantity_text(threshold.value.quantity(observed.capacity), format),
        quantity_text(observed.available, format),
    );
    if matches!(resource, "memory" | "ephemeral-storage") {
        let spec = candidate.pod.spec.clone().unwrap_or_default();
        for c in &spec.containers {
            let Some((_, used)) = candidate.containers.iter().find(|(n, _)| *n == c.name) else {
                continue;
            };
            let requested = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| bytes_of(&q.0))
                .unwrap_or(0);
            if *used > requested {
                m += &format!(
                    "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                    c.name,
                    quantity_text(*used, Format::BinarySI),
                    quantity_text(requested, Format::BinarySI),
                );
            }
        }
    }
    m
}

/// The grace period of an eviction: 1 s for hard thresholds; for soft ones
/// `eviction-max-pod-grace-period`, or the pod's own if that is shorter (upstream since 1.31).
pub fn grace(threshold: &Threshold, config: &Config, pod: &Pod) -> Duration {
    if threshold.is_hard() {
        return HARD_EVICTION_GRACE;
    }
    let mut secs = config.max_pod_grace_seconds;
    if let Some(own) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        secs = secs.min(own);
    }
    Duration::from_secs(secs.max(0) as u64)
}

/// A worker's order to stop its pod and fail it.
#[derive(Clone, Debug)]
pub struct Kill {
    pub grace: Duration,
    pub failure: Failure,
}

/// The eviction manager's loop; runs until the task is aborted.
pub async fn run(k: Arc<Kubelet>) {
    let cgroups = Cgroups::detect().ok().map(Arc::new);
    let mut manager = Manager::default();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(observations) = observe_async(&k).await else {
            continue;
        };
        let decision = manager.step(&k.config.eviction, &observations, Instant::now());
        k.set_pressure(decision.pressure);
        // Pods over their own local storage limits go first, whatever the node's state
        // (upstream: when any is evicted, the pass ends there).
        if local_storage_eviction(&k).await {
            continue;
        }
        let Some((threshold, mut observed)) = decision.reclaim else {
            continue;
        };
        let resource = threshold.signal.resource();
        tracing::warn!(
            signal = threshold.signal.name(),
            available = observed.available,
            "eviction threshold met: reclaiming {resource}"
        );
        k.node_event(
            "EvictionThresholdMet",
            "Evict",
            format!("Attempting to reclaim {resource}"),
        )
        .await;
        // Node-level resources first: unused images for the disk signals.
        if threshold.signal.is_disk() {
            reclaim_images(&k).await;
            if let Some(fresh) = observe_async(&k)
                .await
                .and_then(|o| o.get(&threshold.signal).copied())
            {
                if !met(&threshold, &fresh, true) {
                    tracing::info!("removing unused images reclaimed enough {resource}");
                    continue;
                }
                observed = fresh;
            }
        }
        let mut candidates = candidates(&k, cgroups.clone(), threshold.signal).await;
        rank(threshold.signal, &mut candidates);
        // At most one pod per pass, as upstream: the next pass sees what it freed.
        for c in candidates {
            let name = format!(
                "{}/{}",
                c.pod.metadata.namespace.as_deref().unwrap_or_default(),
                c.pod.metadata.name.as_deref().unwrap_or_default()
            );
            if is_critical(&c.pod) {
                tracing::warn!(pod = %name, "eviction: cannot evict a critical pod");
                continue;
            }
            let message = message(&threshold, &observed, &c);
            let grace = grace(&threshold, &k.config.eviction, &c.pod);
            tracing::warn!(pod = %name, %message, "evicting");
            let uid = c.pod.metadata.uid.clone().unwrap_or_default();
            k.evict(
                &uid,
                Kill {
                    grace,
                    failure: Failure {
                        reason: REASON.into(),
                        message,
                        disruption: true,
                    },
                },
            );
            break;
        }
    }
}

/// Evicts (with no grace period, as upstream) every pod over one of its local storage limits;
/// true when any was.
async fn local_storage_eviction(k: &Arc<Kubelet>) -> bool {
    let pods: Vec<Pod> = k
        .active_pods()
        .into_iter()
        .filter(has_storage_limits)
        .collect();
    if pods.is_empty() {
        return false;
    }
    let kubelet = k.clone();
    let found = tokio::task::spawn_blocking(move || {
        let containers = kubelet.runtime.list().unwrap_or_default();
        pods.into_iter()
            .filter_map(|pod| {
                let usage = pod_storage(&kubelet, &pod, &containers);
                storage_violation(&pod, &usage).map(|m| (pod, m))
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut evicted = false;
    for (pod, message) in found {
        if is_critical(&pod) {
            continue;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        tracing::warn!(pod = ?pod.metadata.name, %message, "evicting");
        k.evict(
            &uid,
            Kill {
                grace: Duration::ZERO,
                failure: Failure {
                    reason: REASON.into(),
                    message,
                    disruption: false,
                },
            },
        );
        evicted = true;
    }
    evicted
}

/// Measures a pod's emptyDirs (disk-backed) and its containers' writable layers and logs.
fn pod_storage(
    k: &Kubelet,
    pod: &Pod,
    containers: &[(super::runtime::ContainerConfig, super::runtime::State)],
) -> PodStorage {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pod_dir = k.pod_dir(&uid);
    let mut usage = PodStorage::default();
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(e) = &v.empty_dir
            && e.medium.as_deref() != Some("Memory")
        {
            let dir = super::volumes::empty_dir_path(&pod_dir, &v.name);
            usage.volumes.insert(v.name.clone(), disk_usage(&dir).0);
        }
    }
    let logs = pod_logs(k, pod);
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        let mut used = disk_usage(&logs.join(&c.name)).0;
        for (config, _) in containers {
            let label = |key: &str| config.labels.get(key).map(String::as_str);
            if label(super::worker::LABEL_POD_UID) == Some(uid.as_str())
                && label(super::worker::LABEL_CONTAINER) == Some(c.name.as_str())
                && !config.labels.contains_key(super::worker::LABEL_INIT)
            {
                used += disk_usage(&pod_dir.join("rootfs").join(&config.id)).0;
            }
        }
        usage.containers.insert(c.name.clone(), used);
    }
    usage
}

/// The pod's log directory.
fn pod_logs(k: &Kubelet, pod: &Pod) -> std::path::PathBuf {
    let meta = &pod.metadata;
    super::worker::pod_log_dir(
        &k.config.log_dir,
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref().unwrap_or_default(),
    )
}

async fn observe_async(k: &Arc<Kubelet>) -> Option<Observations> {
    let agent = k.config.data_dir.agent();
    tokio::task::spawn_blocking(move || observe(&agent))
        .await
        .ok()
}

/// Removes every image no container uses (upstream's `DeleteUnusedImages`, which keeps
/// images younger than the minimum GC age).
async fn reclaim_images(k: &Arc<Kubelet>) {
    let images = k.images.clone();
    let policy = super::images::GcPolicy {
        high_threshold_percent: 0,
        low_threshold_percent: 0,
        ..Default::default()
    };
    match tokio::task::spawn_blocking(move || images.collect_garbage(&policy)).await {
        Ok(Ok(Some(o))) if !o.removed.is_empty() => {
            tracing::info!(freed = o.freed, removed = ?o.removed, "removed unused images");
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "removing unused images"),
        Err(e) => tracing::warn!(error = %e, "removing unused images"),
    }
}

/// The pods that may be evicted, with their usage of the resource behind `signal`.
async fn candidates(
    k: &Arc<Kubelet>,
    cgroups: Option<Arc<Cgroups>>,
    signal: Signal,
) -> Vec<Candidate> {
    let pods = k.active_pods();
    match signal {
        Signal::MemoryAvailable => {
            let memory = k.stats.memory_by_pod();
            pods.into_iter()
                .map(|pod| {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    let containers = memory.get(&uid).cloned().unwrap_or_default();
                    Candidate {
                        usage: (!containers.is_empty())
                            .then(|| containers.iter().map(|(_, b)| b).sum()),
                        containers,
                        pod,
                    }
                })
                .collect()
        }
        Signal::PidAvailable => {
            let k = k.clone();
            tokio::task::spawn_blocking(move || {
                let mut tasks: HashMap<String, u64> = HashMap::new();
                if let (Some(cgroups), Ok(list)) = (cgroups, k.runtime.list()) {
                    for (config, _) in list {
                        let Some(uid) = config.labels.get(super::worker::LABEL_POD_UID) else {
                            continue;
                        };
                        *tasks.entry(uid.clone()).or_default() +=
                            cgroup_tasks(&cgroups.memory_dir(&config.cgroup_path));
                    }
                }
                pods.into_iter()
                    .map(|pod| Candidate {
                        usage: pod
                            .metadata
                            .uid
                            .as_ref()
                            .and_then(|u| tasks.get(u).copied()),
                        containers: Vec::new(),
                        pod,
                    })
                    .collect()
            })
            .await
            .unwrap_or_default()
        }
        _ => {
            let k = k.clone();
            let inodes = matches!(signal, Signal::NodefsInodesFree | Signal::ImagefsInodesFree);
            tokio::task::spawn_blocking(move || {
                pods.into_iter()
                    .map(|pod| {
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        let (bytes, count) = pod_disk_usage(&k.pod_dir(&uid), &pod_logs(&k, &pod));
                        Candidate {
                            usage: Some(if inodes { count } else { bytes }),
                            containers: Vec::new(),
                            pod,
                        }
                    })
                    .collect()
            })
            .await
            .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_are_k3s_hard_thresholds() {
        let c = Config::default();
        let names: Vec<&str> = c.hard.iter().map(|t| t.signal.name()).collect();
        assert_eq!(names, ["imagefs.available", "nodefs.available"]);
        for t in &c.hard {
            assert_eq!(t.value, Value::Percent(5.0));
            assert_eq!(t.min_reclaim, Some(Value::Percent(10.0)));
        }
        assert_eq!(c.transition, Duration::from_secs(300));
        assert_eq!(Config::from_kubelet_args(&[]).unwrap(), c);
        // eviction-hard replaces the thresholds; k3s's minimum reclaim is a flag of its own.
        let c =
            Config::from_kubelet_args(&args(&[("eviction-hard", "nodefs.available<1%")])).unwrap();
        assert_eq!(c.hard.len(), 1);
        assert_eq!(c.hard[0].min_reclaim, Some(Value::Percent(10.0)));
        let c = Config::from_kubelet_args(&args(&[
            ("eviction-hard", "nodefs.available<1%"),
            ("eviction-minimum-reclaim", ""),
        ]))
        .unwrap();
        assert_eq!(c.hard[0].min_reclaim, None);
    }

    #[test]
    fn kubelet_args_configure_eviction_and_reservations() {
        let c = Config::from_kubelet_args(&args(&[
            (
                "eviction-hard",
                "memory.available<500Mi,nodefs.available<5%",
            ),
            ("eviction-soft", "memory.available<1Gi"),
            ("eviction-soft-grace-period", "memory.available=1m30s"),
            ("eviction-minimum-reclaim", "memory.available=200Mi"),
            ("eviction-max-pod-grace-period", "30"),
            ("eviction-pressure-transition-period", "0s"),
            ("kube-reserved", "cpu=200m,memory=256Mi"),
            ("system-reserved", "memory=256Mi,pid=100"),
            ("max-pods", "250"),
        ]))
        .unwrap();
        assert_eq!(c.hard.len(), 2, "eviction-hard replaces the defaults");
        assert_eq!(c.hard[0].value, Value::Quantity(500 << 20));
        assert_eq!(c.hard[0].min_reclaim, Some(Value::Quantity(200 << 20)));
        assert_eq!(c.hard[1].value, Value::Percent(5.0));
        assert_eq!(c.soft[0].grace, Some(Duration::from_secs(90)));
        assert_eq!(c.max_pod_grace_seconds, 30);
        assert_eq!(c.transition, Duration::ZERO);
        assert_eq!(c.reserved["cpu"], 200);
        assert_eq!(c.reserved["memory"], 512 << 20);
        assert_eq!(c.reserved["pid"], 100);
        assert_eq!(c.max_pods, 250);
        let machine = Machine {
            memory_bytes: 4 << 30,
            storage_bytes: 100 << 30,
            ..Machine::default()
        };
        let r = c.reserved_for(&machine);
        assert_eq!(r.memory_bytes, (512 << 20) + (500 << 20));
        assert_eq!(r.storage_bytes, 5 << 30);
        assert_eq!(r.cpu_milli, 200);
    }

    #[test]
    fn bad_kubelet_args_name_the_flag() {
        let err = |a: &[(&str, &str)]| Config::from_kubelet_args(&args(a)).unwrap_err();
        assert!(err(&[("feature-gates", "X=true")]).contains("unsupported kubelet flag"));
        assert!(err(&[("eviction-hard", "memory.free<1Gi")]).contains("memory.free"));
        assert!(err(&[("eviction-hard", "memory.available=1Gi")]).contains("SIGNAL<VALUE"));
        assert!(err(&[("eviction-hard", "nodefs.available<120%")]).contains("100%"));
        assert!(err(&[("eviction-soft", "memory.available<1Gi")]).contains("grace period"));
        assert!(
            err(&[("eviction-soft-grace-period", "memory.available=1m")])
                .contains("no eviction-soft")
        );
        assert!(err(&[("kube-reserved", "gpu=1")]).contains("gpu"));
        assert!(err(&[("max-pods", "0")]).starts_with("max-pods:"));
        assert!(err(&[("eviction-pressure-transition-period", "soon")]).contains("soon"));
    }

    fn obs(available: u64, capacity: u64) -> Observation {
        Observation {
            available,
            capacity,
        }
    }

    #[test]
    fn hard_thresholds_reclaim_at_once_and_conditions_outlive_the_signal() {
        let mut config = Config::from_kubelet_args(&args(&[
            ("eviction-hard", "memory.available<1Gi,nodefs.available<10%"),
            ("eviction-minimum-reclaim", "memory.available=512Mi"),
        ]))
        .unwrap();
        config.transition = Duration::from_secs(60);
        let mut m = Manager::default();
        let t0 = Instant::now();
        let ok: Observations = [
            (Signal::MemoryAvailable, obs(2 << 30, 8 << 30)),
            (Signal::NodefsAvailable, obs(50, 100)),
        ]
        .into();
        let d = m.step(&config, &ok, t0);
        assert_eq!(d.pressure, Pressure::default());
        assert!(d.reclaim.is_none());
        // Low on both: memory is reclaimed first.
        let low: Observations = [
            (Signal::MemoryAvailable, obs(512 << 20, 8 << 30)),
            (Signal::NodefsAvailable, obs(5, 100)),
        ]
        .into();
        let d = m.step(&config, &low, t0 + Duration::from_secs(10));
        assert!(d.pressure.memory && d.pressure.disk && !d.pressure.pid);
        assert_eq!(d.reclaim.unwrap().0.signal, Signal::MemoryAvailable);
        // Above the threshold but not by the minimum reclaim: still reclaiming memory.
        let partly: Observations = [
            (Signal::MemoryAvailable, obs(1200 << 20, 8 << 30)),
            (Signal::NodefsAvailable, obs(50, 100)),
        ]
        .into();
        let d = m.step(&config, &partly, t0 + Duration::from_secs(20));
        assert_eq!(d.reclaim.unwrap().0.signal, Signal::MemoryAvailable);
        // Recovered: nothing to reclaim, but the conditions hold for the transition period.
        let d = m.step(&config, &ok, t0 + Duration::from_secs(30));
        assert!(d.reclaim.is_none());
        assert!(d.pressure.memory && d.pressure.disk);
        let d = m.step(&config, &ok, t0 + Duration::from_secs(100));
        assert_eq!(d.pressure, Pressure::default());
    }

    #[test]
    fn soft_thresholds_wait_for_their_grace_period() {
        let config = Config::from_kubelet_args(&args(&[
            ("eviction-hard", ""),
            ("eviction-soft", "pid.available<100"),
            ("eviction-soft-grace-period", "pid.available=30s"),
            ("eviction-pressure-transition-period", "0s"),
        ]))
        .unwrap();
        let mut m = Manager::default();
        let t0 = Instant::now();
        let low: Observations = [(Signal::PidAvailable, obs(50, 1000))].into();
        let d = m.step(&config, &low, t0);
        assert!(d.pressure.pid, "the condition is set at once");
        assert!(d.reclaim.is_none());
        let d = m.step(&config, &low, t0 + Duration::from_secs(20));
        assert!(d.reclaim.is_none());
        let d = m.step(&config, &low, t0 + Duration::from_secs(31));
        assert_eq!(d.reclaim.unwrap().0.signal, Signal::PidAvailable);
        // A recovery restarts the grace period.
        let ok: Observations = [(Signal::PidAvailable, obs(500, 1000))].into();
        let d = m.step(&config, &ok, t0 + Duration::from_secs(40));
        assert!(!d.pressure.pid && d.reclaim.is_none());
        let d = m.step(&config, &low, t0 + Duration::from_secs(50));
        assert!(d.pressure.pid && d.reclaim.is_none());
    }

    fn candidate(name: &str, request: Option<&str>, priority: i32, usage: u64) -> Candidate {
        let resources = match request {
            Some(r) => json!({"requests": {"memory": r}, "limits": {"memory": r}}),
            None => json!({}),
        };
        Candidate {
            pod: pod(json!({
                "metadata": {"name": name},
                "spec": {"priority": priority, "containers": [{"name": "c", "resources": resources}]},
            })),
            usage: Some(usage),
            containers: vec![("c".into(), usage)],
        }
    }

    #[test]
    fn memory_ranking_is_upstreams() {
        let mut c = vec![
            candidate("guaranteed-within", Some("100Mi"), 0, 50 << 20),
            candidate("besteffort-small", None, 0, 10 << 20),
            candidate("besteffort-big-important", None, 1000, 500 << 20),
            candidate("besteffort-big", None, 0, 300 << 20),
            candidate("guaranteed-over", Some("100Mi"), 0, 150 << 20),
        ];
        rank(Signal::MemoryAvailable, &mut c);
        let names: Vec<&str> = c
            .iter()
            .map(|c| c.pod.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "besteffort-big",
                "guaranteed-over",
                "besteffort-small",
                "besteffort-big-important",
                "guaranteed-within"
            ]
        );
    }

    #[test]
    fn messages_are_upstreams() {
        let t = Threshold {
            signal: Signal::MemoryAvailable,
            value: Value::Quantity(100 << 20),
            grace: None,
            min_reclaim: None,
        };
        let c = candidate("p", None, 0, 12 << 20);
        assert_eq!(
            message(&t, &obs(50 << 20, 8 << 30), &c),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. Container c was using 12Mi, request is 0, has larger consumption of memory. "
        );
        let t = Threshold {
            signal: Signal::PidAvailable,
            value: Value::Percent(10.0),
            grace: None,
            min_reclaim: None,
        };
        assert_eq!(
            message(&t, &obs(50, 1000), &c),
            "The node was low on resource: pids. Threshold quantity: 100, available: 50. "
        );
    }

    #[test]
    fn admission_under_pressure_is_upstreams() {
        let besteffort = pod(json!({"spec": {"containers": [{"name": "c"}]}}));
        let burstable = pod(json!({"spec": {"containers": [{"name": "c",
            "resources": {"requests": {"memory": "10Mi"}}}]}}));
        let tolerating = pod(
            json!({"spec": {"containers": [{"name": "c"}], "tolerations": [
            {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        let critical =
            pod(json!({"spec": {"priority": 2000001000, "containers": [{"name": "c"}]}}));
        let memory = Pressure {
            memory: true,
            ..Pressure::default()
        };
        let disk = Pressure {
            disk: true,
            ..Pressure::default()
        };
        assert_eq!(admit(&besteffort, Pressure::default()), None);
        assert_eq!(
            admit(&besteffort, memory).as_deref(),
            Some("The node had condition: [MemoryPressure]. ")
        );
        assert_eq!(admit(&burstable, memory), None);
        assert_eq!(admit(&tolerating, memory), None);
        assert_eq!(
            admit(&burstable, disk).as_deref(),
            Some("The node had condition: [DiskPressure]. ")
        );
        assert_eq!(admit(&critical, disk), None);
    }

    #[test]
    fn soft_eviction_grace_is_the_shorter_of_the_max_and_the_pods() {
        let mut config = Config {
            max_pod_grace_seconds: 60,
            ..Config::default()
        };
        let soft = Threshold {
            grace: Some(Duration::from_secs(10)),
            ..config.hard[0].clone()
        };
        let p = pod(json!({"spec": {"terminationGracePeriodSeconds": 20, "containers": []}}));
        assert_eq!(grace(&config.hard[0], &config, &p), HARD_EVICTION_GRACE);
        assert_eq!(grace(&soft, &config, &p), Duration::from_secs(20));
        config.max_pod_grace_seconds = 5;
        assert_eq!(grace(&soft, &config, &p), Duration::from_secs(5));
    }

    #[test]
    fn local_storage_limits_are_checked_as_upstream() {
        let p = pod(json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"limits": {"ephemeral-storage": "10Mi"}}},
                {"name": "b"},
            ],
            "volumes": [
                {"name": "scratch", "emptyDir": {"sizeLimit": "20Mi"}},
                {"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            ],
        }}));
        assert!(has_storage_limits(&p));
        let usage = |scratch: u64, a: u64, b: u64| PodStorage {
            volumes: [("scratch".to_string(), scratch << 20)].into(),
            containers: [("a".to_string(), a << 20), ("b".to_string(), b << 20)].into(),
        };
        assert_eq!(storage_violation(&p, &usage(1, 1, 1)), None);
        assert_eq!(
            storage_violation(&p, &usage(21, 1, 1)).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"20Mi\". ")
        );
        assert_eq!(
            storage_violation(&p, &usage(5, 1, 5)).as_deref(),
            Some("Pod ephemeral local storage usage exceeds the total limit of containers 10Mi. ")
        );
        let alone = pod(json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"ephemeral-storage": "10Mi"}}}]}}));
        let over = PodStorage {
            volumes: BTreeMap::new(),
            containers: [("a".to_string(), 11 << 20)].into(),
        };
        // The pod total (the one container) is checked before the container itself.
        assert!(
            storage_violation(&alone, &over)
                .unwrap()
                .starts_with("Pod ephemeral")
        );
        assert!(!has_storage_limits(&pod(
            json!({"spec": {"containers": [{"name": "a"}],
            "volumes": [{"name": "ram", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]}})
        )));
    }

    #[test]
    fn durations_are_go_durations() {
        let d = |s: &str| parse_duration(s);
        assert_eq!(d("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(d("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(d("0"), Ok(Duration::ZERO));
        assert_eq!(d("0s"), Ok(Duration::ZERO));
        for bad in ["", "5", "soon", "1x", "-1s"] {
            assert!(d(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loadavg_gives_the_task_count() {
        assert_eq!(tasks_of_loadavg("0.10 0.20 0.30 2/345 6789\n"), Some(345));
        assert_eq!(tasks_of_loadavg("garbage"), None);
    }

    #[test]
    fn disk_usage_counts_files_once() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        std::fs::write(tmp.path().join("d/f"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(tmp.path().join("d/f"), tmp.path().join("g")).unwrap();
        let (used, inodes) = disk_usage(tmp.path());
        assert!(
            (64 * 1024..128 * 1024).contains(&used),
            "{used} bytes for one 64 KiB file linked twice"
        );
        assert_eq!(inodes, 3, "the root, d and the file");
        assert_eq!(disk_usage(&tmp.path().join("missing")), (0, 0));
    }
}
