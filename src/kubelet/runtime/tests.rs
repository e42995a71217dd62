//! Tests of the real runtime against the kernel: busybox containers started through the shim.
//!
//! They need root, cgroups and the host's static busybox (Debian `busybox-static`); elsewhere they
//! skip with a printed reason, or panic when `RK3S_TESTS_STRICT=1`. The shim binary is found next
//! to the test binary (`shim` in the scratch crate, `rk3s` in the main crate) or at `RK3S_SHIM_EXE`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;

struct Env {
    tmp: tempfile::TempDir,
    local: Local,
    cgroup_parent: String,
    ids: std::sync::Mutex<Vec<String>>,
}

fn skip(reason: &str) -> Option<Env> {
    if std::env::var("RK3S_TESTS_STRICT").as_deref() == Ok("1") {
        panic!("RK3S_TESTS_STRICT=1 but {reason}");
    }
    eprintln!("skipping: {reason}");
    None
}

fn shim_exe() -> Option<PathBuf> {
    if let Ok(exe) = std::env::var("RK3S_SHIM_EXE") {
        return Some(exe.into());
    }
    // target/<profile>/deps/<test binary> → target/<profile>/{shim,rk3s}
    let deps = std::env::current_exe()
        .ok()?
        .parent()?
        .parent()?
        .to_path_buf();
    ["shim", "rk3s"]
        .iter()
        .map(|name| deps.join(name))
        .find(|p| p.exists())
}

/// A scratch area with a busybox rootfs and a `Local` rooted in it; stops, removes and cleans up
/// every container it started when dropped.
fn env(test: &str) -> Option<Env> {
    if !nix::unistd::geteuid().is_root() {
        return skip("runtime tests need root");
    }
    if !Path::new("/bin/busybox").exists() {
        return skip("/bin/busybox (busybox-static) is not installed");
    }
    let Some(exe) = shim_exe() else {
        return skip("no shim binary next to the test binary (cargo build --bins first)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    for dir in ["bin", "tmp", "etc", "proc", "sys", "dev"] {
        std::fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    std::fs::set_permissions(
        rootfs.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "sleep", "id", "pwd", "cat", "yes", "head", "hostname", "true", "ls", "tty",
        "stty",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let local = Local::new(tmp.path().join("state"), tmp.path().join("run"), exe).unwrap();
    Some(Env {
        local,
        cgroup_parent: format!("/rk3s-test-{test}-{}", std::process::id()),
        tmp,
        ids: Default::default(),
    })
}

impl Env {
    fn config(&self, id: &str, args: &[&str]) -> ContainerConfig {
        self.ids.lock().unwrap().push(id.to_string());
        ContainerConfig {
            id: id.into(),
            labels: BTreeMap::from([("name".to_string(), id.to_string())]),
            rootfs: self.tmp.path().join("rootfs"),
            readonly_rootfs: false,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            cwd: String::new(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: id.into(),
            netns: None,
            mounts: vec![],
            cgroup_path: format!("{}/{id}", self.cgroup_parent),
            resources: Resources::default(),
            privileged: false,
            capabilities_add: vec![],
            capabilities_drop: vec![],
            no_new_privileges: false,
            log_path: self.tmp.path().join(format!("{id}.log")),
            tty: false,
            stdin: false,
            stdin_once: false,
        }
    }

    fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.tmp.path().join(format!("{id}.log"))).unwrap_or_default()
    }

    fn rootfs(&self) -> PathBuf {
        self.tmp.path().join("rootfs")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.ids.lock().map(|ids| ids.clone()).unwrap_or_default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for id in &ids {
            if let Ok(State::Running { pid, .. }) = self.local.state(id) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                // The timer is created inside the runtime (it needs its reactor).
                let _ = rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(5), self.local.wait(id)).await
                });
            }
            let _ = rt.block_on(self.local.remove(id));
        }
        for controller in [
            "", "memory", "cpu", "cpuacct", "pids", "devices", "freezer", "blkio", "cpuset",
            "systemd", "unified",
        ] {
            let dir = Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(self.cgroup_parent.trim_start_matches('/'));
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn exit_code(state: &State) -> i32 {
    match state {
        State::Exited { exit_code, .. } => *exit_code,
        State::Running { .. } => panic!("still running: {state:?}"),
    }
}

#[test]
fn output_env_cwd_user_and_exit_code_are_applied() {
    let Some(env) = env("basic") else { return };
    let mut config = env.config(
        "basic",
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; echo \"$FOO $(pwd) $(id -u):$(id -g) $(hostname)\"; printf tail; exit 3",
        ],
    );
    config.env = vec!["FOO=bar".into()];
    config.cwd = "/tmp".into();
    config.uid = 1000;
    config.gid = 1001;
    rt().block_on(async {
        let t0 = Instant::now();
        let state = env.local.start(config).await.unwrap();
        let latency = t0.elapsed();
        eprintln!("start→running latency: {latency:?}");
        assert!(
            matches!(state, State::Running { .. } | State::Exited { .. }),
            "{state:?}"
        );
        let state = env.local.wait("basic").await.unwrap();
        assert_eq!(exit_code(&state), 3, "{state:?}");
        let State::Exited {
            signal,
            oom_killed,
            started_at,
            ..
        } = &state
        else {
            unreachable!()
        };
        assert_eq!(*signal, None);
        assert!(!oom_killed);
        assert!(started_at.is_some());
    });
    let log = env.log("basic");
    let records: Vec<(&str, &str)> = log
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let ts = parts.next().unwrap();
            assert!(ts.ends_with('Z') && ts.len() == 30, "timestamp {ts:?}");
            let stream = parts.next().unwrap();
            assert_eq!(parts.next(), Some("F"));
            (stream, parts.next().unwrap())
        })
        .collect();
    assert!(records.contains(&("stdout", "out")), "{log}");
    assert!(records.contains(&("stderr", "err")), "{log}");
    assert!(
        records.contains(&("stdout", "bar /tmp 1000:1001 basic")),
        "{log}"
    );
    assert!(records.contains(&("stdout", "tail")), "{log}");
}

