//! What the workload controllers (ReplicaSet, Deployment, DaemonSet, StatefulSet) share:
//! controller owner references and claiming (adopt matching orphans, release what no longer
//! matches), pod readiness and availability, pods made from templates, kube's ranking of
//! pods to delete first, and the short stable hashes of templates.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::scheduler::selector::LabelMatcher;

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Compiles a workload's selector; an empty or missing one selects nothing (kube's rule for
/// controllers).
pub fn selector_of(selector: &LabelSelector) -> Result<LabelMatcher, SyncError> {
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    if empty {
        return Ok(LabelMatcher::nothing());
    }
    LabelMatcher::compile(Some(selector))
        .map_err(|e| SyncError::Invalid(format!("invalid selector: {e}")))
}

pub fn labels_of(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// The controller owner reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A reference marking `owner` as the controller of what carries it.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Which children an owner keeps after claiming: its own that still match, and matching
/// orphans it adopted; its own that no longer match are released (their reference removed).
/// Children being deleted are neither adopted nor released.
pub async fn claim<K>(
    api: &Api<K>,
    owner_ref: &OwnerReference,
    owner_deleting: bool,
    selector: &LabelMatcher,
    candidates: Vec<std::sync::Arc<K>>,
) -> Result<Vec<std::sync::Arc<K>>, SyncError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut owned = Vec::new();
    for child in candidates {
        let meta = child.meta();
        let matches = selector.matches(&labels_of(meta));
        match controller_of(meta) {
            Some(r) if r.uid == owner_ref.uid => {
                if matches || meta.deletion_timestamp.is_some() {
                    owned.push(child);
                } else if !owner_deleting {
                    set_owner_refs(api, meta, others(meta, &owner_ref.uid)).await?;
                }
            }
            Some(_) => {}
            None => {
                if matches && !owner_deleting && meta.deletion_timestamp.is_none() {
                    let mut refs = others(meta, &owner_ref.uid);
                    refs.push(owner_ref.clone());
                    match set_owner_refs(api, meta, refs).await {
                        Ok(()) => owned.push(child),
                        Err(SyncError::Api(kube::Error::Api(s))) if s.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }
    Ok(owned)
}

fn others(meta: &ObjectMeta, uid: &str) -> Vec<OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != uid)
        .cloned()
        .collect()
}

async fn set_owner_refs<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    refs: Vec<OwnerReference>,
) -> Result<(), SyncError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = meta.name.clone().unwrap_or_default();
    let patch = json!({"metadata": {"ownerReferences": refs, "uid": meta.uid}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

pub fn is_terminal(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// Since when the pod has been Ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (condition.status == "True").then(|| {
        condition
            .last_transition_time
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
    })
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| {
        min_ready_seconds <= 0
            || since.as_second() + i64::from(min_ready_seconds) <= now.as_second()
    })
}

/// When a Ready pod becomes available, if it is not yet (to sync again then).
pub fn becomes_available_in(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let since = ready_since(pod)?;
    let at = since.as_second() + i64::from(min_ready_seconds);
    let left = at - now.as_second();
    (min_ready_seconds > 0 && left > 0).then(|| std::time::Duration::from_secs(left as u64 + 1))
}

