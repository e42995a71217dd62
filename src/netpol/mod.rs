//! NetworkPolicy enforcement for the pods of this node (what k3s gets from kube-router's
//! embedded network-policy controller), with nftables: the `netpol*` objects of
//! `table inet rk3s`, which it shares with the service proxy. Egress policies govern pods'
//! traffic to other pods and hosts (forward hook) and to the node itself (input hook), where
//! the cluster DNS address stands for the kube-dns pods ([`render`]'s module doc).
//!
//! [`run`] watches NetworkPolicies, Pods and Namespaces through the API, renders the desired
//! objects ([`render`], pure) and applies them through `network::nat` on a blocking thread.
//! The first sync and every periodic resync are full (one transaction that also deletes
//! `netpol*` objects of an earlier run); changes in between apply only the difference to what
//! was last applied. A failed apply makes the next sync a full one.

pub mod render;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod as KubePod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::mpsc;

use crate::network::nat;

/// How long a burst of watch events may take before the sync that follows it: pods and
/// policies created together give one transaction instead of one each.
const SETTLE: Duration = Duration::from_millis(50);
/// How soon a failed apply is first retried (doubling with each further failure).
const RETRY: Duration = Duration::from_secs(1);

/// What the policy controller of one node needs, built by `cli`.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node: policies are enforced for the pods it runs.
    pub node_name: String,
    /// The cluster DNS address the node's DNS server answers at (`--cluster-dns`): egress
    /// rules that allow the kube-dns pods allow it ([`render`]'s module doc). `None` with
    /// `--disable=dns` (the address is then an ordinary Service's, DNATed to its pods).
    pub cluster_dns: Option<Ipv4Addr>,
    /// Full resync interval (watches are never trusted to be complete).
    pub resync: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nft(#[from] nat::Error),
    #[error("network policy background task failed: {0}")]
    Task(String),
}

/// One watch event, from any of the three watches.
enum Input {
    Policy(Box<watcher::Event<NetworkPolicy>>),
    /// Keyed by namespace/name, so that a pod that lost its address is removed by name.
    Pod(watcher::Event<(String, Option<render::Pod>)>),
    Namespace(watcher::Event<(String, BTreeMap<String, String>)>),
}

/// Watches and enforces until the task is dropped. Errors are logged and retried; it never
/// returns on its own.
pub async fn run(client: Client, config: Config) {
    let (tx, rx) = mpsc::unbounded_channel();
    let watches = async {
        tokio::join!(
            forward(Api::<NetworkPolicy>::all(client.clone()), tx.clone(), |e| {
                Input::Policy(Box::new(e))
            }),
            forward(Api::<KubePod>::all(client.clone()), tx.clone(), |e| {
                Input::Pod(map_event(e, |p| (pod_key(&p), render::Pod::from_kube(&p))))
            }),
            forward(Api::<Namespace>::all(client.clone()), tx.clone(), |e| {
                Input::Namespace(map_event(e, |n| (n.name_any(), n.labels().clone())))
            }),
        )
    };
    tokio::join!(watches, sync_loop(rx, config));
}

/// Forwards a resource's watch events to the sync loop.
async fn forward<K, F>(api: Api<K>, tx: mpsc::UnboundedSender<Input>, wrap: F)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    F: Fn(watcher::Event<K>) -> Input,
{
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(e) => {
                if tx.send(wrap(e)).is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(error = %e, "network policy: watching"),
        }
    }
}

