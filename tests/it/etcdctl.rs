//! Debian's etcdctl (v3.4) against `rk3s datastore` over TCP and `rk3s server` over its unix
//! socket: the etcd API as a real client sees it, plus crash safety, bad input and snapshots.
//!
//! Each client scenario also runs against Debian's etcd 3.4 server (`on_real_etcd`), so every
//! expected output in this file is what real etcd prints, not what we think it prints.

use std::time::{Duration, Instant};

use crate::support::{Immutable, Process, etcdctl, have_etcd, have_etcdctl, json_revision, rk3s};

fn on_rk3s_datastore(scenario: fn(&Process)) {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    scenario(&Process::datastore(dir.path(), &[]));
}

/// `rk3s server` without the controller-manager and the scheduler, whose Lease renewals would
/// move the revision under scenarios that expect only their own writes to.
const STORE_ONLY: &[&str] = &["--disable-controller-manager", "--disable-scheduler"];

fn on_rk3s_server_socket(scenario: fn(&Process)) {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::server(dir.path(), STORE_ONLY);
    assert!(p.endpoint.starts_with("unix:///"), "{}", p.endpoint);
    scenario(&p);
}

fn on_real_etcd(scenario: fn(&Process)) {
    if !have_etcd() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    scenario(&Process::etcd(dir.path()));
}

