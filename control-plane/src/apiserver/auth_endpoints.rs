//! The virtual, create-only authentication and authorization resources — TokenReview,
//! SelfSubjectReview, SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview,
//! SelfSubjectRulesReview — and the `serviceaccounts/token` subresource (TokenRequest). Nothing
//! here is stored: each request is validated, answered from the server's authenticators,
//! authorizers and live objects, and returned with 201 Created as kube-apiserver does.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::auth::node::NodeWrite;
use super::auth::service_account::{ObjectRef as ClaimRef, TokenRequest};
use super::auth::{self, Chain, reviews};
use super::authz::CachedRbac;
use super::body::{self, Body};
use super::field_errors::{FieldError, FieldErrorKind};
use super::handlers::{ResourceRequest, request_body};
use super::objects;
use super::resources::ResourceInfo;
use super::rest::{self, ObjectRef};
use super::status::{ApiError, Target};

/// Default lifetime of a requested token (TokenRequest `spec.expirationSeconds`).
pub const DEFAULT_TOKEN_SECONDS: i64 = 3600;
/// Shortest lifetime a TokenRequest may ask for: 10 minutes.
pub const MIN_TOKEN_SECONDS: i64 = 600;
/// Longest lifetime a TokenRequest may ask for: 2^32 seconds.
pub const MAX_TOKEN_SECONDS: i64 = 1 << 32;
/// The lifetime kubelets ask for their pods' projected tokens; kube-apiserver (with its default
/// `--service-account-extend-token-expiration`) then issues them for a year with a `warnafter`
/// claim, so old clients that never reload their token keep working.
pub const KUBELET_TOKEN_SECONDS: i64 = 3607;
/// The lifetime such a kubelet token gets: one year.
pub const EXTENDED_TOKEN_SECONDS: i64 = 365 * 24 * 60 * 60;

const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";

/// True for the review resources this module answers.
pub fn is_review(resource: &ResourceInfo) -> bool {
    matches!(
        (resource.group.as_str(), resource.plural.as_str()),
        (AUTHENTICATION, "tokenreviews" | "selfsubjectreviews")
            | (
                AUTHORIZATION,
                "subjectaccessreviews"
                    | "localsubjectaccessreviews"
                    | "selfsubjectaccessreviews"
                    | "selfsubjectrulesreviews"
            )
    )
}

/// Answers a request on a review resource: only `create` exists.
pub async fn serve_review(
    request: &ResourceRequest<'_>,
    resource: &ResourceInfo,
) -> Result<Response<Body>, ApiError> {
    if request.info.verb != "create" {
        return Err(ApiError::method_not_allowed(
            &request.info.verb,
            &resource.plural,
        ));
    }
    let mut review = request_body(request)?;
    check_type(&mut review, &resource.api_version(), &resource.kind)?;
    let answer = match resource.plural.as_str() {
        "tokenreviews" => token_review(request, &review).await?,
        "selfsubjectreviews" => reviews::self_subject_review(&review, request.user),
        "selfsubjectrulesreviews" => {
            let namespace = review["spec"]["namespace"].as_str().unwrap_or_default();
            if namespace.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            with_authorizer(request, |chain| {
                reviews::self_subject_rules_review(&review, request.user, chain)
            })
        }
        "selfsubjectaccessreviews" => {
            check_access_spec(resource, &review, AccessReview::SelfSubject)?;
            with_authorizer(request, |chain| {
                reviews::self_subject_access_review(&review, request.user, chain)
            })
        }
        "subjectaccessreviews" => {
            check_access_spec(resource, &review, AccessReview::Subject)?;
            with_authorizer(request, |chain| {
                reviews::subject_access_review(&review, chain)
            })
        }
        _ => {
            local_namespace(request, &mut review)?;
            check_access_spec(resource, &review, AccessReview::Local)?;
            with_authorizer(request, |chain| {
                reviews::subject_access_review(&review, chain)
            })
        }
    };
    let mut answer = answer;
    if let Some(meta) = review.get("metadata").filter(|m| m.is_object()) {
        answer["metadata"] = meta.clone();
        if answer["metadata"].get("creationTimestamp").is_none() {
            answer["metadata"]["creationTimestamp"] = Value::Null;
        }
    }
    Ok(body::json_response(StatusCode::CREATED, &answer))
}