#[test]
fn missing_executable_is_a_start_error_with_containerd_message() {
    let Some(env) = env("nope") else { return };
    let config = env.config("nope", &["nope"]);
    rt().block_on(async {
        let state = env.local.start(config).await.unwrap();
        let State::Exited {
            exit_code,
            message,
            started_at,
            ..
        } = &state
        else {
            panic!("started: {state:?}")
        };
        assert_eq!(*exit_code, 128);
        assert_eq!(
            message,
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(*started_at, None);
        assert_eq!(env.local.wait("nope").await.unwrap(), state);
    });
    // libcontainer's state was cleaned up by the shim.
    assert!(!env.tmp.path().join("run/nope").exists());
}

#[test]
fn stop_honours_sigterm_or_kills_after_grace() {
    let Some(env) = env("stop") else { return };
    // A shell with a TERM trap exits by itself; `sleep` as PID 1 of its namespace has no handler,
    // so the kernel drops SIGTERM and only SIGKILL ends it.
    let polite = env.config(
        "polite",
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; while true; do sleep 0.05; done",
        ],
    );
    let stubborn = env.config("stubborn", &["sleep", "1000"]);
    rt().block_on(async {
        env.local.start(polite).await.unwrap();
        env.local.start(stubborn).await.unwrap();
        assert!(env.local.state("polite").unwrap().is_running());
        tokio::time::sleep(Duration::from_millis(100)).await;

        let state = env
            .local
            .stop("polite", Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(exit_code(&state), 0, "{state:?}");

        let t0 = Instant::now();
        let state = env
            .local
            .stop("stubborn", Duration::from_millis(300))
            .await
            .unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(exit_code(&state), 137, "{state:?}");
        assert!(matches!(
            state,
            State::Exited {
                signal: Some(9),
                ..
            }
        ));

        // Stopping again just reports the exit.
        let again = env
            .local
            .stop("stubborn", Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(again, state);

        env.local.remove("stubborn").await.unwrap();
        assert!(matches!(
            env.local.state("stubborn"),
            Err(Error::NotFound(_))
        ));
        env.local.remove("stubborn").await.unwrap();
    });
}

#[test]
fn memory_hog_is_reported_oom_killed() {
    let Some(env) = env("oom") else { return };
    let mut config = env.config(
        "oom",
        &[
            "sh",
            "-c",
            "x=$(yes | head -c 300000000); echo survived ${#x}",
        ],
    );
    config.resources.memory_limit = Some(32 << 20);
    rt().block_on(async {
        env.local.start(config).await.unwrap();
        let state = env.local.wait("oom").await.unwrap();
        let State::Exited { oom_killed, .. } = &state else {
            unreachable!()
        };
        assert!(*oom_killed, "{state:?}\nlog: {}", env.log("oom"));
    });
}

#[test]
fn container_outlives_its_starter_and_is_readopted() {
    let Some(env) = env("adopt") else { return };
    let config = env.config(
        "adopt",
        &[
            "sh",
            "-c",
            "echo up; while [ ! -e /tmp/stop ]; do sleep 0.02; done; exit 7",
        ],
    );
    let state_dir = env.tmp.path().join("state");
    let run_dir = env.tmp.path().join("run");
    let exe = shim_exe().unwrap();
    // Start from one runtime and Local, then drop both, as a daemon restart would.
    {
        let first = Local::new(state_dir.clone(), run_dir.clone(), exe.clone()).unwrap();
        let state = rt().block_on(first.start(config.clone())).unwrap();
        assert!(state.is_running(), "{state:?}");
    }
    let started: local::Started =
        local::read_json(&state_dir.join("adopt").join(local::STARTED)).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", started.shim_pid)).unwrap();
    let ppid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(ppid, std::process::id(), "the shim must not be our child");

    let second = Local::new(state_dir, run_dir, exe).unwrap();
    let list = second.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].0, config);
    assert!(list[0].1.is_running());
    rt().block_on(async {
        let wait = second.wait("adopt");
        let rootfs = env.rootfs();
        let release = async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            std::fs::write(rootfs.join("tmp/stop"), b"").unwrap();
        };
        let (state, ()) = tokio::join!(wait, release);
        assert_eq!(exit_code(&state.unwrap()), 7);
    });
    assert!(env.log("adopt").contains(" stdout F up\n"));
}

