//! The authorization chain: request attributes in, a decision out. `system:masters` is always
//! allowed; then the Node authorizer; then RBAC. The first Allow or Deny wins; if every
//! authorizer has no opinion the request is forbidden (403).

use super::node::{self, NodeGraph};
use super::rbac::{self, PolicyRule, RbacObjects};
use super::user::{MASTERS, UserInfo};

/// What a request wants to do, as the server derives it from method, path and query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// get, list, watch, create, update, patch, delete, deletecollection, or a special verb
    /// (escalate, bind, impersonate, approve...).
    pub verb: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The URL path (for non-resource requests such as `/api` or `/healthz`).
    pub path: String,
    /// True for requests to API resources, false for non-resource URLs.
    pub resource_request: bool,
}

impl Attributes {
    /// Attributes of a resource request.
    pub fn resource(
        user: &UserInfo,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Attributes {
            user: user.clone(),
            verb: verb.to_string(),
            api_group: group.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            resource_request: true,
            ..Attributes::default()
        }
    }

    /// Attributes of a non-resource request.
    pub fn non_resource(user: &UserInfo, verb: &str, path: &str) -> Self {
        Attributes {
            user: user.clone(),
            verb: verb.to_string(),
            path: path.to_string(),
            ..Attributes::default()
        }
    }

    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// An authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; the reason names what allowed it.
    Allow(String),
    /// Explicitly denied, with why.
    Deny(String),
    /// This authorizer does not decide; the next one does.
    NoOpinion,
}

impl Decision {
    /// True for Allow.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// What the review endpoints need from an authorizer.
pub trait Authorizer {
    /// Decides a request.
    fn authorize(&self, attrs: &Attributes) -> Decision;
    /// The rules `user` holds in `namespace` (SelfSubjectRulesReview); the flag is true when the
    /// list is incomplete (some authorizer cannot enumerate its rules).
    fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, bool);
}

/// The apiserver's chain over the server's Node graph and RBAC objects.
pub struct Chain<'a> {
    pub nodes: &'a NodeGraph,
    pub rbac: &'a dyn RbacObjects,
}

impl std::fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").finish_non_exhaustive()
    }
}

impl Authorizer for Chain<'_> {
    fn authorize(&self, attrs: &Attributes) -> Decision {
        authorize(attrs, self.nodes, self.rbac)
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, bool) {
        if user.in_group(MASTERS) {
            return (vec![rbac::all_rule(), rbac::all_non_resource_rule()], false);
        }
        // The Node authorizer's graph-based grants are not listable, as in kube.
        (
            rbac::rules_for(self.rbac, user, namespace),
            user.node_name().is_some(),
        )
    }
}

/// The authorization chain: system:masters, Node, RBAC.
pub fn authorize(attrs: &Attributes, nodes: &NodeGraph, objects: &dyn RbacObjects) -> Decision {
    if attrs.user.in_group(MASTERS) {
        return Decision::Allow(format!("user is in group {MASTERS}"));
    }
    match node::authorize(attrs, nodes) {
        Decision::NoOpinion => rbac::authorize(attrs, objects),
        decided => decided,
    }
}