/// One module per scenario, with a test for each server it runs against.
macro_rules! scenario {
    ($name:ident) => {
        mod $name {
            #[test]
            fn on_rk3s_datastore() {
                super::on_rk3s_datastore(super::$name);
            }
            #[test]
            fn on_rk3s_server_socket() {
                super::on_rk3s_server_socket(super::$name);
            }
            #[test]
            fn on_real_etcd() {
                super::on_real_etcd(super::$name);
            }
        }
    };
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

scenario!(kv_prefix_revisions_and_delete);
fn kv_prefix_revisions_and_delete(p: &Process) {
    let first = p.put("/a/1", "one");
    assert_eq!(p.put("/a/2", "two"), first + 1, "each put is one revision");
    p.put("/b/1", "other");
    let last = p.put("/a/1", "uno");
    assert_eq!(last, first + 3);

    assert_eq!(
        p.ok(&["get", "/a", "--prefix", "--print-value-only"]),
        "uno\ntwo\n"
    );
    assert_eq!(
        p.ok(&["get", "/a", "--prefix", "--keys-only"]),
        "/a/1\n\n/a/2\n\n"
    );
    // A key range [from, to).
    assert_eq!(
        p.ok(&["get", "/a/2", "/b/2", "--keys-only"]),
        "/a/2\n\n/b/1\n\n"
    );
    let kv = json(&p.ok(&["get", "/a/1", "-w", "json"]));
    assert_eq!(kv["count"], 1);
    assert_eq!(kv["kvs"][0]["create_revision"], first);
    assert_eq!(kv["kvs"][0]["mod_revision"], last);
    assert_eq!(kv["kvs"][0]["version"], 2);
    assert_eq!(kv["header"]["revision"], last);
    let limited = json(&p.ok(&["get", "/a", "--prefix", "--limit=1", "-w", "json"]));
    assert_eq!(limited["count"], 2);
    assert_eq!(limited["more"], true);
    assert_eq!(limited["kvs"].as_array().unwrap().len(), 1);
    assert_eq!(
        p.ok(&[
            "get",
            "/a",
            "/c",
            "--keys-only",
            "--sort-by=KEY",
            "--order=DESCEND"
        ]),
        "/b/1\n\n/a/2\n\n/a/1\n\n"
    );

    // The past stays readable until compaction.
    let rev = format!("--rev={first}");
    assert_eq!(p.ok(&["get", "/a/1", "--print-value-only", &rev]), "one\n");
    assert_eq!(
        p.ok(&["get", "/a", "--prefix", "--keys-only", &rev]),
        "/a/1\n\n"
    );

    assert_eq!(p.ok(&["del", "/a", "--prefix"]), "2\n");
    assert_eq!(p.ok(&["get", "/a", "--prefix"]), "");
    assert_eq!(p.ok(&["del", "/a", "--prefix"]), "0\n");
    assert_eq!(p.ok(&["get", "/b/1", "--print-value-only"]), "other\n");
    let rev = format!("--rev={last}");
    assert_eq!(p.ok(&["get", "/a/1", "--print-value-only", &rev]), "uno\n");
    // The delete was one revision; a new put after it creates the key afresh.
    let again = p.put("/a/1", "new");
    assert_eq!(again, last + 2);
    let kv = json(&p.ok(&["get", "/a/1", "-w", "json"]));
    assert_eq!(kv["kvs"][0]["create_revision"], again);
    assert_eq!(kv["kvs"][0]["version"], 1);
}

scenario!(txn_compares_and_branches);
fn txn_compares_and_branches(p: &Process) {
    // etcdctl's interactive txn: compares, blank line, success ops, blank line, failure ops.
    let txn = |input: &str| {
        let out = etcdctl(&p.endpoint, &["txn"], Some(input));
        assert!(
            out.status.success(),
            "txn {input:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    p.put("k", "v1");
    let swap = "value(\"k\") = \"v1\"\n\nput k v2\n\nput k failed\n\n";
    assert_eq!(txn(swap), "SUCCESS\n\nOK\n");
    assert_eq!(p.ok(&["get", "k", "--print-value-only"]), "v2\n");
    assert_eq!(txn(swap), "FAILURE\n\nOK\n");
    assert_eq!(p.ok(&["get", "k", "--print-value-only"]), "failed\n");

    // Create-if-absent, the way kube-apiserver creates objects; reads inside the branches.
    let create = "create(\"new\") = \"0\"\n\nput new first\nget new\n\nget new\n\n";
    assert_eq!(txn(create), "SUCCESS\n\nOK\n\nnew\nfirst\n");
    assert_eq!(txn(create), "FAILURE\n\nnew\nfirst\n");

    // Several compares must all hold.
    let both = "mod(\"new\") > \"0\"\nversion(\"new\") = \"2\"\n\ndel new\n\n\n";
    assert_eq!(txn(both), "FAILURE\n");
    let both = "mod(\"new\") > \"0\"\nversion(\"new\") = \"1\"\n\ndel new\n\n\n";
    assert_eq!(txn(both), "SUCCESS\n\n1\n");
    assert_eq!(p.ok(&["get", "new"]), "");

    // Compare-and-swap on the mod revision, as kube-apiserver updates objects.
    let got = json(&p.ok(&["get", "k", "-w", "json"]));
    let head = got["header"]["revision"].as_i64().unwrap();
    let modrev = got["kvs"][0]["mod_revision"].as_i64().unwrap();
    assert!(modrev < head, "later writes moved the store on: {got}");
    let cas = format!("mod(\"k\") = \"{modrev}\"\n\nput k cas\n\n\n");
    let out = etcdctl(&p.endpoint, &["txn", "-w", "json"], Some(&cas));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["succeeded"], true, "{v}");
    assert_eq!(v["header"]["revision"], head + 1);
    let out = etcdctl(&p.endpoint, &["txn", "-w", "json"], Some(&cas));
    let v = json(&String::from_utf8_lossy(&out.stdout));
    // etcd's JSON leaves out false booleans.
    assert_eq!(v.get("succeeded"), None, "a stale mod revision fails: {v}");
    assert_eq!(v["header"]["revision"], head + 1);
}

scenario!(watch_delivers_history_in_order_with_prev_kv);
fn watch_delivers_history_in_order_with_prev_kv(p: &Process) {
    let start = p.put("w/a", "0");
    p.put("x", "outside the prefix");
    p.put("w/b", "0");
    p.put("w/a", "1");
    p.ok(&["del", "w/b"]);
    let mut watch = p.watch(&["--prefix", "w/", "--prev-kv", &format!("--rev={start}")]);
    // etcdctl prints TYPE, key, value per event; with --prev-kv the previous key and value come
    // before the new ones (a delete's new value is empty).
    let history = [
        "PUT", "w/a", "0", //
        "PUT", "w/b", "0", //
        "PUT", "w/a", "0", "w/a", "1", //
        "DELETE", "w/b", "0", "w/b", "",
    ];
    assert_eq!(watch.next_lines(history.len()), history);
    // Then live events, in order.
    p.put("w/b", "again");
    p.put("x", "still outside");
    p.put("w/a", "2");
    assert_eq!(
        watch.next_lines(8),
        ["PUT", "w/b", "again", "PUT", "w/a", "1", "w/a", "2"]
    );
}

scenario!(leases_keep_alive_revoke_and_expire);
fn leases_keep_alive_revoke_and_expire(p: &Process) {
    let out = p.ok(&["lease", "grant", "2"]);
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(out, format!("lease {id} granted with TTL(2s)\n"));
    p.ok(&["put", "leased", "x", &format!("--lease={id}")]);
    let kv = json(&p.ok(&["get", "leased", "-w", "json"]));
    assert_eq!(
        kv["kvs"][0]["lease"].as_i64(),
        i64::from_str_radix(&id, 16).ok(),
        "the key carries the lease"
    );
    let ttl = p.ok(&["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.contains("attached keys([leased])"), "{ttl}");
    assert_eq!(
        p.ok(&["lease", "keep-alive", "--once", &id]),
        format!("lease {id} keepalived with TTL(2)\n")
    );
    assert!(p.ok(&["lease", "list"]).lines().any(|l| l == id));
    assert_eq!(p.ok(&["get", "leased", "--print-value-only"]), "x\n");

    // Let it expire: the key goes with it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !p.ok(&["get", "leased"]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the leased key outlived its lease"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        p.ok(&["lease", "timetolive", &id]),
        format!("lease {id} already expired\n")
    );

    // Revoke deletes the attached keys at once.
    let id2 = p
        .ok(&["lease", "grant", "60"])
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    p.ok(&["put", "r1", "x", &format!("--lease={id2}")]);
    p.ok(&["put", "r2", "x", &format!("--lease={id2}")]);
    assert_eq!(
        p.ok(&["lease", "revoke", &id2]),
        format!("lease {id2} revoked\n")
    );
    assert_eq!(p.ok(&["get", "r", "--prefix"]), "");
    let err = p.fails(&["lease", "revoke", &id2]);
    assert!(err.contains("requested lease not found"), "{err}");
    let err = p.fails(&["put", "r3", "x", &format!("--lease={id2}")]);
    assert!(err.contains("requested lease not found"), "{err}");
}

scenario!(compaction_makes_old_revisions_unreadable);
fn compaction_makes_old_revisions_unreadable(p: &Process) {
    let revs: Vec<i64> = (0..5).map(|i| p.put("c", &i.to_string())).collect();
    assert_eq!(
        p.ok(&["compaction", &revs[3].to_string()]),
        format!("compacted revision {}\n", revs[3])
    );
    let err = p.fails(&["get", "c", &format!("--rev={}", revs[1])]);
    assert!(
        err.contains("etcdserver: mvcc: required revision has been compacted"),
        "{err}"
    );
    let at = format!("--rev={}", revs[3]);
    assert_eq!(p.ok(&["get", "c", "--print-value-only", &at]), "3\n");
    assert_eq!(p.ok(&["get", "c", "--print-value-only"]), "4\n");
    let err = p.fails(&["get", "c", "--rev=99999"]);
    assert!(
        err.contains("required revision is a future revision"),
        "{err}"
    );
    let err = p.fails(&["compaction", &revs[2].to_string()]);
    assert!(
        err.contains("required revision has been compacted"),
        "{err}"
    );

    // A watch from before the compaction is cancelled (kube-apiserver turns this into 410 Gone).
    let mut watch = p.watch(&["c", &format!("--rev={}", revs[1])]);
    let mut lines = watch.next_lines(2);
    lines.sort();
    assert_eq!(
        lines,
        [
            "Error: watch is canceled by the server",
            "watch was canceled (etcdserver: mvcc: required revision has been compacted)",
        ]
    );
    let status = watch.exited().expect("etcdctl watch exits");
    assert!(!status.success());
    p.ok(&["defrag"]);
    assert_eq!(p.ok(&["get", "c", "--print-value-only"]), "4\n");
}

scenario!(oversized_requests_get_etcds_error_and_serving_continues);
fn oversized_requests_get_etcds_error_and_serving_continues(p: &Process) {
    // etcd's default --max-request-bytes is 1.5 MiB.
    let big = "x".repeat(1_700_000);
    let out = etcdctl(&p.endpoint, &["put", "big"], Some(&big));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("etcdserver: request is too large"), "{err}");
    assert_eq!(p.ok(&["get", "big"]), "");
    // Just under the limit is fine.
    let fits = "y".repeat(1_000_000);
    let out = etcdctl(&p.endpoint, &["put", "fits"], Some(&fits));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        p.ok(&["get", "fits", "--print-value-only"]),
        format!("{fits}\n")
    );
    p.put("small", "fine");
    assert_eq!(p.ok(&["get", "small", "--print-value-only"]), "fine\n");
}

scenario!(endpoint_status_health_and_member_list);
fn endpoint_status_health_and_member_list(p: &Process) {
    let rev = p.put("s", "1");
    let status = json(&p.ok(&["endpoint", "status", "-w", "json"]));
    let status = &status[0]["Status"];
    assert_eq!(status["header"]["revision"], rev);
    assert!(status["dbSize"].as_i64().unwrap() > 0, "{status}");
    assert!(
        status["version"].as_str().unwrap().starts_with("3."),
        "{status}"
    );
    let me = &status["header"]["member_id"];
    assert_eq!(&status["leader"], me, "a single member leads itself");
    let members = json(&p.ok(&["member", "list", "-w", "json"]));
    let members = members["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(&members[0]["ID"], me);
    let health = p.ctl(&["endpoint", "health"]);
    assert!(health.status.success());
    // etcdctl 3.4 reports health on stderr.
    assert!(String::from_utf8_lossy(&health.stderr).contains("is healthy"));
}

#[test]
fn etcdctl_snapshot_save_points_to_rk3s_etcd_snapshot() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::server(dir.path(), STORE_ONLY);
    let target = dir.path().join("x.db").display().to_string();
    let err = p.fails(&["snapshot", "save", &target]);
    assert!(err.contains("rk3s etcd-snapshot save"), "{err}");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::datastore(dir.path(), &[]);
    // 200 acknowledged puts from 4 concurrent etcdctl writers.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let endpoint = p.endpoint.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    let key = format!("crash/{w}/{i:02}");
                    let out = etcdctl(&endpoint, &["put", &key, &format!("v{w}.{i}")], None);
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
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
    let out = p.ok(&["get", "crash/", "--prefix", "-w", "json"]);
    let v = json(&out);
    assert_eq!(v["count"], 200, "every acknowledged put is there");
    assert_eq!(json_revision(&out), before, "no revision lost or invented");
    assert_eq!(
        p.ok(&["get", "crash/3/49", "--print-value-only"]),
        "v3.49\n"
    );
    let after = p.put("crash/next", "v");
    assert_eq!(after, before + 1, "revisions continue");
}

/// Starts `rk3s datastore` on `db` expecting it to fail, and returns its stderr's last line.
fn datastore_start_error(dir: &std::path::Path, db: &std::path::Path) -> String {
    let out = rk3s(
        dir,
        &[
            "datastore",
            &format!("--endpoint=sqlite://{}", db.display()),
            &format!("--listen=http://127.0.0.1:{}", crate::support::free_port()),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    let line = err.trim_end().to_string();
    assert!(line.starts_with("rk3s: error: "), "{err}");
    line
}

#[test]
fn a_garbage_database_fails_start_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    std::fs::write(&db, vec![0x5a; 16384]).unwrap();
    let line = datastore_start_error(dir.path(), &db);
    assert!(line.contains(&db.display().to_string()), "{line}");
    assert!(line.contains("not a database"), "{line}");
}

#[test]
fn a_database_with_corrupt_pages_fails_start_with_one_line_naming_the_file() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let p = Process::datastore(dir.path(), &[]);
    for i in 0..300 {
        p.put(&format!("/fill/{i}"), &"f".repeat(300));
    }
    assert!(p.stop().success());
    // Keep the valid header page but overwrite pages 3 to 7 (4 KiB pages) with garbage.
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() >= 7 * 4096, "database is {} bytes", bytes.len());
    bytes[2 * 4096..7 * 4096].fill(0x5a);
    std::fs::write(&db, bytes).unwrap();
    for sidecar in ["state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(sidecar));
    }
    let line = datastore_start_error(dir.path(), &db);
    assert!(line.contains(&db.display().to_string()), "{line}");
    assert!(line.contains("malformed"), "{line}");
}

