//! Debian's etcdctl (v3.4) against `rk3s datastore` over TCP and `rk3s server` over its unix
//! socket: the etcd API as a real client sees it, plus crash safety and bad input.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Process, etcdctl, have_etcdctl, json_revision};

fn kv_flow(p: &Process) {
    let out = p.ok(&["put", "/a/1", "one", "-w", "json"]);
    let first = json_revision(&out);
    p.ok(&["put", "/a/2", "two"]);
    p.ok(&["put", "/b/1", "other"]);
    p.ok(&["put", "/a/1", "uno"]);
    assert_eq!(
        p.ok(&["get", "/a", "--prefix", "--print-value-only"]),
        "uno\ntwo\n"
    );
    assert_eq!(
        p.ok(&["get", "/a", "--prefix", "--keys-only"]),
        "/a/1\n\n/a/2\n\n"
    );
    // The past stays readable until compaction.
    let old = p.ok(&[
        "get",
        "/a/1",
        "--print-value-only",
        &format!("--rev={first}"),
    ]);
    assert_eq!(old, "one\n");
    assert_eq!(p.ok(&["del", "/a", "--prefix"]), "2\n");
    assert_eq!(p.ok(&["get", "/a", "--prefix"]), "");
    assert_eq!(p.ok(&["get", "/b/1", "--print-value-only"]), "other\n");

    // Interactive txn: compares, blank line, success ops, blank line, failure ops.
    p.ok(&["put", "k", "v1"]);
    let txn = "value(\"k\") = \"v1\"\n\nput k v2\n\nput k failed\n\n";
    let out = etcdctl(&p.endpoint, &["txn"], Some(txn));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("SUCCESS"));
    let out = etcdctl(&p.endpoint, &["txn"], Some(txn));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("FAILURE"));
    assert_eq!(p.ok(&["get", "k", "--print-value-only"]), "failed\n");
}

#[test]
fn etcdctl_kv_and_txn_against_datastore() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::datastore(dir.path(), &[]);
    kv_flow(&p);
}

