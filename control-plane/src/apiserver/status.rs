//! `ApiError`: every failure the API answers with, rendered as the `metav1.Status` object that
//! kubectl and client libraries parse (code, reason, message, details with causes). The one
//! place where HTTP status codes and Kubernetes `reason`s are chosen.

use serde_json::{Value, json};

use super::field_errors::FieldError;
use crate::storage;

/// What the object a request is about is called, for messages: `pods "web" not found`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    /// The resource (plural), possibly with `/subresource`.
    pub resource: String,
    pub name: String,
}

impl Target {
    pub fn new(group: &str, resource: &str, name: &str) -> Self {
        Target {
            group: group.to_string(),
            resource: resource.to_string(),
            name: name.to_string(),
        }
    }

    /// "pods" or "deployments.apps": how kube names a resource in messages.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// A failed request, as the API reports it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    /// metav1.StatusReason: NotFound, AlreadyExists, Conflict, Invalid, BadRequest, ...
    pub reason: &'static str,
    pub message: String,
    pub target: Option<Target>,
    pub kind: Option<String>,
    pub causes: Vec<Value>,
    /// Seconds a client should wait before retrying (Retry-After).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            target: None,
            kind: None,
            causes: Vec::new(),
            retry_after: None,
        }
    }

    fn with_target(mut self, target: &Target) -> Self {
        self.target = Some(target.clone());
        self
    }

    pub fn not_found(target: &Target) -> Self {
        let message = format!(
            "{} \"{}\" not found",
            target.qualified_resource(),
            target.name
        );
        Self::new(404, "NotFound", message).with_target(target)
    }

    pub fn already_exists(target: &Target) -> Self {
        let message = format!(
            "{} \"{}\" already exists",
            target.qualified_resource(),
            target.name
        );
        Self::new(409, "AlreadyExists", message).with_target(target)
    }

    /// An optimistic-concurrency failure (stale resourceVersion).
    pub fn conflict(target: &Target, detail: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{}\": {detail}",
            target.qualified_resource(),
            target.name
        );
        Self::new(409, "Conflict", message).with_target(target)
    }

    pub fn stale(target: &Target) -> Self {
        Self::conflict(
            target,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 with one cause per invalid field: `Deployment.apps "web" is invalid: [...]`.
    pub fn invalid(kind: &str, target: &Target, errors: &[FieldError]) -> Self {
        let qualified_kind = if target.group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{}", target.group)
        };
        let rendered: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let list = match rendered.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        let message = format!("{qualified_kind} \"{}\" is invalid: {list}", target.name);
        let mut error = Self::new(422, "Invalid", message).with_target(target);
        error.kind = Some(kind.to_string());
        error.causes = errors
            .iter()
            .map(|e| {
                let text = e.to_string();
                let message = text
                    .strip_prefix(&format!("{}: ", e.field))
                    .unwrap_or(&text)
                    .to_string();
                json!({"reason": e.kind.cause_type(), "message": message, "field": e.field})
            })
            .collect();
        error
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// `User "alice" cannot list resource "pods" in API group "" in the namespace "default"`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// A write refused by admission or policy for a named object.
    pub fn forbidden_on(target: &Target, detail: &str) -> Self {
        let message = format!(
            "{} \"{}\" is forbidden: {detail}",
            target.qualified_resource(),
            target.name
        );
        Self::new(403, "Forbidden", message).with_target(target)
    }

    pub fn path_not_found(path: &str) -> Self {
        let mut error = Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
        error.causes = vec![json!({"message": path})];
        error
    }

    pub fn method_not_allowed(verb: &str, resource: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("{verb} is not supported on resources of kind \"{resource}\""),
        )
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml; got {content_type:?}"
            ),
        )
    }

    /// A watch or list from a resourceVersion that is no longer kept.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn too_many_requests(message: impl Into<String>) -> Self {
        let mut error = Self::new(429, "TooManyRequests", message);
        error.retry_after = Some(1);
        error
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut error = Self::new(503, "ServiceUnavailable", message);
        error.retry_after = Some(1);
        error
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        let mut error = Self::new(504, "Timeout", message);
        error.retry_after = Some(1);
        error
    }

    /// A storage failure for `target`, mapped to the status kube gives it.
    pub fn from_storage(error: storage::Error, target: &Target) -> Self {
        match error {
            storage::Error::NotFound { .. } => Self::not_found(target),
            storage::Error::AlreadyExists { .. } => Self::already_exists(target),
            storage::Error::Conflict { .. } => Self::stale(target),
            storage::Error::Compacted {
                requested,
                compacted,
            } => Self::gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            storage::Error::FutureRevision { requested, current } => Self::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            storage::Error::Unavailable(message) => Self::unavailable(message),
            other => Self::internal(other.to_string()),
        }
    }

    /// The `metav1.Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        let mut details = serde_json::Map::new();
        if let Some(target) = &self.target {
            if !target.name.is_empty() {
                details.insert("name".into(), json!(target.name));
            }
            if !target.group.is_empty() {
                details.insert("group".into(), json!(target.group));
            }
            let kind = self.kind.clone().unwrap_or_else(|| target.resource.clone());
            if !kind.is_empty() {
                details.insert("kind".into(), json!(kind));
            }
        }
        if !self.causes.is_empty() {
            details.insert("causes".into(), Value::Array(self.causes.clone()));
        }
        if let Some(seconds) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(seconds));
        }
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// The Status a successful delete of a collection-less object returns when no object is sent.
pub fn success_status(target: &Target) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": target.name, "group": target.group, "kind": target.resource},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::field_errors::FieldErrorKind;

    #[test]
    fn not_found_reads_like_kube() {
        let error = ApiError::not_found(&Target::new("apps", "deployments", "web"));
        assert_eq!(error.message, "deployments.apps \"web\" not found");
        let status = error.to_status();
        assert_eq!(status["code"], 404);
        assert_eq!(status["details"]["kind"], "deployments");
        assert_eq!(status["details"]["group"], "apps");
    }

    #[test]
    fn invalid_lists_field_causes() {
        let errors = vec![FieldError::new(
            FieldErrorKind::Required,
            "spec.containers[0].image",
            None,
            "",
        )];
        let error = ApiError::invalid("Pod", &Target::new("", "pods", "web"), &errors);
        assert_eq!(
            error.message,
            "Pod \"web\" is invalid: spec.containers[0].image: Required value"
        );
        let status = error.to_status();
        assert_eq!(status["details"]["kind"], "Pod");
        assert_eq!(
            status["details"]["causes"][0]["field"],
            "spec.containers[0].image"
        );
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueRequired"
        );
        assert_eq!(status["details"]["causes"][0]["message"], "Required value");
    }
}