#[test]
fn sixteen_concurrent_starts_all_succeed() {
    let Some(env) = env("many") else { return };
    let ids: Vec<String> = (0..16).map(|i| format!("many-{i}")).collect();
    let configs: Vec<ContainerConfig> = ids
        .iter()
        .map(|id| env.config(id, &["sh", "-c", "echo hello $(hostname); exit 0"]))
        .collect();
    let local = env.local.clone();
    rt().block_on(async {
        let t0 = Instant::now();
        let starts = configs.into_iter().map(|c| {
            let local = local.clone();
            tokio::spawn(async move { local.start(c).await })
        });
        for start in futures_util::future::join_all(starts).await {
            start.unwrap().unwrap();
        }
        eprintln!("16 concurrent starts: {:?}", t0.elapsed());
        for id in &ids {
            assert_eq!(exit_code(&local.wait(id).await.unwrap()), 0);
        }
    });
    for id in &ids {
        assert!(
            env.log(id).contains(&format!(" stdout F hello {id}\n")),
            "{id}"
        );
    }
}

#[test]
fn invalid_ids_and_configs_are_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let local = Local::new(
        tmp.path().join("state"),
        tmp.path().join("run"),
        "/nonexistent".into(),
    )
    .unwrap();
    let rt = rt();
    let mut config = spec_config();
    config.id = "Bad_Id".into();
    assert!(matches!(
        rt.block_on(local.start(config)),
        Err(Error::InvalidId(_))
    ));
    let mut config = spec_config();
    config.args.clear();
    assert!(matches!(
        rt.block_on(local.start(config)),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(local.state("c1"), Err(Error::NotFound(_))));
    // A shim binary that cannot be run is an error, and leaves nothing behind to block a retry.
    assert!(matches!(
        rt.block_on(local.start(spec_config())),
        Err(Error::Io { .. })
    ));
    assert!(local.list().unwrap().is_empty());
}

