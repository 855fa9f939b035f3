//! The Job controller ("job"): runs a Job's pods to completion. Creates pods from the
//! template (owned by the Job, with the `batch.kubernetes.io/job-tracking` finalizer so no
//! finished pod goes uncounted), counts finished pods exactly once through
//! `status.uncountedTerminatedPods`, and decides: `completions`/`parallelism` (NonIndexed and
//! Indexed), `backoffLimit` (BackoffLimitExceeded), `activeDeadlineSeconds` (DeadlineExceeded),
//! `suspend`, `podFailurePolicy` (FailJob, FailIndex, Ignore, Count; `pod_failure_policy`),
//! `backoffLimitPerIndex`/`maxFailedIndexes` (`status.failedIndexes`, FailedIndexes,
//! MaxFailedIndexesExceeded) and `successPolicy` (`success_policy`). Like kube 1.32 it first
//! sets `FailureTarget`/`SuccessCriteriaMet` and adds the terminal `Failed`/`Complete`
//! condition once no pod of the Job is still running.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicy, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher::{self, Event as WatchEvent};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::Context;
use crate::events::{self, NORMAL, WARNING};

mod pod_failure_policy;
mod success_policy;

use pod_failure_policy::{FailureAction, match_pod};

/// The finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label naming an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Annotations counting an index's earlier failures (backoffLimitPerIndex), counted and ignored.
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
const COMPONENT: &str = "job-controller";
const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// The first retry after a failure waits this long, doubling per failure up to `MAX_BACKOFF`.
const BASE_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(360);

struct JobController {
    client: Client,
    /// When each Job (by uid) last counted a failed pod, for the retry backoff.
    last_failure: Mutex<HashMap<String, Instant>>,
    /// When failed pods that report no finish time were first seen (by pod uid), for the
    /// per-index backoff.
    failure_seen: Mutex<HashMap<String, Instant>>,
}

/// Runs the Job controller until `shutdown`.
pub async fn run(ctx: Arc<Context>, shutdown: CancellationToken) {
    let client = ctx.client.clone();
    let controller = Arc::new(JobController {
        client: client.clone(),
        last_failure: Mutex::new(HashMap::new()),
        failure_seen: Mutex::new(HashMap::new()),
    });
    let sweeper = tokio::spawn(release_orphaned_pods(client.clone()));
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client), watcher::Config::default())
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, controller)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "job reconcile");
            }
        })
        .await;
    sweeper.abort();
}

fn error_policy(_job: Arc<Job>, error: &kube::Error, _ctx: Arc<JobController>) -> Action {
    tracing::debug!(%error, "job sync failed; retrying");
    Action::requeue(Duration::from_millis(500))
}

/// Whether a Job condition of `type_` is True.
pub fn has_condition(job: &Job, type_: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Complete or Failed: the Job will not run pods again.
pub fn is_finished(job: &Job) -> bool {
    has_condition(job, "Complete") || has_condition(job, "Failed")
}

/// When a finished Job finished (its terminal condition's transition time).
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && !is_deleting(pod)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

fn completion_index(pod: &Pod) -> Option<i32> {
    pod.annotations()
        .get(COMPLETION_INDEX)
        .and_then(|v| v.parse().ok())
        .filter(|i| *i >= 0)
}

/// How a Job judges its failed pods: the podFailurePolicy, whether a pod still terminating
/// counts as failed, and (Indexed Jobs) the backoff limit per index.
struct FailureRules<'a> {
    policy: Option<&'a PodFailurePolicy>,
    /// kube's "only replace failed pods": a deleted pod is failed only once it is Failed.
    only_replace_failed: bool,
    per_index_limit: Option<i32>,
    /// For Indexed Jobs, the completions (indexes are below it).
    completions: Option<i32>,
}

impl<'a> FailureRules<'a> {
    fn of(spec: &'a JobSpec, indexed: bool) -> Self {
        let policy = spec.pod_failure_policy.as_ref();
        FailureRules {
            policy,
            only_replace_failed: policy.is_some()
                || spec.pod_replacement_policy.as_deref() == Some("Failed"),
            per_index_limit: spec.backoff_limit_per_index.filter(|_| indexed),
            completions: spec.completions.filter(|_| indexed),
        }
    }

