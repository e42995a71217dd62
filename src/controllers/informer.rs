//! The controller-manager's shared informers and work queues, after client-go's: one watch per
//! resource feeds a cache that every controller reads, and each change is handed to the
//! controllers' handlers, which turn it into keys in their work queues. A key is processed by
//! one worker at a time, failures are retried with exponential back-off, and expectations keep a
//! controller from acting twice on a cache that has not yet seen its own writes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

/// A cache key: `namespace/name`, or `name` for cluster-scoped objects (client-go's
/// `MetaNamespaceKeyFunc`).
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a key into (namespace, name).
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// A 404 (the object went away meanwhile) is not a failure.
pub fn ignore_gone<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The controlling owner reference (`controller: true`), if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// One change seen by an informer.
pub enum Change<K> {
    /// Added (`old` is `None`) or updated.
    Applied {
        old: Option<Arc<K>>,
        new: Arc<K>,
    },
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object changed: its new state, or its last one when deleted.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied { new, .. } => new,
            Change::Deleted(old) => old,
        }
    }
}

/// `namespace/name` of the object's controller when that is a `kind`.
pub fn owner_key<K: Resource>(obj: &K, kind: &str) -> Option<String> {
    let owner = controller_of(obj).filter(|o| o.kind == kind)?;
    let ns = obj.meta().namespace.as_deref().unwrap_or_default();
    Some(format!("{ns}/{}", owner.name))
}

type Handler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;

struct Objects<K> {
    by_key: HashMap<String, Arc<K>>,
    /// Keys of the objects each controller (by uid) controls.
    by_owner: HashMap<String, HashSet<String>>,
}

/// A watched resource's cache plus the handlers to call on changes.
pub struct Informer<K> {
    api: Api<K>,
    objects: RwLock<Objects<K>>,
    handlers: Mutex<Vec<Handler<K>>>,
    synced: watch::Sender<bool>,
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    // The maps are updated in single statements; a panic elsewhere cannot leave them torn.
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    pub fn new(api: Api<K>) -> Arc<Self> {
        Arc::new(Informer {
            api,
            objects: RwLock::new(Objects {
                by_key: HashMap::new(),
                by_owner: HashMap::new(),
            }),
            handlers: Mutex::new(Vec::new()),
            synced: watch::channel(false).0,
        })
    }

    /// Registers a handler; call before [`Informer::run`] so no change is missed.
    pub fn on_change(&self, handler: impl Fn(&Change<K>) + Send + Sync + 'static) {
        lock(&self.handlers).push(Box::new(handler));
    }

    /// Queues the key of every changed object.
    pub fn enqueue_changes(&self, queue: &Arc<WorkQueue>) {
        let queue = queue.clone();
        self.on_change(move |change| queue.add(key_of(change.object().as_ref())));
    }

    /// Queues the controller (of `kind`) of every changed object.
    pub fn enqueue_owners(&self, queue: &Arc<WorkQueue>, kind: &'static str) {
        let queue = queue.clone();
        self.on_change(move |change| {
            if let Some(key) = owner_key(change.object().as_ref(), kind) {
                queue.add(key);
            }
        });
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        read(&self.objects).by_key.get(key).cloned()
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        read(&self.objects).by_key.values().cloned().collect()
    }

    /// The cached objects of one namespace.
    pub fn list_namespace(&self, ns: &str) -> Vec<Arc<K>> {
        read(&self.objects)
            .by_key
            .values()
            .filter(|o| o.meta().namespace.as_deref() == Some(ns))
            .cloned()
            .collect()
    }

