//! A Job spec's failure and success policies: `podFailurePolicy` (rules, actions, exit codes,
//! pod conditions; restartPolicy Never; podReplacementPolicy Failed), `backoffLimitPerIndex`
//! and `maxFailedIndexes` (Indexed only), and `successPolicy` (Indexed only, rules of
//! succeededIndexes and/or succeededCount), with kube-apiserver's messages.

use serde_json::Value;

use super::{Errors, array_at, at, check_min, index, is_set, str_at};

const FAILURE_ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];
const EXIT_CODE_OPERATORS: &[&str] = &["In", "NotIn"];
const CONDITION_STATUSES: &[&str] = &["False", "True", "Unknown"];
const REPLACEMENT_POLICIES: &[&str] = &["Failed", "TerminatingOrFailed"];
const MAX_FAILURE_RULES: usize = 20;
const MAX_CONDITION_PATTERNS: usize = 20;
const MAX_EXIT_CODES: usize = 255;
const MAX_SUCCESS_RULES: usize = 20;
const MAX_FAILED_INDEXES: i64 = 100_000;
const MAX_SUCCEEDED_INDEXES_LENGTH: usize = 65_536;

/// The policy checks of the Job spec at `path`.
pub(super) fn validate(spec: &Value, path: &str, errors: &mut Errors) {
    let indexed = str_at(spec, "completionMode") == "Indexed";
    validate_per_index(spec, path, indexed, errors);
    let has_failure_policy = is_set(spec, "podFailurePolicy");
    if has_failure_policy {
        let policy = spec.get("podFailurePolicy").unwrap_or(&Value::Null);
        validate_pod_failure_policy(spec, policy, &at(path, "podFailurePolicy"), errors);
        let restart = spec
            .pointer("/template/spec/restartPolicy")
            .and_then(Value::as_str);
        if restart == Some("OnFailure") {
            errors.invalid_str(
                &at(path, "template.spec.restartPolicy"),
                "OnFailure",
                "only \"Never\" is supported when podFailurePolicy is specified",
            );
        }
    }
    if let Some(replacement) = spec.get("podReplacementPolicy").filter(|v| !v.is_null()) {
        let allowed: &[&str] = if has_failure_policy {
            &["Failed"]
        } else {
            REPLACEMENT_POLICIES
        };
        if !replacement.as_str().is_some_and(|r| allowed.contains(&r)) {
            errors.not_supported(&at(path, "podReplacementPolicy"), replacement, allowed);
        }
    }
    if let Some(policy) = spec.get("successPolicy").filter(|v| !v.is_null()) {
        validate_success_policy(spec, policy, &at(path, "successPolicy"), indexed, errors);
    }
}

