//! The kubelet's container runtime: what a container is asked to be (`ContainerConfig`), what it is
//! (`State`), and the `Runtime` seam the kubelet drives.
//!
//! The real implementation (`Local`) never calls libcontainer itself. libcontainer clones the calling
//! process and keeps running Rust code in the child, which deadlocks in a multi-threaded daemon, so
//! every container is created, started, logged and reaped by its own single-threaded shim: this
//! binary re-executed as `rk3s shim …` (the containerd-shim / conmon model). The shim outlives the
//! daemon, so containers survive a restart and are re-adopted from the files it leaves on disk.
//!
//! Files: `spec` (pure config → OCI spec), `log` (pure CRI log line framing), `shim` (the shim
//! process, the only user of libcontainer), `local` (daemon side), `fake` (recording fake for tests).

mod attach;
mod fake;
mod local;
pub mod log;
mod resident;
mod shim;
mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

pub use fake::{Call, ExecReply, Fake};
pub use local::Local;
pub use shim::shim_main;
pub use spec::build as build_spec;

/// Everything needed to run one container; the kubelet has already merged image and pod settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Unique on the node, `[a-z0-9-]`, at most 64 characters (the kubelet builds it).
    pub id: String,
    /// Kubelet bookkeeping (pod uid, container name, attempt), returned by `list()`.
    pub labels: BTreeMap<String, String>,
    /// Already mounted by the image service.
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    /// Final argv (entrypoint/cmd/command/args already merged).
    pub args: Vec<String>,
    /// `KEY=VALUE`; a default `PATH` is added when none is given, as containerd does.
    pub env: Vec<String>,
    /// `/` if empty.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    /// Pod network namespace to join; `None` means host network.
    pub netns: Option<PathBuf>,
    pub mounts: Vec<Mount>,
    /// Absolute cgroup path, e.g. `/kubepods/burstable/pod<uid>/<id>` (cgroupfs driver, v1 and v2).
    pub cgroup_path: String,
    pub resources: Resources,
    pub privileged: bool,
    /// `NET_ADMIN` or `CAP_NET_ADMIN` forms, or `ALL`.
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub no_new_privileges: bool,
    /// CRI log file to append to; its parent directory exists.
    pub log_path: PathBuf,
    /// Give the process a terminal as stdin/stdout/stderr (created by libcontainer inside the
    /// container, its master held by the shim); the log then has the stream `stdout` only.
    pub tty: bool,
    /// Keep the process's stdin open for `pods/attach` (the container's `stdin: true`);
    /// without it stdin is /dev/null (or the tty, which then takes no input).
    #[serde(default)]
    pub stdin: bool,
    /// Close stdin when the first attach session ends (`stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    pub destination: String,
    pub source: PathBuf,
    pub kind: MountKind,
    pub readonly: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MountKind {
    Bind,
    Tmpfs { size_bytes: Option<u64> },
}

/// What a container is doing, in the terms the CRI reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum State {
    Running {
        pid: i32,
        started_at: SystemTime,
    },
    Exited {
        /// 128+N when killed by signal N; 128 when the process could not be started.
        exit_code: i32,
        signal: Option<i32>,
        oom_killed: bool,
        started_at: Option<SystemTime>,
        finished_at: SystemTime,
        /// Start failure text, e.g. `exec: "nope": executable file not found in $PATH`.
        message: String,
    },
}

impl State {
    pub fn is_running(&self) -> bool {
        matches!(self, State::Running { .. })
    }
}

/// What to run inside a running container (its namespaces, cgroup, user, env, cwd), like `runc exec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    pub args: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
}

/// A running exec'd process. Dropping it before it exits kills the process.
pub struct ExecProcess {
    /// Some iff `spec.stdin`; dropping it closes the process's stdin (with a tty: sends the
    /// terminal's end-of-file character).
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// With a tty: the terminal output.
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// None with a tty.
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Terminal size changes as (width, height) (tty only).
    pub resize: Option<tokio::sync::mpsc::UnboundedSender<(u16, u16)>>,
    /// Resolves with the exit code (128+N when killed by signal N).
    pub exit: BoxFuture<'static, Result<i32, Error>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {0:?}: want [a-z0-9-], at most 64 characters")]
    InvalidId(String),
    #[error("container {0} already exists")]
    AlreadyExists(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container {0} is still running")]
    StillRunning(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The exec'd process could not be started (runc's "OCI runtime exec failed").
    #[error("exec in container {id} failed: {reason}")]
    Exec { id: String, reason: String },
    #[error("invalid container config {id}: {reason}")]
    InvalidConfig { id: String, reason: String },
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("container shim for {id} failed: {reason}")]
    Shim { id: String, reason: String },
    #[error("signal container {id}")]
    Signal {
        id: String,
        #[source]
        source: nix::Error,
    },
    #[error("background task panicked or was cancelled")]
    Join(#[source] tokio::task::JoinError),
}

/// The kubelet's view of a container runtime (the CRI RuntimeService subset it needs).
pub trait Runtime: Send + Sync {
    /// Starts the container through a new shim; resolves once the process is running, or failed to
    /// start: then an `Exited` state with exit code 128 and the reason in `message`, the way
    /// containerd reports a StartError.
    fn start(&self, config: ContainerConfig) -> BoxFuture<'_, Result<State, Error>>;
    fn state(&self, id: &str) -> Result<State, Error>;
    /// Resolves when the container has exited, also for containers adopted after a daemon restart.
    fn wait(&self, id: &str) -> BoxFuture<'_, Result<State, Error>>;
    /// SIGTERM, then SIGKILL after `grace`; resolves with the `Exited` state.
    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'_, Result<State, Error>>;
    /// Forgets an exited container: its state dir and libcontainer state (not the log file).
    fn remove(&self, id: &str) -> BoxFuture<'_, Result<(), Error>>;
    /// Containers known on disk (running or exited, not removed) with their config.
    fn list(&self) -> Result<Vec<(ContainerConfig, State)>, Error>;
    /// Runs another process in the running container `id` (CRI ExecSync/Exec); resolves once
    /// it runs, or with `Error::Exec` if it could not be started.
    fn exec(&self, id: &str, spec: ExecSpec) -> BoxFuture<'_, Result<ExecProcess, Error>>;
    /// One `pods/attach` session's input to a running container started with `stdin` or
    /// `tty`: its stdin and terminal resizes. Dropping the writer ends the session (with
    /// `stdin_once` that closes the container's stdin).
    fn attach(&self, id: &str) -> BoxFuture<'_, Result<AttachInput, Error>>;
}

/// The input half of an attach session (the output is read from the CRI log).
pub struct AttachInput {
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Terminal size changes as (width, height); ignored without a tty.
    pub resize: tokio::sync::mpsc::UnboundedSender<(u16, u16)>,
}

/// Same rule the kubelet uses to build ids; checked again here because the id becomes a path.
pub fn validate_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests;
