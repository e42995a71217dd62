//! The container shim: `rk3s shim <state_dir> <run_dir> <id>`, the only code that calls
//! libcontainer (the one adapter for it).
//!
//! It runs in a fresh, single-threaded process re-executed from the daemon's binary, because
//! libcontainer clones the calling process and keeps running Rust code in the child: in the
//! multi-threaded daemon that deadlocks on locks other threads held at clone time. Like
//! containerd-shim and conmon it forks away from the daemon (so a restart or `kill -9` of the daemon
//! never stops a container), becomes a child subreaper, creates and starts the container, drops
//! the pages it needed only for that (`resident.rs`), copies its stdout/stderr into the CRI log,
//! reaps it, records the exit and removes libcontainer's state.
//!
//! Protocol with the daemon (`local.rs`): the daemon writes `<state_dir>/<id>/config.json` and runs
//! the shim with a pipe as stdout. The shim writes `started.json` (or, if the container could not be
//! started, `exit.json`), then one line `started` or `failed` to that pipe and closes it. When the
//! container exits it writes `exit.json`, and only then exits itself, so a reader that sees the shim
//! gone and no `exit.json` knows the shim died abnormally.
//!
//! `rk3s shim exec <state_dir> <run_dir> <id> <ExecSpec JSON>` is the exec helper (`runc exec`):
//! a short-lived, single-threaded child of the daemon that starts one more process in a running
//! container with libcontainer's tenant builder, using the container's own process settings
//! (user, env, cwd, capabilities) with other args. Its stdin/stdout/stderr become the process's
//! (without a tty); with a tty libcontainer creates a terminal inside the container (so it is the
//! process's controlling terminal, on the container's `/dev/pts`) and hands the master over a
//! console socket. Descriptor 3 is a SOCK_SEQPACKET control socket to the daemon: one message
//! `started <pid>` (with the terminal master attached) or `failed <reason>`, then `exit <code>`.
//! When the daemon closes its end (the exec session was dropped, or the daemon died) the helper
//! kills the process; either way it reaps it before exiting.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, setsid};
use oci_spec::runtime::{PosixRlimitBuilder, PosixRlimitType, Spec};

use super::attach::Attach;
use super::local::{self, Started};
use super::log::{LineFramer, MAX_FILES, MAX_SIZE, RotatingLog, Stream};
use super::{ContainerConfig, ExecSpec, State};

/// Entry point of `rk3s shim …`: `main()` must call it before anything else (no tokio runtime, no
/// threads) when `argv[1] == "shim"`. `args` is the whole argv; what follows `shim` is
/// `<state_dir> <run_dir> <id>`. Never returns.
pub fn shim_main(args: &[String]) -> ! {
    let rest: Vec<&String> = args
        .iter()
        .skip_while(|a| a.as_str() != "shim")
        .skip(1)
        .collect();
    if rest.first().is_some_and(|a| a.as_str() == "exec") {
        close_inherited(EXEC_CONTROL_FD + 1);
        exec_main(&rest[1..]);
    }
    close_inherited(3);
    let [state_dir, run_dir, id] = rest.as_slice() else {
        eprintln!("usage: rk3s shim <state_dir> <run_dir> <id>");
        std::process::exit(2);
    };
    let paths = Paths {
        dir: Path::new(state_dir.as_str()).join(id.as_str()),
        run_dir: PathBuf::from(run_dir.as_str()),
        id: id.to_string(),
    };

    // SAFETY: the shim is single-threaded at this point (main() calls us before starting anything),
    // so the child may run arbitrary code after fork.
    match unsafe { fork() } {
        // The daemon waits for this process; exiting at once lets it reap us without delay, while
        // the child is re-parented to init (or the nearest subreaper) and outlives the daemon.
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(ForkResult::Child) => {}
        Err(e) => {
            eprintln!("shim {}: fork: {e}", paths.id);
            std::process::exit(1);
        }
    }
    // A new session: no signal sent to the daemon's process group or terminal reaches us.
    if let Err(e) = setsid() {
        eprintln!("shim {}: setsid: {e}", paths.id);
    }
    // Do not pin whatever directory the daemon was started in.
    let _ = std::env::set_current_dir("/");
    // Orphans of the container's intermediate processes come to us, not to PID 1.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("shim {}: set child subreaper: {e}", paths.id);
    }
    let notify = match take_stdout() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("shim {}: {e}", paths.id);
            std::process::exit(1);
        }
    };
    match run(&paths, notify) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("shim {}: {e}", paths.id);
            std::process::exit(1);
        }
    }
}

