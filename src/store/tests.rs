//! Store tests: etcd semantics case by case, and a model test that runs random sequences of
//! Put/DeleteRange/Txn/Compact/Lease against the store and a plain in-memory model.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::proto::*;
use proptest::prelude::*;

use super::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
}

fn open(dir: &tempfile::TempDir) -> Store {
    let mut cfg = Config::sqlite(dir.path().join("state.db"));
    cfg.compaction_interval = Duration::ZERO;
    Store::open(&cfg).expect("open store")
}

fn put(key: &str, value: &str) -> PbPutRequest {
    PbPutRequest {
        key: key.into(),
        value: value.into(),
        prev_kv: true,
        ..Default::default()
    }
}

fn get(key: &str) -> PbRangeRequest {
    PbRangeRequest {
        key: key.into(),
        ..Default::default()
    }
}

fn prefix(p: &str) -> PbRangeRequest {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    PbRangeRequest {
        key: p.into(),
        range_end: end,
        ..Default::default()
    }
}

#[test]
fn put_get_delete_follow_etcd_revisions() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = open(&dir);
        assert_eq!(s.revision(), 1, "a new store is at revision 1, like etcd");
        let r = s.put(put("a", "1")).await.unwrap();
        assert_eq!(r.header.unwrap().revision, 2);
        assert!(r.prev_kv.is_none());
        let r = s.put(put("a", "2")).await.unwrap();
        let prev = r.prev_kv.unwrap();
        assert_eq!(
            (prev.value.as_slice(), prev.mod_revision, prev.version),
            (&b"1"[..], 2, 1)
        );
        let kv = s.range(get("a")).await.unwrap().kvs.remove(0);
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
        // Reading the past.
        let old = s
            .range(PbRangeRequest {
                revision: 2,
                ..get("a")
            })
            .await
            .unwrap();
        assert_eq!(old.kvs[0].value, b"1");
        assert_eq!(
            old.header.unwrap().revision,
            3,
            "the header carries the current revision"
        );
        // A DeleteRange of several keys takes one revision.
        s.put(put("a/x", "1")).await.unwrap();
        s.put(put("a/y", "1")).await.unwrap();
        let d = s
            .delete_range(PbDeleteRequest {
                key: "a/".into(),
                range_end: "a0".into(),
                prev_kv: true,
            })
            .await
            .unwrap();
        assert_eq!(d.deleted, 2);
        assert_eq!(d.header.unwrap().revision, 6);
        assert_eq!(d.prev_kvs.len(), 2);
        // Deleting nothing does not bump the revision.
        let d = s
            .delete_range(PbDeleteRequest {
                key: "zzz".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!((d.deleted, d.header.unwrap().revision), (0, 6));
        // Re-creating a deleted key starts a new generation.
        s.put(put("a/x", "again")).await.unwrap();
        let kv = s.range(get("a/x")).await.unwrap().kvs.remove(0);
        assert_eq!((kv.create_revision, kv.version), (7, 1));
        let err = s
            .range(PbRangeRequest {
                revision: 99,
                ..get("a")
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FutureRevision), "{err}");
    });
}

