//! Test support: start real `rk3s` processes in temporary data dirs, find free loopback ports,
//! and run real clients (etcdctl) against them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const RK3S: &str = env!("CARGO_BIN_EXE_rk3s");
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// Whether etcdctl is installed; tests that need it print why they skip (tests/run.sh installs
/// it, so CI always runs them).
pub fn have_etcdctl() -> bool {
    if Path::new(ETCDCTL).exists() {
        return true;
    }
    println!("SKIP: {ETCDCTL} is not installed (apt-get install etcd-client)");
    false
}

/// An empty config file in `dir`, so tests never read the machine's /etc/rk3s/config.yaml.
pub fn empty_config(dir: &Path) -> PathBuf {
    let path = dir.join("config.yaml");
    if !path.exists() {
        std::fs::write(&path, "").expect("write empty config");
    }
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running `rk3s` process, killed (SIGKILL) on drop.
pub struct Process {
    pub child: Child,
    pub dir: PathBuf,
    pub endpoint: String,
}

impl Process {
    /// `rk3s datastore` on a fresh loopback port, with its database in `dir`.
    pub fn datastore(dir: &Path, extra: &[&str]) -> Process {
        let port = free_port();
        let db = dir.join("state.db");
        let mut args = vec![
            "datastore".to_string(),
            format!("--endpoint=sqlite://{}", db.display()),
            format!("--listen=http://127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Process::start(dir, &args, format!("http://127.0.0.1:{port}"))
    }

    /// `rk3s server --data-dir dir`, reached through its unix socket.
    pub fn server(dir: &Path, extra: &[&str]) -> Process {
        let mut args = vec![
            format!("--data-dir={}", dir.display()),
            "server".to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let endpoint = format!("unix://{}/server/etcd.sock", dir.display());
        Process::start(dir, &args, endpoint)
    }

    fn start(dir: &Path, args: &[String], endpoint: String) -> Process {
        let log = std::fs::File::create(dir.join("rk3s.log")).expect("log file");
        let child = Command::new(RK3S)
            .args(args)
            .env("RK3S_CONFIG_FILE", empty_config(dir))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rk3s");
        let mut p = Process {
            child,
            dir: dir.to_path_buf(),
            endpoint,
        };
        p.wait_ready();
        p
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rk3s exited early ({status}): {}", self.log());
            }
            let out = etcdctl(&self.endpoint, &["get", "ready-probe"], None);
            if out.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rk3s did not answer on {}: {}", self.endpoint, self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("rk3s.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").arg(self.pid().to_string()).status();
        let status = self.child.wait().expect("wait for rk3s");
        std::mem::forget(self);
        status
    }

    /// SIGKILL, as a crash would.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.endpoint, args, None)
    }

    /// Runs etcdctl and returns its stdout, failing the test on a non-zero exit.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
            use std::io::Write;
            cmd.stdin(Stdio::piped());
            let mut child = cmd.spawn().expect("run etcdctl");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
            child.wait_with_output().expect("etcdctl output")
        }
    }
}

/// The `-w json` header revision of an etcdctl command's output.
pub fn json_revision(out: &str) -> i64 {
    let v: serde_json::Value = serde_json::from_str(out).expect("etcdctl json");
    v["header"]["revision"].as_i64().expect("header.revision")
}
