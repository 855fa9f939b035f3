//! The admission checks that depend on who is writing: NodeRestriction (what a kubelet may
//! write, [`auth::admit_node_write`]) and RBAC escalation prevention (a Role, ClusterRole or
//! binding may grant only what its writer holds, unless the writer has `escalate` / `bind`).
//! `admission` calls these for every create, update, patch and delete; refusals are kube's
//! 403s on the written object.

use serde_json::Value;

use super::auth::node::NodeWrite;
use super::auth::rbac::{self, PolicyRule};
use super::auth::{self, UserInfo};
use super::authz::CachedRbac;
use super::objects::{self, REGISTRY_PREFIX};
use super::resources::ResourceInfo;
use super::rest::{self, ObjectRef};
use super::state::ApiState;
use super::status::{ApiError, Target};

/// Checks a create (`object` is the new object, in `namespace`).
pub fn admit_create(
    state: &ApiState,
    user: &UserInfo,
    resource: &ResourceInfo,
    namespace: &str,
    object: &Value,
) -> Result<(), ApiError> {
    let name = objects::name(object);
    let write = Write {
        verb: "create",
        resource,
        subresource: "",
        namespace,
        name,
        object: Some(object),
        old_object: None,
    };
    admit_node(state, user, &write)?;
    admit_rbac(state, user, &write)
}

/// Checks an update or patch (of the object or of a subresource such as `status`).
pub fn admit_update(
    state: &ApiState,
    user: &UserInfo,
    resource: &ResourceInfo,
    object: &Value,
    old: &Value,
    subresource: &str,
) -> Result<(), ApiError> {
    let write = Write {
        verb: "update",
        resource,
        subresource,
        namespace: objects::namespace(old),
        name: objects::name(old),
        object: Some(object),
        old_object: Some(old),
    };
    admit_node(state, user, &write)?;
    if subresource.is_empty() {
        admit_rbac(state, user, &write)?;
    }
    Ok(())
}

/// Checks a delete by a node (which pods, Nodes and Leases it may delete).
pub async fn admit_delete(
    state: &ApiState,
    user: &UserInfo,
    at: ObjectRef<'_>,
) -> Result<(), ApiError> {
    if user.node_name().is_none() {
        return Ok(());
    }
    let is_pod = at.resource.group.is_empty() && at.resource.plural == "pods";
    let old = if is_pod {
        Some(rest::get(state, at).await?)
    } else {
        None
    };
    let write = Write {
        verb: "delete",
        resource: at.resource,
        subresource: "",
        namespace: at.namespace,
        name: at.name,
        object: None,
        old_object: old.as_ref(),
    };
    admit_node(state, user, &write)
}

/// One write, as the checks see it.
struct Write<'a> {
    verb: &'a str,
    resource: &'a ResourceInfo,
    subresource: &'a str,
    namespace: &'a str,
    name: &'a str,
    object: Option<&'a Value>,
    old_object: Option<&'a Value>,
}

impl Write<'_> {
    fn forbidden(&self, detail: &str) -> ApiError {
        let target = Target::new(&self.resource.group, &self.resource.plural, self.name);
        ApiError::forbidden_on(&target, detail)
    }
}

fn admit_node(state: &ApiState, user: &UserInfo, write: &Write<'_>) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    let node_object = state
        .cache
        .get(&format!("{REGISTRY_PREFIX}core/nodes/{node}"));
    let node_write = NodeWrite {
        verb: write.verb,
        api_group: &write.resource.group,
        resource: &write.resource.plural,
        subresource: write.subresource,
        namespace: write.namespace,
        name: write.name,
        object: write.object,
        old_object: write.old_object,
        node_uid: Some(node_object.as_deref().map(objects::uid).unwrap_or_default()),
    };
    let graph = state.node_graph();
    auth::admit_node_write(user, &node_write, &graph).map_err(|detail| write.forbidden(&detail))
}