#[test]
fn range_supports_limit_count_sort_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = open(&dir);
        for (k, v) in [("p/c", "1"), ("p/a", "3"), ("p/b", "2"), ("q", "0")] {
            s.put(put(k, v)).await.unwrap();
        }
        s.put(put("p/a", "4")).await.unwrap();
        let r = s
            .range(PbRangeRequest {
                limit: 2,
                ..prefix("p/")
            })
            .await
            .unwrap();
        let keys: Vec<_> = r.kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, vec![b"p/a".to_vec(), b"p/b".to_vec()]);
        assert!(r.more);
        assert_eq!(r.count, 3);
        let r = s
            .range(PbRangeRequest {
                sort_order: 2,
                sort_target: 4,
                ..prefix("p/")
            })
            .await
            .unwrap();
        let values: Vec<_> = r.kvs.iter().map(|kv| kv.value.clone()).collect();
        assert_eq!(values, vec![b"4".to_vec(), b"2".to_vec(), b"1".to_vec()]);
        let r = s
            .range(PbRangeRequest {
                count_only: true,
                ..prefix("p/")
            })
            .await
            .unwrap();
        assert_eq!((r.count, r.kvs.len()), (3, 0));
        let r = s
            .range(PbRangeRequest {
                keys_only: true,
                min_mod_revision: 4,
                max_mod_revision: 5,
                ..prefix("p/")
            })
            .await
            .unwrap();
        assert_eq!(
            r.kvs.len(),
            1,
            "p/b (rev 4) only: p/a was modified at 6, p/c is rev 2"
        );
        assert_eq!(
            (r.kvs[0].key.as_slice(), r.kvs[0].value.len()),
            (&b"p/b"[..], 0)
        );
        assert_eq!(
            r.count, 3,
            "count is taken before the revision filters, as in etcd"
        );
        // key "\0" with range_end "\0" means every key.
        let all = s
            .range(PbRangeRequest {
                key: vec![0],
                range_end: vec![0],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.count, 4);
    });
}

#[test]
fn txn_compare_and_swap_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = open(&dir);
        s.put(put("k", "v1")).await.unwrap();
        let cas = |rev: i64, value: &str| PbTxnRequest {
            compare: vec![PbCompare {
                result: 0,
                target: 2,
                key: "k".into(),
                range_end: vec![],
                target_union: Some(PbTargetUnion::ModRevision(rev)),
            }],
            success: vec![PbTxnRequestOp {
                request: Some(PbTxnOpRequest::RequestPut(put("k", value))),
            }],
            failure: vec![PbTxnRequestOp {
                request: Some(PbTxnOpRequest::RequestRange(get("k"))),
            }],
        };
        let ok = s.txn(cas(2, "v2")).await.unwrap();
        assert!(ok.succeeded);
        assert_eq!(ok.header.unwrap().revision, 3);
        let lost = s.txn(cas(2, "v3")).await.unwrap();
        assert!(!lost.succeeded);
        assert_eq!(
            lost.header.unwrap().revision,
            3,
            "a failed txn writes nothing"
        );
        match &lost.responses[0].response {
            Some(PbTxnOpResponse::ResponseRange(r)) => assert_eq!(r.kvs[0].value, b"v2"),
            other => panic!("unexpected {other:?}"),
        }
        // A value compare on a missing key always fails, as in etcd.
        let missing = PbTxnRequest {
            compare: vec![PbCompare {
                result: 3,
                target: 3,
                key: "nope".into(),
                range_end: vec![],
                target_union: Some(PbTargetUnion::Value(b"x".to_vec())),
            }],
            ..Default::default()
        };
        assert!(!s.txn(missing).await.unwrap().succeeded);
        let dup = PbTxnRequest {
            success: vec![
                PbTxnRequestOp {
                    request: Some(PbTxnOpRequest::RequestPut(put("d", "1"))),
                },
                PbTxnRequestOp {
                    request: Some(PbTxnOpRequest::RequestPut(put("d", "2"))),
                },
            ],
            ..Default::default()
        };
        assert!(matches!(s.txn(dup).await.unwrap_err(), Error::DuplicateKey));
        assert_eq!(s.revision(), 3, "a rejected txn leaves nothing behind");
    });
}

#[test]
fn put_validation_matches_etcd_errors() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = open(&dir);
        let e = s.put(put("", "x")).await.unwrap_err();
        assert!(matches!(e, Error::EmptyKey));
        let big = PbPutRequest {
            key: "big".into(),
            value: vec![0; writer::MAX_REQUEST_BYTES + 1],
            ..Default::default()
        };
        assert!(matches!(
            s.put(big).await.unwrap_err(),
            Error::RequestTooLarge
        ));
        let e = s
            .put(PbPutRequest {
                key: "x".into(),
                ignore_value: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::KeyNotFound));
        let e = s
            .put(PbPutRequest {
                key: "x".into(),
                lease: 42,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::LeaseNotFound));
        assert_eq!(s.revision(), 1);
    });
}