    /// The cached objects whose controller has this uid.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<K>> {
        let objects = read(&self.objects);
        objects
            .by_owner
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| objects.by_key.get(k).cloned())
            .collect()
    }

    /// Waits until the first full list has been loaded.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Watches forever (with back-off on errors), keeping the cache and calling the handlers.
    pub async fn run(self: Arc<Self>) {
        let mut events = watcher(self.api.clone(), watcher::Config::default())
            .default_backoff()
            .boxed();
        // Keys listed so far during a re-list: what a re-list does not list was deleted while
        // the watch was down.
        let mut relist: Option<HashSet<String>> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => relist = Some(HashSet::new()),
                Ok(watcher::Event::InitApply(obj)) => {
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(key_of(&obj));
                    }
                    self.apply(obj);
                }
                Ok(watcher::Event::InitDone) => {
                    let seen = relist.take().unwrap_or_default();
                    let gone: Vec<Arc<K>> = read(&self.objects)
                        .by_key
                        .iter()
                        .filter(|(k, _)| !seen.contains(*k))
                        .map(|(_, o)| o.clone())
                        .collect();
                    for obj in gone {
                        self.delete(&obj);
                    }
                    self.synced.send_replace(true);
                }
                Ok(watcher::Event::Apply(obj)) => self.apply(obj),
                Ok(watcher::Event::Delete(obj)) => self.delete(&obj),
                Err(e) => tracing::debug!(error = %e, "informer watch"),
            }
        }
    }

    fn apply(&self, obj: K) {
        let key = key_of(&obj);
        let new = Arc::new(obj);
        let owner = controller_of(new.as_ref()).map(|o| o.uid.clone());
        let old = {
            let mut objects = write(&self.objects);
            let old = objects.by_key.insert(key.clone(), new.clone());
            let old_owner = old
                .as_ref()
                .and_then(|o| controller_of(o.as_ref()).map(|o| o.uid.clone()));
            if old_owner != owner {
                if let Some(u) = &old_owner
                    && let Some(set) = objects.by_owner.get_mut(u)
                {
                    set.remove(&key);
                    if set.is_empty() {
                        objects.by_owner.remove(u);
                    }
                }
                if let Some(u) = &owner {
                    objects.by_owner.entry(u.clone()).or_default().insert(key);
                }
            }
            old
        };
        self.notify(&Change::Applied { old, new });
    }

    fn delete(&self, obj: &K) {
        let key = key_of(obj);
        let removed = {
            let mut objects = write(&self.objects);
            let removed = objects.by_key.remove(&key);
            if let Some(o) = &removed
                && let Some(u) = controller_of(o.as_ref()).map(|o| o.uid.clone())
                && let Some(set) = objects.by_owner.get_mut(&u)
            {
                set.remove(&key);
                if set.is_empty() {
                    objects.by_owner.remove(&u);
                }
            }
            removed
        };
        // The watch's final state is the better one when it has it.
        let last = removed.unwrap_or_else(|| Arc::new(obj.clone()));
        self.notify(&Change::Deleted(last));
    }

    fn notify(&self, change: &Change<K>) {
        for h in lock(&self.handlers).iter() {
            h(change);
        }
    }
}

/// client-go's rate-limited work queue: a key is queued at most once, handed to one worker at
/// a time (a key added while it is being processed is queued again when the worker is done),
/// and retried after a per-key exponential back-off when processing fails.
pub struct WorkQueue {
    state: Mutex<QueueState>,
    ready: Notify,
}

#[derive(Default)]
struct QueueState {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    failures: HashMap<String, u32>,
}

/// client-go's `DefaultControllerRateLimiter` per-item part: 5 ms doubled per failure, at most
/// 1000 s.
pub fn failure_backoff(failures: u32) -> Duration {
    let d = Duration::from_millis(5).saturating_mul(1u32 << failures.min(20));
    d.min(Duration::from_secs(1000))
}

