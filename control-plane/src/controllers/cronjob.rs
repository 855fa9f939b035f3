//! The CronJob controller ("cronjob"): at each time `spec.schedule` names (in `spec.timeZone`,
//! else UTC) it creates a Job `<cronjob>-<scheduled minutes since the epoch>` from the job
//! template, honouring `suspend`, `startingDeadlineSeconds` and `concurrencyPolicy`
//! (Allow/Forbid/Replace); keeps `status.active`, `lastScheduleTime` and `lastSuccessfulTime`;
//! and deletes finished Jobs beyond the history limits. The decision is the pure function
//! [`decide`] over an injected "now", so it is tested without waiting for the clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::job::{finish_time, has_condition, is_finished};
use crate::apiserver::cron::{CronSchedule, parse_cron};
use crate::events::{self, NORMAL, WARNING};

/// The annotation holding the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
const COMPONENT: &str = "cronjob-controller";
/// Beyond this many missed start times kube warns (TooManyMissedTimes).
const MISSED_LIMIT: usize = 100;

/// What happens to Jobs still running when the next one is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Concurrency {
    Allow,
    Forbid,
    Replace,
}

impl Concurrency {
    fn parse(text: Option<&str>) -> Concurrency {
        match text {
            Some("Forbid") => Concurrency::Forbid,
            Some("Replace") => Concurrency::Replace,
            _ => Concurrency::Allow,
        }
    }
}

/// A schedule in its time zone.
pub struct Schedule {
    pub cron: CronSchedule,
    pub zone: Option<jiff::tz::TimeZone>,
}

impl Schedule {
    /// Parses `spec.schedule` (a `CRON_TZ=`/`TZ=` prefix is refused as kube does) and loads
    /// `spec.timeZone` from the system's zoneinfo.
    pub fn new(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
        if schedule.contains("TZ=") {
            return Err("CRON_TZ or TZ used in schedule; use spec.timeZone instead".into());
        }
        let cron = parse_cron(schedule).map_err(|e| format!("unparseable schedule: {e}"))?;
        let zone = match time_zone {
            None | Some("") | Some("UTC") | Some("Etc/UTC") => None,
            Some(name) => {
                if name.contains("..") || name.starts_with('/') {
                    return Err(format!("unknown time zone {name}"));
                }
                let path = std::path::Path::new("/usr/share/zoneinfo").join(name);
                let data = std::fs::read(&path).map_err(|_| format!("unknown time zone {name}"))?;
                Some(
                    jiff::tz::TimeZone::tzif(name, &data)
                        .map_err(|e| format!("unknown time zone {name}: {e}"))?,
                )
            }
        };
        Ok(Schedule { cron, zone })
    }

    fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        let Some(zone) = &self.zone else {
            return t.naive_utc();
        };
        let Ok(ts) = jiff::Timestamp::from_second(t.timestamp()) else {
            return t.naive_utc();
        };
        let local = zone.to_datetime(ts);
        chrono::NaiveDate::from_ymd_opt(
            i32::from(local.year()),
            u32::try_from(local.month()).unwrap_or(1),
            u32::try_from(local.day()).unwrap_or(1),
        )
        .and_then(|d| {
            d.and_hms_opt(
                u32::try_from(local.hour()).unwrap_or(0),
                u32::try_from(local.minute()).unwrap_or(0),
                u32::try_from(local.second()).unwrap_or(0),
            )
        })
        .unwrap_or_else(|| t.naive_utc())
    }

    fn to_utc(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let Some(zone) = &self.zone else {
            return Some(DateTime::from_naive_utc_and_offset(local, Utc));
        };
        use chrono::{Datelike, Timelike};
        let civil = jiff::civil::DateTime::new(
            i16::try_from(local.year()).ok()?,
            i8::try_from(local.month()).ok()?,
            i8::try_from(local.day()).ok()?,
            i8::try_from(local.hour()).ok()?,
            i8::try_from(local.minute()).ok()?,
            0,
            0,
        )
        .ok()?;
        let ts = zone.to_ambiguous_timestamp(civil).compatible().ok()?;
        DateTime::from_timestamp(ts.as_second(), 0)
    }

    /// The first firing strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut local = self.to_local(t);
        // A DST gap can map a local time back before `t`: step until it is after.
        for _ in 0..4 {
            let next_local = self.cron.next_after_naive(local)?;
            let next = self.to_utc(next_local)?;
            if next > t {
                return Some(next);
            }
            local = next_local;
        }
        None
    }

    /// The latest firing in `(earliest, now]` and how many firings that range holds
    /// (counting stops past `MISSED_LIMIT`).
    pub fn most_recent(
        &self,
        earliest: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (Option<DateTime<Utc>>, usize) {
        let mut last = None;
        let mut count = 0;
        let mut t = earliest;
        while let Some(next) = self.next_after(t) {
            if next > now {
                return (last, count);
            }
            last = Some(next);
            count += 1;
            t = next;
            if count > MISSED_LIMIT {
                break;
            }
        }
        if count <= MISSED_LIMIT {
            return (last, count);
        }
        // Too many to walk: find the latest one in a window just before `now`.
        for window in [3600, 86_400, 31 * 86_400, 366 * 86_400, 5 * 366 * 86_400] {
            let start = (now - chrono::Duration::seconds(window)).max(t);
            let mut latest = None;
            let mut cursor = start;
            while let Some(next) = self.next_after(cursor) {
                if next > now {
                    break;
                }
                latest = Some(next);
                cursor = next;
            }
            if latest.is_some() {
                return (latest, count);
            }
        }
        (last, count)
    }
}