/// Runs `review` with the server's authorizer chain (system:masters, Node, RBAC).
fn with_authorizer(
    request: &ResourceRequest<'_>,
    review: impl FnOnce(&Chain<'_>) -> Value,
) -> Value {
    let graph = request.state.node_graph();
    let rbac = CachedRbac(&request.state.cache);
    let chain = Chain {
        nodes: &graph,
        rbac: &rbac,
    };
    review(&chain)
}

/// Fills apiVersion and kind when absent; refuses others.
fn check_type(object: &mut Value, api_version: &str, kind: &str) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    for (field, expected) in [("apiVersion", api_version), ("kind", kind)] {
        match object.get(field).and_then(Value::as_str) {
            None | Some("") => object[field] = json!(expected),
            Some(found) if found == expected => {}
            Some(found) => {
                let what = if field == "kind" {
                    "kind"
                } else {
                    "API version"
                };
                return Err(ApiError::bad_request(format!(
                    "the {what} in the data ({found}) does not match the expected {what} ({expected})"
                )));
            }
        }
    }
    Ok(())
}

async fn token_review(request: &ResourceRequest<'_>, review: &Value) -> Result<Value, ApiError> {
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::bad_request("token is required for TokenReview"));
    }
    let audiences: Vec<String> = review["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let outcome = super::authn::authenticate_token(request.state, token, &audiences).await;
    Ok(reviews::token_review(review, |_, _| {
        outcome
            .as_ref()
            .map(|a| (a.user.clone(), a.audiences.clone()))
            .map_err(|e| auth::Error::Token(error_detail(e)))
    }))
}

