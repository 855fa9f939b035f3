//! Leader election on a coordination.k8s.io/v1 Lease, as kube's components do it: a candidate
//! takes the Lease when it is free or its holder stopped renewing for `lease_duration`, renews
//! it every `retry_period`, and gives up leadership (the caller should exit) when it could not
//! renew for `renew_deadline`. Two copies of a component can then run for availability with
//! one active.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (kube uses `hostname_uuid`).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElection {
    /// kube's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: &str, name: &str) -> LeaderElection {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        LeaderElection {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: format!("{}_{}", host.trim(), uuid::Uuid::new_v4()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What one attempt to take or renew the Lease found.
enum Attempt {
    Held,
    HeldByOther(String),
}

/// Waits until this candidate holds the Lease (or `shutdown`), then keeps renewing it in the
/// background; the returned token is cancelled when leadership is lost.
pub async fn acquire(
    leases: Api<Lease>,
    election: LeaderElection,
    shutdown: CancellationToken,
) -> Option<CancellationToken> {
    let mut last_holder = String::new();
    loop {
        match try_acquire_or_renew(&leases, &election).await {
            Ok(Attempt::Held) => break,
            Ok(Attempt::HeldByOther(holder)) => {
                if holder != last_holder {
                    tracing::info!(lease = %election.name, %holder, "waiting for the lease held by another candidate");
                    last_holder = holder;
                }
            }
            Err(error) => tracing::warn!(lease = %election.name, %error, "taking the lease failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(election.retry_period) => {}
        }
    }
    tracing::info!(lease = %election.name, identity = %election.identity, "became the leader");
    let lost = CancellationToken::new();
    tokio::spawn(renew(leases, election, shutdown, lost.clone()));
    Some(lost)
}

async fn renew(
    leases: Api<Lease>,
    election: LeaderElection,
    shutdown: CancellationToken,
    lost: CancellationToken,
) {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(election.retry_period) => {}
        }
        match try_acquire_or_renew(&leases, &election).await {
            Ok(Attempt::Held) => last_renewal = tokio::time::Instant::now(),
            Ok(Attempt::HeldByOther(holder)) => {
                tracing::error!(lease = %election.name, %holder, "lost the lease to another candidate");
                lost.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(lease = %election.name, %error, "renewing the lease failed");
                if last_renewal.elapsed() > election.renew_deadline {
                    tracing::error!(lease = %election.name, "could not renew the lease within the renew deadline");
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed.0.checked_add(duration).is_ok_and(|end| end < now)
}

async fn try_acquire_or_renew(
    leases: &Api<Lease>,
    election: &LeaderElection,
) -> Result<Attempt, kube::Error> {
    let seconds = i32::try_from(election.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let current = leases.get_opt(&election.name).await?;
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(election.name.clone()),
                namespace: Some(election.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(election.identity.clone()),
                lease_duration_seconds: Some(seconds),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(
                Attempt::HeldByOther(String::from("(just created by another candidate)")),
            ),
            Err(error) => Err(error),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let mine = holder == election.identity;
    if !mine && !holder.is_empty() && !expired(spec, Timestamp::now()) {
        return Ok(Attempt::HeldByOther(holder));
    }
    if !mine {
        spec.holder_identity = Some(election.identity.clone());
        spec.acquire_time = Some(now_micro());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(seconds);
    spec.renew_time = Some(now_micro());
    match leases
        .replace(&election.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Attempt::Held),
        Err(kube::Error::Api(status)) if status.is_conflict() => Ok(Attempt::HeldByOther(holder)),
        Err(error) => Err(error),
    }
}

/// kube's leader-election flags, shared by keel-scheduler and keel-controller-manager.
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderElectionFlags {
    /// Run only while holding the leader Lease, so that several copies can run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a leader's Lease is valid without renewal.
    #[arg(long, default_value = "15s", value_parser = crate::duration_flag::parse)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up.
    #[arg(long, default_value = "10s", value_parser = crate::duration_flag::parse)]
    pub leader_elect_renew_deadline: Duration,
    /// How often candidates try to take, and the leader to renew, the Lease.
    #[arg(long, default_value = "2s", value_parser = crate::duration_flag::parse)]
    pub leader_elect_retry_period: Duration,
    /// The namespace of the leader Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// The name of the leader Lease (default: the component's name).
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
}

/// Leadership was lost while working: the process should exit so another copy takes over.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader Lease {0}: exiting so that another copy takes over")]
pub struct LostLease(String);

/// Runs `work` (given a token cancelled on shutdown or lost leadership): at once without
/// leader election, else once this process holds the Lease (`default_name` unless the flags
/// name another).
pub async fn run_as_leader<F, Fut>(
    client: kube::Client,
    flags: &LeaderElectionFlags,
    default_name: &str,
    shutdown: CancellationToken,
    work: F,
) -> Result<(), LostLease>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if !flags.leader_elect {
        work(shutdown).await;
        return Ok(());
    }
    let name = flags
        .leader_elect_resource_name
        .clone()
        .unwrap_or_else(|| default_name.to_string());
    let mut election = LeaderElection::new(&flags.leader_elect_resource_namespace, &name);
    election.lease_duration = flags.leader_elect_lease_duration;
    election.renew_deadline = flags.leader_elect_renew_deadline;
    election.retry_period = flags.leader_elect_retry_period;
    let leases: Api<Lease> = Api::namespaced(client, &flags.leader_elect_resource_namespace);
    let Some(lost) = acquire(leases, election, shutdown.clone()).await else {
        return Ok(());
    };
    let stop = shutdown.child_token();
    let worker = work(stop.clone());
    tokio::pin!(worker);
    tokio::select! {
        _ = &mut worker => Ok(()),
        _ = lost.cancelled() => {
            stop.cancel();
            Err(LostLease(name))
        }
    }
}
