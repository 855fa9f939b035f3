//! The TTL-after-finished controller ("ttl-after-finished"): deletes a finished Job (Complete
//! or Failed) `spec.ttlSecondsAfterFinished` seconds after it finished, with Background
//! propagation so the garbage collector removes its pods. Before deleting it re-reads the Job
//! (the TTL may have been changed) and deletes with a uid precondition.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::job::{finish_time, is_finished};

/// Runs until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "ttl-after-finished reconcile");
            }
        })
        .await;
}

fn error_policy(_job: Arc<Job>, error: &kube::Error, _client: Arc<Client>) -> Action {
    tracing::debug!(%error, "ttl-after-finished failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

/// How long until `job` expires: None when it has no TTL, is not finished or is deleting;
/// zero when it is due.
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    if job.metadata.deletion_timestamp.is_some() || !is_finished(job) {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished =
        finish_time(job).or_else(|| job.status.as_ref()?.completion_time.as_ref().map(|t| t.0))?;
    let expires = finished + SignedDuration::from_secs(i64::from(ttl));
    Some(if now >= expires {
        Duration::ZERO
    } else {
        expires.duration_since(now).unsigned_abs()
    })
}

async fn reconcile(cached: Arc<Job>, client: Arc<Client>) -> Result<Action, kube::Error> {
    if time_left(&cached, Timestamp::now()).is_none() {
        return Ok(Action::await_change());
    }
    let jobs: Api<Job> =
        Api::namespaced((*client).clone(), &cached.namespace().unwrap_or_default());
    let Some(job) = jobs.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    match time_left(&job, Timestamp::now()) {
        None => Ok(Action::await_change()),
        Some(left) if !left.is_zero() => Ok(Action::requeue(left)),
        Some(_) => {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions {
                    uid: job.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            tracing::info!(job = %job.name_any(), "deleting a finished job whose TTL expired");
            match jobs.delete(&job.name_any(), &params).await {
                Ok(_) => Ok(Action::await_change()),
                Err(kube::Error::Api(status)) if status.is_not_found() => {
                    Ok(Action::await_change())
                }
                Err(error) => Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, finished_at: Option<&str>) -> Job {
        let conditions = finished_at
            .map(|t| json!([{"type": "Complete", "status": "True", "lastTransitionTime": t}]))
            .unwrap_or(json!([]));
        serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"ttlSecondsAfterFinished": ttl, "template": {}},
            "status": {"conditions": conditions}
        }))
        .expect("job")
    }

    #[test]
    fn expiry_counts_from_the_finish() {
        let now: Timestamp = "2024-01-01T00:00:10Z".parse().expect("time");
        assert_eq!(
            time_left(&job(Some(30), Some("2024-01-01T00:00:00Z")), now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            time_left(&job(Some(5), Some("2024-01-01T00:00:00Z")), now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            time_left(&job(None, Some("2024-01-01T00:00:00Z")), now),
            None
        );
        assert_eq!(time_left(&job(Some(0), None), now), None);
    }
}