/// Closes every descriptor from `first` on: whatever the daemon inherited without close-on-exec
/// (a test harness's `flock` on a lock file, say) must not live on in a shim that outlives it.
fn close_inherited(first: i32) {
    // SAFETY: plain syscall with integer arguments; only closes descriptors nothing here uses.
    let done =
        unsafe { nix::libc::syscall(nix::libc::SYS_close_range, first as u32, u32::MAX, 0) } == 0;
    if done {
        return;
    }
    // Kernels before 5.9: close what /proc lists.
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .filter(|fd| *fd >= first)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

struct Paths {
    /// `<state_dir>/<id>`
    dir: PathBuf,
    /// libcontainer's root (`with_root_path`).
    run_dir: PathBuf,
    id: String,
}

/// Moves our stdout (the daemon's notification pipe) to a close-on-exec descriptor and points
/// stdin/stdout at /dev/null, so nothing the container or libcontainer inherits keeps the pipe
/// open after we closed it.
fn take_stdout() -> Result<OwnedFd, String> {
    let dup = nix::fcntl::fcntl(1, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(|e| format!("dup stdout: {e}"))?;
    // SAFETY: fcntl just returned this descriptor and nothing else owns it.
    let notify = unsafe { OwnedFd::from_raw_fd(dup) };
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("open /dev/null: {e}"))?;
    for target in [0, 1] {
        nix::unistd::dup2(null.as_raw_fd(), target).map_err(|e| format!("dup2: {e}"))?;
    }
    Ok(notify)
}

fn run(paths: &Paths, notify: OwnedFd) -> Result<(), String> {
    let config: ContainerConfig =
        local::read_json(&paths.dir.join(local::CONFIG)).map_err(|e| e.to_string())?;
    let mut notify = File::from(notify);

    let (started, mut container, outputs, log, attach) = match create_and_start(paths, &config) {
        Ok(ok) => ok,
        Err(message) => {
            // libcontainer may have left a half-created container (state dir, cgroup) behind.
            if let Ok(mut c) = Container::load(paths.run_dir.join(&paths.id))
                && let Err(e) = c.delete(true)
            {
                eprintln!("delete failed container: {e}");
            }
            let exit = State::Exited {
                exit_code: 128,
                signal: None,
                oom_killed: false,
                started_at: None,
                finished_at: SystemTime::now(),
                message,
            };
            local::write_json(&paths.dir.join(local::EXIT), &exit).map_err(|e| e.to_string())?;
            // The daemon may be gone; the record on disk is what counts.
            let _ = notify.write_all(b"failed\n");
            return Ok(());
        }
    };
    local::write_json(&paths.dir.join(local::STARTED), &started).map_err(|e| e.to_string())?;
    let _ = notify.write_all(b"started\n");
    drop(notify);

    // From here on the shim only copies output and waits: the code that created the container
    // need not stay resident for the container's lifetime.
    super::resident::shrink();
    copy_output(outputs, log, attach);

    let (exit_code, signal) = reap(Pid::from_raw(started.pid));
    let finished_at = SystemTime::now();
    // Read before delete(): removing the container removes its cgroup and the counter with it.
    let oom_killed = oom_kills(&config.cgroup_path).unwrap_or(0) > 0;
    if let Err(e) = container.delete(true) {
        eprintln!("delete container: {e}");
    }
    let exit = State::Exited {
        exit_code,
        signal,
        oom_killed,
        started_at: Some(started.started_at),
        finished_at,
        message: String::new(),
    };
    local::write_json(&paths.dir.join(local::EXIT), &exit).map_err(|e| e.to_string())
}

/// The read ends of the container's output pipes, tagged with their CRI stream.
type Outputs = Vec<(File, Stream)>;

type Created = (Started, Container, Outputs, RotatingLog, Option<Attach>);

fn create_and_start(paths: &Paths, config: &ContainerConfig) -> Result<Created, String> {
    // Opened first: a container whose output cannot be kept is not started (containerd fails
    // the start the same way).
    let log = RotatingLog::open(&config.log_path, MAX_SIZE, MAX_FILES)
        .map_err(|e| format!("open log {}: {e}", config.log_path.display()))?;
    let mut spec = super::spec::build(config).map_err(|e| e.to_string())?;
    clamp_nofile(&mut spec);
    let bundle = paths.dir.join(local::BUNDLE);
    std::fs::create_dir_all(&bundle).map_err(|e| format!("create {}: {e}", bundle.display()))?;
    spec.save(bundle.join("config.json"))
        .map_err(|e| format!("write bundle: {e}"))?;
    std::fs::create_dir_all(&paths.run_dir)
        .map_err(|e| format!("create {}: {e}", paths.run_dir.display()))?;

    let pipe =
        || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
    // The container's stdin as the shim keeps it for attach, and the terminal master.
    let mut attach_input: Option<File> = None;
    let mut terminal: Option<OwnedFd> = None;
    let stdio = if config.tty {
        // The terminal comes from libcontainer (below); everything is one stream then,
        // reported as stdout (as containerd does).
        Stdio::Terminal(ConsoleSocket::bind(&paths.dir, "console")?)
    } else {
        let stdin: OwnedFd = if config.stdin {
            let (r, w) = pipe()?;
            set_nonblocking(&w)?;
            attach_input = Some(File::from(w));
            r
        } else {
            File::open("/dev/null")
                .map_err(|e| format!("open /dev/null: {e}"))?
                .into()
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let outputs = vec![
            (File::from(out_r), Stream::Stdout),
            (File::from(err_r), Stream::Stderr),
        ];
        Stdio::Pipes {
            stdin,
            out_w,
            err_w,
            outputs,
        }
    };
    let mut outputs = Vec::new();

    let mut builder = ContainerBuilder::new(paths.id.clone(), SyscallType::default())
        .with_executor(Exec)
        .with_root_path(&paths.run_dir)
        .and_then(|b| b.validate_id())
        .map_err(|e| start_message(&e))?;
    let console = match stdio {
        Stdio::Pipes {
            stdin,
            out_w,
            err_w,
            outputs: pipes,
        } => {
            outputs = pipes;
            builder = builder
                .with_stdin(stdin)
                .with_stdout(out_w)
                .with_stderr(err_w);
            None
        }
        Stdio::Terminal(c) => {
            builder = builder.with_console_socket(Some(&c.path));
            Some(c)
        }
    };
    let mut container = builder
        .as_init(&bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| start_message(&e))?;
    if let Some(c) = &console {
        let master = match c.receive() {
            Ok(m) => m,
            Err(e) => {
                let _ = container.delete(true);
                return Err(e);
            }
        };
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("dup terminal: {e}"));
        // Non-blocking for the attach input written from the poll loop (the flag is shared
        // with the output reader, which copes with WouldBlock).
        set_nonblocking(&master)?;
        if config.stdin {
            attach_input = Some(File::from(dup(&master)?));
        }
        terminal = Some(dup(&master)?);
        outputs = vec![(File::from(master), Stream::Stdout)];
    }
    drop(console);
    let attach = if config.stdin || config.tty {
        Some(Attach::bind(
            &paths.dir,
            attach_input,
            terminal,
            config.stdin_once,
        )?)
    } else {
        None
    };
    container.start().map_err(|e| start_message(&e))?;
    let pid = container
        .pid()
        .ok_or_else(|| "libcontainer reported no pid for the started container".to_string())?;
    let started = Started {
        pid: pid.as_raw(),
        started_at: SystemTime::now(),
        shim_pid: std::process::id() as i32,
    };
    Ok((started, container, outputs, log, attach))
}

fn set_nonblocking(fd: &OwnedFd) -> Result<(), String> {
    local::set_nonblocking(fd).map_err(|e| format!("set O_NONBLOCK: {e}"))
}

/// How a container's stdio is set up: pipes the shim reads (and, with `stdin: true`, writes),
/// or a terminal libcontainer creates and sends over the console socket.
enum Stdio {
    Pipes {
        stdin: OwnedFd,
        out_w: OwnedFd,
        err_w: OwnedFd,
        outputs: Outputs,
    },
    Terminal(ConsoleSocket),
}

/// The descriptor the daemon passes the exec helper's control socket on.
pub(super) const EXEC_CONTROL_FD: i32 = 3;

/// Entry point of `rk3s shim exec …` (see the module doc). Never returns.
fn exec_main(rest: &[&String]) -> ! {
    // SAFETY: the daemon puts the control socket on this descriptor before exec; nothing else in
    // this fresh process owns it. A missing descriptor makes every use fail with EBADF.
    let control = unsafe { OwnedFd::from_raw_fd(EXEC_CONTROL_FD) };
    let _ = nix::fcntl::fcntl(
        control.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let send = |msg: &str, fds: &[i32]| {
        let iov = [std::io::IoSlice::new(msg.as_bytes())];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(fds)];
        let cmsgs: &[nix::sys::socket::ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        let _ = nix::sys::socket::sendmsg::<()>(
            control.as_raw_fd(),
            &iov,
            cmsgs,
            nix::sys::socket::MsgFlags::empty(),
            None,
        );
    };
    let [state_dir, run_dir, id, spec] = rest else {
        send(
            "failed usage: rk3s shim exec <state_dir> <run_dir> <id> <spec>",
            &[],
        );
        std::process::exit(2);
    };
    let paths = Paths {
        dir: Path::new(state_dir.as_str()).join(id.as_str()),
        run_dir: PathBuf::from(run_dir.as_str()),
        id: id.to_string(),
    };
    // The exec'd process's intermediate parent exits early; its orphans come to us.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let started = serde_json::from_str::<ExecSpec>(spec)
        .map_err(|e| format!("bad exec spec: {e}"))
        .and_then(|spec| exec_start(&paths, &spec));
    let (pid, master) = match started {
        Ok(ok) => ok,
        Err(reason) => {
            send(&format!("failed {reason}"), &[]);
            std::process::exit(1);
        }
    };
    let fds: Vec<i32> = master.iter().map(|m| m.as_raw_fd()).collect();
    send(&format!("started {}", pid.as_raw()), &fds);
    drop(master);
    // Only the process holds its stdio now, so the daemon sees EOF when it (and whatever it
    // started) is done.
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for target in [0, 1, 2] {
            let _ = nix::unistd::dup2(null.as_raw_fd(), target);
        }
    }
    let code = exec_wait(pid, &control);
    send(&format!("exit {code}"), &[]);
    std::process::exit(0);
}

/// Starts the exec'd process; returns its pid and, with a tty, the terminal master.
fn exec_start(paths: &Paths, spec: &ExecSpec) -> Result<(Pid, Option<OwnedFd>), String> {
    if spec.args.is_empty() {
        return Err("no command given".into());
    }
    let bundle = paths.dir.join(local::BUNDLE).join("config.json");
    let init = Spec::load(&bundle).map_err(|e| format!("read {}: {e}", bundle.display()))?;
    // The container's own process settings (user, env, cwd, capabilities, rlimits), as
    // `runc exec` inherits them, with the exec's args and terminal.
    let mut process = init
        .process()
        .clone()
        .ok_or_else(|| "the container spec has no process".to_string())?;
    process.set_args(Some(spec.args.clone()));
    process.set_terminal(Some(spec.tty));
    let tag = format!("exec-{}", std::process::id());
    let process_path = paths.dir.join(format!("{tag}.json"));
    let data = serde_json::to_vec(&process).map_err(|e| format!("encode process: {e}"))?;
    std::fs::write(&process_path, data)
        .map_err(|e| format!("write {}: {e}", process_path.display()))?;
    let console = if spec.tty {
        Some(ConsoleSocket::bind(&paths.dir, &tag)?)
    } else {
        None
    };
    let dup = |fd: i32| {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
            // SAFETY: fcntl just returned this descriptor and nothing else owns it.
            .map(|d| unsafe { OwnedFd::from_raw_fd(d) })
            .map_err(|e| format!("dup stdio: {e}"))
    };
    let mut builder = ContainerBuilder::new(paths.id.clone(), SyscallType::default())
        .with_executor(Exec)
        .with_root_path(&paths.run_dir)
        .and_then(|b| b.validate_id())
        .map_err(|e| start_message(&e))?;
    builder = match &console {
        Some(c) => builder.with_console_socket(Some(&c.path)),
        None => builder
            .with_stdin(dup(0)?)
            .with_stdout(dup(1)?)
            .with_stderr(dup(2)?),
    };
    let pid = builder
        .as_tenant()
        .with_process(Some(&process_path))
        // Detached is what lets libcontainer hand the terminal over the console socket; the
        // process is our child either way.
        .with_detach(spec.tty)
        .build()
        .map_err(|e| start_message(&e));
    let _ = std::fs::remove_file(&process_path);
    let pid = pid?;
    let master = match console {
        Some(c) => match c.receive() {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(e);
            }
        },
        None => None,
    };
    Ok((pid, master))
}