#[test]
fn fake_records_calls_and_lets_tests_drive_exits() {
    let fake = Fake::new();
    fake.fail_start("nope", "exec: \"nope\": executable file not found in $PATH");
    let rt = rt();
    rt.block_on(async {
        let state = fake.start(spec_config()).await.unwrap();
        assert!(state.is_running());
        let wait = fake.wait("c1");
        fake.exit("c1", 3);
        assert_eq!(exit_code(&wait.await.unwrap()), 3);

        let mut bad = spec_config();
        bad.id = "c2".into();
        bad.args = vec!["nope".into()];
        assert_eq!(exit_code(&fake.start(bad).await.unwrap()), 128);

        let mut c3 = spec_config();
        c3.id = "c3".into();
        fake.start(c3).await.unwrap();
        let stopped = fake.stop("c3", Duration::from_secs(1)).await.unwrap();
        assert_eq!(exit_code(&stopped), 143);
        fake.remove("c3").await.unwrap();
        assert_eq!(fake.list().unwrap().len(), 2);
    });
    let calls = fake.calls();
    assert_eq!(calls.len(), 5);
    assert_eq!(
        calls[3],
        Call::Stop {
            id: "c3".into(),
            grace: Duration::from_secs(1)
        }
    );
}

fn spec_config() -> ContainerConfig {
    ContainerConfig {
        id: "c1".into(),
        labels: BTreeMap::new(),
        rootfs: "/nonexistent".into(),
        readonly_rootfs: false,
        args: vec!["sh".into()],
        env: vec![],
        cwd: String::new(),
        uid: 0,
        gid: 0,
        additional_gids: vec![],
        hostname: String::new(),
        netns: None,
        mounts: vec![],
        cgroup_path: "/test/c1".into(),
        resources: Resources::default(),
        privileged: false,
        capabilities_add: vec![],
        capabilities_drop: vec![],
        no_new_privileges: false,
        log_path: "/nonexistent/c1.log".into(),
        tty: false,
        stdin: false,
        stdin_once: false,
    }
}

#[test]
fn tty_merges_output_into_stdout_on_a_terminal() {
    let Some(env) = env("tty") else { return };
    let mut config = env.config(
        "tty",
        &["sh", "-c", "[ -t 1 ] && echo on-a-tty; echo to-stderr >&2"],
    );
    config.tty = true;
    rt().block_on(async {
        env.local.start(config).await.unwrap();
        assert_eq!(exit_code(&env.local.wait("tty").await.unwrap()), 0);
    });
    let log = env.log("tty");
    assert!(log.contains(" stdout F on-a-tty\n"), "{log}");
    assert!(log.contains(" stdout F to-stderr\n"), "{log}");
    assert!(!log.contains(" stderr "), "{log}");
    assert!(!log.contains('\r'), "{log:?}");
}

#[test]
fn volumes_tmpfs_and_readonly_rootfs_are_mounted() {
    let Some(env) = env("mounts") else { return };
    let volume = env.tmp.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("in"), "from-host\n").unwrap();
    std::fs::create_dir(env.rootfs().join("data")).unwrap();
    std::fs::create_dir(env.rootfs().join("scratch")).unwrap();
    let mut config = env.config(
        "mounts",
        &[
            "sh",
            "-c",
            "cat /data/in; echo from-container > /data/out; echo x > /scratch/f && echo tmpfs-ok; \
             touch /rootfile 2>/dev/null || echo rootfs-ro",
        ],
    );
    config.readonly_rootfs = true;
    config.mounts = vec![
        Mount {
            destination: "/data".into(),
            source: volume.clone(),
            kind: MountKind::Bind,
            readonly: false,
        },
        Mount {
            destination: "/scratch".into(),
            source: PathBuf::new(),
            kind: MountKind::Tmpfs {
                size_bytes: Some(1 << 20),
            },
            readonly: false,
        },
    ];
    rt().block_on(async {
        env.local.start(config).await.unwrap();
        assert_eq!(exit_code(&env.local.wait("mounts").await.unwrap()), 0);
    });
    let log = env.log("mounts");
    for line in ["from-host", "tmpfs-ok", "rootfs-ro"] {
        assert!(
            log.contains(&format!(" stdout F {line}\n")),
            "{line}: {log}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(volume.join("out")).unwrap(),
        "from-container\n"
    );
    assert!(!env.rootfs().join("scratch/f").exists());
}