#[test]
fn leases_attach_keys_and_expiry_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = open(&dir);
        let (id, ttl) = s.lease_grant(0, 2).await.unwrap();
        assert!(id > 0);
        assert_eq!(ttl, 2);
        assert!(matches!(
            s.lease_grant(id, 5).await.unwrap_err(),
            Error::LeaseExists
        ));
        s.put(PbPutRequest {
            lease: id,
            ..put("l/1", "x")
        })
        .await
        .unwrap();
        s.put(PbPutRequest {
            lease: id,
            ..put("l/2", "y")
        })
        .await
        .unwrap();
        let ttl = s.lease_time_to_live(id, true);
        assert_eq!(ttl.granted_ttl, 2);
        assert_eq!(ttl.keys.len(), 2);
        assert_eq!(s.lease_keep_alive(id), Some(2));
        assert_eq!(s.lease_keep_alive(12345), None);
        assert_eq!(s.lease_time_to_live(12345, false).ttl, -1);
        let rev = s.revision();
        // Expiry deletes both keys in one revision.
        tokio::time::sleep(Duration::from_millis(2600)).await;
        let r = s.range(prefix("l/")).await.unwrap();
        assert_eq!(r.count, 0, "keys of an expired lease are gone");
        assert_eq!(s.revision(), rev + 1);
        assert!(s.leases().is_empty());
        assert!(matches!(
            s.lease_revoke(id).await.unwrap_err(),
            Error::LeaseNotFound
        ));
    });
}

#[test]
fn watch_from_history_and_live_in_order_with_prev_kv() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = open(&dir);
        s.put(put("w/a", "1")).await.unwrap();
        s.put(put("other", "1")).await.unwrap();
        s.put(put("w/a", "2")).await.unwrap();
        let filter = WatchFilter {
            prev_kv: true,
            ..Default::default()
        };
        let mut w = s.watch(KeyRange::new(b"w/", b"w0"), 2, filter);
        let live = s.clone();
        tokio::spawn(async move {
            live.delete_range(PbDeleteRequest {
                key: "w/a".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        });
        let mut events = Vec::new();
        while events.len() < 3 {
            events.extend(w.next().await.unwrap());
        }
        let summary: Vec<_> = events
            .iter()
            .map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (
                    e.r#type,
                    kv.mod_revision,
                    e.prev_kv.as_ref().map(|p| p.value.clone()),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (0, 2, None),
                (0, 4, Some(b"1".to_vec())),
                (1, 5, Some(b"2".to_vec())),
            ]
        );
    });
}

#[test]
fn compaction_rejects_old_reads_and_watches_and_frees_space() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = open(&dir);
        let value = "v".repeat(4096);
        for i in 0..400 {
            s.put(put(&format!("c/{}", i % 20), &value)).await.unwrap();
        }
        for i in 0..20 {
            s.delete_range(PbDeleteRequest {
                key: format!("c/{i}").into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let before = s.status().await.unwrap();
        let rev = s.revision();
        s.compact(rev, true).await.unwrap();
        assert!(matches!(
            s.compact(rev, false).await.unwrap_err(),
            Error::Compacted
        ));
        let e = s
            .range(PbRangeRequest {
                revision: rev - 1,
                ..get("c/1")
            })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Compacted));
        let mut w = s.watch(KeyRange::new(b"c/", b""), rev - 5, WatchFilter::default());
        assert!(matches!(w.next().await.unwrap_err(), Error::Compacted));
        // The free pages go back to the file system in the background.
        let mut after = s.status().await.unwrap();
        for _ in 0..50 {
            if after.db_size < before.db_size / 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            after = s.status().await.unwrap();
        }
        assert!(
            after.db_size < before.db_size / 2,
            "db shrank from {} to {}",
            before.db_size,
            after.db_size
        );
    });
}