fn validate_per_index(spec: &Value, path: &str, indexed: bool, errors: &mut Errors) {
    check_min(errors, spec, "backoffLimitPerIndex", path, 0);
    check_min(errors, spec, "maxFailedIndexes", path, 0);
    let per_index = spec.get("backoffLimitPerIndex").filter(|v| !v.is_null());
    let max_failed = spec.get("maxFailedIndexes").filter(|v| !v.is_null());
    if max_failed.is_some() && per_index.is_none() {
        errors.required(
            &at(path, "backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        );
    }
    if !indexed {
        for (field, value) in [
            ("backoffLimitPerIndex", per_index),
            ("maxFailedIndexes", max_failed),
        ] {
            if let Some(value) = value {
                errors.invalid(&at(path, field), value, "requires indexed completion mode");
            }
        }
        return;
    }
    let (Some(value), Some(max)) = (max_failed, max_failed.and_then(Value::as_i64)) else {
        return;
    };
    if let Some(completions) = spec.get("completions").and_then(Value::as_i64)
        && max > completions
    {
        errors.invalid(
            &at(path, "maxFailedIndexes"),
            value,
            "must be less than or equal to completions",
        );
    }
    if max > MAX_FAILED_INDEXES {
        errors.invalid(
            &at(path, "maxFailedIndexes"),
            value,
            &format!("must be less than or equal to {MAX_FAILED_INDEXES}"),
        );
    }
}

fn validate_pod_failure_policy(spec: &Value, policy: &Value, path: &str, errors: &mut Errors) {
    let rules_path = at(path, "rules");
    let rules = array_at(policy, "rules");
    if rules.len() > MAX_FAILURE_RULES {
        errors.too_many(&rules_path, rules.len(), MAX_FAILURE_RULES);
    }
    let containers: Vec<&str> = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|list| {
            spec.pointer(&format!("/template/spec/{list}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let per_index = is_set(spec, "backoffLimitPerIndex");
    for (i, rule) in rules.iter().enumerate() {
        validate_failure_rule(rule, &index(&rules_path, i), &containers, per_index, errors);
    }
}

fn validate_failure_rule(
    rule: &Value,
    path: &str,
    containers: &[&str],
    per_index: bool,
    errors: &mut Errors,
) {
    let action_path = at(path, "action");
    match rule.get("action").filter(|v| !v.is_null()) {
        None => errors.required(
            &action_path,
            "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
        ),
        Some(action) if action.as_str() == Some("FailIndex") && !per_index => errors.invalid(
            &action_path,
            action,
            "requires the backoffLimitPerIndex to be set",
        ),
        Some(action)
            if !action
                .as_str()
                .is_some_and(|a| FAILURE_ACTIONS.contains(&a)) =>
        {
            errors.not_supported(&action_path, action, FAILURE_ACTIONS)
        }
        Some(_) => {}
    }
    let exit_codes = rule.get("onExitCodes").filter(|v| !v.is_null());
    let conditions = array_at(rule, "onPodConditions");
    if let Some(requirement) = exit_codes {
        validate_exit_codes(requirement, &at(path, "onExitCodes"), containers, errors);
    }
    if !conditions.is_empty() {
        validate_condition_patterns(conditions, &at(path, "onPodConditions"), errors);
    }
    match (exit_codes.is_some(), conditions.is_empty()) {
        (true, false) => errors.invalid_omitted(
            path,
            "specifying both OnExitCodes and OnPodConditions is not supported",
        ),
        (false, true) => errors.invalid_omitted(
            path,
            "specifying one of OnExitCodes and OnPodConditions is required",
        ),
        _ => {}
    }
}

fn validate_exit_codes(requirement: &Value, path: &str, containers: &[&str], errors: &mut Errors) {
    let operator_path = at(path, "operator");
    let operator = requirement.get("operator").filter(|v| !v.is_null());
    match operator {
        None => errors.required(&operator_path, "valid values: [\"In\" \"NotIn\"]"),
        Some(op)
            if !op
                .as_str()
                .is_some_and(|o| EXIT_CODE_OPERATORS.contains(&o)) =>
        {
            errors.not_supported(&operator_path, op, EXIT_CODE_OPERATORS)
        }
        Some(_) => {}
    }
    if let Some(name) = requirement.get("containerName").and_then(Value::as_str)
        && !containers.contains(&name)
    {
        errors.invalid_str(
            &at(path, "containerName"),
            name,
            "must be one of the container or initContainer names in the pod template",
        );
    }
    let values_path = at(path, "values");
    let values = array_at(requirement, "values");
    if values.is_empty() {
        let value = requirement.get("values").cloned().unwrap_or(Value::Null);
        errors.invalid(&values_path, &value, "at least one value is required");
    } else if values.len() > MAX_EXIT_CODES {
        errors.too_many(&values_path, values.len(), MAX_EXIT_CODES);
    }
    let is_in = operator.and_then(Value::as_str) == Some("In");
    let mut ordered = true;
    let mut seen: Vec<i64> = Vec::new();
    for (j, value) in values.iter().enumerate() {
        let Some(code) = value.as_i64() else {
            errors.type_invalid(&index(&values_path, j), value, "must be an integer");
            continue;
        };
        if is_in && code == 0 {
            errors.invalid(
                &index(&values_path, j),
                value,
                "must not be 0 for the In operator",
            );
        }
        if seen.contains(&code) {
            errors.duplicate(&index(&values_path, j), value);
        }
        if seen.last().is_some_and(|last| *last > code) {
            ordered = false;
        }
        seen.push(code);
    }
    if !ordered {
        let value = requirement.get("values").cloned().unwrap_or(Value::Null);
        errors.invalid(&values_path, &value, "must be ordered");
    }
}

fn validate_condition_patterns(patterns: &[Value], path: &str, errors: &mut Errors) {
    if patterns.len() > MAX_CONDITION_PATTERNS {
        errors.too_many(path, patterns.len(), MAX_CONDITION_PATTERNS);
    }
    for (j, pattern) in patterns.iter().enumerate() {
        let pattern_path = index(path, j);
        let type_ = str_at(pattern, "type");
        if type_.is_empty() {
            errors.required(&at(&pattern_path, "type"), "");
        }
        let status_path = at(&pattern_path, "status");
        match pattern.get("status").filter(|v| !v.is_null()) {
            None => errors.required(
                &status_path,
                "valid values: [\"False\" \"True\" \"Unknown\"]",
            ),
            Some(status)
                if !status
                    .as_str()
                    .is_some_and(|s| CONDITION_STATUSES.contains(&s)) =>
            {
                errors.not_supported(&status_path, status, CONDITION_STATUSES)
            }
            Some(_) => {}
        }
    }
}

fn validate_success_policy(
    spec: &Value,
    policy: &Value,
    path: &str,
    indexed: bool,
    errors: &mut Errors,
) {
    if !indexed {
        errors.invalid(path, policy, "requires indexed completion mode");
    }
    let rules_path = at(path, "rules");
    let rules = array_at(policy, "rules");
    if rules.is_empty() {
        errors.required(
            &rules_path,
            "at least one rules must be specified when the successPolicy is specified",
        );
    }
    if rules.len() > MAX_SUCCESS_RULES {
        errors.too_many(&rules_path, rules.len(), MAX_SUCCESS_RULES);
    }
    let completions = spec.get("completions").and_then(Value::as_i64).unwrap_or(0);
    for (i, rule) in rules.iter().enumerate() {
        validate_success_rule(rule, &index(&rules_path, i), completions, errors);
    }
}

fn validate_success_rule(rule: &Value, path: &str, completions: i64, errors: &mut Errors) {
    let indexes = rule.get("succeededIndexes").and_then(Value::as_str);
    let count = rule.get("succeededCount").filter(|v| !v.is_null());
    let mut total = None;
    if let Some(text) = indexes {
        let indexes_path = at(path, "succeededIndexes");
        if text.len() > MAX_SUCCEEDED_INDEXES_LENGTH {
            errors.too_long(&indexes_path, MAX_SUCCEEDED_INDEXES_LENGTH);
        }
        match count_indexes(text, completions) {
            Ok(n) => total = Some(n),
            Err(problem) => errors.invalid_str(
                &indexes_path,
                text,
                &format!("error parsing succeededIndexes: {problem}"),
            ),
        }
    }
    if let Some(value) = count {
        check_min(errors, rule, "succeededCount", path, 0);
        let count_path = at(path, "succeededCount");
        let n = value.as_i64().unwrap_or(0);
        if n > completions {
            errors.invalid(
                &count_path,
                value,
                &format!(
                    "must be less than or equal to {completions} (the number of specified completions)"
                ),
            );
        }
        if let Some(total) = total.filter(|t| n > *t) {
            errors.invalid(
                &count_path,
                value,
                &format!(
                    "must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"
                ),
            );
        }
    }
    if indexes.is_none() && count.is_none() {
        errors.required(
            path,
            "at least one of succeededCount or succeededIndexes must be specified",
        );
    }
}

/// How many indexes `text` ("0,2-4") names: intervals in increasing order, each below
/// `completions`.
fn count_indexes(text: &str, completions: i64) -> Result<i64, String> {
    let mut total = 0;
    let mut previous: Option<i64> = None;
    for piece in text.split(',') {
        let parse = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| format!("cannot convert string to integer for index: {s:?}"))
        };
        let (first, last) = match piece.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => {
                let i = parse(piece)?;
                (i, i)
            }
        };
        if first > last {
            return Err(format!(
                "first index is greater than the last index: {first} > {last}"
            ));
        }
        if let Some(previous) = previous.filter(|p| *p >= first) {
            return Err(format!(
                "non-increasing order, previous: {previous}, current: {first}"
            ));
        }
        if last >= completions {
            return Err(format!("too large index: {last}"));
        }
        previous = Some(last);
        total += last - first + 1;
    }
    Ok(total)
}
