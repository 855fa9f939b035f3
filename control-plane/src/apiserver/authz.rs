//! Request authorization: builds kube's authorizer attributes from the parsed request and asks
//! the chain (system:masters, the Node authorizer, RBAC) with RBAC objects read from the watch
//! cache. A request nobody allows is a 403 worded as kube-apiserver words it (with the Node
//! authorizer's reason for a kubelet's refused reads).

use std::sync::Arc;

use serde_json::Value;

use super::auth::{self, Attributes, RbacObjects, UserInfo};
use super::objects::REGISTRY_PREFIX;
use super::request::RequestInfo;
use super::state::ApiState;
use super::status::ApiError;
use super::watch_cache::WatchCache;

/// RBAC objects as the watch cache holds them.
pub struct CachedRbac<'a>(pub &'a WatchCache);

const RBAC: &str = "rbac.authorization.k8s.io";

impl RbacObjects for CachedRbac<'_> {
    fn cluster_role_bindings(&self) -> Vec<Arc<Value>> {
        self.0
            .list(&format!("{REGISTRY_PREFIX}{RBAC}/clusterrolebindings/"))
            .0
    }

    fn role_bindings(&self, namespace: &str) -> Vec<Arc<Value>> {
        self.0
            .list(&format!(
                "{REGISTRY_PREFIX}{RBAC}/rolebindings/{namespace}/"
            ))
            .0
    }

    fn cluster_role(&self, name: &str) -> Option<Arc<Value>> {
        self.0
            .get(&format!("{REGISTRY_PREFIX}{RBAC}/clusterroles/{name}"))
    }

    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.0
            .get(&format!("{REGISTRY_PREFIX}{RBAC}/roles/{namespace}/{name}"))
    }
}

pub fn attributes(user: &UserInfo, info: &RequestInfo) -> Attributes {
    if !info.is_resource_request {
        return Attributes::non_resource(user, &info.verb, &info.path);
    }
    let resource = if info.subresource.is_empty() {
        info.resource.clone()
    } else {
        format!("{}/{}", info.resource, info.subresource)
    };
    let mut attributes = Attributes::resource(
        user,
        &info.verb,
        &info.group,
        &resource,
        &info.namespace,
        &info.name,
    );
    attributes.api_version = info.version.clone();
    attributes
}

pub async fn authorize(
    state: &ApiState,
    user: &UserInfo,
    info: &RequestInfo,
) -> Result<(), ApiError> {
    let attributes = attributes(user, info);
    let graph = state.node_graph();
    let decision = auth::authorize(&attributes, &graph, &CachedRbac(&state.cache));
    let reason = match decision {
        auth::Decision::Allow(_) => return Ok(()),
        auth::Decision::Deny(reason) => Some(reason),
        auth::Decision::NoOpinion => auth::node::no_opinion_reason(&attributes, &graph),
    };
    let message = forbidden_message(user, info);
    Err(ApiError::forbidden(match reason {
        // As kube-apiserver words it: the authorizers' reason after the request.
        Some(reason) if !reason.is_empty() => format!("{message}: {reason}"),
        _ => message,
    }))
}

/// `User "alice" cannot list resource "pods" in API group "" in the namespace "default"`.
fn forbidden_message(user: &UserInfo, info: &RequestInfo) -> String {
    if !info.is_resource_request {
        return format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"",
            user.name, info.verb, info.path
        );
    }
    let resource = if info.subresource.is_empty() {
        info.resource.clone()
    } else {
        format!("{}/{}", info.resource, info.subresource)
    };
    let target = if info.name.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", info.name)
    };
    let scope = if info.namespace.is_empty() || info.resource == "namespaces" {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", info.namespace)
    };
    format!(
        "{}{target} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        info.resource, user.name, info.verb, info.group
    )
}
