//! The schema facts of built-in types that strategic merge patch and server-side apply need:
//! for each (type, field), how a list field merges (atomic, set, or map keyed by a merge key),
//! whether its maps honour `$retainKeys`, and the named type of its value, so that nested
//! types (a pod template inside a Deployment, a CronJob's job template) reuse one table.
//!
//! Fields absent from the table are plain: objects merge key by key, lists are atomic.
//! The facts follow the `patchStrategy` / `patchMergeKey` tags and `listType` /
//! `listMapKey` markers of the Kubernetes v1.32 API types.

use super::TypeRef;

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole (no patch strategy; SSA `atomic`).
    Atomic,
    /// A list of scalars merged as a set (`patchStrategy:"merge"` without key; SSA `set`).
    Set,
    /// A list of objects merged item by item: SMP matches items by `merge_key` (or replaces
    /// the list when the field has no patch strategy, only `listType=map`); server-side apply
    /// identifies items by all of `keys` (the list-map keys).
    Map {
        merge_key: Option<&'static str>,
        keys: &'static [&'static str],
    },
}

/// What the schema says about one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldRule {
    pub list: ListType,
    /// The field's maps (or the maps in its list) accept `$retainKeys`.
    pub retain_keys: bool,
    /// The named type of the field's value (of its items, for lists), if the table knows it.
    pub child: Option<&'static str>,
}

impl FieldRule {
    const PLAIN: FieldRule = FieldRule {
        list: ListType::Atomic,
        retain_keys: false,
        child: None,
    };

    /// The schema position of the field's value (or of each item of its list).
    pub fn schema(&self) -> Schema {
        Schema { ty: self.child }
    }
}

/// A position in the schema: the named type of the value at hand, or untyped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    ty: Option<&'static str>,
}

impl Schema {
    /// The schema of a whole object of `kind`. Kinds without entries (custom resources,
    /// ConfigMaps...) still get the ObjectMeta rules for `metadata`.
    pub fn for_kind(kind: &TypeRef) -> Schema {
        let ty = ROOT_TYPES
            .iter()
            .find(|(group, k, _)| *group == kind.group && *k == kind.kind)
            .map_or("Object", |(_, _, ty)| *ty);
        Schema { ty: Some(ty) }
    }

    /// The rule of `field` of this schema's type.
    pub fn field(&self, field: &str) -> FieldRule {
        let Some(ty) = self.ty else {
            return FieldRule::PLAIN;
        };
        if let Some(entry) = FIELDS.iter().find(|e| e.0 == ty && e.1 == field) {
            return entry.2;
        }
        if field == "metadata" && ty != "ObjectMeta" {
            return child_type("ObjectMeta");
        }
        FieldRule::PLAIN
    }
}

/// API groups served by kube-apiserver itself; objects of these groups accept strategic merge
/// patches. Custom resources (any other group) get 415 Unsupported Media Type, as in kube.
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
];

/// Whether objects of `kind` accept `application/strategic-merge-patch+json` (built-in types
/// do; custom resources do not).
pub fn supports_strategic_merge(kind: &TypeRef) -> bool {
    BUILTIN_GROUPS.contains(&kind.group.as_str())
}

/// (group, kind) -> named type of the whole object, for kinds with list rules below `metadata`.
const ROOT_TYPES: &[(&str, &str, &str)] = &[
    ("", "Pod", "Pod"),
    ("", "PodTemplate", "PodTemplate"),
    ("", "ReplicationController", "ReplicationController"),
    ("", "Service", "Service"),
    ("", "Node", "Node"),
    ("", "Namespace", "Namespace"),
    ("", "ServiceAccount", "ServiceAccount"),
    ("", "PersistentVolumeClaim", "PersistentVolumeClaim"),
    ("apps", "Deployment", "Deployment"),
    ("apps", "ReplicaSet", "Workload"),
    ("apps", "StatefulSet", "Workload"),
    ("apps", "DaemonSet", "Workload"),
    ("batch", "Job", "Workload"),
    ("batch", "CronJob", "CronJob"),
];

const fn child_type(ty: &'static str) -> FieldRule {
    FieldRule {
        list: ListType::Atomic,
        retain_keys: false,
        child: Some(ty),
    }
}

const fn retained(ty: &'static str) -> FieldRule {
    FieldRule {
        list: ListType::Atomic,
        retain_keys: true,
        child: Some(ty),
    }
}

