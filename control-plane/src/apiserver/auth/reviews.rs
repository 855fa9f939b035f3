//! The review APIs, as pure functions from the request object (JSON) to the response object:
//! TokenReview, SubjectAccessReview (and LocalSubjectAccessReview), SelfSubjectAccessReview
//! (`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i --list`) and
//! SelfSubjectReview (`kubectl auth whoami`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::authorizer::{Attributes, Authorizer, Decision};
use super::error::Result;
use super::rbac::PolicyRule;
use super::user::UserInfo;

/// The response skeleton: the request's apiVersion and kind, its spec, and `status`.
fn respond(request: &Value, default_version: &str, kind: &str, status: Value) -> Value {
    let api_version = request["apiVersion"].as_str().unwrap_or(default_version);
    let mut out = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": { "creationTimestamp": null },
        "status": status,
    });
    if let Some(spec) = request.get("spec") {
        out["spec"] = spec.clone();
    }
    out
}

/// TokenReview: `authenticate(token, audiences)` is the server's bearer-token chain and returns
/// the user and the audiences the token is valid for.
pub fn token_review(
    request: &Value,
    authenticate: impl Fn(&str, &[String]) -> Result<(UserInfo, Vec<String>)>,
) -> Value {
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let audiences = string_list(&request["spec"]["audiences"]);
    let status = match authenticate(token, &audiences) {
        Ok((user, audiences)) => {
            json!({ "authenticated": true, "user": user.to_json(), "audiences": audiences })
        }
        Err(e) => json!({ "authenticated": false, "user": {}, "error": e.to_string() }),
    };
    respond(request, "authentication.k8s.io/v1", "TokenReview", status)
}

fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The request attributes of a SubjectAccessReview-style spec, for `user`.
fn spec_attributes(spec: &Value, user: UserInfo) -> Attributes {
    let field = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        return Attributes {
            user,
            verb: field(r, "verb"),
            api_group: field(r, "group"),
            api_version: field(r, "version"),
            resource: field(r, "resource"),
            subresource: field(r, "subresource"),
            namespace: field(r, "namespace"),
            name: field(r, "name"),
            path: String::new(),
            resource_request: true,
        };
    }
    let n = &spec["nonResourceAttributes"];
    Attributes {
        user,
        verb: field(n, "verb"),
        path: field(n, "path"),
        ..Attributes::default()
    }
}

fn access_status(decision: Decision) -> Value {
    match decision {
        Decision::Allow(reason) => json!({ "allowed": true, "reason": reason }),
        Decision::Deny(reason) => json!({ "allowed": false, "denied": true, "reason": reason }),
        Decision::NoOpinion => json!({ "allowed": false }),
    }
}

/// The user a SubjectAccessReview spec names.
fn spec_user(spec: &Value) -> UserInfo {
    let extra: BTreeMap<String, Vec<String>> = spec["extra"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), string_list(v))).collect())
        .unwrap_or_default();
    UserInfo {
        name: spec["user"].as_str().unwrap_or_default().to_string(),
        uid: spec["uid"].as_str().unwrap_or_default().to_string(),
        groups: string_list(&spec["groups"]),
        extra,
    }
}

/// SubjectAccessReview (and LocalSubjectAccessReview, whose namespace the server has checked):
/// may the user in the spec do what it describes?
pub fn subject_access_review(request: &Value, authorizer: &dyn Authorizer) -> Value {
    let spec = &request["spec"];
    let attrs = spec_attributes(spec, spec_user(spec));
    let kind = request["kind"].as_str().unwrap_or("SubjectAccessReview");
    respond(
        request,
        "authorization.k8s.io/v1",
        kind,
        access_status(authorizer.authorize(&attrs)),
    )
}

/// SelfSubjectAccessReview: may the requesting user do what the spec describes?
pub fn self_subject_access_review(
    request: &Value,
    user: &UserInfo,
    authorizer: &dyn Authorizer,
) -> Value {
    let attrs = spec_attributes(&request["spec"], user.clone());
    respond(
        request,
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        access_status(authorizer.authorize(&attrs)),
    )
}

