//! A Job's `podFailurePolicy`: which rule a failed pod matches first and what follows from it
//! (kube's FailJob, FailIndex, Ignore, Count). Pure: the Job sync acts on the answer. Rules
//! with an action this version does not know are skipped, as the API asks of clients.

use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};
use kube::ResourceExt;

/// What a matched rule says about one failed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureAction {
    /// Fail the whole Job; the message names the container and exit code, or the condition.
    FailJob(String),
    /// Fail the pod's index (Indexed Jobs with backoffLimitPerIndex).
    FailIndex,
    /// Neither count the failure nor stop: a replacement pod is created.
    Ignore,
    /// Count the failure toward the backoff limit (also what no match means).
    Count,
}

impl FailureAction {
    /// Whether the failure counts toward `backoffLimit` / `backoffLimitPerIndex`.
    pub fn counts(&self) -> bool {
        !matches!(self, FailureAction::Ignore)
    }
}

/// The action of the first rule `pod` matches; None when there is no policy or no rule
/// matches (the failure is then counted as usual).
pub fn match_pod(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Option<FailureAction> {
    let status = pod.status.as_ref()?;
    for (index, rule) in policy?.rules.iter().enumerate() {
        let action = rule.action.as_str();
        if !matches!(action, "FailJob" | "FailIndex" | "Ignore" | "Count") {
            continue;
        }
        let cause = if let Some(requirement) = &rule.on_exit_codes {
            let statuses = status.container_statuses.iter().flatten();
            let init = status.init_container_statuses.iter().flatten();
            match statuses
                .chain(init)
                .find(|c| exit_code_matches(c, requirement))
            {
                Some(container) => Cause::ExitCode {
                    container: &container.name,
                    code: exit_code(container).unwrap_or_default(),
                },
                None => continue,
            }
        } else if let Some(patterns) = &rule.on_pod_conditions {
            match status
                .conditions
                .iter()
                .flatten()
                .find(|c| condition_matches(c, patterns))
            {
                Some(condition) => Cause::Condition(&condition.type_),
                None => continue,
            }
        } else {
            continue;
        };
        return Some(match action {
            "FailJob" => FailureAction::FailJob(cause.message(pod, action, index)),
            "FailIndex" => FailureAction::FailIndex,
            "Ignore" => FailureAction::Ignore,
            _ => FailureAction::Count,
        });
    }
    None
}

/// Why a rule matched, for the FailJob message.
enum Cause<'a> {
    ExitCode { container: &'a str, code: i32 },
    Condition(&'a str),
}

impl Cause<'_> {
    fn message(&self, pod: &Pod, action: &str, rule: usize) -> String {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        match self {
            Cause::ExitCode { container, code } => format!(
                "Container {container} for pod {namespace}/{name} failed with exit code {code} matching {action} rule at index {rule}"
            ),
            Cause::Condition(type_) => format!(
                "Pod {namespace}/{name} has condition {type_} matching {action} rule at index {rule}"
            ),
        }
    }
}

fn exit_code(container: &ContainerStatus) -> Option<i32> {
    Some(container.state.as_ref()?.terminated.as_ref()?.exit_code)
}

/// A terminated container (of the named one, if named) whose non-zero exit code the
/// operator accepts.
fn exit_code_matches(
    container: &ContainerStatus,
    requirement: &PodFailurePolicyOnExitCodesRequirement,
) -> bool {
    let Some(code) = exit_code(container).filter(|c| *c != 0) else {
        return false;
    };
    if requirement
        .container_name
        .as_ref()
        .is_some_and(|name| *name != container.name)
    {
        return false;
    }
    let listed = requirement.values.contains(&code);
    match requirement.operator.as_str() {
        "In" => listed,
        "NotIn" => !listed,
        _ => false,
    }
}

fn condition_matches(
    condition: &PodCondition,
    patterns: &[PodFailurePolicyOnPodConditionsPattern],
) -> bool {
    patterns.iter().any(|p| {
        let status = if p.status.is_empty() {
            "True"
        } else {
            &p.status
        };
        p.type_ == condition.type_ && status == condition.status
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> PodFailurePolicy {
        serde_json::from_value(json!({"rules": [
            {"action": "Restart", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailIndex", "onExitCodes": {"operator": "NotIn", "values": [1, 2]}},
        ]}))
        .expect("policy")
    }

    fn failed_pod(containers: serde_json::Value, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": containers, "conditions": conditions}
        }))
        .expect("pod")
    }

    fn exited(name: &str, code: i32) -> serde_json::Value {
        json!({"name": name, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": code}}})
    }

    #[test]
    fn first_matching_rule_decides() {
        let policy = policy();
        let matched = |pod: &Pod| match_pod(Some(&policy), pod);
        assert_eq!(
            matched(&failed_pod(json!([exited("main", 42)]), json!([]))),
            Some(FailureAction::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            ))
        );
        // The named container only; the unknown action is skipped.
        assert_eq!(
            matched(&failed_pod(json!([exited("side", 42)]), json!([]))),
            Some(FailureAction::FailIndex)
        );
        assert_eq!(
            matched(&failed_pod(json!([exited("main", 3)]), json!([]))),
            Some(FailureAction::FailIndex)
        );
        let disrupted = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(
            matched(&failed_pod(json!([exited("main", 1)]), disrupted)),
            Some(FailureAction::Ignore)
        );
        assert_eq!(
            matched(&failed_pod(json!([exited("main", 2)]), json!([]))),
            None
        );
        // Exit code 0 never matches, not even NotIn.
        assert_eq!(
            matched(&failed_pod(json!([exited("main", 0)]), json!([]))),
            None
        );
        assert_eq!(match_pod(None, &failed_pod(json!([]), json!([]))), None);
    }
}