/// The unix socket libcontainer sends an exec's terminal master to; removed when dropped.
struct ConsoleSocket {
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    /// Binds `<dir>/<tag>.sock` by a relative name from inside `dir` (the absolute path can be
    /// longer than a socket address allows); changing directory is safe in this single-threaded
    /// helper.
    fn bind(dir: &Path, tag: &str) -> Result<ConsoleSocket, String> {
        let name = format!("{tag}.sock");
        let path = dir.join(&name);
        let _ = std::fs::remove_file(&path);
        std::env::set_current_dir(dir).map_err(|e| format!("chdir {}: {e}", dir.display()))?;
        let listener = std::os::unix::net::UnixListener::bind(&name);
        let _ = std::env::set_current_dir("/");
        let listener = listener.map_err(|e| format!("bind {}: {e}", path.display()))?;
        Ok(ConsoleSocket { path, listener })
    }

    /// The terminal master the exec'd process's init sent (its connection was made by `build`).
    fn receive(&self) -> Result<OwnedFd, String> {
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|e| format!("accept console socket: {e}"))?;
        let mut buf = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("receive terminal: {e}"))?;
        let cmsgs = msg.cmsgs().map_err(|e| format!("receive terminal: {e}"))?;
        for cmsg in cmsgs {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = cmsg
                && let Some(fd) = fds.first()
            {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
        Err("the exec'd process sent no terminal".into())
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Waits for the exec'd process `pid`, killing it when the daemon closes the control socket.
/// Returns its exit code (128+N when killed by signal N).
fn exec_wait(pid: Pid, control: &OwnedFd) -> i32 {
    // SAFETY: plain syscall with integer arguments; a non-negative result is a new descriptor.
    let raw = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid.as_raw(), 0) };
    // SAFETY: `raw` is a fresh descriptor from the kernel when non-negative.
    let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as i32) });
    let mut control_open = true;
    loop {
        match waitpid(
            Pid::from_raw(-1),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        ) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return 128 + sig as i32,
            // Some other orphan: reap it and look again.
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
        let mut fds = Vec::new();
        if control_open {
            fds.push(PollFd::new(control.as_fd(), PollFlags::POLLIN));
        }
        if let Some(p) = &pidfd {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        // Without a pidfd (kernel < 5.3) look at the process again every 100 ms.
        let timeout = if pidfd.is_some() {
            PollTimeout::NONE
        } else {
            PollTimeout::from(100u16)
        };
        if poll(&mut fds, timeout).is_err() {
            continue;
        }
        let hangup = control_open
            && fds
                .first()
                .and_then(|f| f.revents())
                .is_some_and(|r| !r.is_empty());
        if hangup {
            // Anything from the daemon, or its end closing, means: stop the process.
            control_open = false;
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
}

/// Lowers RLIMIT_NOFILE to the shim's own hard limit (inherited from the daemon, e.g. systemd's
/// `LimitNOFILE=1048576`): raising a hard limit needs CAP_SYS_RESOURCE, which a root daemon in a
/// restricted sandbox may lack, and then every container would fail to start with EPERM.
fn clamp_nofile(spec: &mut Spec) {
    let mut own = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    if unsafe { nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut own) } != 0 {
        return;
    }
    let Some(process) = spec.process_mut().as_mut() else {
        return;
    };
    let Some(mut rlimits) = process.rlimits().clone() else {
        return;
    };
    for r in rlimits.iter_mut() {
        if r.typ() == PosixRlimitType::RlimitNofile {
            let hard = r.hard().min(own.rlim_max);
            let clamped = PosixRlimitBuilder::default()
                .typ(r.typ())
                .hard(hard)
                .soft(r.soft().min(hard))
                .build();
            if let Ok(clamped) = clamped {
                *r = clamped;
            }
        }
    }
    process.set_rlimits(Some(rlimits));
}

/// The text a StartError carries: containerd's wording for a missing executable, otherwise
/// libcontainer's error chain.
fn start_message(err: &dyn std::error::Error) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        chain.push_str(": ");
        chain.push_str(&e.to_string());
        source = e.source();
    }
    const TAIL: &str = "executable file not found in $PATH";
    if let (Some(start), Some(end)) = (chain.find("exec: \""), chain.find(TAIL))
        && start < end
    {
        return chain[start..end + TAIL.len()].to_string();
    }
    chain
}

