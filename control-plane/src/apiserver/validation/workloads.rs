//! Deployments, ReplicaSets, ReplicationControllers, StatefulSets, DaemonSets, Jobs and
//! CronJobs: counts, selectors that match their templates, strategies, schedules, and the
//! fields an update may not change.

use serde_json::{Map, Value};

use super::super::cron::parse_cron;
use super::super::selectors::LabelSelector;
use super::job_policies;
use super::pod::validate_pod_template;
use super::{Errors, at, check_min, check_one_of, is_set, object_at, str_at};

const ALWAYS: &[&str] = &["Always"];
const JOB_RESTART_POLICIES: &[&str] = &["OnFailure", "Never"];
const DEPLOYMENT_STRATEGIES: &[&str] = &["Recreate", "RollingUpdate"];
const SET_UPDATE_STRATEGIES: &[&str] = &["RollingUpdate", "OnDelete"];
const POD_MANAGEMENT_POLICIES: &[&str] = &["OrderedReady", "Parallel"];
const CLAIM_RETENTION_POLICIES: &[&str] = &["Retain", "Delete"];
const COMPLETION_MODES: &[&str] = &["NonIndexed", "Indexed"];
const CONCURRENCY_POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];
/// CronJob names leave room for the 11-character suffix of their Jobs.
const CRON_JOB_NAME_MAX: usize = 52;

/// StatefulSet spec fields an update may change.
const STATEFUL_SET_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];
const STATEFUL_SET_UPDATE_FORBIDDEN: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// A StatefulSet's template may mount its volumeClaimTemplates (the controller adds those
/// volumes to each pod), so the template is checked as if it had them.
fn with_claim_volumes(obj: &Value) -> Value {
    let mut obj = obj.clone();
    let claims: Vec<Value> = obj
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/metadata/name").and_then(Value::as_str))
        .map(|name| serde_json::json!({"name": name, "persistentVolumeClaim": {"claimName": name}}))
        .collect();
    if claims.is_empty() {
        return obj;
    }
    if let Some(spec) = obj
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    {
        let volumes = spec
            .entry("volumes")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(list) = volumes.as_array_mut() {
            for claim in claims {
                if !list.iter().any(|v| v.get("name") == claim.get("name")) {
                    list.push(claim);
                }
            }
        }
    }
    obj
}

fn spec_of(obj: &Value) -> &Value {
    obj.get("spec").unwrap_or(&Value::Null)
}

/// `spec.selector` is required, valid, non-empty and selects the template's labels.
fn validate_selector_and_template(spec: &Value, kind_word: &str, errors: &mut Errors) {
    let Some(selector) = spec.get("selector").filter(|s| !s.is_null()) else {
        errors.required("spec.selector", "");
        return;
    };
    match LabelSelector::from_metav1(selector) {
        Err(e) => errors.invalid("spec.selector", selector, &e.to_string()),
        Ok(parsed) if parsed.is_everything() => errors.invalid(
            "spec.selector",
            selector,
            &format!("empty selector is invalid for {kind_word}"),
        ),
        Ok(parsed) => check_template_matches(&parsed, spec, errors),
    }
}

fn check_template_matches(selector: &LabelSelector, spec: &Value, errors: &mut Errors) {
    let labels = spec.pointer("/template/metadata/labels");
    if !selector.matches(labels.and_then(Value::as_object)) {
        errors.invalid(
            "spec.template.metadata.labels",
            labels.unwrap_or(&Value::Null),
            "`selector` does not match template `labels`",
        );
    }
}

fn template_of(spec: &Value) -> &Value {
    spec.get("template").unwrap_or(&Value::Null)
}

fn check_selector_unchanged(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    let Some(old) = old else {
        return;
    };
    let selector = obj.pointer("/spec/selector").unwrap_or(&Value::Null);
    if selector != old.pointer("/spec/selector").unwrap_or(&Value::Null) {
        errors.immutable("spec.selector", selector);
    }
}

/// The checks every replicated workload shares.
fn validate_replicated(obj: &Value, old: Option<&Value>, kind_word: &str, errors: &mut Errors) {
    let spec = spec_of(obj);
    check_min(errors, spec, "replicas", "spec", 0);
    check_min(errors, spec, "minReadySeconds", "spec", 0);
    check_min(errors, spec, "revisionHistoryLimit", "spec", 0);
    validate_selector_and_template(spec, kind_word, errors);
    validate_pod_template(template_of(spec), "spec.template", ALWAYS, errors);
    check_selector_unchanged(obj, old, errors);
}

pub(super) fn validate_deployment(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    validate_replicated(obj, old, "deployment", errors);
    let spec = spec_of(obj);
    if let Some(strategy) = spec.get("strategy").filter(|s| s.is_object()) {
        validate_deployment_strategy(strategy, errors);
    }
    check_min(errors, spec, "progressDeadlineSeconds", "spec", 0);
    let deadline = spec.get("progressDeadlineSeconds").and_then(Value::as_i64);
    let min_ready = spec
        .get("minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if let Some(deadline) = deadline.filter(|&d| d <= min_ready) {
        errors.invalid(
            "spec.progressDeadlineSeconds",
            &Value::from(deadline),
            "must be greater than minReadySeconds",
        );
    }
}

