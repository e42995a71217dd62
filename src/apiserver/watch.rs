//! Watches: newline-delimited JSON events flushed one by one, with upstream's start semantics
//! (synthetic ADDED events without a resourceVersion, 410 for compacted ones), selector
//! transitions as ADDED/DELETED, bookmarks and timeouts.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::handlers::{Call, Selectors, as_table};
use super::request::Format;
use super::resources::Resource;
use super::status::{ApiError, Result};
use super::storage::decode_event_for;

/// How often a bookmark is sent to watchers that asked for them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// Starts a watch; the events are written to the returned channel, which the response body
/// streams. The task ends when the client goes away, the timeout passes or the store stops.
pub fn start(call: &Call<'_>) -> Result<mpsc::Receiver<Bytes>> {
    if call.query.get("sendInitialEvents").is_some() {
        return Err(ApiError::invalid(
            "",
            "ListOptions",
            "",
            vec![super::status::Cause::forbidden(
                "sendInitialEvents",
                "sendInitialEvents is not supported by this server (the WatchList feature is disabled)",
            )],
        ));
    }
    if call
        .query
        .get("resourceVersionMatch")
        .is_some_and(|v| !v.is_empty())
    {
        return Err(ApiError::invalid(
            "",
            "ListOptions",
            "",
            vec![super::status::Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden for watch",
            )],
        ));
    }
    let sel = Selectors::parse(&call.query, &call.resource)?;
    let rv = call.query.get("resourceVersion").unwrap_or("");
    let start: Option<i64> = match rv {
        "" | "0" => None,
        n => Some(n.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("invalid resourceVersion {n:?}: must be an integer"))
        })?),
    };
    let bookmarks = call.query.bool("allowWatchBookmarks")?;
    let timeout = match call.query.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        // Upstream picks a random duration in [30, 60) minutes.
        _ => Duration::from_secs(1800 + u64::from(super::meta::random_u32() % 1800)),
    };
    let (tx, rx) = mpsc::channel(64);
    let w = Watcher {
        storage: call.api.storage.clone(),
        resource: call.resource.clone(),
        namespace: call.path.namespace.clone(),
        sel,
        table: call.format == Format::Table,
        query: call.query.clone(),
        bookmarks,
        first_table: true,
        tx,
    };
    tokio::spawn(async move {
        let _ = tokio::time::timeout(timeout, w.run(start)).await;
    });
    Ok(rx)
}

struct Watcher {
    storage: super::storage::Storage,
    resource: Resource,
    namespace: Option<String>,
    sel: Selectors,
    table: bool,
    query: super::request::Query,
    bookmarks: bool,
    first_table: bool,
    tx: mpsc::Sender<Bytes>,
}

/// The watch ended: the client is gone (or the store stopped).
struct Gone;

impl Watcher {
    /// A stored object in the watched version: selectors and tables work on that version.
    fn present(&self, mut object: Value) -> Value {
        super::handlers::present(&self.resource, &mut object);
        object
    }

    /// Sends one event; objects are already presented in the watched version.
    async fn send(&mut self, kind: &str, object: Value) -> std::result::Result<(), Gone> {
        let object = if self.table && kind != "ERROR" && kind != "BOOKMARK" {
            let mut t = as_table(&self.resource, &object, &self.query).map_err(|_| Gone)?;
            if !self.first_table {
                t["columnDefinitions"] = Value::Null;
            }
            self.first_table = false;
            t
        } else {
            object
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).map_err(|_| Gone)?;
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.map_err(|_| Gone)
    }

    async fn error(&mut self, e: ApiError) {
        let _ = self.send("ERROR", e.to_status()).await;
    }

    async fn run(mut self, start: Option<i64>) {
        let prefix = self.resource.key_prefix(self.namespace.as_deref());
        // Without a resourceVersion: the current state as ADDED events, then changes after it.
        let from = match start {
            Some(rv) => rv + 1,
            None => {
                let page = match self.storage.list(&prefix, 0, None, 0).await {
                    Ok(p) => p,
                    Err(e) => return self.error(e).await,
                };
                for item in page.items {
                    let object = self.present(item.object);
                    if self.sel.matches(&object) && self.send("ADDED", object).await.is_err() {
                        return;
                    }
                }
                page.revision + 1
            }
        };
        if from <= self.storage.compact_revision() {
            return self
                .error(ApiError::gone(format!(
                    "too old resource version: {} ({})",
                    from - 1,
                    self.storage.compact_revision()
                )))
                .await;
        }
        // Without selectors an event's previous state only matters for whether it existed.
        let everything = self.sel.is_everything();
        let mut watch = self.storage.watch(&prefix, from);
        let synced = watch.synced();
        let mut tick = tokio::time::interval(BOOKMARK_EVERY);
        tick.tick().await;
        loop {
            let events = tokio::select! {
                r = watch.next() => r,
                _ = tick.tick(), if self.bookmarks => {
                    let rv = synced.load(std::sync::atomic::Ordering::Acquire);
                    let bookmark = json!({
                        "kind": self.resource.kind,
                        "apiVersion": self.resource.api_version(),
                        "metadata": {"resourceVersion": rv.to_string()},
                    });
                    if self.send("BOOKMARK", bookmark).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ = self.tx.closed() => return,
            };
            let events = match events {
                Ok(e) => e,
                Err(crate::store::Error::Compacted) => {
                    return self
                        .error(ApiError::gone(format!(
                            "too old resource version: {} ({})",
                            from - 1,
                            self.storage.compact_revision()
                        )))
                        .await;
                }
                Err(_) => return,
            };
            for e in &events {
                let Ok(Some(ev)) = decode_event_for(e, !everything) else {
                    continue;
                };
                let object = self.present(ev.object);
                let (now, before) = if everything {
                    (!ev.deleted, ev.previous.is_some())
                } else {
                    let previous = ev.previous.map(|p| self.present(p));
                    (
                        !ev.deleted && self.sel.matches(&object),
                        previous.as_ref().is_some_and(|p| self.sel.matches(p)),
                    )
                };
                let kind = match (before, now, ev.deleted) {
                    (true, _, true) => "DELETED",
                    (false, true, _) => "ADDED",
                    (true, true, false) => "MODIFIED",
                    // Left the selector: DELETED with the new state (upstream semantics).
                    (true, false, false) => "DELETED",
                    _ => continue,
                };
                if self.send(kind, object).await.is_err() {
                    return;
                }
            }
        }
    }
}