#[test]
fn a_read_only_database_fails_start_with_one_line_naming_the_file() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    std::fs::create_dir(&db_dir).unwrap();
    let db = db_dir.join("state.db");
    {
        let p = Process::datastore(&db_dir, &[]);
        p.put("k", "v");
        assert!(p.stop().success());
    }
    // Root ignores permission bits; the immutable attribute stops even root. First the
    // directory, where SQLite must create its -wal file (a clean stop removed it), then the file.
    for target in [&db_dir, &db] {
        let Some(_immutable) = Immutable::set(target) else {
            return;
        };
        let line = datastore_start_error(dir.path(), &db);
        assert!(line.contains(&db.display().to_string()), "{line}");
    }
}

#[test]
fn snapshot_save_ls_restore_with_the_cli() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", dir.path().display());
    let cli = |args: &[&str]| {
        let mut all = vec![data.as_str()];
        all.extend_from_slice(args);
        rk3s(dir.path(), &all)
    };
    let p = Process::server(dir.path(), STORE_ONLY);
    p.put("snap", "before");
    let rev = p.put("other", "before");
    let out = cli(&["etcd-snapshot", "save", "--name", "test"]);
    let saved = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(saved.contains(&format!("at revision {rev}")), "{saved}");
    p.put("snap", "after");
    p.ok(&["del", "other"]);

    let out = cli(&["etcd-snapshot", "ls"]);
    assert!(out.status.success());
    let ls = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = ls
        .lines()
        .find(|l| l.starts_with("test"))
        .expect("snapshot listed");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[2], rev.to_string(), "revision column: {ls}");
    let name = cols[0];

    let out = cli(&["etcd-snapshot", "restore", name]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "restore must refuse while the server runs"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    assert_eq!(
        p.ok(&["get", "snap", "--print-value-only"]),
        "after\n",
        "nothing changed"
    );

    assert!(p.stop().success());
    let out = cli(&["etcd-snapshot", "restore", name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Process::server(dir.path(), STORE_ONLY);
    assert_eq!(p.ok(&["get", "snap", "--print-value-only"]), "before\n");
    assert_eq!(p.ok(&["get", "other", "--print-value-only"]), "before\n");
    let out = p.ok(&["get", "snap", "-w", "json"]);
    assert_eq!(
        json_revision(&out),
        rev,
        "the store is back at the snapshot's revision"
    );
    assert_eq!(p.put("snap", "next"), rev + 1);
}

#[test]
fn sigterm_stops_despite_open_watches_and_leaves_only_the_database() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = Process::server(dir.path(), &[]);
    let rev = p.put("k", "v");
    // A watch and a lease keep-alive are streams a graceful shutdown alone would wait on forever.
    let mut watch = p.watch(&["k"]);
    let id = p
        .ok(&["lease", "grant", "60"])
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let mut keepalive = p.stream(&["lease", "keep-alive", &id]);
    assert_eq!(
        keepalive.next_lines(1),
        [format!("lease {id} keepalived with TTL(60)")]
    );
    p.put("k", "seen");
    assert_eq!(watch.next_lines(3), ["PUT", "k", "seen"]);
    assert!(p.stop().success(), "SIGTERM is a clean exit");
    // (etcdctl itself keeps retrying, as it would against a stopped etcd.)
    let db = dir.path().join("server/db");
    let mut left: Vec<String> = std::fs::read_dir(&db)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["state.db", "state.db.lock"], "the WAL was folded in");
    let p = Process::server(dir.path(), &[]);
    assert_eq!(p.ok(&["get", "k", "--print-value-only"]), "seen\n");
    // The revision carries on (the controller-manager's Lease renewals also move it).
    assert!(p.put("k", "next") >= rev + 2);
}
