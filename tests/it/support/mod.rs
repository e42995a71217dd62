//! Test support: start real processes (`rk3s datastore`, `rk3s server`, and Debian's etcd 3.4
//! as the reference) in temporary directories on free loopback ports, and drive them with real
//! clients (Debian's etcdctl 3.4).
//!
//! Every process is owned by a guard that kills it on drop, so a failing test never leaves a
//! server behind. Tests that need a tool which is not installed print `SKIP: <reason>` and return;
//! `tests/run.sh` installs the tools, so CI always runs them.

pub mod registry;
pub mod simnodes;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const RK3S: &str = env!("CARGO_BIN_EXE_rk3s");
pub const ETCDCTL: &str = "/usr/bin/etcdctl";
pub const ETCD: &str = "/usr/bin/etcd";

/// How long a process may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `path` exists; if not, prints why the calling test is skipped. Under `tests/run.sh`
/// (`RK3S_TESTS_STRICT=1`, which installs everything) a missing tool fails the test instead.
fn have(path: &str, package: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
        panic!("{path} is missing (apt-get install {package}) and RK3S_TESTS_STRICT=1");
    }
    println!("SKIP: {path} is not installed (apt-get install {package}; tests/run.sh does this)");
    false
}

/// Whether etcdctl is installed.
pub fn have_etcdctl() -> bool {
    have(ETCDCTL, "etcd-client")
}

/// Whether etcdctl and the reference etcd server are both installed.
pub fn have_etcd() -> bool {
    have_etcdctl() && have(ETCD, "etcd-server")
}

/// An empty config file in `dir`, so tests never read the machine's /etc/rk3s/config.yaml.
pub fn empty_config(dir: &Path) -> PathBuf {
    let path = dir.join("config.yaml");
    if !path.exists() {
        std::fs::write(&path, "").expect("write empty config");
    }
    path
}

/// A loopback port that was free a moment ago (the OS picks it; the race with other tests is
/// tiny because ports are handed out round-robin).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `rk3s ARGS` run to completion with the test's empty config file. A command that should end
/// but serves instead is killed after a minute, failing the test rather than hanging it.
pub fn rk3s(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(RK3S)
        .args(args)
        .env("RK3S_CONFIG_FILE", empty_config(dir))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rk3s");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait for rk3s").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect rk3s output");
            panic!(
                "rk3s {args:?} still ran after 60 s:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect rk3s output")
}

/// A running server (`rk3s datastore`, `rk3s server` or the reference etcd), killed with
/// SIGKILL on drop.
pub struct Process {
    pub child: Child,
    /// The etcdctl `--endpoints` value that reaches it.
    pub endpoint: String,
    log: PathBuf,
}

impl Process {
    /// `rk3s datastore` on a fresh loopback port, with its database at `dir/state.db`.
    pub fn datastore(dir: &Path, extra: &[&str]) -> Process {
        let port = free_port();
        let db = dir.join("state.db");
        let mut args = vec![
            "datastore".to_string(),
            format!("--endpoint=sqlite://{}", db.display()),
            format!("--listen=http://127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Process::start_rk3s(dir, &args, format!("http://127.0.0.1:{port}"))
    }

    /// `rk3s --data-dir dir server`, reached through its unix socket `dir/server/etcd.sock`,
    /// its Kubernetes API on a free loopback port, its kubeconfig at `dir/kubeconfig.yaml`.
    pub fn server(dir: &Path, extra: &[&str]) -> Process {
        Process::server_wrapped(dir, &[], extra)
    }

    /// Like [`Process::server`], run through `wrapper` (a command that ends by running the
    /// program and arguments appended to it, such as `unshare … --`).
    pub fn server_wrapped(dir: &Path, wrapper: &[&str], extra: &[&str]) -> Process {
        let mut args = vec![
            format!("--data-dir={}", dir.display()),
            "server".to_string(),
            "--bind-address=127.0.0.1".to_string(),
            format!("--https-listen-port={}", free_port()),
            format!(
                "--write-kubeconfig={}",
                dir.join("kubeconfig.yaml").display()
            ),
        ];
        // Only the node tests run a kubelet (`--enable-agent` is this harness's word for
        // leaving `--disable-agent` out): one pod bridge per machine.
        if !extra.contains(&"--enable-agent") {
            args.push("--disable-agent".to_string());
        } else if !extra
            .iter()
            .any(|a| a.starts_with("--kubelet-arg=eviction-hard"))
        {
            // k3s's default thresholds (5% free) would put the node under DiskPressure on a
            // nearly full build machine: the tests must not depend on the host's disk.
            args.push(
                "--kubelet-arg=eviction-hard=nodefs.available<1%,imagefs.available<1%".into(),
            );
        }
        args.extend(
            extra
                .iter()
                .filter(|s| **s != "--enable-agent")
                .map(|s| s.to_string()),
        );
        let endpoint = format!("unix://{}/server/etcd.sock", dir.display());
        Process::start_wrapped(dir, wrapper, &args, endpoint)
    }

    /// Debian's etcd 3.4, single member, client and peer URLs on loopback: the reference the
    /// scenarios are checked against, so their expectations are etcd's and not our guesses.
    pub fn etcd(dir: &Path) -> Process {
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.join("etcd.log");
        let child = Command::new(ETCD)
            .arg("--name=reference")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=reference={peer_url}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("etcd log file"))
            .spawn()
            .expect("start etcd");
        Process::ready(child, client_url, log)
    }

    fn start_rk3s(dir: &Path, args: &[String], endpoint: String) -> Process {
        Process::start_wrapped(dir, &[], args, endpoint)
    }

    fn start_wrapped(dir: &Path, wrapper: &[&str], args: &[String], endpoint: String) -> Process {
        let log = dir.join("rk3s.log");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(RK3S);
                c
            }
            None => Command::new(RK3S),
        };
        let child = cmd
            .args(args)
            .env("RK3S_CONFIG_FILE", empty_config(dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("rk3s log file"))
            .spawn()
            .expect("start rk3s");
        Process::ready(child, endpoint, log)
    }