/// libcontainer's default executor, with containerd's message for a missing executable and signal
/// dispositions reset before exec (the shim ignores SIGPIPE like every Rust program, and ignored
/// signals survive execve; runc resets them the same way).
#[derive(Clone)]
struct Exec;

impl Executor for Exec {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        for sig in Signal::iterator() {
            if !matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
                // SAFETY: installing SIG_DFL runs no Rust code in a signal context.
                let _ = unsafe { signal(sig, SigHandler::SigDfl) };
            }
        }
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec).map_err(|e| match e {
            ExecutorValidationError::ArgValidationError(m) if m.contains("not found in $PATH") => {
                let arg0 = spec
                    .process()
                    .as_ref()
                    .and_then(|p| p.args().as_ref())
                    .and_then(|a| a.first())
                    .cloned()
                    .unwrap_or_default();
                ExecutorValidationError::ArgValidationError(format!(
                    "exec: {arg0:?}: executable file not found in $PATH"
                ))
            }
            other => other,
        })
    }
}

/// Copies the container's output into the CRI log until every stream is closed (the container's
/// init and all its descendants have exited or closed them; with a PID namespace the kernel kills
/// the descendants when init exits, so this ends with the container).
fn copy_output(mut outputs: Outputs, mut log: RotatingLog, mut attach: Option<Attach>) {
    let mut framers: Vec<LineFramer> = outputs.iter().map(|(_, s)| LineFramer::new(*s)).collect();
    let mut open: Vec<bool> = vec![true; outputs.len()];
    let mut buf = vec![0u8; 64 * 1024];
    let mut record = Vec::with_capacity(64 * 1024);
    while open.iter().any(|o| *o) {
        let (ready, attach_events): (Vec<bool>, Vec<PollFlags>) = {
            let mut fds: Vec<PollFd> = outputs
                .iter()
                .zip(&open)
                .filter(|(_, o)| **o)
                .map(|((f, _), _)| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                .collect();
            let first_attach = fds.len();
            if let Some(a) = &attach {
                fds.extend(a.poll_fds().into_iter().map(|(fd, ev)| PollFd::new(fd, ev)));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("poll: {e}");
                    return;
                }
            }
            let events: Vec<PollFlags> = fds
                .iter()
                .map(|p| p.revents().unwrap_or(PollFlags::empty()))
                .collect();
            let mut revents = events[..first_attach].iter().map(|r| !r.is_empty());
            let ready = open
                .iter()
                .map(|o| *o && revents.next().unwrap_or(false))
                .collect();
            (ready, events[first_attach..].to_vec())
        };
        if let Some(a) = &mut attach {
            a.handle(&attach_events);
        }
        for (i, is_ready) in ready.into_iter().enumerate() {
            if !is_ready {
                continue;
            }
            let now = SystemTime::now();
            record.clear();
            match outputs[i].0.read(&mut buf) {
                Ok(0) => {
                    open[i] = false;
                    framers[i].finish(now, &mut record);
                }
                // A terminal master is non-blocking when attach writes to it.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => {
                    open[i] = false;
                    framers[i].finish(now, &mut record);
                }
                Ok(n) => framers[i].push(&buf[..n], now, &mut record),
            }
            if !record.is_empty()
                && let Err(e) = log.write(&record)
            {
                eprintln!("write log: {e}");
            }
        }
    }
}