    /// Failed, or deleted before it finished when terminating pods count as failed.
    fn is_pod_failed(&self, pod: &Pod) -> bool {
        phase(pod) == "Failed"
            || (!self.only_replace_failed && is_deleting(pod) && phase(pod) != "Succeeded")
    }

    /// The pod's completion index, if it is one of the Job's.
    fn index_of(&self, pod: &Pod) -> Option<i32> {
        let completions = self.completions?;
        completion_index(pod).filter(|i| *i < completions)
    }

    /// Whether this failed pod fails its index: a FailIndex rule matched, or a counted
    /// failure when the index already failed `backoffLimitPerIndex` times.
    fn fails_index(&self, pod: &Pod) -> bool {
        let Some(limit) = self.per_index_limit else {
            return false;
        };
        if !self.is_pod_failed(pod) || self.index_of(pod).is_none() {
            return false;
        }
        match match_pod(self.policy, pod) {
            Some(FailureAction::FailIndex) => true,
            Some(action) if !action.counts() => false,
            _ => annotation_count(pod, INDEX_FAILURE_COUNT) >= limit,
        }
    }
}

/// A non-negative count from a pod annotation (0 when missing or malformed, as kube reads it).
fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.annotations()
        .get(key)
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .unwrap_or(0)
}

/// The FailJob message of the first failed pod a FailJob rule matches.
fn fail_job_message(rules: &FailureRules<'_>, pods: &[Pod]) -> Option<String> {
    rules.policy?;
    pods.iter()
        .filter(|p| rules.is_pod_failed(p))
        .find_map(|p| match match_pod(rules.policy, p) {
            Some(FailureAction::FailJob(message)) => Some(message),
            _ => None,
        })
}

/// Per index that is neither done, failed nor running, the latest failed pod still held by
/// the tracking finalizer: kept until its replacement exists, so that the replacement carries
/// the index's failure counts forward (backoffLimitPerIndex only).
fn delayed_failures<'p>(
    pods: &'p [Pod],
    rules: &FailureRules<'_>,
    completed: &BTreeSet<i32>,
    failed: &BTreeSet<i32>,
) -> BTreeMap<i32, &'p Pod> {
    let mut delayed: BTreeMap<i32, &Pod> = BTreeMap::new();
    if rules.per_index_limit.is_none() {
        return delayed;
    }
    let running: BTreeSet<i32> = pods
        .iter()
        .filter(|p| is_active(p))
        .filter_map(|p| rules.index_of(p))
        .collect();
    let attempts = |p: &Pod| {
        annotation_count(p, INDEX_FAILURE_COUNT) + annotation_count(p, INDEX_IGNORED_FAILURE_COUNT)
    };
    for pod in pods
        .iter()
        .filter(|p| has_tracking_finalizer(p) && rules.is_pod_failed(p))
    {
        let Some(index) = rules.index_of(pod) else {
            continue;
        };
        if completed.contains(&index) || failed.contains(&index) || running.contains(&index) {
            continue;
        }
        let later = |other: &Pod| {
            (attempts(pod), finished_at(pod)) >= (attempts(other), finished_at(other))
        };
        if delayed.get(&index).is_none_or(|other| later(other)) {
            delayed.insert(index, pod);
        }
    }
    delayed
}

/// When the pod's last container finished, as the kubelet reported it.
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
}

/// The counts each index's replacement pod carries and its remaining per-index backoff
/// (10 s doubling per attempt of the index, from when the failed pod finished).
fn index_replacements(
    controller: &JobController,
    rules: &FailureRules<'_>,
    delayed: &BTreeMap<i32, &Pod>,
) -> BTreeMap<i32, Replacement> {
    let mut replacements = BTreeMap::new();
    for (index, pod) in delayed {
        let counts = match_pod(rules.policy, pod).is_none_or(|a| a.counts());
        let failures = annotation_count(pod, INDEX_FAILURE_COUNT) + i32::from(counts);
        let ignored = annotation_count(pod, INDEX_IGNORED_FAILURE_COUNT) + i32::from(!counts);
        let attempts = u32::try_from(failures + ignored).unwrap_or(1).max(1);
        let backoff = BASE_BACKOFF
            .saturating_mul(2u32.saturating_pow((attempts - 1).min(16)))
            .min(MAX_BACKOFF);
        let elapsed = match finished_at(pod) {
            Some(at) => Timestamp::now().duration_since(at).unsigned_abs(),
            None => {
                // No finish time reported: back off from when this controller saw it.
                let key = pod.metadata.uid.clone().unwrap_or_default();
                let mut seen = controller
                    .failure_seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                seen.entry(key).or_insert_with(Instant::now).elapsed()
            }
        };
        let wait = (elapsed < backoff).then(|| backoff - elapsed);
        replacements.insert(
            *index,
            Replacement {
                failures,
                ignored,
                wait,
            },
        );
    }
    replacements
}