/// The event with its object converted (kube's `Event` has no `map`).
fn map_event<K, T>(event: watcher::Event<K>, f: impl FnOnce(K) -> T) -> watcher::Event<T> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(f(o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(f(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(f(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

fn pod_key(pod: &KubePod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A watched collection: the live map, and while a watch (re)lists, the list being received,
/// which replaces the map at `InitDone` (so objects deleted while the watch was down go away).
struct Cache<V> {
    live: BTreeMap<String, V>,
    relisting: Option<BTreeMap<String, V>>,
    listed: bool,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache {
            live: BTreeMap::new(),
            relisting: None,
            listed: false,
        }
    }
}

impl<V> Cache<V> {
    /// Applies one event; `value` is `None` for objects that are absent or not of interest.
    fn apply<T>(&mut self, event: watcher::Event<T>, split: impl Fn(T) -> (String, Option<V>)) {
        match event {
            watcher::Event::Init => self.relisting = Some(BTreeMap::new()),
            watcher::Event::InitApply(o) => {
                let (k, v) = split(o);
                if let (Some(list), Some(v)) = (self.relisting.as_mut(), v) {
                    list.insert(k, v);
                }
            }
            watcher::Event::InitDone => {
                if let Some(list) = self.relisting.take() {
                    self.live = list;
                }
                self.listed = true;
            }
            watcher::Event::Apply(o) => {
                let (k, v) = split(o);
                match v {
                    Some(v) => self.live.insert(k, v),
                    None => self.live.remove(&k),
                };
            }
            watcher::Event::Delete(o) => {
                let (k, _) = split(o);
                self.live.remove(&k);
            }
        }
    }
}

/// The cluster as the watches last reported it.
#[derive(Default)]
struct State {
    policies: Cache<NetworkPolicy>,
    pods: Cache<render::Pod>,
    namespaces: Cache<BTreeMap<String, String>>,
}

impl State {
    fn apply(&mut self, input: Input) {
        match input {
            Input::Policy(e) => self.policies.apply(*e, |p| {
                let key = format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default()
                );
                (key, Some(p))
            }),
            Input::Pod(e) => self.pods.apply(e, |keyed| keyed),
            Input::Namespace(e) => self
                .namespaces
                .apply(e, |(name, labels)| (name, Some(labels))),
        }
    }

    /// Whether every watch has listed once: before that, rendering would enforce a partial
    /// view (policies without their peers, say).
    fn ready(&self) -> bool {
        self.policies.listed && self.pods.listed && self.namespaces.listed
    }

    fn render(&self, config: &Config) -> render::Ruleset {
        let policies: Vec<NetworkPolicy> = self.policies.live.values().cloned().collect();
        let pods: Vec<render::Pod> = self.pods.live.values().cloned().collect();
        render::render(&render::Cluster {
            node: &config.node_name,
            policies: &policies,
            pods: &pods,
            namespaces: &self.namespaces.live,
            cluster_dns: config.cluster_dns,
        })
    }
}

/// Applies the state after each burst of events, and in full every `config.resync`.
async fn sync_loop(mut rx: mpsc::UnboundedReceiver<Input>, config: Config) {
    let mut state = State::default();
    // What the table holds, as far as we know; `None` forces a full sync.
    let mut applied: Option<render::Ruleset> = None;
    // When the first change not yet applied arrived: a sync follows SETTLE after it, however
    // many events keep coming.
    let mut dirty_since: Option<tokio::time::Instant> = None;
    // When the next full sync is due: at once, after each full sync `config.resync` later, and
    // after failures with a back-off (a host without `nft` is not retried every second).
    let mut next_full = tokio::time::Instant::now();
    let mut failures: u32 = 0;
    loop {
        let now = tokio::time::Instant::now();
        let wait = if !state.ready() {
            // The watches' lists wake the loop.
            config.resync
        } else if applied.is_none() {
            next_full.saturating_duration_since(now)
        } else if let Some(since) = dirty_since {
            (since + SETTLE).saturating_duration_since(now)
        } else {
            next_full.saturating_duration_since(now)
        };
        tokio::select! {
            input = rx.recv() => {
                let Some(input) = input else { return };
                state.apply(input);
                dirty_since.get_or_insert_with(tokio::time::Instant::now);
                continue;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        if !state.ready() {
            continue;
        }
        let desired = state.render(&config);
        let full = applied.is_none() || tokio::time::Instant::now() >= next_full;
        let result = if full {
            apply_full(desired.clone()).await
        } else {
            apply_diff(applied.take().unwrap_or_default(), desired.clone()).await
        };
        match result {
            Ok(()) => {
                tracing::debug!(full, "network policy rules applied");
                applied = Some(desired);
                dirty_since = None;
                failures = 0;
                if full {
                    next_full = tokio::time::Instant::now() + config.resync;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "network policy: applying the nftables rules");
                applied = None;
                let backoff = RETRY.saturating_mul(1 << failures.min(8));
                failures = failures.saturating_add(1);
                next_full = tokio::time::Instant::now() + backoff.min(config.resync);
                dirty_since = None;
            }
        }
    }
}

async fn blocking<F>(f: F) -> Result<(), Error>
where
    F: FnOnce() -> Result<(), Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

/// Writes all of `desired`, deleting `netpol*` objects it does not have.
async fn apply_full(desired: render::Ruleset) -> Result<(), Error> {
    blocking(move || {
        let existing = render::parse_listing(&nat::list_table(render::FAMILY, render::TABLE)?);
        nat::apply(render::TABLE, &render::full_script(&desired, &existing))?;
        Ok(())
    })
    .await
}

/// Changes the table from `applied` to `desired`.
async fn apply_diff(applied: render::Ruleset, desired: render::Ruleset) -> Result<(), Error> {
    let script = render::diff_script(&applied, &desired);
    if script.is_empty() {
        return Ok(());
    }
    blocking(move || Ok(nat::apply(render::TABLE, &script)?)).await
}

/// Deletes every `netpol*` object of the table (`--disable=network-policy`: a policy controller
/// that no longer runs must not leave its last rules enforced).
pub async fn remove() -> Result<(), Error> {
    blocking(|| {
        let existing = render::parse_listing(&nat::list_table(render::FAMILY, render::TABLE)?);
        let script = render::delete_script(&existing);
        if !script.is_empty() {
            nat::apply(render::TABLE, &script)?;
        }
        Ok(())
    })
    .await
}
