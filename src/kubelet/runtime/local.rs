//! The daemon side of the real runtime: spawns one shim per container, reads the records the shims
//! leave in `<state_dir>/<id>/`, waits for exits and delivers stop signals. Never calls libcontainer
//! (see `shim.rs` for why).
//!
//! Per container directory: `config.json` (our `ContainerConfig`, written by the daemon),
//! `bundle/config.json` (the OCI spec, written by the shim), `started.json` (pid, start time, shim
//! pid), `exit.json` (the final `State::Exited`), `shim.log` (the shim's own stderr). Everything the
//! daemon needs after a restart is in these files, so a new `Local` re-adopts running containers.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, socketpair,
};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use super::{
    AttachInput, ContainerConfig, Error, ExecProcess, ExecSpec, Runtime, State, validate_id,
};

pub(super) const CONFIG: &str = "config.json";
pub(super) const STARTED: &str = "started.json";
pub(super) const EXIT: &str = "exit.json";
pub(super) const BUNDLE: &str = "bundle";
const SHIM_LOG: &str = "shim.log";

/// How often `wait` re-reads the records when it cannot hold a pidfd on the shim (start still in
/// progress, or a kernel without pidfd_open).
const POLL: Duration = Duration::from_millis(100);

/// What the shim records once the container process runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Started {
    pub pid: i32,
    pub started_at: SystemTime,
    pub shim_pid: i32,
}

/// The libcontainer-backed runtime, one shim process per container.
#[derive(Clone)]
pub struct Local {
    inner: Arc<Inner>,
}

struct Inner {
    state_dir: PathBuf,
    run_dir: PathBuf,
    exe: PathBuf,
}

impl Local {
    /// `state_dir`: `<data-dir>/agent/containers`; `run_dir`: libcontainer's root
    /// (`/run/rk3s/containers`); `exe`: the binary to re-execute as `exe shim …`.
    pub fn new(state_dir: PathBuf, run_dir: PathBuf, exe: PathBuf) -> Result<Local, Error> {
        for dir in [&state_dir, &run_dir] {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Local {
            inner: Arc::new(Inner {
                state_dir,
                run_dir,
                exe,
            }),
        })
    }
}

impl Inner {
    fn dir(&self, id: &str) -> Result<PathBuf, Error> {
        validate_id(id)?;
        Ok(self.state_dir.join(id))
    }