/// The rows left in the file as (name, revision, tombstone), read with plain SQLite.
fn rows_in_file(dir: &tempfile::TempDir) -> Vec<(String, i64, bool)> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let conn = rusqlite::Connection::open_with_flags(dir.path().join("state.db"), flags).unwrap();
    let mut st = conn
        .prepare("SELECT name, revision, deleted FROM kv ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        let name: Vec<u8> = r.get(0)?;
        Ok((String::from_utf8(name).unwrap(), r.get(1)?, r.get(2)?))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

#[test]
fn physical_compaction_removes_exactly_the_rows_no_read_can_reach() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = open(&dir);
        let del = |k: &str| PbDeleteRequest {
            key: k.into(),
            ..Default::default()
        };
        s.put(put("a", "1")).await.unwrap(); // 2
        s.put(put("a", "2")).await.unwrap(); // 3
        s.put(put("b", "1")).await.unwrap(); // 4
        s.delete_range(del("b")).await.unwrap(); // 5
        s.put(put("c", "1")).await.unwrap(); // 6
        s.put(put("a", "3")).await.unwrap(); // 7
        s.delete_range(del("c")).await.unwrap(); // 8
        s.put(put("c", "2")).await.unwrap(); // 9
        s.put(put("b", "2")).await.unwrap(); // 10
        assert_eq!(rows_in_file(&dir).len(), 9);
        s.compact(8, true).await.unwrap();
        // a@2 and a@3 are superseded by a@7, b@4 by the tombstone b@5, which goes too, c@6 by
        // the tombstone c@8, which stays: it is at the compact revision, so a watch from 8
        // still sees the delete.
        let want = [
            ("a", 7, false),
            ("c", 8, true),
            ("c", 9, false),
            ("b", 10, false),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(k, r, d)| (k.to_string(), *r, *d))
            .collect();
        assert_eq!(rows_in_file(&dir), want);
        let at = |revision| PbRangeRequest {
            revision,
            key: b"a".to_vec(),
            range_end: b"d".to_vec(),
            ..Default::default()
        };
        let values = |r: PbRangeResponse| -> Vec<(String, String)> {
            r.kvs
                .into_iter()
                .map(|kv| {
                    let s = |b: Vec<u8>| String::from_utf8(b).unwrap();
                    (s(kv.key), s(kv.value))
                })
                .collect()
        };
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(values(s.range(at(8)).await.unwrap()), [pair("a", "3")]);
        assert_eq!(
            values(s.range(at(9)).await.unwrap()),
            [pair("a", "3"), pair("c", "2")]
        );
        assert_eq!(
            values(s.range(at(0)).await.unwrap()),
            [pair("a", "3"), pair("b", "2"), pair("c", "2")]
        );
        let mut w = s.watch(KeyRange::new(b"c", b""), 8, WatchFilter::default());
        let first = w.next().await.unwrap();
        assert_eq!(first[0].r#type, sqlite::EVENT_DELETE);
    });
}

#[test]
fn an_older_file_loses_its_second_name_index_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = open(&dir);
        for i in 0..10 {
            s.put(put(&format!("k{i}"), "v")).await.unwrap();
        }
    });
    let index_count = || -> i64 {
        let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'kv_name_revision'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    {
        // What files written before this change have.
        let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
        conn.execute_batch("CREATE UNIQUE INDEX kv_name_revision ON kv(name, revision)")
            .unwrap();
    }
    assert_eq!(index_count(), 1);
    rt().block_on(async {
        let s = open(&dir);
        assert_eq!(s.range(prefix("k")).await.unwrap().count, 10);
        let r = s.put(put("k0", "w")).await.unwrap();
        assert_eq!(r.prev_kv.unwrap().value, b"v");
    });
    assert_eq!(index_count(), 0);
}

