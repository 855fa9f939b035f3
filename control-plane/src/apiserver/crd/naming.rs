//! Which CustomResourceDefinitions get their names, as kube's naming controller decides it, and
//! the status the server writes on every CRD: `acceptedNames`, the `NamesAccepted`,
//! `Established` and `Terminating` conditions, and `storedVersions`. Pure functions over the
//! CRDs as JSON; the controller in `crd_serving` applies the result.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::definition::{accepted_names, list_kind, singular, storage_version};

/// Why a CRD's names were not accepted: kube's condition reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameConflict {
    /// PluralConflict, SingularConflict, ShortNamesConflict, KindConflict or ListKindConflict.
    pub reason: &'static str,
    /// `"crontabs" is already in use`.
    pub message: String,
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn texts(v: &Value, pointer: &str) -> Vec<String> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn condition_true(crd: &Value, type_: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| text(c, "/type") == type_ && text(c, "/status") == "True")
        })
}

/// The names one group has handed out so far: resource names (plural, singular, short names)
/// and kinds (kind, listKind).
#[derive(Default)]
struct GroupNames {
    resources: HashSet<(String, String)>,
    kinds: HashSet<(String, String)>,
}

impl GroupNames {
    fn conflict(&self, crd: &Value) -> Option<NameConflict> {
        let group = text(crd, "/spec/group").to_string();
        let taken = |name: &str| self.resources.contains(&(group.clone(), name.to_string()));
        let kind_taken = |name: &str| self.kinds.contains(&(group.clone(), name.to_string()));
        let in_use = |reason, name: &str| {
            Some(NameConflict {
                reason,
                message: format!("{name:?} is already in use"),
            })
        };
        let plural = text(crd, "/spec/names/plural");
        if taken(plural) {
            return in_use("PluralConflict", plural);
        }
        let singular = singular(crd);
        if taken(&singular) {
            return in_use("SingularConflict", &singular);
        }
        if let Some(short) = texts(crd, "/spec/names/shortNames")
            .iter()
            .find(|s| taken(s))
        {
            return in_use("ShortNamesConflict", short);
        }
        let kind = text(crd, "/spec/names/kind");
        if kind_taken(kind) {
            return in_use("KindConflict", kind);
        }
        let list_kind = list_kind(crd);
        if kind_taken(&list_kind) {
            return in_use("ListKindConflict", &list_kind);
        }
        None
    }

    fn take(&mut self, crd: &Value) {
        let group = text(crd, "/spec/group").to_string();
        let mut names = vec![text(crd, "/spec/names/plural").to_string(), singular(crd)];
        names.extend(texts(crd, "/spec/names/shortNames"));
        for name in names {
            self.resources.insert((group.clone(), name));
        }
        for kind in [text(crd, "/spec/names/kind").to_string(), list_kind(crd)] {
            self.kinds.insert((group.clone(), kind));
        }
    }
}

/// For each CRD (same order as `crds`), None when its names are accepted, else the conflict.
/// CRDs that already hold accepted names keep them; the others are served first come, first
/// served (by creationTimestamp, then name).
pub fn decide_names(crds: &[Value]) -> Vec<Option<NameConflict>> {
    let mut order: Vec<usize> = (0..crds.len()).collect();
    order.sort_by_key(|&i| {
        let crd = &crds[i];
        (
            !condition_true(crd, "NamesAccepted"),
            text(crd, "/metadata/creationTimestamp").to_string(),
            text(crd, "/metadata/name").to_string(),
        )
    });
    let mut names = GroupNames::default();
    let mut decisions = vec![None; crds.len()];
    for i in order {
        match names.conflict(&crds[i]) {
            Some(conflict) => decisions[i] = Some(conflict),
            None => names.take(&crds[i]),
        }
    }
    decisions
}

/// One condition, keeping the previous lastTransitionTime when its status did not change.
fn condition(
    old: &Value,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) -> Value {
    let status = if status { "True" } else { "False" };
    let previous = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| text(c, "/type") == type_))
        .filter(|c| text(c, "/status") == status)
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str);
    json!({
        "type": type_,
        "status": status,
        "lastTransitionTime": previous.unwrap_or(now),
        "reason": reason,
        "message": message,
    })
}