/// A label selector as the `labelSelector` query parameter spells it.
pub fn selector_query(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.clone().unwrap_or_default().join(",");
        let key = &expression.key;
        parts.push(match expression.operator.as_str() {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.clone(),
            _ => format!("!{key}"),
        });
    }
    parts.join(",")
}

/// `"0-2,4"` → {0,1,2,4}; malformed pieces are skipped.
pub fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for piece in text.split(',').filter(|p| !p.is_empty()) {
        match piece.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = piece.parse() {
                    set.insert(i);
                }
            }
        }
    }
    set
}

/// {0,1,2,4,6,7} → `"0-2,4,6,7"` (kube's form: two neighbours are listed, not a range).
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(match end - start {
            0 => start.to_string(),
            1 => format!("{start},{end}"),
            _ => format!("{start}-{end}"),
        });
    }
    parts.join(",")
}

fn set_condition(status: &mut JobStatus, type_: &str, value: bool, reason: &str, message: &str) {
    let now = Time(Timestamp::now());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let wanted = if value { "True" } else { "False" };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != wanted {
                existing.last_transition_time = Some(now.clone());
            }
            existing.status = wanted.into();
            existing.reason = Some(reason.into());
            existing.message = Some(message.into());
            existing.last_probe_time = Some(now);
        }
        None => conditions.push(JobCondition {
            type_: type_.into(),
            status: wanted.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now),
        }),
    }
}