    /// Spawns the shim and blocks until it reports the container started or failed.
    fn start_blocking(&self, config: &ContainerConfig) -> Result<State, Error> {
        let id = config.id.as_str();
        let dir = self.dir(id)?;
        // Pure and cheap: a bad config is refused here, before anything exists on disk.
        super::spec::build(config)?;
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.to_string()));
            }
            Err(source) => {
                return Err(Error::Io {
                    action: "create",
                    path: dir,
                    source,
                });
            }
        }
        write_json(&dir.join(CONFIG), config)?;
        let shim_log = dir.join(SHIM_LOG);
        let stderr = File::create(&shim_log).map_err(|source| Error::Io {
            action: "create",
            path: shim_log,
            source,
        })?;
        let mut child = Command::new(&self.exe)
            .arg("shim")
            .arg(&self.state_dir)
            .arg(&self.run_dir)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|source| {
                let _ = std::fs::remove_dir_all(&dir);
                Error::Io {
                    action: "spawn shim",
                    path: self.exe.clone(),
                    source,
                }
            })?;
        let stdout = child.stdout.take();
        // The first shim process forks and exits at once; reaping it here leaves no zombie.
        let status = child.wait().map_err(|source| Error::Io {
            action: "wait for shim",
            path: self.exe.clone(),
            source,
        })?;
        if !status.success() {
            return Err(self.shim_failed(id, format!("shim exited with {status}")));
        }
        let mut line = String::new();
        if let Some(out) = stdout {
            // Either a line (`started`/`failed`) or EOF if the shim died; the files decide.
            let _ = BufReader::new(out).read_line(&mut line);
        }
        match self.state(id) {
            Ok(state) => Ok(state),
            Err(_) => Err(self.shim_failed(id, format!("no record after {:?}", line.trim()))),
        }
    }

    /// The shim died without leaving a record: report its log and forget the container, so the
    /// kubelet can retry under the same id.
    fn shim_failed(&self, id: &str, what: String) -> Error {
        let dir = self.state_dir.join(id);
        let detail = std::fs::read_to_string(dir.join(SHIM_LOG)).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        Error::Shim {
            id: id.to_string(),
            reason: format!("{what}; shim log: {}", detail.trim()),
        }
    }

    fn state(&self, id: &str) -> Result<State, Error> {
        let dir = self.dir(id)?;
        if !dir.join(CONFIG).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        if let Some(exit) = read_json_opt::<State>(&dir.join(EXIT))? {
            return Ok(exit);
        }
        let Some(started) = read_json_opt::<Started>(&dir.join(STARTED))? else {
            return Err(Error::Shim {
                id: id.to_string(),
                reason: "container is still being created".into(),
            });
        };
        if shim_alive(started.shim_pid, id) {
            return Ok(State::Running {
                pid: started.pid,
                started_at: started.started_at,
            });
        }
        // The shim writes exit.json before it exits: look again in case it just did.
        if let Some(exit) = read_json_opt::<State>(&dir.join(EXIT))? {
            return Ok(exit);
        }
        Ok(lost(&started))
    }

    async fn wait(&self, id: &str) -> Result<State, Error> {
        loop {
            let dir = self.dir(id)?;
            match self.state(id) {
                Ok(State::Running { .. }) => {}
                Ok(exited) => return Ok(exited),
                // Still being created by a shim started elsewhere: poll.
                Err(Error::Shim { .. }) if dir.join(CONFIG).exists() => {
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                Err(e) => return Err(e),
            }
            let Some(started) = read_json_opt::<Started>(&dir.join(STARTED))? else {
                continue;
            };
            match pidfd_open(started.shim_pid) {
                // Opened after `state` saw the shim alive and before re-checking it is still our
                // shim, so the descriptor cannot be an unrelated process that reused the pid.
                Some(fd) if shim_alive(started.shim_pid, id) => {
                    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged until
                    // the AsyncFd is dropped.
                    let registered =
                        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
                    if let Ok(fd) = registered {
                        // Readable once the shim exited; it wrote exit.json just before.
                        let _ = fd.readable().await;
                        continue;
                    }
                    tokio::time::sleep(POLL).await;
                }
                Some(_) => continue,
                None => tokio::time::sleep(POLL).await,
            }
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<State, Error> {
        let pid = match self.state(id)? {
            State::Running { pid, .. } => pid,
            exited => return Ok(exited),
        };
        // The container's init is the shim's unreaped child until exit.json exists, so its pid
        // cannot have been reused while the state still says running.
        self.signal(id, pid, Signal::SIGTERM)?;
        if let Ok(state) = tokio::time::timeout(grace, self.wait(id)).await {
            return state;
        }
        if self.state(id)?.is_running() {
            self.signal(id, pid, Signal::SIGKILL)?;
        }
        self.wait(id).await
    }

    /// Connects to the shim's attach socket (`attach.rs`) and pumps the session's input into
    /// it as frames. The socket is reached through `/proc/self/fd/<dir>/`, as its absolute path
    /// can be longer than a socket address allows.
    fn attach(&self, id: &str) -> Result<AttachInput, Error> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if !self.state(id)?.is_running() {
            return Err(Error::NotRunning(id.to_string()));
        }
        use std::os::unix::fs::OpenOptionsExt;
        let dir_path = self.dir(id)?;
        let dir = File::options()
            .read(true)
            .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY)
            .open(&dir_path)
            .map_err(|e| Error::Io {
                action: "open the state dir",
                path: dir_path.clone(),
                source: e,
            })?;
        let path = format!(
            "/proc/self/fd/{}/{}",
            dir.as_raw_fd(),
            super::attach::SOCKET
        );
        let sock = std::os::unix::net::UnixStream::connect(&path)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(tokio::net::UnixStream::from_std)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    Error::Exec {
                        id: id.to_string(),
                        reason: "the container was not started with stdin: true or tty: true"
                            .into(),
                    }
                }
                _ => Error::Io {
                    action: "connect to the attach socket",
                    path: dir_path.join(super::attach::SOCKET),
                    source: e,
                },
            })?;
        drop(dir);
        let (user, mut input) = tokio::io::duplex(64 * 1024);
        let (resize, mut resizes) = tokio::sync::mpsc::unbounded_channel::<(u16, u16)>();
        tokio::spawn(async move {
            let mut sock = sock;
            let mut buf = vec![0u8; 16 * 1024];
            let mut frame = Vec::new();
            let mut resizing = true;
            loop {
                frame.clear();
                tokio::select! {
                    n = input.read(&mut buf) => match n {
                        Ok(0) | Err(_) => break,
                        Ok(n) => super::attach::encode_data(&buf[..n], &mut frame),
                    },
                    r = resizes.recv(), if resizing => match r {
                        Some((w, h)) => super::attach::encode_resize(w, h, &mut frame),
                        None => resizing = false,
                    },
                }
                if !frame.is_empty() && sock.write_all(&frame).await.is_err() {
                    break;
                }
            }
            let _ = sock.shutdown().await;
        });
        Ok(AttachInput {
            stdin: Box::pin(user),
            resize,
        })
    }

    /// Starts the exec helper (`shim exec`, see `shim.rs`) and waits for its first report.
    async fn exec(&self, id: &str, spec: ExecSpec) -> Result<ExecProcess, Error> {
        if !self.state(id)?.is_running() {
            return Err(Error::NotRunning(id.to_string()));
        }
        let shim_err = |reason: String| Error::Shim {
            id: id.to_string(),
            reason,
        };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| shim_err(format!("socketpair: {e}")))?;
        let json = serde_json::to_string(&spec).map_err(|source| Error::Json {
            path: PathBuf::from("exec spec"),
            source,
        })?;
        let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.arg("shim")
            .arg("exec")
            .arg(&self.state_dir)
            .arg(&self.run_dir)
            .arg(id)
            .arg(json)
            .stdin(piped(spec.stdin && !spec.tty))
            .stdout(piped(!spec.tty))
            .stderr(piped(!spec.tty));
        let raw = theirs.as_raw_fd();
        // SAFETY: runs between fork and exec in the child, calling only async-signal-safe
        // functions (fcntl, dup2) on descriptors that exist in the child.
        unsafe {
            cmd.pre_exec(move || {
                use nix::libc;
                let fd = super::shim::EXEC_CONTROL_FD;
                if raw == fd {
                    let flags = libc::fcntl(raw, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(raw, fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| Error::Io {
            action: "spawn exec helper",
            path: self.exe.clone(),
            source,
        })?;
        drop(theirs);
        let control =
            ControlSocket::new(ours).map_err(|e| shim_err(format!("control socket: {e}")))?;
        let (first, fds) = control
            .recv()
            .await
            .map_err(|e| shim_err(format!("exec helper: {e}")))?;
        if !first.starts_with("started ") {
            // The helper exits right after reporting a failure; reap it without blocking.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            return Err(match first.strip_prefix("failed ") {
                Some(reason) => Error::Exec {
                    id: id.to_string(),
                    reason: reason.to_string(),
                },
                None => shim_err("the exec helper exited without starting the process".into()),
            });
        }
        let (stdin, stdout, stderr, resize): (Option<Writer>, Reader, Option<Reader>, _) = if spec
            .tty
        {
            let master = fds
                .into_iter()
                .next()
                .ok_or_else(|| shim_err("the exec helper sent no terminal".into()))?;
            let pty = Arc::new(Pty::new(master).map_err(|e| shim_err(format!("terminal: {e}")))?);
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u16, u16)>();
            let resizer = pty.clone();
            tokio::spawn(async move {
                while let Some((width, height)) = rx.recv().await {
                    resizer.resize(width, height);
                }
            });
            let stdin: Option<Writer> = if spec.stdin {
                Some(Box::pin(PtyWriter(pty.clone())))
            } else {
                None
            };
            (stdin, Box::pin(PtyReader(pty)), None, Some(tx))
        } else {
            let stdin: Option<Writer> = match child.stdin.take() {
                Some(s) => Some(Box::pin(s)),
                None => None,
            };
            let stdout: Reader = match child.stdout.take() {
                Some(s) => Box::pin(s),
                None => Box::pin(tokio::io::empty()),
            };
            let stderr: Option<Reader> = match child.stderr.take() {
                Some(s) => Some(Box::pin(s)),
                None => None,
            };
            (stdin, stdout, stderr, None)
        };
        let id = id.to_string();
        let exit = async move {
            // Holding `control` keeps the process alive: the helper kills it when this closes.
            loop {
                let (msg, _) = control.recv().await.map_err(|e| Error::Shim {
                    id: id.clone(),
                    reason: format!("exec helper: {e}"),
                })?;
                if let Some(code) = msg.strip_prefix("exit ") {
                    let _ = child.wait().await;
                    return code.trim().parse::<i32>().map_err(|_| Error::Shim {
                        id: id.clone(),
                        reason: format!("exec helper reported {msg:?}"),
                    });
                }
                if msg.is_empty() {
                    let status = child.wait().await;
                    return Err(Error::Shim {
                        id,
                        reason: format!("exec helper ended ({status:?}) without an exit code"),
                    });
                }
            }
        }
        .boxed();
        Ok(ExecProcess {
            stdin,
            stdout,
            stderr,
            resize,
            exit,
        })
    }

    fn signal(&self, id: &str, pid: i32, signal: Signal) -> Result<(), Error> {
        match kill(Pid::from_raw(pid), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(source) => Err(Error::Signal {
                id: id.to_string(),
                source,
            }),
        }
    }

    fn remove(&self, id: &str) -> Result<(), Error> {
        let dir = self.dir(id)?;
        match self.state(id) {
            Ok(State::Running { .. }) => return Err(Error::StillRunning(id.to_string())),
            // Removing what is already gone succeeds, as CRI RemoveContainer does.
            Err(Error::NotFound(_)) if !dir.exists() => return Ok(()),
            _ => {}
        }
        // The shim deletes libcontainer's state itself; this only catches a shim that died.
        for path in [dir, self.run_dir.join(id)] {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Error::Io {
                        action: "remove",
                        path,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<(ContainerConfig, State)>, Error> {
        let entries = std::fs::read_dir(&self.state_dir).map_err(|source| Error::Io {
            action: "read",
            path: self.state_dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if validate_id(&id).is_err() {
                continue;
            }
            let Some(config) = read_json_opt::<ContainerConfig>(&entry.path().join(CONFIG))? else {
                continue;
            };
            let state = match self.state(&id) {
                Ok(state) => state,
                // A shim that died while creating (e.g. the node rebooted): report a start failure.
                Err(Error::Shim { .. }) => State::Exited {
                    exit_code: 128,
                    signal: None,
                    oom_killed: false,
                    started_at: None,
                    finished_at: SystemTime::now(),
                    message: "container creation did not complete".into(),
                },
                Err(e) => return Err(e),
            };
            out.push((config, state));
        }
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        Ok(out)
    }
}

/// The state of a container whose shim vanished without recording an exit (killed, or the node
/// rebooted): its exit code is unknown, like containerd reporting 255 for a lost task.
fn lost(started: &Started) -> State {
    State::Exited {
        exit_code: 255,
        signal: None,
        oom_killed: false,
        started_at: Some(started.started_at),
        finished_at: SystemTime::now(),
        message: "container shim exited without recording an exit status".into(),
    }
}

fn shim_alive(shim_pid: i32, id: &str) -> bool {
    std::fs::read(format!("/proc/{shim_pid}/cmdline"))
        .is_ok_and(|cmdline| super::shim::is_shim_cmdline(&cmdline, id))
}

/// A pidfd for `pid`, or `None` if it is gone or the kernel predates pidfd_open (5.3).
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; on success it returns a new descriptor we own.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a fresh descriptor returned by the kernel and owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Runtime for Local {
    fn start(&self, config: ContainerConfig) -> BoxFuture<'_, Result<State, Error>> {
        let inner = self.inner.clone();
        async move {
            tokio::task::spawn_blocking(move || inner.start_blocking(&config))
                .await
                .map_err(Error::Join)?
        }
        .boxed()
    }

    fn state(&self, id: &str) -> Result<State, Error> {
        self.inner.state(id)
    }

    fn wait(&self, id: &str) -> BoxFuture<'_, Result<State, Error>> {
        let id = id.to_string();
        async move { self.inner.wait(&id).await }.boxed()
    }

    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'_, Result<State, Error>> {
        let id = id.to_string();
        async move { self.inner.stop(&id, grace).await }.boxed()
    }

    fn remove(&self, id: &str) -> BoxFuture<'_, Result<(), Error>> {
        let id = id.to_string();
        async move { self.inner.remove(&id) }.boxed()
    }

    fn list(&self) -> Result<Vec<(ContainerConfig, State)>, Error> {
        self.inner.list()
    }

    fn exec(&self, id: &str, spec: ExecSpec) -> BoxFuture<'_, Result<ExecProcess, Error>> {
        let id = id.to_string();
        async move { self.inner.exec(&id, spec).await }.boxed()
    }

    fn attach(&self, id: &str) -> BoxFuture<'_, Result<AttachInput, Error>> {
        let id = id.to_string();
        async move { self.inner.attach(&id) }.boxed()
    }
}