    /// Waits until etcdctl gets an answer, failing the test (with the log) if the process exits
    /// or stays silent.
    fn ready(child: Child, endpoint: String, log: PathBuf) -> Process {
        assert!(
            Path::new(ETCDCTL).exists(),
            "waiting for a server needs {ETCDCTL}: check have_etcdctl() first"
        );
        let mut p = Process {
            child,
            endpoint,
            log,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("server exited early ({status}):\n{}", p.log());
            }
            if etcdctl(&p.endpoint, &["get", "ready-probe"], None)
                .status
                .success()
            {
                return p;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not answer on {}:\n{}", p.endpoint, p.log());
    }

    /// Everything the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process with SIGTERM, as an operator would, and returns how it exited.
    pub fn stop(mut self) -> ExitStatus {
        // No libc in the test dependencies: the shell's `kill` sends the signal.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", self.pid()))
            .status();
        let status = self.child.wait().expect("wait for the server");
        std::mem::forget(self);
        status
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    /// Runs etcdctl against this process.
    pub fn ctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.endpoint, args, None)
    }

    /// Runs etcdctl and returns its stdout, failing the test on a non-zero exit.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs etcdctl expecting it to fail, and returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            !out.status.success(),
            "etcdctl {args:?} should have failed but printed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `etcdctl put KEY VALUE -w json` and the revision it created.
    pub fn put(&self, key: &str, value: &str) -> i64 {
        json_revision(&self.ok(&["put", key, value, "-w", "json"]))
    }

    /// Starts `etcdctl watch ARGS` against this process.
    pub fn watch(&self, args: &[&str]) -> Watch {
        let mut all = vec!["watch"];
        all.extend_from_slice(args);
        Watch::start(&self.endpoint, &all)
    }

    /// Any long-running etcdctl command (`lease keep-alive ID`), its output collected like a
    /// watch's.
    pub fn stream(&self, args: &[&str]) -> Watch {
        Watch::start(&self.endpoint, args)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `etcdctl` (API v3) against `endpoint`, feeding it `stdin` if given.
pub fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(ETCDCTL);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--dial-timeout=3s")
        .arg("--command-timeout=10s")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match stdin {
        None => {
            cmd.stdin(Stdio::null());
            cmd.output().expect("run etcdctl")
        }
        Some(input) => {
            cmd.stdin(Stdio::piped());
            let mut child = cmd.spawn().expect("run etcdctl");
            let mut pipe = child.stdin.take().expect("etcdctl stdin");
            // Write from a thread: a large input must not deadlock against a full stdout pipe.
            let input = input.to_owned();
            let writer = std::thread::spawn(move || {
                let _ = pipe.write_all(input.as_bytes());
            });
            let out = child.wait_with_output().expect("etcdctl output");
            let _ = writer.join();
            out
        }
    }
}

/// The `header.revision` of an etcdctl `-w json` answer.
pub fn json_revision(out: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(out).expect("etcdctl json");
    v["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no header.revision in {out}"))
}

/// A running `etcdctl watch` (or other streaming command), its output lines collected by a thread; killed on drop.
pub struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(endpoint: &str, args: &[&str]) -> Watch {
        let mut child = Command::new(ETCDCTL)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoint}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start etcdctl");
        let (tx, lines) = mpsc::channel();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Watch { child, lines }
    }

    /// The next `n` lines (stdout and stderr interleaved), failing the test if they do not all
    /// arrive within 10 s.
    pub fn next_lines(&mut self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => got.push(line),
                Err(e) => panic!("watch printed only {got:?} of {n} lines: {e}"),
            }
        }
        got
    }

    /// Whether etcdctl has exited, waiting up to 10 s for it.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the immutable attribute on a path (the one thing that stops root from writing) and
/// clears it on drop, so the temporary directory can be removed even if the test fails.
pub struct Immutable(PathBuf);

impl Immutable {
    /// `None` (with a printed SKIP) when chattr is missing or the file system lacks the attribute
    /// (tmpfs, overlayfs).
    pub fn set(path: &Path) -> Option<Immutable> {
        let out = Command::new("chattr").arg("+i").arg(path).output();
        match out {
            Ok(o) if o.status.success() => Some(Immutable(path.to_path_buf())),
            Ok(o) => {
                println!(
                    "SKIP: chattr +i {} failed ({}): as root nothing else makes a file read-only",
                    path.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!(
                    "SKIP: chattr is not available ({e}; apt-get install e2fsprogs): as root nothing else makes a file read-only"
                );
                None
            }
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}
