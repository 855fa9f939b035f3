//! The Priority admission plugin: a new pod's `spec.priority` (and `preemptionPolicy`, when the
//! class sets one) comes from the PriorityClass its `priorityClassName` names, or from the
//! class marked `globalDefault` when it names none; an unknown class, or a priority or policy
//! in the body that differs from the class's, is refused (403) as kube refuses it. Owns nothing
//! else: defaulting (priority 0) happens after admission in `defaults`.

use serde_json::{Value, json};

use super::objects;
use super::resources::ResourceInfo;
use super::rest::{self, ObjectRef};
use super::state::ApiState;
use super::status::{ApiError, Target};

/// What a pod gets from its PriorityClass.
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    class_name: String,
    value: i64,
    preemption_policy: Option<String>,
}

/// Fills `spec.priority` (and `spec.preemptionPolicy`) of a pod being created.
pub async fn admit_pod_create(
    state: &ApiState,
    resource: &ResourceInfo,
    pod: &mut Value,
) -> Result<(), ApiError> {
    if !(resource.group.is_empty() && resource.kind == "Pod") {
        return Ok(());
    }
    let catalog = state.catalog();
    let Some(classes) = catalog.lookup("scheduling.k8s.io", "v1", "priorityclasses") else {
        return Ok(());
    };
    let target = Target::new("", "pods", objects::name(pod));
    let named = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let resolved = if named.is_empty() {
        let all = |_: &Value| true;
        let page = rest::list(state, classes, "", &all, 0, None).await?;
        global_default(page.items.iter().map(|c| c.as_ref()))
    } else {
        let at = ObjectRef {
            resource: classes,
            namespace: "",
            name: &named,
        };
        match rest::get(state, at).await {
            Ok(class) => Some(from_class(&class)),
            Err(error) if error.code == 404 => {
                return Err(ApiError::forbidden_on(
                    &target,
                    &format!("no PriorityClass with name {named} was found"),
                ));
            }
            Err(error) => return Err(error),
        }
    };
    apply(pod, resolved).map_err(|detail| ApiError::forbidden_on(&target, &detail))
}

fn from_class(class: &Value) -> Resolved {
    Resolved {
        class_name: objects::name(class).to_string(),
        value: class.get("value").and_then(Value::as_i64).unwrap_or(0),
        preemption_policy: class
            .get("preemptionPolicy")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

/// The `globalDefault` class (the lowest value when several claim it).
fn global_default<'a>(classes: impl Iterator<Item = &'a Value>) -> Option<Resolved> {
    classes
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .map(from_class)
        .min_by_key(|r| r.value)
}

/// Writes the resolved priority into the pod; the detail of the refusal when the body
/// disagrees with the class.
fn apply(pod: &mut Value, resolved: Option<Resolved>) -> Result<(), String> {
    let (class_name, value, policy) = match resolved {
        Some(r) => (r.class_name, r.value, r.preemption_policy),
        None => (String::new(), 0, None),
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
        ));
    }
    if let Some(policy) = &policy {
        if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
            && given != policy
        {
            return Err(format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            ));
        }
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    if !class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(class_name));
    }
    spec.insert("priority".into(), json!(value));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, value: i64, default: bool, policy: Option<&str>) -> Value {
        let mut c = json!({"metadata": {"name": name}, "value": value, "globalDefault": default});
        if let Some(p) = policy {
            c["preemptionPolicy"] = json!(p);
        }
        c
    }

    #[test]
    fn the_class_sets_priority_and_policy() {
        let mut pod = json!({"spec": {"priorityClassName": "high"}});
        let high = class("high", 1000, false, Some("Never"));
        apply(&mut pod, Some(from_class(&high))).expect("admitted");
        assert_eq!(pod["spec"]["priority"], 1000);
        assert_eq!(pod["spec"]["preemptionPolicy"], "Never");
    }

    #[test]
    fn a_conflicting_body_is_refused() {
        let high = class("high", 1000, false, Some("PreemptLowerPriority"));
        let mut pod = json!({"spec": {"priorityClassName": "high", "priority": 5}});
        let error = apply(&mut pod, Some(from_class(&high))).expect_err("refused");
        assert!(error.contains("computed 1000"), "{error}");
        let mut pod = json!({"spec": {"priorityClassName": "high", "preemptionPolicy": "Never"}});
        assert!(apply(&mut pod, Some(from_class(&high))).is_err());
        let mut pod = json!({"spec": {"priorityClassName": "high", "priority": 1000}});
        assert!(apply(&mut pod, Some(from_class(&high))).is_ok());
    }

    #[test]
    fn the_lowest_global_default_applies_to_pods_without_a_class() {
        let classes = [
            class("a", 50, true, None),
            class("b", 10, true, None),
            class("c", 1, false, None),
        ];
        let resolved = global_default(classes.iter()).expect("a default");
        assert_eq!(resolved.class_name, "b");
        let mut pod = json!({"spec": {}});
        apply(&mut pod, Some(resolved)).expect("admitted");
        assert_eq!(pod["spec"]["priority"], 10);
        assert_eq!(pod["spec"]["priorityClassName"], "b");
        let mut pod = json!({"spec": {}});
        apply(&mut pod, global_default([].iter())).expect("admitted");
        assert_eq!(pod["spec"]["priority"], 0);
    }
}