impl WorkQueue {
    pub fn new() -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(QueueState::default()),
            ready: Notify::new(),
        })
    }

    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = lock(&self.state);
        if !s.dirty.insert(key.clone()) {
            return;
        }
        if !s.processing.contains(&key) {
            s.queue.push_back(key);
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Adds the key once `delay` has passed.
    pub fn add_after(self: &Arc<Self>, key: impl Into<String>, delay: Duration) {
        let (queue, key) = (self.clone(), key.into());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// Adds the key after its failure back-off.
    pub fn add_rate_limited(self: &Arc<Self>, key: &str) {
        let failures = {
            let mut s = lock(&self.state);
            let f = s.failures.entry(key.to_string()).or_default();
            *f += 1;
            *f
        };
        self.add_after(key, failure_backoff(failures - 1));
    }

    /// Clears the key's failure count after a success.
    pub fn forget(&self, key: &str) {
        lock(&self.state).failures.remove(key);
    }

    /// Waits for the next key to process; call [`WorkQueue::done`] with it afterwards.
    pub async fn next(&self) -> String {
        loop {
            let notified = self.ready.notified();
            {
                let mut s = lock(&self.state);
                if let Some(key) = s.queue.pop_front() {
                    s.dirty.remove(&key);
                    s.processing.insert(key.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Pass the wake-up on: `notify_one` stores one permit only.
                        self.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    pub fn done(&self, key: &str) {
        let mut s = lock(&self.state);
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_string());
            drop(s);
            self.ready.notify_one();
        }
    }
}

/// What a sync asks for after it succeeded.
pub type Requeue = Option<Duration>;

/// Runs `workers` loops that take keys from `queue` and sync them; a failure is logged and the
/// key retried after its back-off, a success may ask to be looked at again after a delay.
pub async fn run_workers<F, Fut>(name: &'static str, queue: Arc<WorkQueue>, workers: usize, sync: F)
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Requeue, kube::Error>> + Send,
{
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (queue, sync) = (queue.clone(), sync.clone());
        set.spawn(async move {
            loop {
                let key = queue.next().await;
                match sync(key.clone()).await {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(after) = requeue {
                            queue.add_after(key.clone(), after);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(controller = name, key = %key, error = %e, "sync failed; retrying");
                        queue.add_rate_limited(&key);
                    }
                }
                queue.done(&key);
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// Enqueues every key of `informer` every `period` (the resync that makes up for missed
/// events).
pub async fn resync<K>(informer: Arc<Informer<K>>, queue: Arc<WorkQueue>, period: Duration)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    informer.wait_synced().await;
    loop {
        for obj in informer.list() {
            queue.add(key_of(obj.as_ref()));
        }
        tokio::time::sleep(period).await;
    }
}

/// client-go's `UIDTrackingControllerExpectations`: after a controller asks for N creations
/// and some deletions for a key it does not act on that key again until its informer has seen
/// them all, or until the expectations are five minutes old (upstream's `ExpectationsTimeout`,
/// for writes whose events were lost). Deletions are tracked by pod uid, because a graceful
/// deletion is seen twice (deletionTimestamp set, then gone).
#[derive(Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Expected>>,
}

struct Expected {
    adds: i64,
    deletes: HashSet<String>,
    at: Instant,
}

const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

impl Expectations {
    pub fn expect(&self, key: &str, adds: i64, deletes: impl IntoIterator<Item = String>) {
        let expected = Expected {
            adds,
            deletes: deletes.into_iter().collect(),
            at: Instant::now(),
        };
        lock(&self.map).insert(key.to_string(), expected);
    }

    pub fn observe_add(&self, key: &str) {
        if let Some(e) = lock(&self.map).get_mut(key) {
            e.adds -= 1;
        }
    }

    pub fn observe_delete(&self, key: &str, uid: &str) {
        if let Some(e) = lock(&self.map).get_mut(key) {
            e.deletes.remove(uid);
        }
    }

    /// Lowers the expected adds by creations that were never sent or failed.
    pub fn lower_adds(&self, key: &str, n: i64) {
        if let Some(e) = lock(&self.map).get_mut(key) {
            e.adds -= n;
        }
    }

    pub fn satisfied(&self, key: &str) -> bool {
        match lock(&self.map).get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.at.elapsed() > EXPECTATIONS_TIMEOUT
            }
        }
    }

    pub fn forget(&self, key: &str) {
        lock(&self.map).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once_and_requeued_if_added_while_processing() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.next().await, "a");
        q.add("a");
        assert_eq!(q.next().await, "b");
        // "a" is still being processed: it is not handed out again until done.
        q.done("b");
        assert!(
            tokio::time::timeout(Duration::from_millis(20), q.next())
                .await
                .is_err()
        );
        q.done("a");
        assert_eq!(q.next().await, "a");
    }

    #[test]
    fn failure_backoff_grows_to_its_cap() {
        assert_eq!(failure_backoff(0), Duration::from_millis(5));
        assert_eq!(failure_backoff(3), Duration::from_millis(40));
        assert_eq!(failure_backoff(30), Duration::from_secs(1000));
    }

    #[test]
    fn expectations_hold_until_observed() {
        let e = Expectations::default();
        let k = "ns/rs";
        assert!(e.satisfied(k));
        e.expect(k, 2, ["uid-1".to_string()]);
        assert!(!e.satisfied(k));
        e.observe_add(k);
        e.observe_add(k);
        assert!(!e.satisfied(k));
        // Seeing the same deletion twice (terminating, then gone) counts once.
        e.observe_delete(k, "uid-1");
        e.observe_delete(k, "uid-1");
        assert!(e.satisfied(k));
    }
}
