//! The authenticated identity every authenticator produces and every authorizer consumes
//! (`user.Info` of kube-apiserver), and the well-known user and group names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Group added to every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Group of unauthenticated requests (anonymous is off in keel, but RBAC defaults name it).
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// Superuser group: always allowed, before any authorizer runs.
pub const MASTERS: &str = "system:masters";
/// Group of kubelets.
pub const NODES: &str = "system:nodes";
/// Prefix of a kubelet's user name: `system:node:<nodeName>`.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Group of every service account.
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// Prefix of a service account's user name: `system:serviceaccount:<ns>:<name>`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// Who made a request, as the authenticators establish it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The user name (`username` in the API).
    pub name: String,
    /// A unique id, empty when the authenticator has none (client certificates).
    pub uid: String,
    /// Groups, including `system:authenticated`.
    pub groups: Vec<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, ...).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with the given name and groups, plus `system:authenticated`.
    pub fn authenticated(name: impl Into<String>, groups: Vec<String>) -> Self {
        let mut user = UserInfo {
            name: name.into(),
            groups,
            ..UserInfo::default()
        };
        user.add_group(AUTHENTICATED);
        user
    }

    /// Adds a group unless already present.
    pub fn add_group(&mut self, group: &str) {
        if !self.in_group(group) {
            self.groups.push(group.to_string());
        }
    }

    /// True when the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node name when this is a kubelet identity (`system:node:<name>` in `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        if !self.in_group(NODES) {
            return None;
        }
        self.name
            .strip_prefix(NODE_USER_PREFIX)
            .filter(|n| !n.is_empty())
    }

    /// The `userInfo` object of TokenReview / SelfSubjectReview / SubjectAccessReview.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "username": self.name, "groups": self.groups });
        if !self.uid.is_empty() {
            v["uid"] = self.uid.clone().into();
        }
        if !self.extra.is_empty() {
            v["extra"] = serde_json::json!(self.extra);
        }
        v
    }
}

/// The user name of a service account.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}")
}

/// The group of all service accounts of a namespace.
pub fn service_account_namespace_group(namespace: &str) -> String {
    format!("{SERVICE_ACCOUNTS}:{namespace}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticated_group_added_once() {
        let u = UserInfo::authenticated("alice", vec![AUTHENTICATED.into(), "dev".into()]);
        assert_eq!(u.groups, vec![AUTHENTICATED.to_string(), "dev".to_string()]);
        let u = UserInfo::authenticated("bob", vec![]);
        assert_eq!(u.groups, vec![AUTHENTICATED.to_string()]);
    }

    #[test]
    fn node_name_needs_group_and_prefix() {
        let u = UserInfo::authenticated("system:node:n1", vec![NODES.into()]);
        assert_eq!(u.node_name(), Some("n1"));
        let u = UserInfo::authenticated("system:node:n1", vec![]);
        assert_eq!(u.node_name(), None);
    }
}