/// A network namespace bind-mounted on a file, created on a throwaway thread; unmounted on drop.
struct Netns(PathBuf);

impl Netns {
    fn new(path: PathBuf) -> Netns {
        std::fs::write(&path, b"").unwrap();
        let target = path.clone();
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let tid = nix::unistd::gettid();
            nix::mount::mount(
                Some(Path::new(&format!("/proc/self/task/{tid}/ns/net"))),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
        })
        .join()
        .unwrap();
        Netns(path)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn containers_join_the_pod_network_namespace_by_path() {
    let Some(env) = env("netns") else { return };
    let netns = Netns::new(env.tmp.path().join("netns"));
    let mut config = env.config("netns", &["sh", "-c", "ls /sys/class/net"]);
    config.netns = Some(netns.0.clone());
    rt().block_on(async {
        env.local.start(config).await.unwrap();
        assert_eq!(exit_code(&env.local.wait("netns").await.unwrap()), 0);
    });
    let log = env.log("netns");
    let devices: Vec<&str> = log.lines().filter_map(|l| l.split(" F ").nth(1)).collect();
    assert_eq!(devices, vec!["lo"], "{log}");
}

/// A container outlives the `Local` that started it: a second one lists it and waits for it.
/// (The `kill -9` of the whole rk3s process is tested end to end in tests/it/node.rs.)
#[test]
fn a_new_local_adopts_a_running_container() {
    let Some(env) = env("adopt") else { return };
    let config = env.config(
        "adopt",
        &[
            "sh",
            "-c",
            "while [ ! -e /tmp/stop9 ]; do sleep 0.02; done; echo bye; exit 9",
        ],
    );
    let state_dir = env.tmp.path().join("state");
    let run_dir = env.tmp.path().join("run");
    let exe = shim_exe().unwrap();
    {
        let first = Local::new(state_dir.clone(), run_dir.clone(), exe.clone()).unwrap();
        let state = rt().block_on(first.start(config)).unwrap();
        assert!(state.is_running(), "{state:?}");
    }
    let second = Local::new(state_dir, run_dir, exe).unwrap();
    let list = second.list().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].1.is_running(), "{:?}", list[0].1);
    std::fs::write(env.rootfs().join("tmp/stop9"), b"").unwrap();
    let state = rt().block_on(second.wait("adopt")).unwrap();
    assert_eq!(exit_code(&state), 9);
    assert!(env.log("adopt").contains(" stdout F bye\n"));
}

#[test]
fn unwritable_log_is_a_start_error() {
    let Some(env) = env("nolog") else { return };
    let mut config = env.config("nolog", &["true"]);
    config.log_path = env.tmp.path().join("missing-dir/nolog.log");
    rt().block_on(async {
        let state = env.local.start(config).await.unwrap();
        let State::Exited {
            exit_code, message, ..
        } = &state
        else {
            panic!("started: {state:?}")
        };
        assert_eq!(*exit_code, 128);
        assert!(message.starts_with("open log "), "{message}");
    });
}

/// Reads a whole stream of an exec'd process.
async fn read_all(r: Option<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>>) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = String::new();
    if let Some(mut r) = r {
        r.read_to_string(&mut out).await.unwrap();
    }
    out
}

fn exec_spec(args: &[&str], tty: bool, stdin: bool) -> ExecSpec {
    ExecSpec {
        args: args.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
    }
}

