//! Events from the controllers, as kube-controller-manager writes them: core/v1 Events with
//! `source.component`, correlated like client-go's `EventCorrelator` — an event with the same
//! object, type, reason and message as one written before increments that event's `count` and
//! `lastTimestamp` instead of creating another. Writes happen off the reconcile path in a few
//! workers; when they fall behind, events are dropped, as upstream's broadcaster drops them
//! when its queue is full.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::{Mutex, mpsc};

const QUEUE: usize = 4096;
const WORKERS: usize = 4;
/// Upstream's correlator cache size (`maxLruCacheEntries`).
const CACHE: usize = 4096;

struct Record {
    regarding: ObjectReference,
    type_: &'static str,
    reason: String,
    message: String,
}

/// (object uid, type, reason, message) → (namespace, event name, count).
type Seen = HashMap<(String, &'static str, String, String), (String, String, i32)>;

/// A handle to record events as one controller (`source.component`).
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<Record>,
}

impl Events {
    /// Starts the writers; they stop when every handle is dropped.
    pub fn start(client: Client, component: &'static str) -> Events {
        let (tx, rx) = mpsc::channel::<Record>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let seen: Arc<Mutex<Seen>> = Arc::default();
        for _ in 0..WORKERS {
            let (client, rx, seen) = (client.clone(), rx.clone(), seen.clone());
            tokio::spawn(async move {
                loop {
                    let Some(record) = rx.lock().await.recv().await else {
                        return;
                    };
                    if let Err(e) = write(&client, component, &seen, record).await {
                        tracing::warn!(error = %e, "the API server refused an event");
                    }
                }
            });
        }
        Events { tx }
    }

    pub fn normal(&self, regarding: ObjectReference, reason: &str, message: String) {
        self.record(regarding, "Normal", reason, message);
    }

    pub fn warning(&self, regarding: ObjectReference, reason: &str, message: String) {
        self.record(regarding, "Warning", reason, message);
    }

    fn record(
        &self,
        regarding: ObjectReference,
        type_: &'static str,
        reason: &str,
        message: String,
    ) {
        let record = Record {
            regarding,
            type_,
            reason: reason.into(),
            message,
        };
        if self.tx.try_send(record).is_err() {
            tracing::debug!(reason, "event queue full; dropping the event");
        }
    }
}

/// Upstream names an event `<object>.<unix nanos in hex>`. Several workers write at once and a
/// VM's clock may tick coarser than a nanosecond, so two events about one object could get
/// the same name and the second would be refused as AlreadyExists: the nanos handed out here
/// strictly increase within the process.
fn unique_nanos(now: i128) -> i128 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = now as i64;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next as i128,
            Err(seen) => last = seen,
        }
    }
}

async fn write(
    client: &Client,
    component: &'static str,
    seen: &Mutex<Seen>,
    r: Record,
) -> Result<(), kube::Error> {
    let now = Time(Timestamp::now());
    let ns = r
        .regarding
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".into());
    let key = (
        r.regarding.uid.clone().unwrap_or_default(),
        r.type_,
        r.reason.clone(),
        r.message.clone(),
    );
    let earlier = seen.lock().await.get(&key).cloned();
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    if let Some((ns, name, count)) = earlier {
        let patch = serde_json::json!({"count": count + 1, "lastTimestamp": now});
        let events: Api<Event> = Api::namespaced(client.clone(), &ns);
        match events
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                seen.lock().await.insert(key, (ns, name, count + 1));
                return Ok(());
            }
            // The event expired or was deleted: write a new one.
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let name = format!(
        "{}.{:x}",
        r.regarding.name.as_deref().unwrap_or(component),
        unique_nanos(now.0.as_nanosecond())
    );
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        involved_object: r.regarding,
        reason: Some(r.reason),
        message: Some(r.message),
        source: Some(EventSource {
            component: Some(component.into()),
            host: None,
        }),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        type_: Some(r.type_.into()),
        reporting_component: Some(component.into()),
        reporting_instance: Some(String::new()),
        ..Event::default()
    };
    events.create(&PostParams::default(), &event).await?;
    let mut seen = seen.lock().await;
    if seen.len() >= CACHE {
        seen.clear();
    }
    seen.insert(key, (ns, name, 1));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unique_nanos;

    #[test]
    fn event_names_never_repeat_even_when_the_clock_does() {
        let a = unique_nanos(1_000);
        let b = unique_nanos(1_000);
        let c = unique_nanos(5);
        assert!(a < b && b < c, "{a} {b} {c}");
    }
}