/// What the controller should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due.
    Wait,
    /// Start the Job for `at`; with Replace, the running Jobs go first.
    Run { at: DateTime<Utc>, replace: bool },
    /// `at` is due but a Job is still running and the policy is Forbid.
    Forbidden { at: DateTime<Utc> },
    /// `at` is older than startingDeadlineSeconds allows.
    Missed { at: DateTime<Utc> },
}

/// The inputs of one scheduling decision.
pub struct Inputs<'a> {
    pub schedule: &'a Schedule,
    /// lastScheduleTime, else the CronJob's creation time.
    pub earliest: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub starting_deadline_seconds: Option<i64>,
    pub concurrency: Concurrency,
    pub active_jobs: usize,
    pub suspended: bool,
}

/// The decision, whether more than 100 start times were missed, and when to look again.
pub fn decide(inputs: &Inputs<'_>) -> (Decision, bool, Option<DateTime<Utc>>) {
    let next = inputs.schedule.next_after(inputs.now);
    if inputs.suspended {
        return (Decision::Wait, false, None);
    }
    let mut earliest = inputs.earliest;
    if let Some(deadline) = inputs.starting_deadline_seconds {
        let window_start = inputs.now - chrono::Duration::seconds(deadline);
        earliest = earliest.max(window_start);
    }
    let (latest, count) = inputs.schedule.most_recent(earliest, inputs.now);
    let too_many = count > MISSED_LIMIT;
    let Some(at) = latest else {
        return (Decision::Wait, too_many, next);
    };
    if let Some(deadline) = inputs.starting_deadline_seconds
        && at + chrono::Duration::seconds(deadline) < inputs.now
    {
        return (Decision::Missed { at }, too_many, next);
    }
    let decision = match inputs.concurrency {
        Concurrency::Forbid if inputs.active_jobs > 0 => Decision::Forbidden { at },
        Concurrency::Replace => Decision::Run {
            at,
            replace: inputs.active_jobs > 0,
        },
        _ => Decision::Run { at, replace: false },
    };
    (decision, too_many, next)
}

/// `<cronjob>-<minutes since the epoch>`, as kube names scheduled Jobs.
pub fn job_name(cronjob: &str, at: DateTime<Utc>) -> String {
    format!("{cronjob}-{}", at.timestamp().div_euclid(60))
}

fn to_chrono(t: &Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), 0)
}

fn to_time(t: DateTime<Utc>) -> Option<Time> {
    jiff::Timestamp::from_second(t.timestamp()).ok().map(Time)
}

