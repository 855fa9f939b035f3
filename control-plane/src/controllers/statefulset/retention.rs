//! `persistentVolumeClaimRetentionPolicy`: which owners a StatefulSet's claim should have so
//! that the garbage collector removes it when the policy says so. `whenDeleted: Delete` makes
//! the set an owner (the claim goes with the set); `whenScaled: Delete` makes the pod an owner
//! once its ordinal is scaled away (the claim goes with the pod). `Retain` leaves the claim
//! without that owner. Pure: the controller writes what `wanted_owners` returns.

use k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy as Policy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

fn deletes(value: &Option<String>) -> bool {
    value.as_deref() == Some("Delete")
}

/// The claim's owner references as the policy wants them, or None when they already are.
/// `set` and `pod` are references to the StatefulSet and to the pod using the claim;
/// `scaled_down` says the pod's ordinal is outside the set's range.
pub fn wanted_owners(
    current: &[OwnerReference],
    policy: Option<&Policy>,
    set: &OwnerReference,
    pod: &OwnerReference,
    scaled_down: bool,
) -> Option<Vec<OwnerReference>> {
    let (when_deleted, when_scaled) = policy
        .map(|p| (deletes(&p.when_deleted), deletes(&p.when_scaled)))
        .unwrap_or((false, false));
    let (want_set, want_pod) = match (when_deleted, when_scaled) {
        (false, false) => (false, false),
        (true, false) => (true, false),
        (false, true) => (false, scaled_down),
        (true, true) => (!scaled_down, scaled_down),
    };
    let mut owners: Vec<OwnerReference> = current.to_vec();
    let mut changed = false;
    for (reference, wanted) in [(set, want_set), (pod, want_pod)] {
        // A reference to an older object of the same name (a recreated pod) is replaced.
        let same = |o: &OwnerReference| o.kind == reference.kind && o.name == reference.name;
        let present = owners.iter().any(|o| same(o) && o.uid == reference.uid);
        if wanted && !present {
            owners.retain(|o| !same(o));
            owners.push(reference.clone());
            changed = true;
        } else if !wanted && owners.iter().any(same) {
            owners.retain(|o| !same(o));
            changed = true;
        }
    }
    changed.then_some(owners)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(kind: &str, name: &str, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            ..Default::default()
        }
    }

    fn policy(when_deleted: &str, when_scaled: &str) -> Policy {
        Policy {
            when_deleted: Some(when_deleted.into()),
            when_scaled: Some(when_scaled.into()),
        }
    }

    fn kinds(owners: &[OwnerReference]) -> Vec<&str> {
        owners.iter().map(|o| o.kind.as_str()).collect()
    }

    #[test]
    fn owners_follow_the_policy() {
        let set = reference("StatefulSet", "web", "s1");
        let pod = reference("Pod", "web-2", "p1");
        let other = reference("Thing", "keep-me", "t1");
        // Retain/Retain: neither, and refs from an earlier policy are dropped.
        assert_eq!(wanted_owners(&[], None, &set, &pod, true), None);
        assert_eq!(
            wanted_owners(
                &[set.clone(), other.clone()],
                Some(&policy("Retain", "Retain")),
                &set,
                &pod,
                false
            )
            .as_deref()
            .map(kinds),
            Some(vec!["Thing"])
        );
        // whenDeleted=Delete: the set, scaled or not.
        let both = policy("Delete", "Retain");
        assert_eq!(
            wanted_owners(&[], Some(&both), &set, &pod, false)
                .as_deref()
                .map(kinds),
            Some(vec!["StatefulSet"])
        );
        assert_eq!(
            wanted_owners(std::slice::from_ref(&set), Some(&both), &set, &pod, true),
            None
        );
        // whenScaled=Delete: the pod once scaled away, never the set.
        let scaled = policy("Retain", "Delete");
        assert_eq!(wanted_owners(&[], Some(&scaled), &set, &pod, false), None);
        assert_eq!(
            wanted_owners(&[], Some(&scaled), &set, &pod, true)
                .as_deref()
                .map(kinds),
            Some(vec!["Pod"])
        );
        // Both Delete: the set while in range, the pod instead once scaled away.
        let delete = policy("Delete", "Delete");
        assert_eq!(
            wanted_owners(std::slice::from_ref(&set), Some(&delete), &set, &pod, true)
                .as_deref()
                .map(kinds),
            Some(vec!["Pod"])
        );
        assert_eq!(
            wanted_owners(std::slice::from_ref(&pod), Some(&delete), &set, &pod, false)
                .as_deref()
                .map(kinds),
            Some(vec!["StatefulSet"])
        );
    }

    #[test]
    fn a_reference_to_an_older_pod_is_replaced() {
        let set = reference("StatefulSet", "web", "s1");
        let old = reference("Pod", "web-2", "old");
        let pod = reference("Pod", "web-2", "new");
        let owners = wanted_owners(&[old], Some(&policy("Retain", "Delete")), &set, &pod, true);
        assert_eq!(owners.map(|o| o[0].uid.clone()), Some("new".to_string()));
    }
}
