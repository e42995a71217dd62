//! `install.sh` and the `rk3s-uninstall.sh` it writes, run for real: start, idempotent re-run,
//! uninstall with and without `--purge`.
//!
//! Root only (the installer refuses anything else). Everything goes under a temporary
//! `INSTALL_RK3S_ROOT`, with a temporary `--data-dir`, so a real installation on the machine is
//! never touched. A guard kills any server the test leaves behind, even when it fails.

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{RK3S, etcdctl, free_port, have_etcdctl};

const INSTALL_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh");

/// An install.sh run should take a second or two; this only stops a hung one from hanging
/// the test.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether the test runs as root; if not, prints why it is skipped, or fails it under
/// `RK3S_TESTS_STRICT=1` (CI runs as root).
fn root_or_skip() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    // "Uid:\treal\teffective\tsaved\tfs"
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("Uid line in /proc/self/status");
    if euid == "0" {
        return true;
    }
    if std::env::var_os("RK3S_TESTS_STRICT").is_some_and(|v| v == "1") {
        panic!("the install.sh tests need root and RK3S_TESTS_STRICT=1");
    }
    println!("SKIP: install.sh needs root (uid {euid})");
    false
}

/// What install.sh or rk3s-uninstall.sh printed, and how it ended.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn assert_ok(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// An installation under a temporary INSTALL_RK3S_ROOT. Dropping it kills every process still
/// running the binary installed there, then deletes the directory.
struct Install {
    root: PathBuf,
    data_dir: PathBuf,
    // Last: dropped after Drop::drop has killed the servers.
    tmp: tempfile::TempDir,
}

impl Install {
    fn new() -> Install {
        let tmp = tempfile::tempdir().expect("temp dir");
        Install {
            root: tmp.path().join("root"),
            data_dir: tmp.path().join("data"),
            tmp,
        }
    }

    fn bin(&self) -> PathBuf {
        self.root.join("usr/local/bin/rk3s")
    }

    fn uninstaller(&self) -> PathBuf {
        self.root.join("usr/local/bin/rk3s-uninstall.sh")
    }

    fn pid_file(&self) -> PathBuf {
        self.root.join("run/rk3s.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("var/log/rk3s.log")
    }

    fn endpoint(&self) -> String {
        format!("unix://{}/server/etcd.sock", self.data_dir.display())
    }

    fn kubeconfig(&self) -> PathBuf {
        self.root.join("etc/rk3s/rk3s.yaml")
    }

    /// `install.sh --data-dir=<tmp>/data --https-listen-port=<free> --bind-address=127.0.0.1
    /// --disable-agent EXTRA...` with this root and the test's rk3s binary.
    fn install(&self, extra: &[&str]) -> Run {
        let mut cmd = Command::new("sh");
        cmd.arg(INSTALL_SH)
            .arg(format!("--data-dir={}", self.data_dir.display()))
            .arg(format!("--https-listen-port={}", free_port()))
            .arg("--bind-address=127.0.0.1")
            // The node is tested on its own (tests/it/node.rs); one bridge per machine.
            .arg("--disable-agent")
            .args(extra)
            .env("INSTALL_RK3S_ROOT", &self.root)
            .env("INSTALL_RK3S_BIN", RK3S);
        self.run(cmd, "install")
    }

    /// The installed `rk3s-uninstall.sh ARGS`.
    fn uninstall(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(self.uninstaller());
        cmd.args(args);
        self.run(cmd, "uninstall")
    }

    /// Runs a script with the developer's RK3S_* settings removed, its output going to files
    /// (a pipe could be held open by the server it starts), killing it after SCRIPT_TIMEOUT.
    fn run(&self, mut cmd: Command, name: &str) -> Run {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RK3S_")
                || key.to_string_lossy().starts_with("INSTALL_RK3S_")
            {
                cmd.env_remove(key);
            }
        }
        let out_path = self.tmp.path().join(format!("{name}.stdout"));
        let err_path = self.tmp.path().join(format!("{name}.stderr"));
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("stdout file"))
            .stderr(std::fs::File::create(&err_path).expect("stderr file"))
            .spawn()
            .expect("start the script");
        let deadline = Instant::now() + SCRIPT_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the script") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} still ran after {SCRIPT_TIMEOUT:?}:\n{}\n{}",
                    std::fs::read_to_string(&out_path).unwrap_or_default(),
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Run {
            status,
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        }
    }

    /// The pid in the pid file.
    fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.pid_file()).expect("read the pid file");
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("pid file holds {text:?}"))
    }

    /// Live (not zombie) processes running the installed binary, or a copy of it that a
    /// re-install has replaced.
    fn servers(&self) -> Vec<u32> {
        let bin = self.bin();
        let deleted = format!("{} (deleted)", bin.display());
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
                continue;
            };
            if (exe == bin || exe.to_string_lossy() == deleted) && alive(pid) {
                pids.push(pid);
            }
        }
        pids
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// kubectl 1.33 with the kubeconfig the server wrote, failing the test (with the server
    /// log) on error.
    fn kubectl(&self, args: &[&str]) -> String {
        let kubectl = crate::kubectl::kubectl_bin(33).expect("kubectl 1.33");
        let out = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .env("HOME", self.tmp.path())
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// etcdctl against the installed server, failing the test (with the server log) on error.
    fn etcdctl_ok(&self, args: &[&str]) -> String {
        let out = etcdctl(&self.endpoint(), args, None);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Install {
    fn drop(&mut self) {
        for pid in self.servers() {
            kill(pid);
        }
    }
}

/// Whether process `pid` is running (a zombie nobody reaped yet has stopped running).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("Z")),
        Err(_) => false,
    }
}