/// Escalation prevention on Roles, ClusterRoles, RoleBindings and ClusterRoleBindings.
fn admit_rbac(state: &ApiState, user: &UserInfo, write: &Write<'_>) -> Result<(), ApiError> {
    if write.resource.group != rbac::GROUP {
        return Ok(());
    }
    let Some(object) = write.object else {
        return Ok(());
    };
    if write
        .old_object
        .is_some_and(|old| only_garbage_collection_fields_differ(object, old))
    {
        return Ok(());
    }
    let objects = CachedRbac(&state.cache);
    let outcome = match write.resource.plural.as_str() {
        "roles" | "clusterroles" => {
            let rules = rules_of(object).map_err(|detail| write.forbidden(&detail))?;
            rbac::check_role_write(&objects, user, write.namespace, write.name, &rules).and_then(
                |()| {
                    let aggregates = has_aggregation_rule(Some(object))
                        || has_aggregation_rule(write.old_object);
                    if write.resource.plural == "clusterroles"
                        && aggregates
                        && !may_escalate(&objects, user, write)
                        && rbac::can_grant(&objects, user, &[rbac::all_rule()], "").is_err()
                    {
                        let article = if write.verb == "create" { "the" } else { "an" };
                        return Err(format!(
                            "must have cluster-admin privileges to use {article} aggregationRule"
                        ));
                    }
                    Ok(())
                },
            )
        }
        "rolebindings" | "clusterrolebindings" => {
            rbac::check_binding_write(&objects, user, write.namespace, &object["roleRef"])
        }
        _ => Ok(()),
    };
    outcome.map_err(|detail| write.forbidden(&detail))
}

/// True when the user holds `escalate` on the role being written.
fn may_escalate(objects: &CachedRbac<'_>, user: &UserInfo, write: &Write<'_>) -> bool {
    let attributes = auth::Attributes::resource(
        user,
        "escalate",
        rbac::GROUP,
        &write.resource.plural,
        write.namespace,
        write.name,
    );
    rbac::authorize(&attributes, objects).allowed()
}

fn has_aggregation_rule(role: Option<&Value>) -> bool {
    role.is_some_and(|r| {
        r["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    })
}

/// The rules of a role body; a malformed rule is refused rather than skipped (a skipped
/// rule would not be checked).
fn rules_of(role: &Value) -> Result<Vec<PolicyRule>, String> {
    match &role["rules"] {
        Value::Null => Ok(Vec::new()),
        rules => serde_json::from_value(rules.clone())
            .map_err(|e| format!("the rules of this role cannot be read: {e}")),
    }
}

/// kube lets anyone who may update a role or binding change only the fields the garbage
/// collector uses (owner references, finalizers) without an escalation check.
fn only_garbage_collection_fields_differ(new: &Value, old: &Value) -> bool {
    let strip = |object: &Value| {
        let mut object = object.clone();
        if let Some(meta) = objects::metadata_mut(&mut object) {
            for field in [
                "ownerReferences",
                "finalizers",
                "managedFields",
                "resourceVersion",
                "generation",
            ] {
                meta.remove(field);
            }
        }
        object
    };
    strip(new) == strip(old)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn garbage_collection_only_changes_are_recognised() {
        let old = json!({ "metadata": { "name": "r", "resourceVersion": "5" }, "rules": [] });
        let mut new = old.clone();
        new["metadata"]["finalizers"] = json!(["x"]);
        new["metadata"]["resourceVersion"] = json!("6");
        assert!(only_garbage_collection_fields_differ(&new, &old));
        new["rules"] = json!([{ "verbs": ["get"], "apiGroups": [""], "resources": ["secrets"] }]);
        assert!(!only_garbage_collection_fields_differ(&new, &old));
    }

    #[test]
    fn malformed_rules_are_refused() {
        assert!(rules_of(&json!({ "rules": [{ "verbs": "get" }] })).is_err());
        assert_eq!(rules_of(&json!({})).unwrap(), Vec::new());
        assert!(has_aggregation_rule(Some(
            &json!({ "aggregationRule": { "clusterRoleSelectors": [{}] } })
        )));
    }
}