fn condition_reason(job_status: &JobStatus, type_: &str) -> Option<(String, String)> {
    job_status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

async fn reconcile(
    cached: Arc<Job>,
    controller: Arc<JobController>,
) -> Result<Action, kube::Error> {
    let namespace = cached.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(controller.client.clone(), &namespace);
    let Some(job) = jobs.get_opt(&cached.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if job.metadata.uid != cached.metadata.uid {
        return Ok(Action::await_change());
    }
    sync(&controller, &jobs, job).await
}

/// One pass over a Job: count, decide, act, write the status.
async fn sync(
    controller: &JobController,
    jobs: &Api<Job>,
    mut job: Job,
) -> Result<Action, kube::Error> {
    let namespace = job.namespace().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(controller.client.clone(), &namespace);
    let spec = job.spec.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let suspended = spec.suspend == Some(true);
    let selector = spec
        .selector
        .as_ref()
        .map(selector_query)
        .unwrap_or_default();
    if selector.is_empty() {
        return Ok(Action::await_change());
    }
    let listed = pods_api
        .list(&ListParams::default().labels(&selector))
        .await?;
    let pods: Vec<Pod> = listed
        .items
        .into_iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .collect();

    // 1. Record newly finished pods as uncounted, then release their finalizers.
    let rules = FailureRules::of(&spec, indexed);
    let mut status = job.status.clone().unwrap_or_default();
    let failing = condition_reason(&status, "FailureTarget").is_some();
    let succeeding = condition_reason(&status, "SuccessCriteriaMet").is_some();
    let mut uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or(""));
    let previously_failed = parse_indexes(status.failed_indexes.as_deref().unwrap_or(""));
    let mut failed_indexes = previously_failed.clone();
    failed_indexes.extend(
        pods.iter()
            .filter(|p| has_tracking_finalizer(p) && rules.fails_index(p))
            .filter_map(|p| rules.index_of(p)),
    );
    let delayed = if failing || succeeding {
        BTreeMap::new()
    } else {
        delayed_failures(&pods, &rules, &completed, &failed_indexes)
    };
    let is_delayed = |pod: &Pod| delayed.values().any(|d| d.metadata.uid == pod.metadata.uid);
    let mut newly_uncounted = false;
    let mut new_failures = 0;
    let mut ignored = BTreeSet::new();
    for pod in pods.iter().filter(|p| has_tracking_finalizer(p)) {
        if is_active(pod) {
            continue;
        }
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let listed_already = uncounted.succeeded.iter().flatten().any(|u| *u == pod_uid)
            || uncounted.failed.iter().flatten().any(|u| *u == pod_uid);
        if listed_already {
            continue;
        }
        if phase(pod) == "Succeeded" {
            if indexed && let Some(index) = rules.index_of(pod) {
                completed.insert(index);
            }
            uncounted
                .succeeded
                .get_or_insert_with(Vec::new)
                .push(pod_uid);
            newly_uncounted = true;
            continue;
        }
        // A pod deleted before it finished counts as failed (unless the Job is suspended,
        // which deletes its pods on purpose, or only Failed pods count); once the Job is
        // failing, every pod that has not finished counts as failed.
        let failed = rules.is_pod_failed(pod) && (phase(pod) == "Failed" || !suspended);
        if !(failed || failing) || is_delayed(pod) {
            continue;
        }
        new_failures += 1;
        let action = match_pod(rules.policy, pod).filter(|_| failed);
        if action.is_some_and(|a| !a.counts()) {
            ignored.insert(pod_uid);
            continue;
        }
        uncounted.failed.get_or_insert_with(Vec::new).push(pod_uid);
        newly_uncounted = true;
    }
    if newly_uncounted || failed_indexes != previously_failed {
        status.uncounted_terminated_pods = Some(uncounted.clone());
        if indexed {
            status.completed_indexes = Some(format_indexes(&completed));
        }
        if rules.per_index_limit.is_some() {
            status.failed_indexes = Some(format_indexes(&failed_indexes));
        }
        job.status = Some(status.clone());
        job = jobs
            .replace_status(&job.name_any(), &PostParams::default(), &job)
            .await?;
    }
    if new_failures > 0 {
        controller
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.clone(), Instant::now());
    }
    let mut released = BTreeSet::new();
    for pod in pods.iter().filter(|p| has_tracking_finalizer(p)) {
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let counted = uncounted.succeeded.iter().flatten().any(|u| *u == pod_uid)
            || uncounted.failed.iter().flatten().any(|u| *u == pod_uid)
            || ignored.contains(&pod_uid);
        // Pods deleted on purpose (suspension, or the Job met its success criteria) are
        // released without being counted.
        let unfinished_deletion = is_deleting(pod) && !is_terminal(pod);
        if counted || ((suspended || succeeding) && unfinished_deletion) {
            remove_tracking_finalizer(&pods_api, pod).await?;
            released.insert(pod_uid);
        }
    }
    // Uncounted pods that are released (or gone) move to the counters.
    let still_tracked = |u: &String| {
        pods.iter().any(|p| {
            p.metadata.uid.as_ref() == Some(u) && has_tracking_finalizer(p) && !released.contains(u)
        })
    };
    let mut status = job.status.clone().unwrap_or_default();
    if rules.per_index_limit.is_some() {
        status.failed_indexes = Some(format_indexes(&failed_indexes));
    }
    let mut succeeded = status.succeeded.unwrap_or(0);
    let mut failed = status.failed.unwrap_or(0);
    let mut remaining = UncountedTerminatedPods::default();
    for u in uncounted.succeeded.iter().flatten() {
        if still_tracked(u) {
            remaining
                .succeeded
                .get_or_insert_with(Vec::new)
                .push(u.clone());
        } else if !indexed {
            succeeded += 1;
        }
    }
    for u in uncounted.failed.iter().flatten() {
        if still_tracked(u) {
            remaining
                .failed
                .get_or_insert_with(Vec::new)
                .push(u.clone());
        } else {
            failed += 1;
        }
    }
    if indexed {
        succeeded = i32::try_from(completed.len()).unwrap_or(i32::MAX);
    }
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.uncounted_terminated_pods = Some(remaining.clone());
    let uncounted_left =
        remaining.succeeded.iter().flatten().count() + remaining.failed.iter().flatten().count();

    let mut active: Vec<&Pod> = pods.iter().filter(|p| is_active(p)).collect();
    let terminating = pods
        .iter()
        .filter(|p| is_deleting(p) && !is_terminal(p))
        .count();
    let mut requeue: Option<Duration> = None;

    if !is_finished(&job) {
        let now = Timestamp::now();
        let backoff_limit = spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT);
        let completions = spec.completions;
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let success = if indexed {
            completions.is_some_and(|c| succeeded >= c)
        } else {
            match completions {
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active.is_empty(),
            }
        };
        let mut success_met = condition_reason(&status, "SuccessCriteriaMet");
        let mut failure = condition_reason(&status, "FailureTarget");
        if failure.is_none() && success_met.is_none() {
            failure = fail_job_message(&rules, &pods)
                .map(|message| ("PodFailurePolicy".to_string(), message));
        }
        if failure.is_none() && success_met.is_none() && !success {
            if failed > backoff_limit {
                failure = Some((
                    "BackoffLimitExceeded".into(),
                    "Job has reached the specified backoff limit".into(),
                ));
            } else if let (Some(deadline), Some(start), false) = (
                spec.active_deadline_seconds,
                status.start_time.as_ref(),
                suspended,
            ) {
                let ends = start.0 + SignedDuration::from_secs(deadline);
                if now >= ends {
                    failure = Some((
                        "DeadlineExceeded".into(),
                        "Job was active longer than specified deadline".into(),
                    ));
                } else {
                    let left = ends.duration_since(now).unsigned_abs();
                    requeue = Some(left + Duration::from_millis(50));
                }
            }
        }
        if failure.is_none() && success_met.is_none() && rules.per_index_limit.is_some() {
            let failed_count = failed_indexes.len();
            let done = failed_count + completed.len();
            if spec
                .max_failed_indexes
                .is_some_and(|max| failed_count > usize::try_from(max).unwrap_or(0))
            {
                failure = Some((
                    "MaxFailedIndexesExceeded".into(),
                    "Job has exceeded the specified maximal number of failed indexes".into(),
                ));
            } else if failed_count > 0
                && done >= usize::try_from(completions.unwrap_or(0)).unwrap_or(0)
            {
                failure = Some(("FailedIndexes".into(), "Job has failed indexes".into()));
            }
        }
        if failure.is_none() && success_met.is_none() && indexed {
            success_met = success_policy::matched(
                spec.success_policy.as_ref(),
                completions.unwrap_or(0),
                &completed,
            )
            .map(|message| ("SuccessPolicy".to_string(), message));
        }
        if failure.is_none() && success_met.is_none() && success {
            success_met = Some((
                "CompletionsReached".into(),
                "Reached expected number of succeeded pods".into(),
            ));
        }
        if let Some((reason, message)) = failure {
            if condition_reason(&status, "FailureTarget").is_none() {
                set_condition(&mut status, "FailureTarget", true, &reason, &message);
            }
            delete_pods(controller, &job, &pods_api, &active).await?;
            active.clear();
            if terminating == 0 && uncounted_left == 0 && all_released(&pods, &released) {
                set_condition(&mut status, "Failed", true, &reason, &message);
                events::record_about(
                    &controller.client,
                    COMPONENT,
                    &job,
                    WARNING,
                    &reason,
                    &message,
                )
                .await;
            } else {
                requeue = Some(Duration::from_millis(200));
            }
        } else if let Some((reason, message)) = success_met {
            if !has_condition(&job, "SuccessCriteriaMet") {
                set_condition(&mut status, "SuccessCriteriaMet", true, &reason, &message);
            }
            delete_pods(controller, &job, &pods_api, &active).await?;
            active.clear();
            if terminating == 0 && uncounted_left == 0 && all_released(&pods, &released) {
                set_condition(&mut status, "Complete", true, &reason, &message);
                status.completion_time = Some(Time(now));
                events::record_about(
                    &controller.client,
                    COMPONENT,
                    &job,
                    NORMAL,
                    "Completed",
                    "Job completed",
                )
                .await;
            } else {
                requeue = Some(Duration::from_millis(200));
            }
        } else if suspended {
            delete_pods(controller, &job, &pods_api, &active).await?;
            active.clear();
            if !has_condition(&job, "Suspended") {
                set_condition(
                    &mut status,
                    "Suspended",
                    true,
                    "JobSuspended",
                    "Job suspended",
                );
                status.start_time = None;
                events::record_about(
                    &controller.client,
                    COMPONENT,
                    &job,
                    NORMAL,
                    "Suspended",
                    "Job suspended",
                )
                .await;
            }
        } else {
            if has_condition(&job, "Suspended") {
                set_condition(&mut status, "Suspended", false, "JobResumed", "Job resumed");
                status.start_time = Some(Time(now));
                events::record_about(
                    &controller.client,
                    COMPONENT,
                    &job,
                    NORMAL,
                    "Resumed",
                    "Job resumed",
                )
                .await;
            }
            if status.start_time.is_none() {
                status.start_time = Some(Time(now));
                if let Some(deadline) = spec.active_deadline_seconds {
                    requeue = Some(Duration::from_secs(deadline.max(0).unsigned_abs()));
                }
            }
            // Per-index backoff replaces the Job-wide one.
            let wait = if rules.per_index_limit.is_some() {
                None
            } else {
                retry_wait(controller, &uid, failed)
            };
            if let Some(wait) = wait {
                requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
            }
            let plan = IndexPlan {
                completed: &completed,
                failed: &failed_indexes,
                terminating: pods
                    .iter()
                    .filter(|p| rules.only_replace_failed && is_deleting(p) && !is_terminal(p))
                    .filter_map(completion_index)
                    .collect(),
                replacing: index_replacements(controller, &rules, &delayed),
            };
            if let Some(wait) = plan.replacing.values().filter_map(|r| r.wait).min() {
                requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
            }
            manage_pods(
                controller,
                &job,
                &pods_api,
                &mut active,
                indexed.then_some(&plan),
                succeeded,
                parallelism,
                wait.is_none(),
                // Pods still terminating keep their place when only Failed pods are replaced.
                if rules.only_replace_failed {
                    i32::try_from(terminating).unwrap_or(i32::MAX)
                } else {
                    0
                },
            )
            .await?;
        }
    }

    status.active = Some(i32::try_from(active.len()).unwrap_or(i32::MAX));
    status.ready =
        Some(i32::try_from(active.iter().filter(|p| is_ready(p)).count()).unwrap_or(i32::MAX));
    status.terminating = Some(i32::try_from(terminating).unwrap_or(i32::MAX));
    if job.status.as_ref() != Some(&status) {
        job.status = Some(status);
        jobs.replace_status(&job.name_any(), &PostParams::default(), &job)
            .await?;
    }
    Ok(requeue.map_or_else(
        || Action::requeue(Duration::from_secs(300)),
        Action::requeue,
    ))
}