/// The Job a CronJob starts for `at`.
pub fn job_for(cronjob: &CronJob, at: DateTime<Utc>, schedule: &Schedule) -> Job {
    let template = cronjob
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = Some(job_name(&cronjob.name_any(), at));
    metadata.generate_name = None;
    metadata.namespace = cronjob.namespace();
    let local = schedule.to_local(at);
    let stamp = match &schedule.zone {
        Some(zone) => jiff::Timestamp::from_second(at.timestamp())
            .map(|ts| {
                ts.to_zoned(zone.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            })
            .unwrap_or_else(|_| local.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        None => at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(SCHEDULED_TIMESTAMP.into(), stamp);
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "batch/v1".into(),
        kind: "CronJob".into(),
        name: cronjob.name_any(),
        uid: cronjob.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    Job {
        metadata,
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

/// Runs until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client.clone()), watcher::Config::default())
    .graceful_shutdown_on(shutdown.cancelled_owned())
    .run(reconcile, error_policy, Arc::new(client))
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "cronjob reconcile");
        }
    })
    .await;
}

fn error_policy(_cj: Arc<CronJob>, error: &kube::Error, _client: Arc<Client>) -> Action {
    tracing::debug!(%error, "cronjob sync failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

async fn reconcile(cached: Arc<CronJob>, client: Arc<Client>) -> Result<Action, kube::Error> {
    let client = (*client).clone();
    let namespace = cached.namespace().unwrap_or_default();
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), &namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let Some(mut cronjob) = cronjobs.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if cronjob.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = cronjob.metadata.uid.clone().unwrap_or_default();
    let spec = cronjob.spec.clone().unwrap_or_default();
    let owned: Vec<Job> = jobs
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .collect();

    // Active list and lastSuccessfulTime from the Jobs as they are.
    let mut status = cronjob.status.clone().unwrap_or_default();
    let before = status.clone();
    let running: Vec<&Job> = owned.iter().filter(|j| !is_finished(j)).collect();
    for job in owned.iter().filter(|j| is_finished(j)) {
        let was_active = status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid == job.metadata.uid);
        if was_active {
            let condition = if has_condition(job, "Complete") {
                "Complete"
            } else {
                "Failed"
            };
            let message = format!(
                "Saw completed job: {}, condition: {condition}",
                job.name_any()
            );
            events::record_about(
                &client,
                COMPONENT,
                &cronjob,
                NORMAL,
                "SawCompletedJob",
                &message,
            )
            .await;
        }
        if has_condition(job, "Complete")
            && let Some(done) = job
                .status
                .as_ref()
                .and_then(|s| s.completion_time.as_ref().map(|t| t.0))
                .or_else(|| finish_time(job))
            && status
                .last_successful_time
                .as_ref()
                .is_none_or(|t| t.0 < done)
        {
            status.last_successful_time = Some(Time(done));
        }
    }
    // Only Jobs this controller started stay active; others it merely notes (as kube does).
    let mut active: Vec<ObjectReference> = Vec::new();
    for job in &running {
        let listed = status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid == job.metadata.uid);
        if listed {
            active.push(reference(job));
        } else {
            let message = format!(
                "Saw a job that the controller did not create or forgot: {}",
                job.name_any()
            );
            events::record_about(
                &client,
                COMPONENT,
                &cronjob,
                WARNING,
                "UnexpectedJob",
                &message,
            )
            .await;
        }
    }

    // History limits.
    delete_history(
        &client,
        &cronjob,
        &jobs,
        &owned,
        true,
        spec.successful_jobs_history_limit.unwrap_or(3),
    )
    .await;
    delete_history(
        &client,
        &cronjob,
        &jobs,
        &owned,
        false,
        spec.failed_jobs_history_limit.unwrap_or(1),
    )
    .await;

    let now = Utc::now();
    let mut requeue = None;
    match Schedule::new(&spec.schedule, spec.time_zone.as_deref()) {
        Err(message) => {
            events::record_about(
                &client,
                COMPONENT,
                &cronjob,
                WARNING,
                "UnparseableSchedule",
                &message,
            )
            .await;
        }
        Ok(schedule) => {
            let earliest = status
                .last_schedule_time
                .as_ref()
                .and_then(to_chrono)
                .or_else(|| {
                    cronjob
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .and_then(to_chrono)
                })
                .unwrap_or(now);
            let inputs = Inputs {
                schedule: &schedule,
                earliest,
                now,
                starting_deadline_seconds: spec.starting_deadline_seconds,
                concurrency: Concurrency::parse(spec.concurrency_policy.as_deref()),
                active_jobs: active.len(),
                suspended: spec.suspend == Some(true),
            };
            let (decision, too_many, next) = decide(&inputs);
            if too_many {
                events::record_about(&client, COMPONENT, &cronjob, WARNING, "TooManyMissedTimes",
                    "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew").await;
            }
            requeue =
                next.map(|n| (n - now).to_std().unwrap_or_default() + Duration::from_millis(100));
            match decision {
                Decision::Wait => {}
                Decision::Missed { at } => {
                    let message =
                        format!("Missed scheduled time to start a job: {}", at.to_rfc3339());
                    events::record_about(
                        &client,
                        COMPONENT,
                        &cronjob,
                        WARNING,
                        "MissSchedule",
                        &message,
                    )
                    .await;
                }
                Decision::Forbidden { at } => {
                    tracing::debug!(cronjob = %cronjob.name_any(), %at, "not starting: a job is still running and the policy is Forbid");
                    // Retried when the running Job finishes (it is owned, so it wakes us).
                }
                Decision::Run { at, replace } => {
                    let already = owned
                        .iter()
                        .any(|j| j.name_any() == job_name(&cronjob.name_any(), at));
                    if !already {
                        if replace {
                            for job in &running {
                                delete_job(&client, &cronjob, &jobs, job).await;
                            }
                            active.clear();
                        }
                        let job = job_for(&cronjob, at, &schedule);
                        match jobs.create(&PostParams::default(), &job).await {
                            Ok(created) => {
                                let message = format!("Created job {}", created.name_any());
                                events::record_about(
                                    &client,
                                    COMPONENT,
                                    &cronjob,
                                    NORMAL,
                                    "SuccessfulCreate",
                                    &message,
                                )
                                .await;
                                active.push(reference(&created));
                            }
                            Err(kube::Error::Api(s)) if s.code == 409 => {}
                            Err(error) => {
                                let message = format!("Error creating job: {error}");
                                events::record_about(
                                    &client,
                                    COMPONENT,
                                    &cronjob,
                                    WARNING,
                                    "FailedCreate",
                                    &message,
                                )
                                .await;
                                return Err(error);
                            }
                        }
                    }
                    status.last_schedule_time = to_time(at);
                }
            }
        }
    }
    status.active = (!active.is_empty()).then_some(active);
    if status != before {
        cronjob.status = Some(status);
        cronjobs
            .replace_status(&cronjob.name_any(), &PostParams::default(), &cronjob)
            .await?;
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Deletes the oldest finished Jobs (successful or failed ones) beyond `limit`.
async fn delete_history(
    client: &Client,
    cronjob: &CronJob,
    jobs: &Api<Job>,
    owned: &[Job],
    successful: bool,
    limit: i32,
) {
    let mut finished: Vec<&Job> = owned
        .iter()
        .filter(|j| j.metadata.deletion_timestamp.is_none())
        .filter(|j| {
            if successful {
                has_condition(j, "Complete")
            } else {
                has_condition(j, "Failed")
            }
        })
        .collect();
    let keep = usize::try_from(limit.max(0)).unwrap_or(0);
    if finished.len() <= keep {
        return;
    }
    finished.sort_by_key(|j| {
        j.status
            .as_ref()
            .and_then(|s| s.start_time.clone())
            .or_else(|| j.metadata.creation_timestamp.clone())
    });
    let excess = finished.len() - keep;
    for job in finished.into_iter().take(excess) {
        delete_job(client, cronjob, jobs, job).await;
    }
}

async fn delete_job(client: &Client, cronjob: &CronJob, jobs: &Api<Job>, job: &Job) {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match jobs.delete(&job.name_any(), &params).await {
        Ok(_) => {
            let message = format!("Deleted job {}", job.name_any());
            events::record_about(
                client,
                COMPONENT,
                cronjob,
                NORMAL,
                "SuccessfulDelete",
                &message,
            )
            .await;
        }
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(error) => tracing::warn!(%error, job = %job.name_any(), "deleting a cronjob's job"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("time")
    }

    fn inputs<'a>(schedule: &'a Schedule, earliest: &str, now: &str) -> Inputs<'a> {
        Inputs {
            schedule,
            earliest: at(earliest),
            now: at(now),
            starting_deadline_seconds: None,
            concurrency: Concurrency::Allow,
            active_jobs: 0,
            suspended: false,
        }
    }

    #[test]
    fn runs_the_latest_due_time_and_wakes_for_the_next() {
        let schedule = Schedule::new("*/5 * * * *", None).expect("schedule");
        let (decision, too_many, next) = decide(&inputs(
            &schedule,
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:12:30Z",
        ));
        assert_eq!(
            decision,
            Decision::Run {
                at: at("2024-01-01T00:10:00Z"),
                replace: false
            }
        );
        assert!(!too_many);
        assert_eq!(next, Some(at("2024-01-01T00:15:00Z")));
        let (decision, _, _) = decide(&inputs(
            &schedule,
            "2024-01-01T00:10:00Z",
            "2024-01-01T00:12:30Z",
        ));
        assert_eq!(decision, Decision::Wait);
    }

    #[test]
    fn starting_deadline_skips_stale_times() {
        let schedule = Schedule::new("0 * * * *", None).expect("schedule");
        let mut input = inputs(&schedule, "2024-01-01T00:30:00Z", "2024-01-01T01:05:00Z");
        input.starting_deadline_seconds = Some(60);
        assert_eq!(
            decide(&input).0,
            Decision::Wait,
            "01:00 lies before now-60s"
        );
        input.starting_deadline_seconds = Some(600);
        assert_eq!(
            decide(&input).0,
            Decision::Run {
                at: at("2024-01-01T01:00:00Z"),
                replace: false
            }
        );
        // Earliest inside the window but the due time itself too old.
        let mut input = inputs(&schedule, "2024-01-01T00:30:00Z", "2024-01-01T01:05:00Z");
        input.starting_deadline_seconds = Some(200);
        input.earliest = at("2024-01-01T00:59:00Z");
        assert_eq!(decide(&input).0, Decision::Wait);
    }

    #[test]
    fn concurrency_policies() {
        let schedule = Schedule::new("* * * * *", None).expect("schedule");
        let mut input = inputs(&schedule, "2024-01-01T00:00:00Z", "2024-01-01T00:01:10Z");
        input.active_jobs = 1;
        input.concurrency = Concurrency::Forbid;
        assert_eq!(
            decide(&input).0,
            Decision::Forbidden {
                at: at("2024-01-01T00:01:00Z")
            }
        );
        input.concurrency = Concurrency::Replace;
        assert_eq!(
            decide(&input).0,
            Decision::Run {
                at: at("2024-01-01T00:01:00Z"),
                replace: true
            }
        );
        input.concurrency = Concurrency::Allow;
        assert_eq!(
            decide(&input).0,
            Decision::Run {
                at: at("2024-01-01T00:01:00Z"),
                replace: false
            }
        );
        input.suspended = true;
        assert_eq!(decide(&input).0, Decision::Wait);
    }

    #[test]
    fn many_missed_times_are_reported_and_the_latest_runs() {
        let schedule = Schedule::new("* * * * *", None).expect("schedule");
        let (decision, too_many, _) = decide(&inputs(
            &schedule,
            "2024-01-01T00:00:00Z",
            "2024-01-03T10:30:20Z",
        ));
        assert!(too_many);
        assert_eq!(
            decision,
            Decision::Run {
                at: at("2024-01-03T10:30:00Z"),
                replace: false
            }
        );
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let Ok(schedule) = Schedule::new("0 9 * * *", Some("Europe/Berlin")) else {
            assert!(!std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin").exists());
            return;
        };
        // 09:00 in Berlin in winter is 08:00 UTC, in summer 07:00 UTC.
        assert_eq!(
            schedule.next_after(at("2024-01-10T00:00:00Z")),
            Some(at("2024-01-10T08:00:00Z"))
        );
        assert_eq!(
            schedule.next_after(at("2024-07-10T00:00:00Z")),
            Some(at("2024-07-10T07:00:00Z"))
        );
        assert!(Schedule::new("* * * * *", Some("Not/AZone")).is_err());
        assert!(Schedule::new("CRON_TZ=UTC * * * * *", None).is_err());
    }

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        assert_eq!(
            job_name("backup", at("2024-01-01T00:10:00Z")),
            "backup-28401130"
        );
    }
}