/// Waits for the container's init, reaping anything else re-parented to us on the way.
/// Returns (exit code, signal) with a signal N reported as exit code 128+N.
fn reap(pid: Pid) -> (i32, Option<i32>) {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => {
                return (128 + sig as i32, Some(sig as i32));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("waitpid: {e}");
                return (255, None);
            }
        }
    }
}

/// The memory cgroup's OOM kill counter for the container: v2 `memory.events`, v1
/// `memory.oom_control` (both `oom_kill <n>`, kernel ≥ 4.13).
fn oom_kills(cgroup_path: &str) -> Option<u64> {
    let rel = cgroup_path.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    let file = if root.join("cgroup.controllers").exists() {
        root.join(rel).join("memory.events")
    } else {
        root.join("memory").join(rel).join("memory.oom_control")
    };
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

/// Whether `/proc/<pid>/cmdline` is the shim of container `id` (`… shim <state> <run> <id>`); lets
/// `local` tell a live shim from an unrelated process that reused its pid.
pub(super) fn is_shim_cmdline(cmdline: &[u8], id: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.iter()
        .position(|a| *a == b"shim")
        .and_then(|i| args.get(i + 3))
        .is_some_and(|a| *a == id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_executable_uses_containerd_wording() {
        #[derive(Debug)]
        struct E(String);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for E {}
        let e = E("intermediate process error failed to validate: exec: \"nope\": executable file not found in $PATH)".into());
        assert_eq!(
            start_message(&e),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(start_message(&E("boom".into())), "boom");
    }

    #[test]
    fn shim_cmdline_is_recognised() {
        assert!(is_shim_cmdline(b"/x/rk3s\0shim\0/s\0/r\0c1\0", "c1"));
        assert!(!is_shim_cmdline(b"/bin/sleep\x00100\x00", "c1"));
    }
}