/// Every pod holding our finalizer was released in this pass.
fn all_released(pods: &[Pod], released: &BTreeSet<String>) -> bool {
    pods.iter()
        .filter(|p| has_tracking_finalizer(p))
        .all(|p| released.contains(p.metadata.uid.as_deref().unwrap_or_default()))
}

/// How long to wait before creating replacement pods after `failed` failures.
fn retry_wait(controller: &JobController, uid: &str, failed: i32) -> Option<Duration> {
    if failed <= 0 {
        return None;
    }
    let last = *controller
        .last_failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(uid)?;
    let exponent = u32::try_from(failed - 1).unwrap_or(0).min(16);
    let delay = BASE_BACKOFF
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(MAX_BACKOFF);
    let elapsed = last.elapsed();
    (elapsed < delay).then(|| delay - elapsed)
}

/// What pod creation for an Indexed Job must respect: the indexes that succeeded or failed,
/// those whose pod is still terminating (when only Failed pods are replaced), and per index
/// the failed pod a new one replaces.
struct IndexPlan<'a> {
    completed: &'a BTreeSet<i32>,
    failed: &'a BTreeSet<i32>,
    terminating: BTreeSet<i32>,
    replacing: BTreeMap<i32, Replacement>,
}

/// The failure counts a replacement pod carries (backoffLimitPerIndex), and how long its
/// index still backs off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Replacement {
    failures: i32,
    ignored: i32,
    wait: Option<Duration>,
}

