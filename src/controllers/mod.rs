//! The controller-manager: the control loops that run inside `rk3s server`, started once the API
//! answers, behind leader election on the `kube-system/kube-controller-manager` Lease, and
//! stopped on shutdown.
//!
//! Each controller is a plain async function over a `kube::Client` (in-process in server mode)
//! that watches what it cares about and also resyncs every [`Config::resync`], because watches
//! are never trusted to be complete. Its decisions are pure `desired_*` functions next to it.

pub mod leader;
pub mod namespace;

use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the controller-manager needs, built by the composition root.
#[derive(Debug, Clone)]
pub struct Config {
    /// This process's `holderIdentity` in the leader-election Lease. A stable identity (the
    /// node name) lets a restarted server take its own Lease back at once.
    pub identity: String,
    /// How often every controller reconciles everything even without watch events.
    pub resync: Duration,
}

/// Runs leader election and, while this process leads, every controller; returns once `stop`
/// turns true (the controllers are cancelled, the Lease is left to expire as upstream's
/// kube-controller-manager does without `ReleaseOnCancel`).
pub async fn run(client: Client, config: Config, mut stop: watch::Receiver<bool>) {
    let mut elector = leader::Elector::new(client.clone(), config.identity.clone());
    let mut running: Option<JoinSet<()>> = None;
    let mut last_renew = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(leader::RETRY_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let attempt = async {
            tick.tick().await;
            tokio::time::timeout(leader::RENEW_DEADLINE, elector.try_acquire_or_renew()).await
        };
        let held = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            held = attempt => held,
        };
        // A controller never returns; one that did (a panic) is reported and all are restarted.
        if let Some(set) = running.as_mut()
            && let Some(done) = set.try_join_next()
        {
            tracing::error!(outcome = ?done.err(), "a controller stopped; restarting the controllers");
            running = None;
        }
        match held {
            Ok(Ok(true)) => {
                last_renew = tokio::time::Instant::now();
                if running.is_none() {
                    tracing::info!(identity = %config.identity, "became the controller-manager leader");
                    running = Some(start(&client, &config));
                }
            }
            outcome => {
                if let Ok(Err(e)) = &outcome {
                    tracing::debug!(error = %e, "leader election");
                }
                // Upstream's RenewDeadline: a leader that cannot renew in time stops leading.
                if running.is_some() && last_renew.elapsed() >= leader::RENEW_DEADLINE {
                    tracing::warn!("lost the controller-manager lease; stopping controllers");
                    running = None;
                }
            }
        }
    }
    // Dropping the set aborts every controller task.
    drop(running);
}

/// Starts every controller (a plain list, no registry).
fn start(client: &Client, config: &Config) -> JoinSet<()> {
    let mut set = JoinSet::new();
    set.spawn(namespace::run(client.clone(), config.resync));
    set
}
