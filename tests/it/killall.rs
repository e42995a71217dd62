//! `rk3s killall`: a server with its kubelet and a running pod, then killall stops the server,
//! the shim and the container, detaches the mounts, removes the pod cgroup, both nftables
//! tables, the bridge and the cluster DNS address, and keeps the data.
//!
//! killall stops every rk3s process it can see, so the server runs in a PID (and mount)
//! namespace of its own (`unshare --pid --fork --mount-proc`) under a shell as the namespace's
//! init, and killall runs inside it (`nsenter`): other tests' servers stay out of its sight. The
//! network is the host's, which only the node tests (one at a time) touch.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::kubectl::Cluster;
use crate::node::{NODE, is_root, phase, wait_node_ready, wait_pod};
use crate::support::registry::Registry;
use crate::support::{RK3S, empty_config};

/// Processes (host-wide) whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push(format!("{pid}: {cmd}"));
        }
    }
    out
}

fn sh(line: &str) -> Output {
    Command::new("sh").arg("-c").arg(line).output().unwrap()
}

/// Runs `args` inside the PID and mount namespaces whose init is `init`.
fn in_namespace(init: u32, args: &[&str], config: &Path) -> Output {
    Command::new("nsenter")
        .arg(format!("--target={init}"))
        .args(["--pid", "--mount", "--"])
        .args(args)
        .env("RK3S_CONFIG_FILE", config)
        .output()
        .unwrap()
}

/// Directories named `name` anywhere under the cgroup hierarchies' `kubepods` trees.
fn pod_cgroups(name: &str) -> Vec<String> {
    let out = sh(&format!(
        "find /sys/fs/cgroup/ -maxdepth 5 -type d -path '*kubepods*' -name '{name}' 2>/dev/null"
    ));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn killall_stops_everything_and_cleans_the_host() {
    if !is_root() {
        assert!(
            std::env::var_os("RK3S_TESTS_STRICT").is_none_or(|v| v != "1"),
            "the killall test needs root and RK3S_TESTS_STRICT=1"
        );
        println!("SKIP: killall needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(registry) = Registry::start(tmp.path()) else {
        return;
    };
    let image = registry.push_busybox("busybox:1");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let wrapper = [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "--",
        "sh",
        "-c",
        "\"$0\" \"$@\" & while sleep 1; do :; done",
    ];
    let Some(c) = Cluster::start_wrapped(
        33,
        dir,
        &wrapper,
        &["--enable-agent", &format!("--node-name={NODE}")],
    ) else {
        return;
    };
    wait_node_ready(&c);
    let marker = format!("killall-marker-{}", std::process::id());
    c.ok(&[
        "run",
        "victim",
        &format!("--image={image}"),
        "--restart=Never",
        "--",
        "sh",
        "-c",
        &format!("while true; do sleep 1; done; : {marker}"),
    ]);
    let pod = wait_pod(&c, "victim", "Running", |v| phase(v) == "Running");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(processes_with(&marker).len(), 1, "the container runs");
    assert!(
        !pod_cgroups(&format!("pod{uid}")).is_empty(),
        "the pod has a cgroup"
    );
    c.eventually("the service proxy's table", || {
        sh("nft list table inet rk3s").status.success()
    });
    assert!(sh("nft list table ip rk3s-podnet").status.success());
    assert!(sh("ip link show rk3s0").status.success());

    // The namespace's init is the shell `unshare` forked.
    let unshare = c.server_pid();
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children"))
        .unwrap_or_default();
    let init: u32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("unshare's child");
    let config = empty_config(&data);
    let data_arg = format!("--data-dir={}", data.display());
    let out = in_namespace(init, &[RK3S, &data_arg, "killall"], &config);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "killall failed: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.server_log()
    );
    for line in [
        "stopped 1 rk3s process(es)",
        "killed",
        "unmounted",
        "removed /run/rk3s",
        "removed nftables tables inet rk3s, ip rk3s-hostports and ip rk3s-podnet",
        "deleted link rk3s0",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }

    // Processes: the server, the shim and the container are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with(&marker).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        processes_with(&marker),
        Vec::<String>::new(),
        "the container"
    );
    let rk3s_left: Vec<String> = processes_with(&data.to_string_lossy())
        .into_iter()
        .filter(|p| !p.contains("killall") && !p.contains("unshare") && !p.contains("sh -c"))
        .collect();
    assert_eq!(
        rk3s_left,
        Vec::<String>::new(),
        "rk3s processes of the data dir"
    );
    // Mounts (in the server's mount namespace), cgroups, network.
    let mounts = in_namespace(init, &["cat", "/proc/self/mountinfo"], &config);
    let mounts = String::from_utf8_lossy(&mounts.stdout).into_owned();
    let agent = data.join("agent").to_string_lossy().into_owned();
    let left: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains(&agent) || l.contains(" /run/rk3s"))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:#?}");
    assert_eq!(pod_cgroups(&format!("pod{uid}")), Vec::<String>::new());
    assert!(!sh("nft list table inet rk3s").status.success());
    assert!(!sh("nft list table ip rk3s-podnet").status.success());
    assert!(!sh("ip link show rk3s0").status.success());
    assert!(!sh("ip link show rk3s-dns").status.success());
    let lo = sh("ip -4 addr show dev lo");
    assert!(
        !String::from_utf8_lossy(&lo.stdout).contains("10.43.0.10/32"),
        "the cluster DNS address stayed on lo"
    );
    // The data stays.
    assert!(data.join("server/db/state.db").exists());

    // Again: nothing left to do, and that is fine.
    let again = in_namespace(init, &[RK3S, &data_arg, "killall"], &config);
    assert!(
        again.status.success(),
        "second killall: {}{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(!String::from_utf8_lossy(&again.stdout).contains("stopped"));
}

/// Without root, killall refuses with one line saying why, before touching anything.
#[test]
fn killall_needs_root() {
    if !is_root() {
        println!("SKIP: dropping to an unprivileged user needs root");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            RK3S,
            "killall",
        ])
        .env("RK3S_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("killall needs root"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