#[allow(clippy::too_many_arguments)]
async fn manage_pods(
    controller: &JobController,
    job: &Job,
    pods_api: &Api<Pod>,
    active: &mut Vec<&Pod>,
    plan: Option<&IndexPlan<'_>>,
    succeeded: i32,
    parallelism: i32,
    may_create: bool,
    held: i32,
) -> Result<(), kube::Error> {
    let completions = job.spec.as_ref().and_then(|s| s.completions);
    let active_count = i32::try_from(active.len()).unwrap_or(i32::MAX);
    if let Some(plan) = plan {
        // Pods of indexes already done or failed, out of range or duplicated go.
        let total = completions.unwrap_or(0);
        let mut seen = BTreeSet::new();
        let mut extra = Vec::new();
        for pod in active.iter() {
            match completion_index(pod) {
                Some(i)
                    if i < total
                        && !plan.completed.contains(&i)
                        && !plan.failed.contains(&i)
                        && seen.insert(i) => {}
                _ => extra.push(*pod),
            }
        }
        delete_pods(controller, job, pods_api, &extra).await?;
        active.retain(|p| !extra.iter().any(|e| e.metadata.uid == p.metadata.uid));
        let running = i32::try_from(active.len()).unwrap_or(i32::MAX);
        let finished = plan.completed.union(plan.failed).count();
        let remaining = total - i32::try_from(finished).unwrap_or(i32::MAX);
        let wanted = parallelism.min(remaining.max(0));
        if may_create && running < wanted {
            let missing: Vec<i32> = (0..total)
                .filter(|i| {
                    !plan.completed.contains(i)
                        && !plan.failed.contains(i)
                        && !plan.terminating.contains(i)
                        && !seen.contains(i)
                })
                .filter(|i| plan.replacing.get(i).is_none_or(|r| r.wait.is_none()))
                .take(usize::try_from(wanted - running).unwrap_or(0))
                .collect();
            for index in missing {
                let replacing = plan.replacing.get(&index).copied();
                create_pod(controller, job, pods_api, Some(index), replacing).await?;
            }
        }
        return Ok(());
    }
    let wanted = match completions {
        Some(c) => parallelism.min((c - succeeded).max(0)),
        None if succeeded > 0 => active_count.min(parallelism),
        None => parallelism,
    };
    if active_count > wanted {
        let mut newest: Vec<&Pod> = active.clone();
        newest.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
        let excess: Vec<&Pod> = newest
            .into_iter()
            .take(usize::try_from(active_count - wanted).unwrap_or(0))
            .collect();
        delete_pods(controller, job, pods_api, &excess).await?;
        active.retain(|p| !excess.iter().any(|e| e.metadata.uid == p.metadata.uid));
    } else if may_create && active_count + held < wanted {
        for _ in (active_count + held)..wanted {
            create_pod(controller, job, pods_api, None, None).await?;
        }
    }
    Ok(())
}