#[test]
fn data_and_revisions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rev = rt().block_on(async {
        let s = open(&dir);
        for i in 0..10 {
            s.put(put(&format!("k{i}"), "v")).await.unwrap();
        }
        s.revision()
    });
    rt().block_on(async {
        let s = open(&dir);
        assert_eq!(s.revision(), rev);
        assert_eq!(s.range(prefix("k")).await.unwrap().count, 10);
        let r = s.put(put("k0", "w")).await.unwrap();
        assert_eq!(r.header.unwrap().revision, rev + 1);
    });
}

#[test]
fn a_second_opener_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let _s = open(&dir);
        let cfg = Config::sqlite(dir.path().join("state.db"));
        let e = Store::open(&cfg).err().expect("second open must fail");
        assert!(matches!(e, Error::Locked { .. }), "{e}");
        let e = snapshot::restore(&dir.path().join("state.db"), &dir.path().join("state.db"))
            .unwrap_err();
        assert!(matches!(e, Error::Locked { .. }), "{e}");
    });
}

#[test]
fn a_corrupt_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    rt().block_on(async {
        let e = Store::open(&Config::sqlite(&path))
            .err()
            .expect("must fail");
        let msg = e.to_string();
        assert!(msg.contains("state.db"), "{msg}");
        assert!(msg.contains("not a database"), "{msg}");
    });
}

#[test]
fn snapshot_save_list_restore_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let snaps = dir.path().join("snapshots");
    rt().block_on(async {
        let s = open(&dir);
        s.put(put("snap", "before")).await.unwrap();
        let snap = snapshot::save(&db, &snaps, Some("test")).unwrap();
        assert_eq!(snap.revision, 2);
        assert!(snap.name.starts_with("test-"));
        s.put(put("snap", "after")).await.unwrap();
        let listed = snapshot::list(&snaps).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].revision, 2);
        drop(s);
        // The writer thread exits when the handle is gone; wait for the lock to be released.
        for _ in 0..100 {
            if snapshot::restore(&snap.path, &db).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let s = open(&dir);
        assert_eq!(s.revision(), 2);
        assert_eq!(s.range(get("snap")).await.unwrap().kvs[0].value, b"before");
    });
}

// ---------------------------------------------------------------------------------------------
// Model test.

#[derive(Debug, Clone)]
enum ModelOp {
    Put {
        key: usize,
        value: u8,
        lease: Option<usize>,
    },
    Delete {
        key: usize,
        prefix: bool,
    },
    Txn {
        key: usize,
        expect_version: i64,
        put: usize,
        delete: Option<usize>,
    },
    Compact {
        back: i64,
    },
    Grant,
    Revoke {
        lease: usize,
    },
    Get {
        key: usize,
        prefix: bool,
        back: i64,
    },
}

const KEYS: [&str; 5] = ["a", "ab", "b", "c", "cd"];

fn op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        4 => (0..5usize, any::<u8>(), proptest::option::of(0..3usize))
            .prop_map(|(key, value, lease)| ModelOp::Put { key, value, lease }),
        2 => (0..5usize, any::<bool>()).prop_map(|(key, prefix)| ModelOp::Delete { key, prefix }),
        2 => (0..5usize, 0..3i64, 0..5usize, proptest::option::of(0..5usize)).prop_map(
            |(key, expect_version, put, delete)| ModelOp::Txn { key, expect_version, put, delete }
        ),
        1 => (0..6i64).prop_map(|back| ModelOp::Compact { back }),
        1 => Just(ModelOp::Grant),
        1 => (0..3usize).prop_map(|lease| ModelOp::Revoke { lease }),
        2 => (0..5usize, any::<bool>(), 0..8i64)
            .prop_map(|(key, prefix, back)| ModelOp::Get { key, prefix, back }),
    ]
}

type State = BTreeMap<Vec<u8>, PbKeyValue>;