const fn set_list() -> FieldRule {
    FieldRule {
        list: ListType::Set,
        retain_keys: false,
        child: None,
    }
}

const fn map_list(
    merge_key: &'static str,
    keys: &'static [&'static str],
    child: Option<&'static str>,
) -> FieldRule {
    FieldRule {
        list: ListType::Map {
            merge_key: Some(merge_key),
            keys,
        },
        retain_keys: false,
        child,
    }
}

/// A `listType=map` field without a patch strategy: SMP replaces it, SSA merges it by `keys`.
const fn apply_only_map_list(keys: &'static [&'static str]) -> FieldRule {
    FieldRule {
        list: ListType::Map {
            merge_key: None,
            keys,
        },
        retain_keys: false,
        child: None,
    }
}

const fn map_list_retained(
    merge_key: &'static str,
    keys: &'static [&'static str],
    child: Option<&'static str>,
) -> FieldRule {
    FieldRule {
        list: ListType::Map {
            merge_key: Some(merge_key),
            keys,
        },
        retain_keys: true,
        child,
    }
}

const NAME: &[&str] = &["name"];
const TYPE: &[&str] = &["type"];
const IP: &[&str] = &["ip"];

/// (type, field, rule). Types are named after the Kubernetes Go types; "Workload" stands for
/// the spec/status shape shared by ReplicaSet, StatefulSet, DaemonSet and Job, and
/// "ConditionedStatus" for any status whose only list rule is `conditions` keyed by `type`.
const FIELDS: &[(&str, &str, FieldRule)] = &[
    // metav1.ObjectMeta
    ("ObjectMeta", "finalizers", set_list()),
    (
        "ObjectMeta",
        "ownerReferences",
        map_list("uid", &["uid"], None),
    ),
    // Objects and the types leading to a PodSpec.
    ("Pod", "spec", child_type("PodSpec")),
    ("Pod", "status", child_type("PodStatus")),
    ("PodTemplate", "template", child_type("PodTemplateSpec")),
    ("PodTemplateSpec", "spec", child_type("PodSpec")),
    ("ReplicationController", "spec", child_type("WorkloadSpec")),
    (
        "ReplicationController",
        "status",
        child_type("ConditionedStatus"),
    ),
    ("Deployment", "spec", child_type("DeploymentSpec")),
    ("Deployment", "status", child_type("ConditionedStatus")),
    ("DeploymentSpec", "template", child_type("PodTemplateSpec")),
    ("DeploymentSpec", "strategy", retained("DeploymentStrategy")),
    ("Workload", "spec", child_type("WorkloadSpec")),
    ("Workload", "status", child_type("ConditionedStatus")),
    ("WorkloadSpec", "template", child_type("PodTemplateSpec")),
    ("CronJob", "spec", child_type("CronJobSpec")),
    ("CronJobSpec", "jobTemplate", child_type("JobTemplateSpec")),
    ("JobTemplateSpec", "spec", child_type("WorkloadSpec")),
    (
        "ConditionedStatus",
        "conditions",
        map_list("type", TYPE, None),
    ),
    // core/v1 PodSpec and Container
    (
        "PodSpec",
        "containers",
        map_list("name", NAME, Some("Container")),
    ),
    (
        "PodSpec",
        "initContainers",
        map_list("name", NAME, Some("Container")),
    ),
    (
        "PodSpec",
        "ephemeralContainers",
        map_list("name", NAME, Some("Container")),
    ),
    ("PodSpec", "volumes", map_list_retained("name", NAME, None)),
    ("PodSpec", "imagePullSecrets", map_list("name", NAME, None)),
    ("PodSpec", "hostAliases", map_list("ip", IP, None)),
    (
        "PodSpec",
        "topologySpreadConstraints",
        map_list("topologyKey", &["topologyKey", "whenUnsatisfiable"], None),
    ),
    (
        "PodSpec",
        "resourceClaims",
        map_list_retained("name", NAME, None),
    ),
    ("PodSpec", "schedulingGates", map_list("name", NAME, None)),
    ("Container", "env", map_list("name", NAME, None)),
    (
        "Container",
        "ports",
        map_list("containerPort", &["containerPort", "protocol"], None),
    ),
    (
        "Container",
        "volumeMounts",
        map_list("mountPath", &["mountPath"], None),
    ),
    (
        "Container",
        "volumeDevices",
        map_list("devicePath", &["devicePath"], None),
    ),
    ("Container", "resources", child_type("ResourceRequirements")),
    ("ResourceRequirements", "claims", apply_only_map_list(NAME)),
    // core/v1 PodStatus
    ("PodStatus", "conditions", map_list("type", TYPE, None)),
    ("PodStatus", "podIPs", map_list("ip", IP, None)),
    ("PodStatus", "hostIPs", map_list("ip", IP, None)),
    (
        "PodStatus",
        "resourceClaimStatuses",
        map_list_retained("name", NAME, None),
    ),
    // core/v1 Service, Node, Namespace, ServiceAccount, PersistentVolumeClaim
    ("Service", "spec", child_type("ServiceSpec")),
    ("Service", "status", child_type("ConditionedStatus")),
    (
        "ServiceSpec",
        "ports",
        map_list("port", &["port", "protocol"], None),
    ),
    ("Node", "spec", child_type("NodeSpec")),
    ("Node", "status", child_type("NodeStatus")),
    ("NodeSpec", "podCIDRs", set_list()),
    ("NodeStatus", "conditions", map_list("type", TYPE, None)),
    ("NodeStatus", "addresses", map_list("type", TYPE, None)),
    ("Namespace", "status", child_type("ConditionedStatus")),
    ("ServiceAccount", "secrets", map_list("name", NAME, None)),
    (
        "PersistentVolumeClaim",
        "status",
        child_type("ConditionedStatus"),
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_at(kind: &TypeRef, path: &[&str]) -> FieldRule {
        let mut schema = Schema::for_kind(kind);
        let mut rule = FieldRule::PLAIN;
        for field in path {
            rule = schema.field(field);
            schema = rule.schema();
        }
        rule
    }

    #[test]
    fn pod_template_paths_reach_the_pod_spec_table() {
        let containers = map_list("name", NAME, Some("Container"));
        let cases: &[(TypeRef, &[&str])] = &[
            (TypeRef::new("", "v1", "Pod"), &["spec", "containers"]),
            (
                TypeRef::new("apps", "v1", "Deployment"),
                &["spec", "template", "spec", "containers"],
            ),
            (
                TypeRef::new("apps", "v1", "StatefulSet"),
                &["spec", "template", "spec", "containers"],
            ),
            (
                TypeRef::new("batch", "v1", "CronJob"),
                &[
                    "spec",
                    "jobTemplate",
                    "spec",
                    "template",
                    "spec",
                    "containers",
                ],
            ),
            (
                TypeRef::new("", "v1", "PodTemplate"),
                &["template", "spec", "containers"],
            ),
        ];
        for (kind, path) in cases {
            assert_eq!(rule_at(kind, path), containers, "{kind:?} {path:?}");
        }
    }

    #[test]
    fn table_facts() {
        let pod = TypeRef::new("", "v1", "Pod");
        let node = TypeRef::new("", "v1", "Node");
        let deploy = TypeRef::new("apps", "v1", "Deployment");
        let cm = TypeRef::new("", "v1", "ConfigMap");
        assert_eq!(
            rule_at(&pod, &["spec", "tolerations"]).list,
            ListType::Atomic
        );
        assert_eq!(rule_at(&node, &["spec", "taints"]).list, ListType::Atomic);
        assert_eq!(rule_at(&node, &["spec", "podCIDRs"]).list, ListType::Set);
        assert_eq!(
            rule_at(&cm, &["metadata", "finalizers"]).list,
            ListType::Set
        );
        assert!(matches!(
            rule_at(&pod, &["spec", "volumes"]).list,
            ListType::Map {
                merge_key: Some("name"),
                keys: ["name"]
            }
        ));
        assert!(rule_at(&deploy, &["spec", "strategy"]).retain_keys);
        assert!(matches!(
            rule_at(&pod, &["spec", "containers", "ports"]).list,
            ListType::Map {
                merge_key: Some("containerPort"),
                ..
            }
        ));
        assert_eq!(rule_at(&cm, &["data", "metadata"]), FieldRule::PLAIN);
    }

    #[test]
    fn custom_resources_do_not_take_strategic_merge() {
        assert!(supports_strategic_merge(&TypeRef::new(
            "apps",
            "v1",
            "Deployment"
        )));
        assert!(supports_strategic_merge(&TypeRef::new(
            "",
            "v1",
            "ConfigMap"
        )));
        assert!(!supports_strategic_merge(&TypeRef::new(
            "example.com",
            "v1",
            "Widget"
        )));
    }
}