fn kill(pid: u32) {
    // No libc in the test dependencies: the shell's `kill` sends the signal.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -KILL {pid}"))
        .status();
}

#[test]
fn install_reinstall_and_uninstall_keep_then_purge_the_data() {
    if !root_or_skip() || !have_etcdctl() {
        return;
    }
    let inst = Install::new();

    // A fresh install starts one server, which serves the etcd socket.
    let run = inst.install(&[]);
    run.assert_ok("install.sh");
    assert!(run.stdout.contains("rk3s is running"), "{}", run.stdout);
    assert!(inst.bin().exists() && inst.uninstaller().exists());
    let first = inst.pid();
    assert_eq!(inst.servers(), vec![first], "log:\n{}", inst.log());
    assert!(inst.data_dir.join("server/etcd.sock").exists());
    inst.etcdctl_ok(&["put", "install-test", "v1"]);
    // The kubeconfig it wrote reaches the API server.
    assert!(run.stdout.contains("kubeconfig:"), "{}", run.stdout);
    let ns = inst.kubectl(&["get", "namespace", "kube-system", "-o", "name"]);
    assert_eq!(ns.trim(), "namespace/kube-system");

    // A re-run replaces the binary and restarts the server: a new pid, the old one gone, the
    // same data.
    let run = inst.install(&[]);
    run.assert_ok("install.sh (again)");
    assert!(run.stdout.contains("stopping rk3s"), "{}", run.stdout);
    let second = inst.pid();
    assert_ne!(first, second);
    assert!(!alive(first), "the old server {first} still runs");
    assert_eq!(inst.servers(), vec![second], "log:\n{}", inst.log());
    assert_eq!(
        inst.etcdctl_ok(&["get", "install-test", "--print-value-only"])
            .trim(),
        "v1"
    );
    let log = inst.log();
    assert!(log.contains("shutting down"), "{log}");

    // Uninstall without --purge: the server, binary, pid file, log, /etc/rk3s (which install
    // created) and the uninstaller go; the data stays.
    let run = inst.uninstall(&[]);
    run.assert_ok("rk3s-uninstall.sh");
    assert!(inst.servers().is_empty());
    for gone in [
        inst.bin(),
        inst.uninstaller(),
        inst.pid_file(),
        inst.log_file(),
        inst.kubeconfig(),
        inst.root.join("etc/rk3s"),
    ] {
        assert!(!gone.exists(), "{} is still there", gone.display());
    }
    assert!(inst.data_dir.join("server/db/state.db").exists());
    assert!(run.stdout.contains("kept the data dir"), "{}", run.stdout);

    // Installing again finds the old data; uninstalling with --purge deletes it.
    inst.install(&[]).assert_ok("install.sh (after uninstall)");
    assert_eq!(
        inst.etcdctl_ok(&["get", "install-test", "--print-value-only"])
            .trim(),
        "v1"
    );
    inst.uninstall(&["--purge"])
        .assert_ok("rk3s-uninstall.sh --purge");
    assert!(inst.servers().is_empty());
    assert!(!inst.data_dir.exists(), "--purge kept the data dir");
    assert!(!inst.bin().exists() && !inst.uninstaller().exists());
}

#[test]
fn install_fails_with_the_log_when_the_server_dies_at_start() {
    if !root_or_skip() {
        return;
    }
    let inst = Install::new();
    let run = inst.install(&["--datastore-sync=bogus"]);
    assert!(
        !run.status.success(),
        "install.sh succeeded:\n{}",
        run.stdout
    );
    let first = run.stderr.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "install.sh: error: rk3s exited at start; the end of {}:",
            inst.log_file().display()
        )
    );
    assert!(
        run.stderr.contains("invalid value 'bogus'"),
        "{}",
        run.stderr
    );
    assert!(inst.servers().is_empty());
    assert!(!inst.pid_file().exists());
    inst.uninstall(&["--purge"])
        .assert_ok("rk3s-uninstall.sh --purge");
}

#[test]
fn install_refuses_a_relative_data_dir() {
    if !root_or_skip() {
        return;
    }
    let inst = Install::new();
    let run = inst.install(&["--data-dir", "relative/dir"]);
    assert!(!run.status.success());
    assert_eq!(
        run.stderr.trim(),
        "install.sh: error: --data-dir must be an absolute path, got 'relative/dir'"
    );
    assert!(!inst.bin().exists(), "installed despite the error");
}