/// A deliberately naive etcd: a full copy of the state at every revision.
struct Model {
    revision: i64,
    compact: i64,
    states: BTreeMap<i64, State>,
    events: Vec<PbEvent>,
    leases: Vec<i64>,
}

impl Model {
    fn state(&self) -> State {
        self.states[&self.revision].clone()
    }

    fn commit(&mut self, state: State, events: Vec<PbEvent>) {
        if events.is_empty() {
            return;
        }
        self.revision += 1;
        self.states.insert(self.revision, state);
        self.events.extend(events);
    }

    fn put(&self, state: &mut State, key: &[u8], value: Vec<u8>, lease: i64) -> PbEvent {
        let prev = state.get(key).cloned();
        let rev = self.revision + 1;
        let kv = PbKeyValue {
            key: key.to_vec(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        state.insert(key.to_vec(), kv.clone());
        PbEvent {
            r#type: 0,
            kv: Some(kv),
            prev_kv: prev,
        }
    }

    fn delete(&self, state: &mut State, range: &KeyRange) -> Vec<PbEvent> {
        let keys: Vec<_> = state
            .keys()
            .filter(|k| range.contains(k))
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                let prev = state.remove(&k);
                PbEvent {
                    r#type: 1,
                    kv: Some(PbKeyValue {
                        key: k,
                        mod_revision: self.revision + 1,
                        ..Default::default()
                    }),
                    prev_kv: prev,
                }
            })
            .collect()
    }
}

fn key_range(key: usize, prefix: bool) -> (Vec<u8>, Vec<u8>) {
    let k = KEYS[key].as_bytes().to_vec();
    if prefix {
        let mut end = k.clone();
        *end.last_mut().expect("keys are non-empty") += 1;
        (k, end)
    } else {
        (k, Vec::new())
    }
}