fn validate_deployment_strategy(strategy: &Value, errors: &mut Errors) {
    check_one_of(
        errors,
        strategy,
        "type",
        "spec.strategy",
        DEPLOYMENT_STRATEGIES,
    );
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    if str_at(strategy, "type") == "Recreate" && rolling.is_some() {
        errors.forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        );
    }
    if let Some(rolling) = rolling {
        validate_max_unavailable_and_surge(rolling, "spec.strategy.rollingUpdate", errors);
    }
}

/// maxUnavailable/maxSurge: an integer ≥ 0 or a percentage ≤ 100%, not both zero.
fn validate_max_unavailable_and_surge(rolling: &Value, path: &str, errors: &mut Errors) {
    if check_unavailable_and_surge(rolling, path, errors) == [true, true] {
        errors.invalid(
            &at(path, "maxUnavailable"),
            &Value::from(0),
            "may not be 0 when `maxSurge` is 0",
        );
    }
}

/// A DaemonSet's maxUnavailable/maxSurge: each valid, and exactly one of them non-zero.
fn validate_daemon_set_rolling_update(rolling: &Value, path: &str, errors: &mut Errors) {
    match check_unavailable_and_surge(rolling, path, errors) {
        [false, false] => errors.invalid(
            &at(path, "maxSurge"),
            rolling.get("maxSurge").unwrap_or(&Value::Null),
            "may not be set when maxUnavailable is non-zero",
        ),
        [true, true] => errors.required(
            &at(path, "maxUnavailable"),
            "cannot be 0 when maxSurge is 0",
        ),
        _ => {}
    }
}

/// Checks each of maxUnavailable and maxSurge; returns which of them is zero (or unset).
fn check_unavailable_and_surge(rolling: &Value, path: &str, errors: &mut Errors) -> [bool; 2] {
    let mut zero = [true, true];
    for (i, field) in ["maxUnavailable", "maxSurge"].into_iter().enumerate() {
        let Some(value) = rolling.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        zero[i] = false;
        match int_or_percent(value) {
            Some((n, _)) if n < 0 => errors.invalid(&at(path, field), value, "must be greater than or equal to 0"),
            Some((n, true)) if n > 100 => errors.invalid(&at(path, field), value, "must not be greater than 100%"),
            Some((n, _)) => zero[i] = n == 0,
            None => errors.invalid(&at(path, field), value, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
        }
    }
    zero
}

/// An IntOrString: (number, is a percentage).
fn int_or_percent(value: &Value) -> Option<(i64, bool)> {
    match value {
        Value::Number(n) => n.as_i64().map(|n| (n, false)),
        Value::String(s) => s.strip_suffix('%')?.parse().ok().map(|n| (n, true)),
        _ => None,
    }
}

pub(super) fn validate_replica_set(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    validate_replicated(obj, old, "deployment", errors);
}

/// v1 selectors are plain label maps, defaulted from the template.
pub(super) fn validate_replication_controller(
    obj: &Value,
    _old: Option<&Value>,
    errors: &mut Errors,
) {
    let spec = spec_of(obj);
    check_min(errors, spec, "replicas", "spec", 0);
    let selector = object_at(spec, "selector").cloned().unwrap_or_default();
    if selector.is_empty() {
        errors.required("spec.selector", "");
    } else {
        let wrapped = serde_json::json!({ "matchLabels": selector });
        if let Ok(parsed) = LabelSelector::from_metav1(&wrapped) {
            check_template_matches(&parsed, spec, errors);
        }
    }
    validate_pod_template(template_of(spec), "spec.template", ALWAYS, errors);
}

pub(super) fn validate_stateful_set(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    validate_replicated(&with_claim_volumes(obj), old, "statefulset", errors);
    let spec = spec_of(obj);
    check_one_of(
        errors,
        spec,
        "podManagementPolicy",
        "spec",
        POD_MANAGEMENT_POLICIES,
    );
    if let Some(strategy) = spec.get("updateStrategy").filter(|s| s.is_object()) {
        check_one_of(
            errors,
            strategy,
            "type",
            "spec.updateStrategy",
            SET_UPDATE_STRATEGIES,
        );
        if let Some(rolling) = strategy.get("rollingUpdate").filter(|r| r.is_object()) {
            check_min(
                errors,
                rolling,
                "partition",
                "spec.updateStrategy.rollingUpdate",
                0,
            );
        }
    }
    if let Some(ordinals) = spec.get("ordinals").filter(|o| o.is_object()) {
        check_min(errors, ordinals, "start", "spec.ordinals", 0);
    }
    if let Some(retention) = spec
        .get("persistentVolumeClaimRetentionPolicy")
        .filter(|r| r.is_object())
    {
        for field in ["whenDeleted", "whenScaled"] {
            check_one_of(
                errors,
                retention,
                field,
                "spec.persistentVolumeClaimRetentionPolicy",
                CLAIM_RETENTION_POLICIES,
            );
        }
    }
    if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
        let frozen = |s: &Value| without(s, STATEFUL_SET_MUTABLE);
        if frozen(spec) != frozen(old_spec) {
            errors.forbidden("spec", STATEFUL_SET_UPDATE_FORBIDDEN);
        }
    }
}

