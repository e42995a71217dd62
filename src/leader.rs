//! Leader election on a coordination.k8s.io Lease, with client-go's `leaderelection` semantics
//! as kube-controller-manager and kube-scheduler use them: a 15 s lease, renewed every 2 s, given
//! up when it could not be renewed for 10 s, and taken over only once the current holder has not
//! renewed it for a whole lease duration as observed by this process's own clock (so clock skew
//! between servers does not matter).
//!
//! Like client-go's package it is a client library, not a component: the composition root
//! (`server`) runs [`run`] once per elected component, each with its own Lease.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub const LEASE_NAMESPACE: &str = "kube-system";
/// kube-controller-manager's `--leader-elect-lease-duration`.
pub const LEASE_DURATION_SECONDS: i32 = 15;
/// kube-controller-manager's `--leader-elect-renew-deadline`.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// kube-controller-manager's `--leader-elect-retry-period`.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The Lease spec this candidate writes, or `None` when another holder's lease is still valid.
/// `expired` says whether the current record has gone unrenewed for its whole duration.
pub fn desired_lease(
    current: Option<&LeaseSpec>,
    identity: &str,
    now: Timestamp,
    expired: bool,
) -> Option<LeaseSpec> {
    let now = MicroTime(now);
    let Some(current) = current else {
        return Some(LeaseSpec {
            holder_identity: Some(identity.into()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        });
    };
    let holder = current.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        // Renewal keeps the acquire time and the transition count.
        return Some(LeaseSpec {
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(now),
            ..current.clone()
        });
    }
    if !holder.is_empty() && !expired {
        return None;
    }
    Some(LeaseSpec {
        holder_identity: Some(identity.into()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        lease_transitions: Some(current.lease_transitions.unwrap_or(0) + 1),
        ..current.clone()
    })
}

/// What identifies one renewal of the Lease: its holder and renew time.
type Record = (Option<String>, Option<MicroTime>);

/// Campaigns for the Lease `kube-system/<lease>` and, while this process holds it, runs what
/// `start` spawns; returns once `stop` turns true (the tasks are cancelled and the Lease is left
/// to expire, as upstream's components do without `ReleaseOnCancel`). A task that ends (a panic)
/// is reported and the whole set is started again.
pub async fn run(
    client: Client,
    lease: &str,
    identity: String,
    mut stop: watch::Receiver<bool>,
    start: impl Fn() -> JoinSet<()>,
) {
    let mut elector = Elector::new(client, lease, identity.clone());
    let mut running: Option<JoinSet<()>> = None;
    let mut last_renew = Instant::now();
    let mut tick = tokio::time::interval(RETRY_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let attempt = async {
            tick.tick().await;
            tokio::time::timeout(RENEW_DEADLINE, elector.try_acquire_or_renew()).await
        };
        let held = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            held = attempt => held,
        };
        if let Some(set) = running.as_mut()
            && let Some(done) = set.try_join_next()
        {
            tracing::error!(lease, outcome = ?done.err(), "a task stopped; restarting them all");
            running = None;
        }
        match held {
            Ok(Ok(true)) => {
                last_renew = Instant::now();
                if running.is_none() {
                    tracing::info!(lease, identity = %identity, "became the leader");
                    running = Some(start());
                }
            }
            outcome => {
                if let Ok(Err(e)) = &outcome {
                    tracing::debug!(lease, error = %e, "leader election");
                }
                // Upstream's RenewDeadline: a leader that cannot renew in time stops leading.
                if running.is_some() && last_renew.elapsed() >= RENEW_DEADLINE {
                    tracing::warn!(lease, "lost the lease; stopping");
                    running = None;
                }
            }
        }
    }
    // Dropping the set aborts every task.
    drop(running);
}

/// One candidate: its identity and what it last observed of the Lease.
pub struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
    /// The last (holder, renewTime) seen and when this process first saw it.
    observed: Option<(Record, Instant)>,
}

impl Elector {
    pub fn new(client: Client, lease: &str, identity: String) -> Elector {
        Elector {
            leases: Api::namespaced(client, LEASE_NAMESPACE),
            name: lease.to_string(),
            identity,
            observed: None,
        }
    }

    /// client-go's `tryAcquireOrRenew`: `Ok(true)` while this candidate holds the Lease.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.leases.get_opt(&self.name).await? else {
            let spec = desired_lease(None, &self.identity, now, true);
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    ..ObjectMeta::default()
                },
                spec,
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    self.observe(l.spec.as_ref());
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.observe(lease.spec.as_ref());
        let duration = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .unwrap_or(LEASE_DURATION_SECONDS);
        let expired = self.observed.as_ref().is_none_or(|(_, at)| {
            at.elapsed() >= Duration::from_secs(u64::try_from(duration).unwrap_or(0))
        });
        let Some(spec) = desired_lease(lease.spec.as_ref(), &self.identity, now, expired) else {
            return Ok(false);
        };
        lease.spec = Some(spec);
        // The read resourceVersion makes this a compare-and-swap: a racing candidate gets 409.
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                self.observe(l.spec.as_ref());
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn observe(&mut self, spec: Option<&LeaseSpec>) {
        let key: Record = (
            spec.and_then(|s| s.holder_identity.clone()),
            spec.and_then(|s| s.renew_time.clone()),
        );
        if self.observed.as_ref().is_none_or(|(k, _)| *k != key) {
            self.observed = Some((key, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            renew_time: Some(MicroTime(Timestamp::UNIX_EPOCH)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_missing_lease_is_created_with_this_holder() {
        let now = Timestamp::from_second(100).unwrap();
        let s = desired_lease(None, "a", now, false).unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
        assert_eq!(s.lease_duration_seconds, Some(15));
        assert_eq!(s.lease_transitions, Some(0));
        assert_eq!(s.renew_time, Some(MicroTime(now)));
    }

    #[test]
    fn the_holder_renews_keeping_acquire_time() {
        let now = Timestamp::from_second(100).unwrap();
        let s = desired_lease(Some(&spec("a", 3)), "a", now, false).unwrap();
        assert_eq!(s.acquire_time, Some(MicroTime(Timestamp::UNIX_EPOCH)));
        assert_eq!(s.renew_time, Some(MicroTime(now)));
        assert_eq!(s.lease_transitions, Some(3));
    }

    #[test]
    fn another_holders_valid_lease_is_respected_until_it_expires() {
        let now = Timestamp::from_second(100).unwrap();
        assert_eq!(desired_lease(Some(&spec("b", 3)), "a", now, false), None);
        let s = desired_lease(Some(&spec("b", 3)), "a", now, true).unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
        assert_eq!(s.acquire_time, Some(MicroTime(now)));
        assert_eq!(s.lease_transitions, Some(4));
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let now = Timestamp::from_second(100).unwrap();
        let s = desired_lease(Some(&spec("", 1)), "a", now, false).unwrap();
        assert_eq!(s.holder_identity.as_deref(), Some("a"));
    }
}
