//! Objects in the store, the way kube-apiserver keeps them in etcd: one key per object
//! (`/registry/<resource>/[<ns>/]<name>`), JSON values without `resourceVersion` (the key's
//! mod revision is the resourceVersion), creates and updates as compare-and-swap transactions.

use etcd_client::proto::{
    PbCompare, PbCompareTarget, PbDeleteRequest, PbEvent, PbPutRequest, PbRangeRequest,
    PbTargetUnion, PbTxnOpRequest, PbTxnRequest, PbTxnRequestOp,
};
use serde_json::Value;

use super::status::{ApiError, Result};
use crate::store::{KeyRange, Store, Watch, WatchFilter};

/// etcd's compare result and target numbers.
const EQUAL: i32 = 0;
const TARGET_MOD: i32 = PbCompareTarget::Mod as i32;
const EVENT_DELETE: i32 = 1;

/// A stored object with its revision.
#[derive(Debug, Clone)]
pub struct Stored {
    pub object: Value,
    pub revision: i64,
}

/// The outcome of a compare-and-swap write.
#[derive(Debug)]
pub enum Written {
    Done(i64),
    /// The key did not hold the expected revision (or already existed, for a create).
    Conflict,
}

/// A page of a list.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Stored>,
    /// The revision the list was read at.
    pub revision: i64,
    /// The key to continue after, when more remain.
    pub next_key: Option<String>,
    pub remaining: i64,
}

#[derive(Clone)]
pub struct Storage {
    store: Store,
}

fn decode(key: &[u8], value: &[u8], revision: i64) -> Result<Stored> {
    let mut object: Value = serde_json::from_slice(value).map_err(|e| {
        ApiError::internal(format!(
            "stored object {} is not JSON: {e}",
            String::from_utf8_lossy(key)
        ))
    })?;
    set_resource_version(&mut object, revision);
    Ok(Stored { object, revision })
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

/// The bytes to store: the object without its resourceVersion.
fn encode(object: &Value) -> Result<Vec<u8>> {
    let mut o = object.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&o).map_err(|e| ApiError::internal(e.to_string()))
}