type Reader = Pin<Box<dyn AsyncRead + Send>>;
type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// The daemon's end of an exec helper's SOCK_SEQPACKET control socket.
struct ControlSocket(AsyncFd<OwnedFd>);

impl ControlSocket {
    fn new(fd: OwnedFd) -> std::io::Result<ControlSocket> {
        set_nonblocking(&fd)?;
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged until dropped.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(ControlSocket(fd))
    }

    /// The next message and the descriptors passed with it; an empty message is the end.
    async fn recv(&self) -> std::io::Result<(String, Vec<OwnedFd>)> {
        loop {
            let mut guard = self.0.readable().await?;
            let got = guard.try_io(|fd| {
                let mut buf = [0u8; 4096];
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
                let msg = recvmsg::<()>(
                    fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                )
                .map_err(std::io::Error::from)?;
                let mut fds = Vec::new();
                for cmsg in msg.cmsgs().map_err(std::io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(raw) = cmsg {
                        // SAFETY: the kernel just installed these descriptors for us.
                        fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
                    }
                }
                let n = msg.bytes;
                Ok((String::from_utf8_lossy(&buf[..n]).into_owned(), fds))
            });
            match got {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

pub(super) fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// The master of an exec's terminal, read and written without blocking.
struct Pty(AsyncFd<OwnedFd>);

impl Pty {
    fn new(master: OwnedFd) -> std::io::Result<Pty> {
        set_nonblocking(&master)?;
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged until dropped.
        let fd = unsafe { AsyncFd::register(master) }.map_err(std::io::Error::from)?;
        Ok(Pty(fd))
    }

    fn resize(&self, width: u16, height: u16) {
        super::attach::resize(self.0.as_raw_fd(), width, height);
    }
}

struct PtyReader(Arc<Pty>);

impl AsyncRead for PtyReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = std::task::ready!(self.0.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let got = guard.try_io(|fd| {
                // SAFETY: reads at most `unfilled.len()` bytes into memory we own.
                let n = unsafe {
                    nix::libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match got {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO: every process holding the terminal is gone, the terminal's end of file.
                Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::EIO) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

struct PtyWriter(Arc<Pty>);

impl AsyncWrite for PtyWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = std::task::ready!(self.0.0.poll_write_ready(cx))?;
            let got = guard.try_io(|fd| {
                // SAFETY: writes at most `data.len()` bytes from memory we own.
                let n =
                    unsafe { nix::libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match got {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for PtyWriter {
    /// A terminal has no end of its input: like a user typing Ctrl-D, send the end-of-file
    /// character (the terminal is in canonical mode unless the program changed it).
    fn drop(&mut self) {
        // SAFETY: writes one byte from a static.
        unsafe { nix::libc::write(self.0.0.as_raw_fd(), b"\x04".as_ptr().cast(), 1) };
    }
}

/// Writes `value` as JSON through a temporary file and rename, so a reader (or a crash) never
/// sees half a record.
pub(super) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec(value).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| Error::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
}

pub(super) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, Error> {
    read_json_opt(path)?.ok_or_else(|| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source: std::io::ErrorKind::NotFound.into(),
    })
}

fn read_json_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|source| Error::Json {
                path: path.to_path_buf(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}