/// An authentication error's detail without the "invalid token: " prefix the Display adds.
fn error_detail(error: &auth::Error) -> String {
    match error {
        auth::Error::Token(detail) => detail.clone(),
        other => other.to_string(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AccessReview {
    Subject,
    Local,
    SelfSubject,
}

/// kube's validation of a SubjectAccessReview-style spec: exactly one of resourceAttributes
/// and nonResourceAttributes; a user or group for SubjectAccessReview; no nonResourceAttributes
/// and the namespace of the URL for LocalSubjectAccessReview.
fn check_access_spec(
    resource: &ResourceInfo,
    review: &Value,
    kind: AccessReview,
) -> Result<(), ApiError> {
    let spec = &review["spec"];
    let present = |field: &str| spec.get(field).is_some_and(|v| !v.is_null());
    let rendered = |field: &str| {
        let value = spec.get(field).cloned().unwrap_or(Value::Null);
        Some(format!("{:?}", value.to_string()))
    };
    let mut errors = Vec::new();
    let (resources, non_resources) = (
        present("resourceAttributes"),
        present("nonResourceAttributes"),
    );
    if !resources && !non_resources {
        errors.push(FieldError::new(
            FieldErrorKind::Invalid,
            "spec.resourceAttributes",
            Some("\"null\"".to_string()),
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    if resources && non_resources {
        errors.push(FieldError::new(
            FieldErrorKind::Invalid,
            "spec.nonResourceAttributes",
            rendered("nonResourceAttributes"),
            "cannot be specified in combination with resourceAttributes",
        ));
    }
    match kind {
        AccessReview::Subject => {
            let user = spec["user"].as_str().unwrap_or_default();
            let has_groups = spec["groups"].as_array().is_some_and(|g| !g.is_empty());
            if user.is_empty() && !has_groups {
                errors.push(FieldError::new(
                    FieldErrorKind::Invalid,
                    "spec.user",
                    Some("\"\"".to_string()),
                    "at least one of user or group must be specified",
                ));
            }
        }
        AccessReview::Local => {
            if non_resources {
                errors.push(FieldError::new(
                    FieldErrorKind::Invalid,
                    "spec.nonResourceAttributes",
                    rendered("nonResourceAttributes"),
                    "disallowed on this kind of request",
                ));
            }
            let metadata_ns = objects::namespace(review);
            let spec_ns = spec["resourceAttributes"]["namespace"]
                .as_str()
                .unwrap_or_default();
            if resources && spec_ns != metadata_ns {
                errors.push(FieldError::new(
                    FieldErrorKind::Invalid,
                    "spec.resourceAttributes.namespace",
                    Some(format!("{spec_ns:?}")),
                    "must match metadata.namespace",
                ));
            }
        }
        AccessReview::SelfSubject => {}
    }
    if errors.is_empty() {
        return Ok(());
    }
    let target = Target::new(&resource.group, &resource.plural, "");
    Err(ApiError::invalid(&resource.kind, &target, &errors))
}

/// A LocalSubjectAccessReview lives in the namespace of its URL: the body's
/// `metadata.namespace`, when given, must be that one.
fn local_namespace(request: &ResourceRequest<'_>, review: &mut Value) -> Result<(), ApiError> {
    let namespace = request.info.namespace.as_str();
    if namespace.is_empty() {
        return Err(ApiError::bad_request(
            "namespace is required on this type: ",
        ));
    }
    match objects::namespace(review) {
        "" => {
            if let Some(meta) = objects::metadata_mut(review) {
                meta.insert("namespace".to_string(), json!(namespace));
            } else {
                review["metadata"] = json!({ "namespace": namespace });
            }
            Ok(())
        }
        found if found == namespace => Ok(()),
        _ => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

/// `POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`: issues a service account token
/// (authentication.k8s.io/v1 TokenRequest), optionally bound to a Pod, Secret or Node.
pub async fn token_request(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
) -> Result<Response<Body>, ApiError> {
    let mut token_request = request_body(request)?;
    check_type(
        &mut token_request,
        &format!("{AUTHENTICATION}/v1"),
        "TokenRequest",
    )?;
    let spec = &mut token_request["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    if spec["expirationSeconds"].is_null() {
        spec["expirationSeconds"] = json!(DEFAULT_TOKEN_SECONDS);
    }
    let expiration = check_expiration(&spec["expirationSeconds"])?;
    let signer = match &request.state.security {
        Some(security) => &security.signer,
        None => return Err(ApiError::internal("this server has no token signer")),
    };
    let no_audiences = spec["audiences"].as_array().is_none_or(|a| a.is_empty());
    if no_audiences {
        spec["audiences"] = json!([signer.issuer()]);
    }
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    admit_node_token_request(request, at, &token_request)?;
    let service_account = rest::get(request.state, at).await?;
    let bound = bound_objects(request, at, &token_request["spec"]["boundObjectRef"]).await?;
    let now = chrono::Utc::now().timestamp();
    let extend = bound.pod.is_some()
        && expiration == KUBELET_TOKEN_SECONDS
        && audiences.iter().all(|a| a == signer.issuer());
    let (lifetime, warn_after_seconds) = if extend {
        (EXTENDED_TOKEN_SECONDS, Some(expiration))
    } else {
        (expiration, None)
    };
    let issue = TokenRequest {
        namespace: at.namespace.to_string(),
        service_account: ClaimRef {
            name: at.name.to_string(),
            uid: objects::uid(&service_account).to_string(),
        },
        audiences,
        expiration_seconds: lifetime,
        now,
        pod: bound.pod,
        node: bound.node,
        secret: bound.secret,
        warn_after_seconds,
    };
    let token = signer
        .issue(&issue)
        .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))?;
    let expires = chrono::DateTime::from_timestamp(now.saturating_add(expiration), 0)
        .map(objects::timestamp)
        .unwrap_or_default();
    let mut metadata = token_request["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["name"] = json!(at.name);
    metadata["namespace"] = json!(at.namespace);
    if metadata.get("creationTimestamp").is_none() {
        metadata["creationTimestamp"] = Value::Null;
    }
    token_request["metadata"] = metadata;
    token_request["status"] = json!({ "token": token, "expirationTimestamp": expires });
    Ok(body::json_response(StatusCode::CREATED, &token_request))
}

fn check_expiration(value: &Value) -> Result<i64, ApiError> {
    let invalid = |value: String, detail: &str| {
        let target = Target::new(AUTHENTICATION, "tokenrequests", "");
        ApiError::invalid(
            "TokenRequest",
            &target,
            &[FieldError::new(
                FieldErrorKind::Invalid,
                "spec.expirationSeconds",
                Some(value),
                detail,
            )],
        )
    };
    let Some(seconds) = value.as_i64() else {
        return Err(ApiError::bad_request(format!(
            "spec.expirationSeconds must be an integer, not {value}"
        )));
    };
    if seconds < MIN_TOKEN_SECONDS {
        return Err(invalid(
            seconds.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if seconds > MAX_TOKEN_SECONDS {
        return Err(invalid(
            seconds.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    Ok(seconds)
}

/// NodeRestriction on token requests by a kubelet: bound to a pod of its own, uid given.
fn admit_node_token_request(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
    token_request: &Value,
) -> Result<(), ApiError> {
    if request.user.node_name().is_none() {
        return Ok(());
    }
    let write = NodeWrite {
        verb: "create",
        api_group: "",
        resource: "serviceaccounts",
        subresource: "token",
        namespace: at.namespace,
        name: at.name,
        object: Some(token_request),
        old_object: None,
        node_uid: None,
    };
    let graph = request.state.node_graph();
    auth::admit_node_write(request.user, &write, &graph).map_err(|detail| {
        ApiError::forbidden_on(&Target::new("", "serviceaccounts", at.name), &detail)
    })
}

/// The claims a token's `boundObjectRef` adds.
#[derive(Default)]
struct Bound {
    pod: Option<ClaimRef>,
    node: Option<ClaimRef>,
    secret: Option<ClaimRef>,
}

/// Looks up the object a TokenRequest binds to (it must exist, with the given uid if any). A
/// pod binding also names the pod's node (with its uid when the Node exists), as kube 1.32 does.
async fn bound_objects(
    request: &ResourceRequest<'_>,
    at: ObjectRef<'_>,
    reference: &Value,
) -> Result<Bound, ApiError> {
    if reference.is_null() {
        return Ok(Bound::default());
    }
    let api_version = reference["apiVersion"].as_str().unwrap_or_default();
    let kind = reference["kind"].as_str().unwrap_or_default();
    let name = reference["name"].as_str().unwrap_or_default();
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let plural = match (group, kind) {
        ("", "Pod") => "pods",
        ("", "Secret") => "secrets",
        ("", "Node") => "nodes",
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {group}/{version}, Kind={kind}"
            )));
        }
    };
    let object = get_core(request, plural, at.namespace, name).await?;
    let uid = objects::uid(&object).to_string();
    let wanted_uid = reference["uid"].as_str().unwrap_or_default();
    if !wanted_uid.is_empty() && wanted_uid != uid {
        return Err(ApiError::conflict(
            &Target::new("", kind, name),
            &format!(
                "the UID in the bound object reference ({wanted_uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    let claim = ClaimRef {
        name: name.to_string(),
        uid,
    };
    match plural {
        "pods" => {
            let pod_account = object["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default");
            if pod_account != at.name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount {:?} to pod running with different serviceaccount name.",
                    at.name
                )));
            }
            let node_name = object["spec"]["nodeName"].as_str().unwrap_or_default();
            let node = if node_name.is_empty() {
                None
            } else {
                let node_uid = match get_core(request, "nodes", "", node_name).await {
                    Ok(node) => objects::uid(&node).to_string(),
                    Err(error) if error.code == 404 => String::new(),
                    Err(error) => return Err(error),
                };
                Some(ClaimRef {
                    name: node_name.to_string(),
                    uid: node_uid,
                })
            };
            Ok(Bound {
                pod: Some(claim),
                node,
                secret: None,
            })
        }
        "secrets" => Ok(Bound {
            secret: Some(claim),
            ..Bound::default()
        }),
        _ => Ok(Bound {
            node: Some(claim),
            ..Bound::default()
        }),
    }
}

/// Reads a core/v1 object from storage (404 when absent).
async fn get_core(
    request: &ResourceRequest<'_>,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let catalog = request.state.catalog();
    let resource = catalog
        .lookup("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not served")))?;
    let namespace = if resource.namespaced { namespace } else { "" };
    rest::get(
        request.state,
        ObjectRef {
            resource,
            namespace,
            name,
        },
    )
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn expiration_bounds() {
        assert_eq!(check_expiration(&json!(600)).ok(), Some(600));
        let error = check_expiration(&json!(599)).unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(
            error.message,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        );
        assert_eq!(
            check_expiration(&json!(MAX_TOKEN_SECONDS + 1))
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(check_expiration(&json!("x")).unwrap_err().code, 400);
    }

    #[test]
    fn type_is_filled_or_checked() {
        let mut object = json!({});
        check_type(&mut object, "authentication.k8s.io/v1", "TokenReview").unwrap();
        assert_eq!(object["kind"], "TokenReview");
        let mut wrong = json!({ "kind": "Pod" });
        let error = check_type(&mut wrong, "authentication.k8s.io/v1", "TokenReview").unwrap_err();
        assert_eq!(error.code, 400);
        assert!(error.message.contains("(Pod)"), "{}", error.message);
    }
}