/// The exclusive end of a prefix range.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Storage {
    pub fn new(store: Store) -> Storage {
        Storage { store }
    }

    pub fn revision(&self) -> i64 {
        self.store.revision()
    }

    pub fn compact_revision(&self) -> i64 {
        self.store.compact_revision()
    }

    pub async fn get(&self, key: &str) -> Result<Option<Stored>> {
        let resp = self
            .store
            .range(PbRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await?;
        match resp.kvs.first() {
            Some(kv) => Ok(Some(decode(&kv.key, &kv.value, kv.mod_revision)?)),
            None => Ok(None),
        }
    }

    /// Objects under `prefix` at `revision` (0: newest), starting after `after`, at most
    /// `limit` (0: all).
    pub async fn list(
        &self,
        prefix: &str,
        revision: i64,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Page> {
        let start = match after {
            Some(k) => {
                let mut s = k.as_bytes().to_vec();
                s.push(0);
                s
            }
            None => prefix.as_bytes().to_vec(),
        };
        let resp = self
            .store
            .range(PbRangeRequest {
                key: start,
                range_end: prefix_end(prefix),
                revision,
                limit,
                ..Default::default()
            })
            .await?;
        let revision = resp.header.as_ref().map(|h| h.revision).unwrap_or(revision);
        let revision = if revision == 0 {
            self.store.revision()
        } else {
            revision
        };
        let mut items = Vec::with_capacity(resp.kvs.len());
        for kv in &resp.kvs {
            items.push(decode(&kv.key, &kv.value, kv.mod_revision)?);
        }
        let next_key = if resp.more {
            resp.kvs
                .last()
                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        } else {
            None
        };
        let remaining = resp.count - resp.kvs.len() as i64;
        Ok(Page {
            items,
            revision,
            next_key,
            remaining,
        })
    }

    /// Creates `key` if absent.
    pub async fn create(&self, key: &str, object: &Value) -> Result<Written> {
        self.put_if(key, object, 0).await
    }

    /// Replaces `key` if its revision is still `expected`.
    pub async fn update(&self, key: &str, object: &Value, expected: i64) -> Result<Written> {
        self.put_if(key, object, expected).await
    }

    async fn put_if(&self, key: &str, object: &Value, expected: i64) -> Result<Written> {
        let value = encode(object)?;
        let resp = self
            .store
            .txn(PbTxnRequest {
                compare: vec![mod_is(key, expected)],
                success: vec![PbTxnRequestOp {
                    request: Some(PbTxnOpRequest::RequestPut(PbPutRequest {
                        key: key.as_bytes().to_vec(),
                        value,
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            })
            .await?;
        Ok(if resp.succeeded {
            Written::Done(resp.header.map(|h| h.revision).unwrap_or_default())
        } else {
            Written::Conflict
        })
    }

    /// Deletes `key` if its revision is still `expected`.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<Written> {
        let resp = self
            .store
            .txn(PbTxnRequest {
                compare: vec![mod_is(key, expected)],
                success: vec![PbTxnRequestOp {
                    request: Some(PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
                        key: key.as_bytes().to_vec(),
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            })
            .await?;
        Ok(if resp.succeeded {
            Written::Done(resp.header.map(|h| h.revision).unwrap_or_default())
        } else {
            Written::Conflict
        })
    }

    /// Deletes every key under `prefix` in one revision.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<i64> {
        let resp = self
            .store
            .delete_range(PbDeleteRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix),
                ..Default::default()
            })
            .await?;
        Ok(resp.deleted)
    }

    /// Watches every key under `prefix` from `start` (inclusive), with previous values.
    pub fn watch(&self, prefix: &str, start: i64) -> Watch {
        self.store.watch(
            KeyRange::new(prefix.as_bytes(), &prefix_end(prefix)),
            start,
            WatchFilter {
                prev_kv: true,
                ..Default::default()
            },
        )
    }
}

fn mod_is(key: &str, revision: i64) -> PbCompare {
    PbCompare {
        result: EQUAL,
        target: TARGET_MOD,
        key: key.as_bytes().to_vec(),
        range_end: vec![],
        target_union: Some(PbTargetUnion::ModRevision(revision)),
    }
}

/// One change of an object, decoded from a store event.
#[derive(Debug)]
pub struct Event {
    pub key: String,
    pub revision: i64,
    /// The object after the change (for a delete: its last state, at the delete's revision).
    pub object: Value,
    /// The object before the change, if it existed.
    pub previous: Option<Value>,
    pub deleted: bool,
}

/// Decodes a store event. Without `previous_object` the previous state of an update is not
/// parsed (`previous` is `Some(Null)` when there was one): a watcher without selectors only
/// needs to know it existed, and parsing it is half the cost of a watch event.
pub fn decode_event_for(e: &PbEvent, previous_object: bool) -> Result<Option<Event>> {
    let Some(kv) = &e.kv else { return Ok(None) };
    let revision = kv.mod_revision;
    let key = String::from_utf8_lossy(&kv.key).into_owned();
    let previous = match &e.prev_kv {
        Some(p) if previous_object || e.r#type == EVENT_DELETE => {
            Some(decode(&p.key, &p.value, p.mod_revision)?.object)
        }
        Some(_) => Some(Value::Null),
        None => None,
    };
    if e.r#type == EVENT_DELETE {
        let Some(mut object) = previous.clone() else {
            return Ok(None);
        };
        set_resource_version(&mut object, revision);
        return Ok(Some(Event {
            key,
            revision,
            object,
            previous,
            deleted: true,
        }));
    }
    let object = decode(&kv.key, &kv.value, revision)?.object;
    Ok(Some(Event {
        key,
        revision,
        object,
        previous,
        deleted: false,
    }))
}