fn run_model(ops: Vec<ModelOp>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async move {
        let s = open(&dir);
        let mut m = Model {
            revision: 1,
            compact: 0,
            states: BTreeMap::from([(1, State::new())]),
            events: Vec::new(),
            leases: Vec::new(),
        };
        for op in ops {
            match op {
                ModelOp::Put { key, value, lease } => {
                    let lease = lease.and_then(|i| m.leases.get(i).copied()).unwrap_or(0);
                    let r = s
                        .put(PbPutRequest {
                            key: KEYS[key].into(),
                            value: vec![value],
                            lease,
                            prev_kv: true,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let mut st = m.state();
                    let ev = m.put(&mut st, KEYS[key].as_bytes(), vec![value], lease);
                    prop_assert_eq!(&r.prev_kv, &ev.prev_kv);
                    m.commit(st, vec![ev]);
                    prop_assert_eq!(r.header.unwrap().revision, m.revision);
                }
                ModelOp::Delete { key, prefix } => {
                    let (k, end) = key_range(key, prefix);
                    let r = s
                        .delete_range(PbDeleteRequest {
                            key: k.clone(),
                            range_end: end.clone(),
                            prev_kv: true,
                        })
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let mut st = m.state();
                    let evs = m.delete(&mut st, &KeyRange::new(&k, &end));
                    let prevs: Vec<_> = evs.iter().filter_map(|e| e.prev_kv.clone()).collect();
                    prop_assert_eq!(&r.prev_kvs, &prevs);
                    m.commit(st, evs);
                    prop_assert_eq!(r.header.unwrap().revision, m.revision);
                }
                ModelOp::Txn {
                    key,
                    expect_version,
                    put,
                    delete,
                } => {
                    let req = PbTxnRequest {
                        compare: vec![PbCompare {
                            result: 0,
                            target: 0,
                            key: KEYS[key].into(),
                            range_end: vec![],
                            target_union: Some(PbTargetUnion::Version(expect_version)),
                        }],
                        success: std::iter::once(PbTxnRequestOp {
                            request: Some(PbTxnOpRequest::RequestPut(PbPutRequest {
                                key: KEYS[put].into(),
                                value: b"txn".to_vec(),
                                ..Default::default()
                            })),
                        })
                        .chain(delete.map(|d| PbTxnRequestOp {
                            request: Some(PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
                                key: KEYS[d].into(),
                                ..Default::default()
                            })),
                        }))
                        .collect(),
                        failure: vec![],
                    };
                    let r = s.txn(req).await;
                    if delete == Some(put) {
                        prop_assert!(matches!(r, Err(Error::DuplicateKey)));
                        continue;
                    }
                    let r = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let st0 = m.state();
                    let version = st0.get(KEYS[key].as_bytes()).map_or(0, |kv| kv.version);
                    prop_assert_eq!(r.succeeded, version == expect_version);
                    if r.succeeded {
                        let mut st = st0;
                        let mut evs =
                            vec![m.put(&mut st, KEYS[put].as_bytes(), b"txn".to_vec(), 0)];
                        if let Some(d) = delete {
                            evs.extend(m.delete(&mut st, &KeyRange::new(KEYS[d].as_bytes(), b"")));
                        }
                        m.commit(st, evs);
                    }
                    prop_assert_eq!(r.header.unwrap().revision, m.revision);
                }
                ModelOp::Compact { back } => {
                    let target = m.revision - back;
                    let r = s.compact(target, back % 2 == 0).await;
                    if target <= m.compact {
                        prop_assert!(matches!(r, Err(Error::Compacted)));
                    } else {
                        prop_assert!(r.is_ok(), "{:?}", r.err());
                        m.compact = target;
                    }
                }
                ModelOp::Grant => {
                    let (id, _) = s
                        .lease_grant(0, 3600)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    m.leases.push(id);
                }
                ModelOp::Revoke { lease } => {
                    let Some(&id) = m.leases.get(lease) else {
                        continue;
                    };
                    s.lease_revoke(id)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    m.leases.remove(lease);
                    let mut st = m.state();
                    let keys: Vec<_> = st
                        .values()
                        .filter(|kv| kv.lease == id)
                        .map(|kv| kv.key.clone())
                        .collect();
                    let mut evs = Vec::new();
                    for k in keys {
                        evs.extend(m.delete(&mut st, &KeyRange::new(&k, b"")));
                    }
                    m.commit(st, evs);
                }
                ModelOp::Get { key, prefix, back } => {
                    let at = (m.revision - back).max(1);
                    let (k, end) = key_range(key, prefix);
                    let r = s
                        .range(PbRangeRequest {
                            key: k.clone(),
                            range_end: end.clone(),
                            revision: at,
                            ..Default::default()
                        })
                        .await;
                    if at < m.compact {
                        prop_assert!(matches!(r, Err(Error::Compacted)));
                        continue;
                    }
                    let r = r.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let range = KeyRange::new(&k, &end);
                    let want: Vec<_> = m.states[&at]
                        .values()
                        .filter(|kv| range.contains(&kv.key))
                        .cloned()
                        .collect();
                    prop_assert_eq!(r.kvs, want);
                }
            }
        }
        // Every event since the compact revision, in order, with prev_kv, through a watch.
        let start = m.compact.max(1);
        let want: Vec<_> = m
            .events
            .iter()
            .filter(|e| e.kv.as_ref().unwrap().mod_revision >= start)
            .cloned()
            .collect();
        let filter = WatchFilter {
            prev_kv: true,
            ..Default::default()
        };
        let mut w = s.watch(KeyRange::new(&[0], &[0]), start, filter);
        let mut got = Vec::new();
        while got.len() < want.len() {
            let batch = tokio::time::timeout(Duration::from_secs(5), w.next())
                .await
                .map_err(|_| TestCaseError::fail("watch stalled"))?
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            got.extend(batch);
        }
        prop_assert_eq!(got, want);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        run_model(ops)?;
    }
}