/// SelfSubjectRulesReview: the rules the requesting user holds in `spec.namespace`.
pub fn self_subject_rules_review(
    request: &Value,
    user: &UserInfo,
    authorizer: &dyn Authorizer,
) -> Value {
    let namespace = request["spec"]["namespace"].as_str().unwrap_or_default();
    let (rules, incomplete) = authorizer.rules_for(user, namespace);
    let (non_resource, resource): (Vec<PolicyRule>, Vec<PolicyRule>) = rules
        .into_iter()
        .partition(|r| !r.non_resource_urls.is_empty());
    let resource_rules: Vec<Value> = resource
        .iter()
        .map(|r| json!({ "verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources, "resourceNames": r.resource_names }))
        .collect();
    let non_resource_rules: Vec<Value> = non_resource
        .iter()
        .map(|r| json!({ "verbs": r.verbs, "nonResourceURLs": r.non_resource_urls }))
        .collect();
    let status = json!({ "resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": incomplete });
    respond(
        request,
        "authorization.k8s.io/v1",
        "SelfSubjectRulesReview",
        status,
    )
}

/// SelfSubjectReview: who the requesting user is.
pub fn self_subject_review(request: &Value, user: &UserInfo) -> Value {
    let mut out = respond(
        request,
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        json!({ "userInfo": user.to_json() }),
    );
    if let Some(spec) = out.as_object_mut() {
        spec.remove("spec");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::auth::authorizer::Chain;
    use crate::apiserver::auth::bootstrap_policy;
    use crate::apiserver::auth::error::Error;
    use crate::apiserver::auth::node::NodeGraph;
    use crate::apiserver::auth::rbac::InMemory;

    fn policy() -> InMemory {
        InMemory::from_objects(
            bootstrap_policy::cluster_roles()
                .into_iter()
                .chain(bootstrap_policy::cluster_role_bindings()),
        )
    }

    #[test]
    fn whoami() {
        let user = UserInfo::authenticated("kubernetes-admin", vec!["system:masters".into()]);
        let out = self_subject_review(
            &json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview" }),
            &user,
        );
        assert_eq!(out["kind"], "SelfSubjectReview");
        assert_eq!(out["status"]["userInfo"]["username"], "kubernetes-admin");
        assert_eq!(
            out["status"]["userInfo"]["groups"],
            json!(["system:masters", "system:authenticated"])
        );
    }

    #[test]
    fn can_i_and_subject_access_review() {
        let (objects, graph) = (policy(), NodeGraph::new());
        let chain = Chain {
            nodes: &graph,
            rbac: &objects,
        };
        let user = UserInfo::authenticated("someone", vec![]);
        let ask = |verb: &str, resource: &str| json!({ "spec": { "resourceAttributes": { "verb": verb, "resource": resource, "namespace": "default" } } });
        let out = self_subject_access_review(&ask("list", "pods"), &user, &chain);
        assert_eq!(out["status"]["allowed"], false);
        assert_eq!(out["apiVersion"], "authorization.k8s.io/v1");
        let url =
            json!({ "spec": { "nonResourceAttributes": { "verb": "get", "path": "/version" } } });
        assert_eq!(
            self_subject_access_review(&url, &user, &chain)["status"]["allowed"],
            true
        );
        let sar = json!({ "kind": "SubjectAccessReview", "spec": { "user": "system:kube-scheduler", "groups": ["system:authenticated"],
            "resourceAttributes": { "verb": "create", "resource": "pods", "subresource": "binding", "namespace": "default" } } });
        let out = subject_access_review(&sar, &chain);
        assert_eq!(out["status"]["allowed"], true, "{out}");
        assert_eq!(out["spec"]["user"], "system:kube-scheduler");
    }

    #[test]
    fn rules_review_lists_resource_and_url_rules() {
        let (objects, graph) = (policy(), NodeGraph::new());
        let chain = Chain {
            nodes: &graph,
            rbac: &objects,
        };
        let user = UserInfo::authenticated("someone", vec![]);
        let out = self_subject_rules_review(
            &json!({ "spec": { "namespace": "default" } }),
            &user,
            &chain,
        );
        assert_eq!(out["kind"], "SelfSubjectRulesReview");
        assert!(
            out["status"]["resourceRules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["resources"]
                    .to_string()
                    .contains("selfsubjectaccessreviews"))
        );
        assert!(
            out["status"]["nonResourceRules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["nonResourceURLs"].to_string().contains("/api"))
        );
        assert_eq!(out["status"]["incomplete"], false);
    }

    #[test]
    fn token_review_reports_user_or_error() {
        let req = json!({ "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": { "token": "good", "audiences": ["api"] } });
        let auth = |token: &str, aud: &[String]| {
            if token == "good" {
                Ok((UserInfo::authenticated("bob", vec![]), aud.to_vec()))
            } else {
                Err(Error::Token("unknown".into()))
            }
        };
        let out = token_review(&req, auth);
        assert_eq!(out["status"]["authenticated"], true);
        assert_eq!(out["status"]["user"]["username"], "bob");
        assert_eq!(out["status"]["audiences"], json!(["api"]));
        let bad = json!({ "spec": { "token": "bad" } });
        let out = token_review(&bad, auth);
        assert_eq!(out["status"]["authenticated"], false);
        assert!(out["status"]["error"].as_str().unwrap().contains("unknown"));
    }
}