/// A pod from `template`: its labels, annotations and spec, named `name` or generated from
/// `generate_name`, controlled by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    name: Option<String>,
    generate_name: Option<String>,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name,
            namespace: Some(namespace.to_string()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// kube's order of pods to delete first: unassigned before assigned, Pending before Unknown
/// before Running, not ready before ready, ready for less time first, more restarts first,
/// newer first.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let assigned = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let phase_rank = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    };
    let restarts = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| {
                cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
            })
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    assigned(a)
        .cmp(&assigned(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then(restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

/// 32-bit FNV-1a.
pub fn fnv32a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// kube's encoding of a hash as a label-safe string (no vowels, no look-alike digits).
pub fn safe_encode(hash: u32) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// A stable short hash of a template (and a collision count, when set).
pub fn template_hash<T: serde::Serialize>(template: &T, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(count) = collision_count.filter(|c| *c > 0) {
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    safe_encode(fnv32a(&bytes))
}

/// Resolves an int-or-percent against `total`, rounding up or down.
pub fn scaled_value(
    value: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    default: &str,
    total: i32,
    round_up: bool,
) -> Result<i32, SyncError> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let owned;
    let value = match value {
        Some(v) => v,
        None => {
            owned = IntOrString::String(default.to_string());
            &owned
        }
    };
    match value {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| {
                    SyncError::Invalid(format!("invalid value for IntOrString: {s:?}"))
                })?;
            let product = percent * i64::from(total);
            let result = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(result as i32)
        }
    }
}

pub fn now() -> Timestamp {
    Timestamp::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn percentages_round_like_kube() {
        let pct = IntOrString::String("25%".into());
        assert_eq!(scaled_value(Some(&pct), "25%", 5, true).ok(), Some(2));
        assert_eq!(scaled_value(Some(&pct), "25%", 5, false).ok(), Some(1));
        assert_eq!(scaled_value(None, "25%", 10, false).ok(), Some(2));
        assert_eq!(
            scaled_value(Some(&IntOrString::Int(3)), "25%", 10, false).ok(),
            Some(3)
        );
        assert!(scaled_value(Some(&IntOrString::String("x".into())), "", 1, true).is_err());
    }

    #[test]
    fn hashes_are_stable_and_label_safe() {
        let a = template_hash(&json!({"a": 1}), None);
        assert_eq!(a, template_hash(&json!({"a": 1}), None));
        assert_ne!(a, template_hash(&json!({"a": 1}), Some(1)));
        assert!(
            a.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
    }
}

/// Revisions of a DaemonSet's or StatefulSet's template (ControllerRevisions they own).
pub mod revisions {
    use k8s_openapi::api::apps::v1::ControllerRevision;
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
    use kube::Api;
    use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
    use serde_json::json;

    use super::{SyncError, controller_of, template_hash};

    /// The ControllerRevision holding `template`'s patch.
    pub fn data_of(template: &PodTemplateSpec) -> serde_json::Value {
        let mut template = serde_json::to_value(template).unwrap_or_default();
        if let Some(object) = template.as_object_mut() {
            object.insert("$patch".into(), "replace".into());
        }
        json!({"spec": {"template": template}})
    }

    /// The template a revision holds.
    pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
        let mut template = revision.data.as_ref()?.0.pointer("/spec/template")?.clone();
        if let Some(object) = template.as_object_mut() {
            object.remove("$patch");
        }
        serde_json::from_value(template).ok()
    }

    /// The owner's revisions, and the one for `template` (created, or renumbered as the
    /// newest when an older template came back). Revisions past `history_limit` that no
    /// `in_use` hash needs are deleted.
    pub async fn sync(
        api: &Api<ControllerRevision>,
        owner: &OwnerReference,
        labels: std::collections::BTreeMap<String, String>,
        template: &PodTemplateSpec,
        history_limit: i32,
        in_use: &[String],
    ) -> Result<(Vec<ControllerRevision>, ControllerRevision), SyncError> {
        let mut owned: Vec<ControllerRevision> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == owner.uid))
            .collect();
        owned.sort_by_key(|r| r.revision);
        let data = data_of(template);
        let newest = owned.last().map_or(0, |r| r.revision);
        let found = owned
            .iter()
            .position(|r| r.data.as_ref().map(|d| &d.0) == Some(&data));
        let current = match found {
            Some(i) if owned[i].revision == newest => owned[i].clone(),
            Some(i) => {
                let name = owned[i].metadata.name.clone().unwrap_or_default();
                let patch = json!({"revision": newest + 1});
                let updated = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                owned[i] = updated.clone();
                updated
            }
            None => {
                let hash = template_hash(&data, None);
                let mut labels = labels;
                labels.insert("controller.kubernetes.io/hash".into(), hash.clone());
                let revision = ControllerRevision {
                    metadata: ObjectMeta {
                        name: Some(format!("{}-{hash}", owner.name)),
                        labels: Some(labels),
                        owner_references: Some(vec![owner.clone()]),
                        ..Default::default()
                    },
                    data: Some(RawExtension(data)),
                    revision: newest + 1,
                };
                let created = match api.create(&PostParams::default(), &revision).await {
                    Ok(created) => created,
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        api.get(revision.metadata.name.as_deref().unwrap_or_default())
                            .await?
                    }
                    Err(error) => return Err(error.into()),
                };
                owned.push(created.clone());
                created
            }
        };
        let current_name = current.metadata.name.clone();
        let spare: Vec<&ControllerRevision> = owned
            .iter()
            .filter(|r| r.metadata.name != current_name)
            .filter(|r| {
                !in_use.iter().any(|h| {
                    Some(h) == r.metadata.name.as_ref()
                        || r.metadata
                            .name
                            .as_deref()
                            .is_some_and(|n| n.ends_with(&format!("-{h}")))
                })
            })
            .collect();
        let excess = spare.len() as i64 - i64::from(history_limit);
        for revision in spare.into_iter().take(excess.max(0) as usize) {
            let name = revision.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok((owned, current))
    }

    /// The hash part of a revision's name (`<owner>-<hash>`).
    pub fn hash_of(revision: &ControllerRevision) -> String {
        let name = revision.metadata.name.clone().unwrap_or_default();
        name.rsplit_once('-')
            .map_or(name.clone(), |(_, h)| h.to_string())
    }
}

/// Writes `status` through the status subresource of `object` when it differs from the
/// object's current status (a zero count that `status` omits counts as unchanged). Ok(false)
/// when the object is gone.
pub async fn patch_status_if_changed<K>(
    client: &kube::Client,
    object: &K,
    current: &serde_json::Value,
    status: &serde_json::Value,
) -> Result<bool, kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let changed = status.as_object().into_iter().flatten().any(|(k, v)| {
        let before = current.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let before = if before == json!(0) && v.is_null() {
            serde_json::Value::Null
        } else {
            before
        };
        &before != v
    });
    if !changed {
        return Ok(true);
    }
    let meta = object.meta();
    let api: Api<K> = Api::namespaced(
        client.clone(),
        meta.namespace.as_deref().unwrap_or_default(),
    );
    let name = meta.name.clone().unwrap_or_default();
    match api
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(false),
        Err(error) => Err(error),
    }
}