/// The pod a Job runs: its template, owned by the Job, with the tracking finalizer.
fn pod_for(job: &Job, index: Option<i32>, replacing: Option<Replacement>) -> Pod {
    let name = job.name_any();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut metadata = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    metadata.name = None;
    metadata.namespace = job.namespace();
    metadata.generate_name = Some(match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    });
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: name.clone(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    metadata.finalizers = Some(vec![TRACKING_FINALIZER.into()]);
    let per_index = job
        .spec
        .as_ref()
        .is_some_and(|s| s.backoff_limit_per_index.is_some());
    if let Some(index) = index {
        let annotations = metadata.annotations.get_or_insert_with(Default::default);
        annotations.insert(COMPLETION_INDEX.into(), index.to_string());
        if per_index {
            let counts = replacing.unwrap_or(Replacement {
                failures: 0,
                ignored: 0,
                wait: None,
            });
            annotations.insert(INDEX_FAILURE_COUNT.into(), counts.failures.to_string());
            if counts.ignored > 0 {
                annotations.insert(
                    INDEX_IGNORED_FAILURE_COUNT.into(),
                    counts.ignored.to_string(),
                );
            }
        }
        metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.into(), index.to_string());
        // As kube does, whatever the template says.
        spec.hostname = Some(format!("{name}-{index}"));
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
        };
        for container in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            let vars = container.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == env.name) {
                vars.push(env.clone());
            }
        }
    }
    Pod {
        metadata,
        spec: Some(spec),
        status: None,
    }
}

