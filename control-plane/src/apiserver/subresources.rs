//! The subresources with their own objects: `scale` (autoscaling/v1 Scale over a workload's
//! spec.replicas), `binding` (a pod assigned to a node, as the scheduler does it) and
//! `eviction` (a pod deleted through the eviction API, honouring PodDisruptionBudgets).

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::body::{self, Body};
use super::handlers::{ResourceRequest, delete_options_of, request_body, request_write_options};
use super::objects;
use super::patch;
use super::rest::{self, Deleted, ObjectRef};
use super::selection::selector_string;
use super::status::{ApiError, Target, success_status};

/// GET/PUT/PATCH of `<workload>/scale`.
pub async fn scale(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
    verb: &str,
) -> Result<Response<Body>, ApiError> {
    let object = match verb {
        "get" => rest::get(request.state, at).await?,
        "update" | "patch" => {
            let document = request_body(request)?;
            let content_type = body::content_type(request.headers);
            let options = request_write_options(request)?;
            rest::guaranteed_update(
                request.state,
                at,
                &options,
                |current| {
                    let scale = scale_of(current);
                    let wanted_scale = match (verb, content_type.as_str()) {
                        ("update", _) => document.clone(),
                        (_, "application/json-patch+json") => {
                            patch::json_patch(&scale, &document).map_err(bad_patch)?
                        }
                        _ => patch::merge_patch(&scale, &document).map_err(bad_patch)?,
                    };
                    let replicas = wanted_scale
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| {
                            ApiError::bad_request("Scale: spec.replicas must be an integer")
                        })?;
                    if replicas < 0 {
                        return Err(ApiError::invalid(
                            "Scale",
                            &at.target(),
                            &[super::field_errors::FieldError::new(
                                super::field_errors::FieldErrorKind::Invalid,
                                "spec.replicas",
                                Some(replicas.to_string()),
                                "must be greater than or equal to 0",
                            )],
                        ));
                    }
                    let mut wanted = current.clone();
                    wanted["spec"]["replicas"] = json!(replicas);
                    Ok(Some(wanted))
                },
                "",
            )
            .await?
        }
        other => return Err(ApiError::method_not_allowed(other, "Scale")),
    };
    Ok(body::json_response(StatusCode::OK, &scale_of(&object)))
}

/// The autoscaling/v1 Scale view of a workload.
fn scale_of(object: &Value) -> Value {
    let selector = object
        .pointer("/spec/selector")
        .map(selector_string)
        .unwrap_or_default();
    let meta = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

fn bad_patch(error: patch::PatchError) -> ApiError {
    ApiError::bad_request(error.to_string())
}

/// POST pods/NAME/binding: assigns the pod to `target.name` once, as the scheduler does.
pub async fn bind(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
) -> Result<Response<Body>, ApiError> {
    let binding = request_body(request)?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Binding: target.name (the node) is required"))?
        .to_string();
    let target_kind = binding
        .pointer("/target/kind")
        .and_then(Value::as_str)
        .unwrap_or("Node");
    if !target_kind.is_empty() && target_kind != "Node" {
        return Err(ApiError::bad_request(format!(
            "Binding: target.kind must be Node, not {target_kind:?}"
        )));
    }
    let options = request_write_options(request)?;
    rest::guaranteed_update(
        request.state,
        at,
        &options,
        |current| {
            if objects::is_deleting(current) {
                return Err(ApiError::conflict(&at.target(), "pod is being deleted, cannot be assigned to a host"));
            }
            let assigned = current.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
            if !assigned.is_empty() {
                return Err(ApiError::conflict(
                    &at.target(),
                    &format!("pod {} is already assigned to node \"{assigned}\"", at.name),
                ));
            }
            let mut wanted = current.clone();
            wanted["spec"]["nodeName"] = json!(node);
            set_condition(&mut wanted, json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": objects::now()}));
            Ok(Some(wanted))
        },
        "binding",
    )
    .await?;
    let target = Target::new("", "pods/binding", at.name);
    Ok(body::json_response(
        StatusCode::CREATED,
        &success_status(&target),
    ))
}

/// Replaces (by type) or adds a condition in status.conditions.
fn set_condition(object: &mut Value, condition: Value) {
    let conditions = &mut object["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    if let Some(list) = conditions.as_array_mut() {
        list.retain(|c| c.get("type") != condition.get("type"));
        list.push(condition);
    }
}

/// POST pods/NAME/eviction: deletes the pod unless a PodDisruptionBudget forbids it (429).
pub async fn evict(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
) -> Result<Response<Body>, ApiError> {
    let eviction = request_body(request)?;
    let options = delete_options_of(eviction.get("deleteOptions"))?;
    let pod = rest::get(request.state, at).await?;
    if let Some(budget) = blocking_budget(request, &pod).await? {
        let mut error = ApiError::too_many_requests(format!(
            "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {budget} needs more healthy pods"
        ));
        error.causes = vec![
            json!({"reason": "DisruptionBudget", "message": format!("The disruption budget {budget} is still being processed by the server or does not allow disruptions")}),
        ];
        return Err(error);
    }
    match rest::delete(request.state, at, &options).await? {
        Deleted::Gone(_) | Deleted::Marked(_) => {
            let target = Target::new("policy", "pods/eviction", at.name);
            Ok(body::json_response(
                StatusCode::CREATED,
                &success_status(&target),
            ))
        }
    }
}

/// The name of a PodDisruptionBudget that selects `pod` and allows no disruption now.
async fn blocking_budget(
    request: &ResourceRequest<'_>,
    pod: &Value,
) -> Result<Option<String>, ApiError> {
    let catalog = request.state.catalog();
    let Some(budgets) = catalog.lookup("policy", "v1", "poddisruptionbudgets") else {
        return Ok(None);
    };
    let all = |_: &Value| true;
    let page = rest::list(
        request.state,
        budgets,
        objects::namespace(pod),
        &all,
        0,
        None,
    )
    .await?;
    for budget in &page.items {
        let Some(selector) = budget.pointer("/spec/selector") else {
            continue;
        };
        let selects = super::selection::label_selector_matches(selector, objects::labels(pod))?;
        let allowed = budget
            .pointer("/status/disruptionsAllowed")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if selects && allowed <= 0 {
            return Ok(Some(objects::name(budget).to_string()));
        }
    }
    Ok(None)
}