#[test]
fn etcdctl_kv_status_and_members_against_server_socket() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::server(dir.path(), &[]);
    kv_flow(&p);
    let status: serde_json::Value =
        serde_json::from_str(&p.ok(&["endpoint", "status", "-w", "json"])).unwrap();
    let status = &status[0]["Status"];
    assert_eq!(status["version"], "3.5.13");
    assert!(status["dbSize"].as_i64().unwrap() > 0);
    let members: serde_json::Value =
        serde_json::from_str(&p.ok(&["member", "list", "-w", "json"])).unwrap();
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
    let health = p.ctl(&["endpoint", "health"]);
    assert!(health.status.success());
    // etcdctl 3.4 reports health on stderr.
    assert!(String::from_utf8_lossy(&health.stderr).contains("is healthy"));
    let out = p.ctl(&[
        "snapshot",
        "save",
        &dir.path().join("x.db").display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rk3s etcd-snapshot save"));
}

#[test]
fn etcdctl_watch_delivers_history_in_order_with_prev_kv() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::datastore(dir.path(), &[]);
    let start = json_revision(&p.ok(&["put", "w", "0", "-w", "json"]));
    for i in 1..=3 {
        p.ok(&["put", "w", &i.to_string()]);
    }
    p.ok(&["del", "w"]);
    let mut child = Command::new(crate::support::ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args([
            &format!("--endpoints={}", p.endpoint),
            "watch",
            "w",
            "--prev-kv",
            &format!("--rev={start}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Live events after the history.
    p.ok(&["put", "w", "live"]);
    let mut got = Vec::new();
    while got.len() < 16 {
        got.push(lines.next().unwrap().unwrap());
    }
    let _ = child.kill();
    let _ = child.wait();
    // etcdctl prints each event as TYPE, key, value (with --prev-kv: TYPE, key, prev, key, value).
    let expected = [
        "PUT", "w", "0", //
        "PUT", "w", "0", "w", "1", //
        "PUT", "w", "1", "w", "2", //
        "PUT", "w", "2",
    ];
    assert_eq!(
        got, expected,
        "events arrive in revision order with prev_kv"
    );
}

#[test]
fn etcdctl_leases_keep_alive_and_expire() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::datastore(dir.path(), &[]);
    let out = p.ok(&["lease", "grant", "2"]);
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    assert!(out.contains("granted with TTL(2s)"), "{out}");
    p.ok(&["put", "leased", "x", &format!("--lease={id}")]);
    let ttl = p.ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    assert!(
        p.ok(&["lease", "keep-alive", "--once", &id])
            .contains("keepalived with TTL(2)")
    );
    assert!(p.ok(&["lease", "list"]).contains(&id));
    // Let it expire: the key goes with it.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(p.ok(&["get", "leased"]), "");
    assert!(
        p.ok(&["lease", "timetolive", &id])
            .contains("already expired")
    );
    // Revoke deletes attached keys at once.
    let id2 = p
        .ok(&["lease", "grant", "60"])
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    p.ok(&["put", "r1", "x", &format!("--lease={id2}")]);
    p.ok(&["put", "r2", "x", &format!("--lease={id2}")]);
    p.ok(&["lease", "revoke", &id2]);
    assert_eq!(p.ok(&["get", "r", "--prefix"]), "");
    let out = p.ctl(&["lease", "revoke", &id2]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("requested lease not found"));
}

#[test]
fn etcdctl_compaction_makes_old_revisions_unreadable() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::datastore(dir.path(), &[]);
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(json_revision(&p.ok(&[
            "put",
            "c",
            &i.to_string(),
            "-w",
            "json",
        ])));
    }
    p.ok(&["compaction", &revs[3].to_string()]);
    let out = p.ctl(&["get", "c", &format!("--rev={}", revs[1])]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("required revision has been compacted"),
        "{err}"
    );
    assert_eq!(
        p.ok(&[
            "get",
            "c",
            "--print-value-only",
            &format!("--rev={}", revs[3])
        ]),
        "3\n"
    );
    let out = p.ctl(&["get", "c", "--rev=99999"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("future revision"));
    p.ok(&["defrag"]);
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::datastore(dir.path(), &[]);
    // 200 acknowledged puts from concurrent etcdctl writers.
    let endpoint = p.endpoint.clone();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let endpoint = endpoint.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let out = etcdctl(&endpoint, &["put", &format!("crash/{w}/{i}"), "v"], None);
                    assert!(out.status.success());
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let before = json_revision(&p.ok(&["get", "crash/", "--prefix", "--keys-only", "-w", "json"]));
    p.crash();
    let p = Process::datastore(dir.path(), &[]);
    let out = p.ok(&["get", "crash/", "--prefix", "--keys-only", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["count"], 200, "every acknowledged put is there");
    assert_eq!(json_revision(&out), before);
    let after = json_revision(&p.ok(&["put", "crash/next", "v", "-w", "json"]));
    assert_eq!(after, before + 1, "revisions continue");
}

#[test]
fn oversized_values_get_etcds_error_and_the_server_keeps_serving() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::datastore(dir.path(), &[]);
    let big = "x".repeat(1_700_000);
    let out = etcdctl(&p.endpoint, &["put", "big"], Some(&big));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("request is too large"), "{err}");
    p.ok(&["put", "small", "fine"]);
    assert_eq!(p.ok(&["get", "small", "--print-value-only"]), "fine\n");
}

#[test]
fn a_corrupt_database_fails_start_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    std::fs::write(&db, vec![0x5a; 16384]).unwrap();
    let out = Command::new(crate::support::RK3S)
        .args([
            "datastore",
            &format!("--endpoint=sqlite://{}", db.display()),
            &format!("--listen=http://127.0.0.1:{}", crate::support::free_port()),
        ])
        .env("RK3S_CONFIG_FILE", crate::support::empty_config(dir.path()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("rk3s: error: "), "{err}");
    assert!(last.contains(&db.display().to_string()), "{err}");
    assert!(last.contains("not a database"), "{err}");
}

#[test]
fn a_read_only_database_fails_start_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    {
        // Create a valid store first.
        let p = Process::datastore(dir.path(), &[]);
        drop(p);
    }
    // Root ignores permission bits; the immutable attribute stops even root.
    let immutable = Command::new("chattr").arg("+i").arg(&db).status();
    if !matches!(immutable, Ok(s) if s.success()) {
        println!(
            "SKIP: chattr +i is not available here, so a read-only file cannot be made for root"
        );
        return;
    }
    let out = Command::new(crate::support::RK3S)
        .args([
            "datastore",
            &format!("--endpoint=sqlite://{}", db.display()),
            &format!("--listen=http://127.0.0.1:{}", crate::support::free_port()),
        ])
        .env("RK3S_CONFIG_FILE", crate::support::empty_config(dir.path()))
        .output()
        .unwrap();
    let _ = Command::new("chattr").arg("-i").arg(&db).status();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("rk3s: error: "), "{err}");
    assert!(last.contains("state.db"), "{err}");
}

#[test]
fn snapshot_save_ls_restore_with_the_cli() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let rk3s = |args: &[&str]| {
        Command::new(crate::support::RK3S)
            .arg(format!("--data-dir={data}"))
            .args(args)
            .env("RK3S_CONFIG_FILE", crate::support::empty_config(dir.path()))
            .output()
            .unwrap()
    };
    let p = Process::server(dir.path(), &[]);
    p.ok(&["put", "snap", "before"]);
    let out = rk3s(&["etcd-snapshot", "save", "--name", "test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.ok(&["put", "snap", "after"]);
    let ls = String::from_utf8_lossy(&rk3s(&["etcd-snapshot", "ls"]).stdout).into_owned();
    let line = ls
        .lines()
        .find(|l| l.starts_with("test-"))
        .expect("snapshot listed");
    let name = line.split_whitespace().next().unwrap().to_string();
    assert_eq!(line.split_whitespace().nth(2), Some("2"), "{ls}");
    let out = rk3s(&["etcd-snapshot", "restore", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    assert!(p.stop().success());
    let out = rk3s(&["etcd-snapshot", "restore", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Process::server(dir.path(), &[]);
    assert_eq!(p.ok(&["get", "snap", "--print-value-only"]), "before\n");
}