fn without(value: &Value, fields: &[&str]) -> Map<String, Value> {
    let mut map = value.as_object().cloned().unwrap_or_default();
    for field in fields {
        map.remove(*field);
    }
    map
}

pub(super) fn validate_daemon_set(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    let spec = spec_of(obj);
    check_min(errors, spec, "minReadySeconds", "spec", 0);
    check_min(errors, spec, "revisionHistoryLimit", "spec", 0);
    validate_selector_and_template(spec, "daemonset", errors);
    validate_pod_template(template_of(spec), "spec.template", ALWAYS, errors);
    check_selector_unchanged(obj, old, errors);
    if let Some(strategy) = spec.get("updateStrategy").filter(|s| s.is_object()) {
        check_one_of(
            errors,
            strategy,
            "type",
            "spec.updateStrategy",
            SET_UPDATE_STRATEGIES,
        );
        if let Some(rolling) = strategy.get("rollingUpdate").filter(|r| r.is_object()) {
            validate_daemon_set_rolling_update(
                rolling,
                "spec.updateStrategy.rollingUpdate",
                errors,
            );
        }
    }
}

pub(super) fn validate_job(obj: &Value, old: Option<&Value>, errors: &mut Errors) {
    let spec = spec_of(obj);
    validate_job_spec(spec, "spec", errors);
    if let Some(selector) = spec.get("selector").filter(|s| !s.is_null()) {
        match LabelSelector::from_metav1(selector) {
            Err(e) => errors.invalid("spec.selector", selector, &e.to_string()),
            Ok(parsed) => check_template_matches(&parsed, spec, errors),
        }
    } else if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        errors.required("spec.selector", "");
    }
    if let Some(old_spec) = old.and_then(|o| o.get("spec")) {
        check_selector_unchanged(obj, old, errors);
        let suspended = spec.get("suspend").and_then(Value::as_bool) == Some(true);
        if !suspended && spec.get("template") != old_spec.get("template") {
            errors.immutable("spec.template", template_of(spec));
        }
    }
}

/// A Job spec at `path` (`spec`, or `spec.jobTemplate.spec` of a CronJob).
fn validate_job_spec(spec: &Value, path: &str, errors: &mut Errors) {
    for field in [
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        check_min(errors, spec, field, path, 0);
    }
    check_min(errors, spec, "activeDeadlineSeconds", path, 1);
    check_one_of(errors, spec, "completionMode", path, COMPLETION_MODES);
    if str_at(spec, "completionMode") == "Indexed" && !is_set(spec, "completions") {
        errors.required(&at(path, "completions"), "when completion mode is Indexed");
    }
    let template_path = at(path, "template");
    validate_pod_template(
        template_of(spec),
        &template_path,
        JOB_RESTART_POLICIES,
        errors,
    );
    job_policies::validate(spec, path, errors);
}

pub(super) fn validate_cron_job(obj: &Value, _old: Option<&Value>, errors: &mut Errors) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.len() > CRON_JOB_NAME_MAX {
        errors.invalid_str(
            "metadata.name",
            name,
            &format!("must be no more than {CRON_JOB_NAME_MAX} characters"),
        );
    }
    let spec = spec_of(obj);
    validate_schedule(spec, errors);
    validate_time_zone(spec, errors);
    check_one_of(
        errors,
        spec,
        "concurrencyPolicy",
        "spec",
        CONCURRENCY_POLICIES,
    );
    for field in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        check_min(errors, spec, field, "spec", 0);
    }
    let job_spec = spec.pointer("/jobTemplate/spec").unwrap_or(&Value::Null);
    validate_job_spec(job_spec, "spec.jobTemplate.spec", errors);
}

fn validate_schedule(spec: &Value, errors: &mut Errors) {
    let schedule = str_at(spec, "schedule");
    if schedule.is_empty() {
        errors.required("spec.schedule", "");
        return;
    }
    if schedule.contains("TZ") {
        errors.invalid_str(
            "spec.schedule",
            schedule,
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        );
        return;
    }
    if let Err(e) = parse_cron(schedule) {
        errors.invalid_str("spec.schedule", schedule, &e.to_string());
    }
}

/// IANA names by syntax only (no zone database is bundled): `Area/Location` parts of letters,
/// digits, `-`, `_`, `+`; never `Local`.
fn validate_time_zone(spec: &Value, errors: &mut Errors) {
    let Some(zone) = spec.get("timeZone").and_then(Value::as_str) else {
        return;
    };
    let problem = if zone.trim().is_empty() {
        Some("timeZone must be nil or non-empty string")
    } else if zone.eq_ignore_ascii_case("local") {
        Some("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")
    } else if !zone.split('/').all(is_time_zone_part) {
        Some("unknown time zone")
    } else {
        None
    };
    if let Some(problem) = problem {
        errors.invalid_str("spec.timeZone", zone, problem);
    }
}

fn is_time_zone_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && !part.starts_with('-')
        && part.len() <= 14
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
}