#[test]
fn exec_runs_in_the_container_with_its_settings_stdin_and_a_tty() {
    use tokio::io::AsyncWriteExt;
    let Some(env) = env("exec") else { return };
    let mut config = env.config("exec", &["sleep", "100"]);
    config.env = vec!["GREETING=hello".into()];
    config.cwd = "/tmp".into();
    config.uid = 1000;
    config.gid = 1000;
    rt().block_on(async {
        env.local.start(config).await.unwrap();

        // The container's environment, cwd, user and hostname; separate streams; exit code.
        let p = env
            .local
            .exec(
                "exec",
                exec_spec(
                    &[
                        "sh",
                        "-c",
                        "echo $GREETING; pwd; id -u; hostname; echo oops >&2; exit 3",
                    ],
                    false,
                    false,
                ),
            )
            .await
            .unwrap();
        assert!(p.stdin.is_none() && p.resize.is_none());
        let (out, err) = tokio::join!(read_all(Some(p.stdout)), read_all(p.stderr));
        assert_eq!(out, "hello\n/tmp\n1000\nexec\n");
        assert_eq!(err, "oops\n");
        assert_eq!(p.exit.await.unwrap(), 3);

        // stdin reaches the process, and closing it ends `cat`.
        let mut p = env
            .local
            .exec("exec", exec_spec(&["cat"], false, true))
            .await
            .unwrap();
        let mut stdin = p.stdin.take().unwrap();
        stdin.write_all(b"through stdin").await.unwrap();
        drop(stdin);
        assert_eq!(read_all(Some(p.stdout)).await, "through stdin");
        assert_eq!(p.exit.await.unwrap(), 0);

        // A terminal of the container's own devpts, as its controlling terminal.
        let p = env
            .local
            .exec(
                "exec",
                exec_spec(
                    &["sh", "-c", "tty; [ -t 0 ] && echo in-is-tty"],
                    true,
                    false,
                ),
            )
            .await
            .unwrap();
        assert!(p.stderr.is_none() && p.resize.is_some());
        let out = read_all(Some(p.stdout)).await;
        assert!(out.contains("/dev/pts/"), "{out:?}");
        assert!(out.contains("in-is-tty"), "{out:?}");
        assert_eq!(p.exit.await.unwrap(), 0);

        // Resizes reach the terminal.
        let p = env
            .local
            .exec(
                "exec",
                exec_spec(&["sh", "-c", "sleep 0.5; stty size"], true, false),
            )
            .await
            .unwrap();
        p.resize.as_ref().unwrap().send((100, 30)).unwrap();
        let out = read_all(Some(p.stdout)).await;
        assert_eq!(out.trim(), "30 100");
        assert_eq!(p.exit.await.unwrap(), 0);

        // Dropping a session kills its process.
        let p = env
            .local
            .exec("exec", exec_spec(&["sleep", "1234"], false, false))
            .await
            .unwrap();
        drop(p);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let p = env
                .local
                .exec(
                    "exec",
                    exec_spec(&["sh", "-c", "cat /proc/[0-9]*/cmdline"], false, false),
                )
                .await
                .unwrap();
            let (procs, _) = tokio::join!(read_all(Some(p.stdout)), p.exit);
            if !procs.contains("1234") {
                break;
            }
            assert!(Instant::now() < deadline, "sleep 1234 survived: {procs:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A missing executable is an exec error naming it.
        let err = env
            .local
            .exec("exec", exec_spec(&["/no/such/binary"], false, false))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::Exec { .. }), "{err:?}");
        assert!(err.to_string().contains("/no/such/binary"), "{err}");

        // Only running containers take an exec.
        env.local
            .stop("exec", Duration::from_secs(1))
            .await
            .unwrap();
        let err = env
            .local
            .exec("exec", exec_spec(&["true"], false, false))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::NotRunning(_)), "{err:?}");
    });
}

#[test]
fn shims_do_not_keep_descriptors_the_daemon_inherited() {
    use std::os::fd::AsRawFd;
    let Some(env) = env("fds") else { return };
    // Like a test harness's `flock` descriptor: open, and inherited by children.
    let marker = env.tmp.path().join("inherited.lock");
    let file = std::fs::File::create(&marker).unwrap();
    nix::fcntl::fcntl(
        file.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let config = env.config("fds", &["sleep", "100"]);
    rt().block_on(async {
        env.local.start(config).await.unwrap();
        let started: local::Started =
            local::read_json(&env.tmp.path().join("state/fds").join(local::STARTED)).unwrap();
        let fds: Vec<PathBuf> = std::fs::read_dir(format!("/proc/{}/fd", started.shim_pid))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .collect();
        assert!(!fds.contains(&marker), "{fds:?}");
        // The exec helper keeps only its stdio and control socket too.
        let p = env
            .local
            .exec("fds", exec_spec(&["true"], false, false))
            .await
            .unwrap();
        assert_eq!(p.exit.await.unwrap(), 0);
    });
    drop(file);
}