async fn create_pod(
    controller: &JobController,
    job: &Job,
    pods_api: &Api<Pod>,
    index: Option<i32>,
    replacing: Option<Replacement>,
) -> Result<(), kube::Error> {
    match pods_api
        .create(&PostParams::default(), &pod_for(job, index, replacing))
        .await
    {
        Ok(pod) => {
            let message = format!("Created pod: {}", pod.name_any());
            events::record_about(
                &controller.client,
                COMPONENT,
                job,
                NORMAL,
                "SuccessfulCreate",
                &message,
            )
            .await;
            Ok(())
        }
        Err(error) => {
            let message = format!("Error creating: {error}");
            events::record_about(
                &controller.client,
                COMPONENT,
                job,
                WARNING,
                "FailedCreate",
                &message,
            )
            .await;
            Err(error)
        }
    }
}

async fn delete_pods(
    controller: &JobController,
    job: &Job,
    pods_api: &Api<Pod>,
    pods: &[&Pod],
) -> Result<(), kube::Error> {
    for pod in pods {
        let name = pod.name_any();
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods_api.delete(&name, &params).await {
            Ok(_) => {
                events::record_about(
                    &controller.client,
                    COMPONENT,
                    job,
                    NORMAL,
                    "SuccessfulDelete",
                    &format!("Deleted pod: {name}"),
                )
                .await;
            }
            Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Drops the tracking finalizer (the pod's other finalizers stay); a pod already gone is fine.
async fn remove_tracking_finalizer(pods_api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let kept: Vec<&String> = pod
        .finalizers()
        .iter()
        .filter(|f| *f != TRACKING_FINALIZER)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": (!kept.is_empty()).then_some(kept),
        "resourceVersion": pod.metadata.resource_version,
    }});
    match pods_api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(error) => Err(error),
    }
}

/// Releases the tracking finalizer of finished or deleted pods whose Job is gone (or is
/// another Job now), which no Job sync would reach.
async fn release_orphaned_pods(client: Client) {
    let api: Api<Pod> = Api::all(client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(WatchEvent::Apply(pod) | WatchEvent::InitApply(pod)) => pod,
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if !has_tracking_finalizer(&pod) || is_active(&pod) {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let owner = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == "Job")
            .cloned();
        let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
        let owner_alive = match &owner {
            Some(owner) => match jobs.get_opt(&owner.name).await {
                Ok(Some(job)) => job.metadata.uid.as_deref() == Some(owner.uid.as_str()),
                Ok(None) => false,
                Err(_) => true,
            },
            None => false,
        };
        if !owner_alive {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            if let Err(error) = remove_tracking_finalizer(&pods, &pod).await {
                tracing::debug!(%error, pod = %pod.name_any(), "releasing an orphaned job pod");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_indexes_round_trip() {
        let set = parse_indexes("0-2,4,7-8");
        assert_eq!(set, BTreeSet::from([0, 1, 2, 4, 7, 8]));
        assert_eq!(format_indexes(&set), "0-2,4,7,8");
        assert_eq!(parse_indexes("0-2,4,7,8"), set);
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "x", "namespace": "ns", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"a": "b"}},
                     "spec": {"hostname": "custom", "containers": [{"name": "c", "image": "i"}]}}}
        }))
        .expect("job");
        let pod = pod_for(&job, Some(2), None);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("x-2-"));
        assert_eq!(
            pod.annotations().get(COMPLETION_INDEX).map(String::as_str),
            Some("2")
        );
        assert_eq!(pod.labels().get("a").map(String::as_str), Some("b"));
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("x-2"));
        assert_eq!(
            pod.metadata.finalizers,
            Some(vec![TRACKING_FINALIZER.into()])
        );
        assert_eq!(pod.metadata.owner_references.expect("owner")[0].uid, "u1");
    }
}