/// The status the server wants `crd` to carry: accepted names and Established when `conflict`
/// is None; NamesAccepted=False (kube's reason and message) and Established=False otherwise;
/// Terminating=True while its custom resources are being deleted; storedVersions with the
/// current storage version added.
pub fn desired_status(
    crd: &Value,
    conflict: Option<&NameConflict>,
    terminating: bool,
    now: DateTime<Utc>,
) -> Value {
    let now = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut conditions = match conflict {
        None => vec![
            condition(
                crd,
                "NamesAccepted",
                true,
                "NoConflicts",
                "no conflicts found",
                &now,
            ),
            condition(
                crd,
                "Established",
                true,
                "InitialNamesAccepted",
                "the initial names have been accepted",
                &now,
            ),
        ],
        Some(c) => vec![
            condition(crd, "NamesAccepted", false, c.reason, &c.message, &now),
            condition(
                crd,
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
                &now,
            ),
        ],
    };
    if terminating {
        conditions.push(condition(
            crd,
            "Terminating",
            true,
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
            &now,
        ));
    }
    let accepted = match conflict {
        None => accepted_names(crd),
        Some(_) => crd
            .pointer("/status/acceptedNames")
            .cloned()
            .unwrap_or_else(|| json!({"plural": "", "kind": ""})),
    };
    let mut stored = texts(crd, "/status/storedVersions");
    if let Some(v) = storage_version(crd).filter(|v| !stored.contains(v)) {
        stored.push(v);
    }
    json!({
        "conditions": conditions,
        "acceptedNames": accepted,
        "storedVersions": stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str, created: &str) -> Value {
        json!({
            "metadata": {"name": format!("{plural}.example.com"), "creationTimestamp": created, "uid": name},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": plural, "kind": kind, "shortNames": ["s".to_string() + plural]},
                "versions": [{"name": "v1", "served": true, "storage": true}]},
        })
    }

    #[test]
    fn first_come_first_served_and_kube_reasons() {
        let a = crd("a", "widgets", "Widget", "2024-01-01T00:00:00Z");
        let b = crd("b", "widgets", "Gadget", "2024-01-02T00:00:00Z");
        let mut c = crd("c", "gadgets", "Widget", "2024-01-03T00:00:00Z");
        c["spec"]["names"]["singular"] = json!("gadget");
        let d = crd("d", "things", "Thing", "2024-01-04T00:00:00Z");
        let decisions = decide_names(&[b.clone(), c.clone(), a.clone(), d]);
        let b_conflict = decisions[0].as_ref().expect("b conflicts with a");
        assert_eq!(b_conflict.reason, "PluralConflict");
        assert_eq!(b_conflict.message, "\"widgets\" is already in use");
        assert_eq!(
            decisions[1].as_ref().map(|c| c.reason),
            Some("KindConflict")
        );
        assert!(decisions[2].is_none());
        assert!(decisions[3].is_none());
    }

    #[test]
    fn holders_of_accepted_names_keep_them() {
        let mut late = crd("late", "widgets", "Widget", "2024-02-01T00:00:00Z");
        late["status"] = json!({"conditions": [{"type": "NamesAccepted", "status": "True"}]});
        let early = crd("early", "widgets", "Widget", "2024-01-01T00:00:00Z");
        let decisions = decide_names(&[early, late]);
        assert!(decisions[0].is_some());
        assert!(decisions[1].is_none());
    }

    #[test]
    fn short_name_and_list_kind_conflicts() {
        let a = crd("a", "widgets", "Widget", "2024-01-01T00:00:00Z");
        let mut b = crd("b", "gizmos", "Gizmo", "2024-01-02T00:00:00Z");
        b["spec"]["names"]["shortNames"] = json!(["widgets"]);
        let mut c = crd("c", "doodads", "Doodad", "2024-01-03T00:00:00Z");
        c["spec"]["names"]["listKind"] = json!("WidgetList");
        let decisions = decide_names(&[a, b, c]);
        assert_eq!(
            decisions[1].as_ref().map(|c| c.reason),
            Some("ShortNamesConflict")
        );
        assert_eq!(
            decisions[2].as_ref().map(|c| c.reason),
            Some("ListKindConflict")
        );
    }

    #[test]
    fn status_conditions_and_stored_versions() {
        let now = DateTime::parse_from_rfc3339("2024-03-01T10:00:00Z")
            .expect("fixture")
            .with_timezone(&Utc);
        let mut a = crd("a", "widgets", "Widget", "2024-01-01T00:00:00Z");
        a["status"] = json!({"storedVersions": ["v0"]});
        let status = desired_status(&a, None, false, now);
        assert_eq!(status["storedVersions"], json!(["v0", "v1"]));
        assert_eq!(status["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(status["conditions"][1]["type"], "Established");
        assert_eq!(status["conditions"][1]["status"], "True");
        // Written again later: unchanged (transition times kept), so no write is needed.
        a["status"] = status.clone();
        let later = now + chrono::Duration::seconds(60);
        assert_eq!(desired_status(&a, None, false, later), status);
        let terminating = desired_status(&a, None, true, later);
        assert_eq!(
            terminating["conditions"][2]["reason"],
            "InstanceDeletionInProgress"
        );
        assert_eq!(
            terminating["conditions"][2]["lastTransitionTime"],
            "2024-03-01T10:01:00Z"
        );
        let conflict = NameConflict {
            reason: "PluralConflict",
            message: "\"widgets\" is already in use".into(),
        };
        let refused = desired_status(&crd("b", "widgets", "W", ""), Some(&conflict), false, now);
        assert_eq!(refused["conditions"][0]["status"], "False");
        assert_eq!(refused["conditions"][0]["reason"], "PluralConflict");
        assert_eq!(refused["conditions"][1]["reason"], "NotAccepted");
        assert_eq!(refused["acceptedNames"], json!({"plural": "", "kind": ""}));
    }
}
