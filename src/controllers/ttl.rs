//! The TTL-after-finished controller (upstream's `pkg/controller/ttlafterfinished`): deletes a
//! finished Job `ttlSecondsAfterFinished` after its Complete or Failed condition became True,
//! cascading to its pods. As upstream, the Job is read again from the API before the delete
//! (the cache may hold an older TTL), and the delete carries the Job's uid as a precondition
//! and foreground propagation.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::{Client, ResourceExt};

use super::informer::{Change, Informer, Requeue, WorkQueue, key_of, run_workers, split_key};
use super::job::finished_at;

/// Concurrent syncs (upstream's `--concurrent-ttl-after-finished-syncs`).
const WORKERS: usize = 5;

/// When the Job expires: its finish time plus the TTL (upstream's `getFinishAndExpireTime`);
/// `None` without a TTL, while it runs, or while it is being deleted.
pub fn expire_at(job: &Job) -> Option<Timestamp> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finished_at(job)?;
    finished
        .checked_add(SignedDuration::from_secs(i64::from(ttl)))
        .ok()
}

/// Upstream's `processTTL`: `Ok(())` when the Job is due for deletion now, otherwise how long
/// until it is (`None`: never).
pub fn time_left(job: &Job, now: Timestamp) -> Result<(), Option<Duration>> {
    let Some(at) = expire_at(job) else {
        return Err(None);
    };
    if at <= now {
        return Ok(());
    }
    Err(Duration::try_from(at.duration_since(now)).ok())
}

/// The running controller.
pub struct Controller {
    client: Client,
    jobs: Arc<Informer<Job>>,
    queue: Arc<WorkQueue>,
}

impl Controller {
    /// Wires the handler; run the informer and then [`Controller::run`].
    pub fn new(client: Client, jobs: Arc<Informer<Job>>) -> Arc<Self> {
        let this = Arc::new(Controller {
            client,
            jobs,
            queue: WorkQueue::new(),
        });
        let weak = Arc::downgrade(&this);
        this.jobs.on_change(move |change| {
            if let (Some(c), Change::Applied { new, .. }) = (weak.upgrade(), change)
                && expire_at(new).is_some()
            {
                c.queue.add(key_of(new.as_ref()));
            }
        });
        this
    }

    pub async fn run(self: Arc<Self>, resync: Duration) {
        self.jobs.wait_synced().await;
        let this = self.clone();
        let workers = run_workers(
            "ttl-after-finished-controller",
            self.queue.clone(),
            WORKERS,
            move |key| {
                let this = this.clone();
                async move { this.sync(&key).await }
            },
        );
        let resync = super::informer::resync(self.jobs.clone(), self.queue.clone(), resync);
        tokio::join!(workers, resync);
    }

    async fn sync(&self, key: &str) -> Result<Requeue, kube::Error> {
        let Some(cached) = self.jobs.get(key) else {
            return Ok(None);
        };
        if let Err(wait) = time_left(&cached, Timestamp::now()) {
            return Ok(wait);
        }
        let (ns, name) = split_key(key);
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let fresh = match api.get(name).await {
            Ok(j) => j,
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Err(wait) = time_left(&fresh, Timestamp::now()) {
            return Ok(wait);
        }
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: fresh.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        tracing::debug!(job = %key, "deleting the finished job after its TTL");
        match api.delete(&fresh.name_any(), &params).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(ttl: Option<i32>, finished: Option<(&str, i64)>) -> Job {
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..JobSpec::default()
            }),
            status: Some(JobStatus {
                conditions: finished.map(|(t, at)| {
                    vec![JobCondition {
                        type_: t.into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(at).unwrap())),
                        ..JobCondition::default()
                    }]
                }),
                ..JobStatus::default()
            }),
            ..Job::default()
        }
    }

    #[test]
    fn finished_jobs_expire_ttl_seconds_after_their_condition() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(
            time_left(&job(Some(100), Some(("Complete", 950))), now),
            Err(Some(Duration::from_secs(50)))
        );
        assert_eq!(
            time_left(&job(Some(0), Some(("Failed", 1_000))), now),
            Ok(())
        );
        assert_eq!(
            time_left(&job(Some(10), Some(("Complete", 900))), now),
            Ok(())
        );
        // Running, or no TTL: never.
        assert_eq!(time_left(&job(Some(10), None), now), Err(None));
        assert_eq!(time_left(&job(None, Some(("Complete", 0))), now), Err(None));
        // An interim condition is not a finish.
        assert_eq!(
            time_left(&job(Some(0), Some(("SuccessCriteriaMet", 0))), now),
            Err(None)
        );
    }
}
