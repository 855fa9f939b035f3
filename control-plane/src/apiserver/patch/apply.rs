//! Server-side apply (`application/apply-patch+yaml`) and the managedFields bookkeeping of
//! ordinary writes (`track_update`, operation "Update").
//!
//! What is modelled:
//! - Field sets use the schema facts of `merge_keys`: maps are granular, list-maps
//!   (containers, env, ports...) are owned item by item (`k:{...}`), set lists (finalizers)
//!   value by value (`v:...`), every other list is atomic (owned as a whole). Custom
//!   resources are untyped: maps granular, lists atomic.
//! - Not tracked: `apiVersion`, `kind`, and `metadata.{name, namespace, managedFields,
//!   resourceVersion, uid, creationTimestamp, generation, selfLink, deletionTimestamp,
//!   deletionGracePeriodSeconds}`. Main-resource writes track everything but `status`;
//!   writes with subresource "status" track only `status`.
//! - Apply: the applied configuration's fields become the manager's "Apply" set. A field
//!   another manager owns with a different live value is a conflict (an error listing them
//!   all, unless `force`, which moves ownership). Equal values are shared, not conflicts.
//!   Fields the manager applied before and no longer applies are removed from the object
//!   unless another manager owns them (or something below them). Applying to `None` creates.
//! - Update: fields whose value changed (or appeared) go to the manager's "Update" entry
//!   and leave every other entry; fields that disappeared leave every entry. Entries left
//!   owning nothing are dropped. A write that supplies its own `managedFields` replaces the
//!   stored ones (as kube allows); one that omits them keeps the stored ones.
//!
//! Not modelled: conflicts between a field and its ancestors/descendants owned atomically by
//! another manager (only identical paths conflict), structs marked atomic in kube's schema
//! (e.g. label selectors are granular here), item ordering of applied list-maps (new items
//! are appended), defaulting beyond the `protocol: TCP` list-map key, and explicit `null`s in
//! an applied configuration (they are ignored rather than meaning "remove").

use serde_json::{Map, Value};

use super::TypeRef;
use super::fields::{
    FieldPath, FieldSet, FieldValues, ManagedEntry, PathElement, collect_fields, display_path,
    item_matches_key, list_item_key, read_managed_fields, remove_at, value_at,
    write_managed_fields,
};
use super::merge_keys::{FieldRule, ListType, Schema};

const APPLY: &str = "Apply";
const UPDATE: &str = "Update";

/// metadata members that identify or describe the object rather than configure it.
const UNTRACKED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Who applies, and how.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions<'a> {
    /// The field manager (`?fieldManager=`; kubectl sends "kubectl").
    pub manager: &'a str,
    /// `?force=true`: take ownership of conflicting fields instead of failing.
    pub force: bool,
    /// The time stamped on the manager's entry, RFC 3339.
    pub now: &'a str,
    /// "status" for applies to the status subresource.
    pub subresource: Option<&'a str>,
}

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyConflict {
    pub manager: String,
    /// The apiVersion the other manager used ("apps/v1").
    pub api_version: String,
    /// The field, as kube prints it: ".spec.replicas".
    pub field: String,
}

/// Why an apply was refused: conflicts are a 409, invalid configurations a 422/400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<ApplyConflict>),
    #[error("invalid apply configuration: {0}")]
    Invalid(String),
}

/// kube-apiserver's wording: `Apply failed with 1 conflict: conflict with "m" using v1: .f`.
fn conflict_message(conflicts: &[ApplyConflict]) -> String {
    let count = conflicts.len();
    let plural = if count == 1 { "" } else { "s" };
    let mut groups: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for c in conflicts {
        match groups
            .iter_mut()
            .find(|(m, v, _)| *m == c.manager && *v == c.api_version)
        {
            Some((_, _, fields)) => fields.push(&c.field),
            None => groups.push((&c.manager, &c.api_version, vec![&c.field])),
        }
    }
    let described: Vec<String> = groups
        .iter()
        .map(|(manager, version, fields)| match fields.as_slice() {
            [one] => format!("conflict with {manager:?} using {version}: {one}"),
            many => format!(
                "conflicts with {manager:?} using {version}:\n- {}",
                many.join("\n- ")
            ),
        })
        .collect();
    format!(
        "Apply failed with {count} conflict{plural}: {}",
        described.join("\n")
    )
}

/// Applies `applied` (the manager's whole intent) to `live` (or creates the object).
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    kind: &TypeRef,
    opts: &ApplyOptions,
) -> Result<Value, ApplyError> {
    validate_applied(applied, kind)?;
    let schema = Schema::for_kind(kind);
    let mut result = live.cloned().unwrap_or_else(|| identity_of(applied));
    let mut entries = read_managed_fields(&result).unwrap_or_default();
    let applied_view = tracked_view(applied, opts.subresource);
    let applied_fields = collect_fields(&applied_view, schema);
    let live_fields = collect_fields(&tracked_view(&result, opts.subresource), schema);
    let is_mine = |e: &ManagedEntry| {
        e.manager == opts.manager
            && e.operation == APPLY
            && e.subresource.as_deref() == opts.subresource
    };

    resolve_conflicts(
        &mut entries,
        &is_mine,
        &applied_fields,
        &live_fields,
        opts.force,
    )?;
    let applied_set: FieldSet = applied_fields.keys().cloned().collect();
    remove_no_longer_applied(&mut result, &entries, &is_mine, &applied_set);
    merge_applied(&mut result, &applied_view, schema);
    let mine = ManagedEntry {
        manager: opts.manager.to_string(),
        operation: APPLY.to_string(),
        api_version: kind.api_version(),
        time: opts.now.to_string(),
        subresource: opts.subresource.map(str::to_string),
        fields: applied_set,
    };
    replace_entry(&mut entries, &is_mine, mine);
    write_managed_fields(&mut result, &entries);
    Ok(result)
}

/// Fails with the conflicts, or (forced) takes the conflicting fields from their owners.
fn resolve_conflicts(
    entries: &mut [ManagedEntry],
    is_mine: &dyn Fn(&ManagedEntry) -> bool,
    applied: &FieldValues,
    live: &FieldValues,
    force: bool,
) -> Result<(), ApplyError> {
    let conflicts = find_conflicts(entries, is_mine, applied, live);
    if conflicts.is_empty() {
        return Ok(());
    }
    if !force {
        let conflicts = conflicts.into_iter().map(|(_, _, c)| c).collect();
        return Err(ApplyError::Conflicts(conflicts));
    }
    for (index, path, _) in &conflicts {
        if let Some(entry) = entries.get_mut(*index) {
            entry.fields.remove(path);
        }
    }
    Ok(())
}

/// Removes the fields the manager applied before but not now, unless another manager owns
/// them or something below them (or the new configuration sets something below them).
fn remove_no_longer_applied(
    object: &mut Value,
    entries: &[ManagedEntry],
    is_mine: &dyn Fn(&ManagedEntry) -> bool,
    applied_set: &FieldSet,
) {
    let Some(previous) = entries.iter().find(|e| is_mine(e)).map(|e| &e.fields) else {
        return;
    };
    let kept: FieldSet = entries
        .iter()
        .filter(|e| !is_mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .chain(applied_set.iter().cloned())
        .collect();
    for path in previous.difference(applied_set) {
        if !kept.iter().any(|other| other.starts_with(path)) {
            remove_and_prune(object, path);
        }
    }
}

/// Removes `path`, then the maps and lists above it that the removal left empty.
fn remove_and_prune(object: &mut Value, path: &[PathElement]) {
    remove_at(object, path);
    for depth in (1..path.len()).rev() {
        let ancestor = &path[..depth];
        let emptied = match value_at(object, ancestor) {
            Some(Value::Object(map)) => map.is_empty(),
            Some(Value::Array(items)) => items.is_empty(),
            _ => false,
        };
        if !emptied {
            break;
        }
        remove_at(object, ancestor);
    }
}

fn validate_applied(applied: &Value, kind: &TypeRef) -> Result<(), ApplyError> {
    let Some(object) = applied.as_object() else {
        return Err(ApplyError::Invalid(
            "the applied configuration must be an object".into(),
        ));
    };
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    match text("apiVersion") {
        None => return Err(ApplyError::Invalid("apiVersion must be set".into())),
        Some(v) if v != kind.api_version() => {
            return Err(ApplyError::Invalid(format!(
                "apiVersion {v:?} does not match the expected {:?}",
                kind.api_version()
            )));
        }
        Some(_) => {}
    }
    match text("kind") {
        None => return Err(ApplyError::Invalid("kind must be set".into())),
        Some(k) if k != kind.kind => {
            return Err(ApplyError::Invalid(format!(
                "kind {k:?} does not match the expected {:?}",
                kind.kind
            )));
        }
        Some(_) => {}
    }
    if object.get("metadata").is_some_and(|m| !m.is_object()) {
        return Err(ApplyError::Invalid("metadata must be an object".into()));
    }
    let managed = object.get("metadata").and_then(|m| m.get("managedFields"));
    if managed.is_some_and(|m| !m.is_null()) {
        return Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into(),
        ));
    }
    Ok(())
}

/// The object an apply creates before merging: apiVersion, kind, name and namespace.
fn identity_of(applied: &Value) -> Value {
    let mut object = Map::new();
    for name in ["apiVersion", "kind"] {
        if let Some(value) = applied.get(name) {
            object.insert(name.to_string(), value.clone());
        }
    }
    let mut metadata = Map::new();
    for name in ["name", "namespace", "generateName"] {
        if let Some(value) = applied.get("metadata").and_then(|m| m.get(name)) {
            metadata.insert(name.to_string(), value.clone());
        }
    }
    object.insert("metadata".to_string(), Value::Object(metadata));
    Value::Object(object)
}

/// The part of `object` whose fields are tracked for a write to `subresource`.
fn tracked_view(object: &Value, subresource: Option<&str>) -> Value {
    let Some(map) = object.as_object() else {
        return Value::Object(Map::new());
    };
    let mut view = map.clone();
    if subresource == Some("status") {
        view.retain(|name, _| name == "status");
        return Value::Object(view);
    }
    for name in ["apiVersion", "kind", "status"] {
        view.remove(name);
    }
    if let Some(Value::Object(metadata)) = view.get_mut("metadata") {
        metadata.retain(|name, _| !UNTRACKED_METADATA.contains(&name.as_str()));
        if metadata.is_empty() {
            view.remove("metadata");
        }
    }
    Value::Object(view)
}

/// Conflicts of the applied fields with other managers, with the index of their entry and
/// the conflicting path.
fn find_conflicts(
    entries: &[ManagedEntry],
    is_mine: &dyn Fn(&ManagedEntry) -> bool,
    applied: &FieldValues,
    live: &FieldValues,
) -> Vec<(usize, FieldPath, ApplyConflict)> {
    let mut conflicts = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if is_mine(entry) {
            continue;
        }
        for path in &entry.fields {
            let Some(Some(wanted)) = applied.get(path) else {
                continue;
            };
            let differs = matches!(live.get(path), Some(Some(current)) if current != wanted);
            if differs {
                conflicts.push((
                    index,
                    path.clone(),
                    ApplyConflict {
                        manager: entry.manager.clone(),
                        api_version: entry.api_version.clone(),
                        field: display_path(path),
                    },
                ));
            }
        }
    }
    conflicts
}

/// Puts `entry` in place of the one `is_mine` selects, or appends it.
fn replace_entry(
    entries: &mut Vec<ManagedEntry>,
    is_mine: &dyn Fn(&ManagedEntry) -> bool,
    entry: ManagedEntry,
) {
    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(existing) => *existing = entry,
        None => entries.push(entry),
    }
}

/// Merges an applied configuration into the object: maps member by member, list-maps item
/// by item, sets by union; everything else is replaced. Nulls are ignored.
fn merge_applied(target: &mut Value, applied: &Value, schema: Schema) {
    let (Value::Object(target_map), Value::Object(applied_map)) = (&mut *target, applied) else {
        *target = applied.clone();
        return;
    };
    for (name, value) in applied_map {
        if value.is_null() {
            continue;
        }
        let rule = schema.field(name);
        match target_map.get_mut(name) {
            Some(existing) => merge_applied_field(existing, value, rule),
            None => {
                let mut fresh = Value::Null;
                merge_applied_field(&mut fresh, value, rule);
                target_map.insert(name.clone(), fresh);
            }
        }
    }
}

fn merge_applied_field(existing: &mut Value, value: &Value, rule: FieldRule) {
    match (existing, value, rule.list) {
        (existing @ Value::Object(_), Value::Object(_), _) => {
            merge_applied(existing, value, rule.schema())
        }
        (Value::Array(items), Value::Array(applied_items), ListType::Map { .. }) => {
            merge_applied_items(items, applied_items, rule)
        }
        (Value::Array(items), Value::Array(applied_items), ListType::Set) => {
            for item in applied_items {
                if !items.contains(item) {
                    items.push(item.clone());
                }
            }
        }
        (existing, value, _) => *existing = without_nulls(value),
    }
}

fn merge_applied_items(items: &mut Vec<Value>, applied_items: &[Value], rule: FieldRule) {
    for applied_item in applied_items {
        let key = list_item_key(applied_item, rule);
        let found = key
            .as_ref()
            .and_then(|key| items.iter_mut().find(|item| item_matches_key(item, key)));
        match found {
            Some(item) => merge_applied(item, applied_item, rule.schema()),
            None => items.push(without_nulls(applied_item)),
        }
    }
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Records an ordinary create/update/patch by `manager` in `new`'s managedFields.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    kind: &TypeRef,
    manager: &str,
    now: &str,
    subresource: Option<&str>,
) {
    let schema = Schema::for_kind(kind);
    let mut entries = read_managed_fields(new)
        .or_else(|| old.and_then(read_managed_fields))
        .unwrap_or_default();
    let old_fields = old
        .map(|o| collect_fields(&tracked_view(o, subresource), schema))
        .unwrap_or_default();
    let new_fields = collect_fields(&tracked_view(new, subresource), schema);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|(path, value)| old_fields.get(*path) != Some(value))
        .map(|(path, _)| path.clone())
        .collect();
    let gone: FieldSet = old_fields
        .keys()
        .filter(|path| !new_fields.contains_key(*path))
        .cloned()
        .collect();
    for entry in &mut entries {
        entry
            .fields
            .retain(|p| !changed.contains(p) && !gone.contains(p));
    }
    if !changed.is_empty() {
        let is_mine = |e: &ManagedEntry| {
            e.manager == manager && e.operation == UPDATE && e.subresource.as_deref() == subresource
        };
        let mine = entries.iter_mut().find(|e| is_mine(e));
        match mine {
            Some(entry) => {
                entry.fields.extend(changed);
                entry.time = now.to_string();
                entry.api_version = kind.api_version();
            }
            None => entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: UPDATE.to_string(),
                api_version: kind.api_version(),
                time: now.to_string(),
                subresource: subresource.map(str::to_string),
                fields: changed,
            }),
        }
    }
    write_managed_fields(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: &str = "2026-01-01T00:00:00Z";
    const T1: &str = "2026-01-01T00:01:00Z";

    fn deployment() -> TypeRef {
        TypeRef::new("apps", "v1", "Deployment")
    }

    fn opts(manager: &str, force: bool) -> ApplyOptions<'_> {
        ApplyOptions {
            manager,
            force,
            now: T1,
            subresource: None,
        }
    }

    /// The manifest `kubectl apply --server-side` sends.
    fn manifest(replicas: i64, with_env: bool) -> Value {
        let mut container = json!({"name": "web", "image": "nginx:1"});
        if with_env {
            container["env"] = json!([{"name": "MODE", "value": "prod"}]);
        }
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [container]}}}
        })
    }

    fn managers(object: &Value) -> Vec<(String, String)> {
        read_managed_fields(object)
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.manager, e.operation))
            .collect()
    }

    fn without_managed_fields(object: &Value) -> Value {
        let mut copy = object.clone();
        if let Some(Value::Object(metadata)) = copy.get_mut("metadata") {
            metadata.remove("managedFields");
        }
        copy
    }

    fn apply(live: Option<&Value>, applied: &Value, o: &ApplyOptions) -> Result<Value, ApplyError> {
        server_side_apply(live, applied, &deployment(), o)
    }

    #[test]
    fn apply_creates_and_records_fields_v1() {
        let created =
            apply(None, &manifest(2, false), &opts("kubectl", false)).expect("apply succeeds");
        assert_eq!(without_managed_fields(&created), manifest(2, false));
        let expected_entry = json!({
            "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}}
            }
        });
        assert_eq!(
            created["metadata"]["managedFields"],
            json!([expected_entry])
        );
    }

    #[test]
    fn reapplying_without_a_field_removes_it() {
        let first =
            apply(None, &manifest(2, true), &opts("kubectl", false)).expect("apply succeeds");
        assert_eq!(
            first["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"],
            "MODE"
        );
        let mut second_manifest = manifest(2, false);
        if let Some(Value::Object(labels)) = second_manifest["metadata"].get_mut("labels") {
            labels.clear();
            labels.insert("tier".into(), json!("front"));
        }
        let second =
            apply(Some(&first), &second_manifest, &opts("kubectl", false)).expect("apply succeeds");
        let container = &second["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container, &json!({"name": "web", "image": "nginx:1"}));
        assert_eq!(second["metadata"]["labels"], json!({"tier": "front"}));
        assert_eq!(managers(&second), vec![("kubectl".into(), "Apply".into())]);
    }

    #[test]
    fn conflict_with_client_side_apply_then_force() {
        let mut live = manifest(2, false);
        track_update(
            None,
            &mut live,
            &deployment(),
            "kubectl-client-side-apply",
            T0,
            None,
        );
        let err = apply(Some(&live), &manifest(5, false), &opts("kubectl", false));
        let Err(err) = err else {
            panic!("expected a conflict")
        };
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );

        let forced = apply(Some(&live), &manifest(5, false), &opts("kubectl", true))
            .expect("apply succeeds");
        assert_eq!(forced["spec"]["replicas"], 5);
        let entries = read_managed_fields(&forced).unwrap_or_default();
        let replicas = vec![
            crate::apiserver::patch::fields::PathElement::Field("spec".into()),
            crate::apiserver::patch::fields::PathElement::Field("replicas".into()),
        ];
        let owners: Vec<&str> = entries
            .iter()
            .filter(|e| e.fields.contains(&replicas))
            .map(|e| e.manager.as_str())
            .collect();
        assert_eq!(owners, vec!["kubectl"]);
        // The image, applied with the same value by both, is shared.
        let sharing = entries.iter().filter(|e| e.fields.len() > 1).count();
        assert_eq!(sharing, 2);
    }

    #[test]
    fn same_value_is_shared_and_survives_one_applier_leaving() {
        let a = apply(None, &manifest(2, false), &opts("a", false)).expect("apply succeeds");
        let both = apply(Some(&a), &manifest(2, false), &opts("b", false)).expect("apply succeeds");
        assert_eq!(managers(&both).len(), 2);
        let mut smaller = manifest(2, false);
        if let Some(Value::Object(spec)) = smaller.get_mut("spec") {
            spec.remove("replicas");
        }
        let a_left = apply(Some(&both), &smaller, &opts("a", false)).expect("apply succeeds");
        assert_eq!(a_left["spec"]["replicas"], 2, "still owned by b");
        let b_left = apply(Some(&a_left), &smaller, &opts("b", false)).expect("apply succeeds");
        assert_eq!(
            b_left["spec"].get("replicas"),
            None,
            "owned by nobody: removed"
        );
    }

    #[test]
    fn kubectl_scale_takes_replicas_and_later_apply_conflicts() {
        let applied =
            apply(None, &manifest(2, false), &opts("kubectl", false)).expect("apply succeeds");
        let mut scaled = applied.clone();
        scaled["spec"]["replicas"] = json!(4);
        track_update(
            Some(&applied),
            &mut scaled,
            &deployment(),
            "kubectl",
            T1,
            Some("scale"),
        );
        assert_eq!(
            managers(&scaled),
            vec![
                ("kubectl".into(), "Apply".into()),
                ("kubectl".into(), "Update".into())
            ]
        );
        let err = apply(Some(&scaled), &manifest(2, false), &opts("kubectl", false));
        assert!(
            matches!(err, Err(ApplyError::Conflicts(ref c)) if c.len() == 1 && c[0].field == ".spec.replicas")
        );
        // Applying without replicas leaves the scaled value alone.
        let mut no_replicas = manifest(2, false);
        if let Some(Value::Object(spec)) = no_replicas.get_mut("spec") {
            spec.remove("replicas");
        }
        let reapplied =
            apply(Some(&scaled), &no_replicas, &opts("kubectl", false)).expect("apply succeeds");
        assert_eq!(reapplied["spec"]["replicas"], 4);
    }

    #[test]
    fn track_update_bookkeeping() {
        let kind = TypeRef::new("", "v1", "Pod");
        let old = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "uid": "u", "resourceVersion": "1", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "x:1"}]}});
        let mut created = old.clone();
        track_update(None, &mut created, &kind, "creator", T0, None);
        let mut edited = created.clone();
        edited["spec"]["containers"][0]["image"] = json!("x:2");
        edited["metadata"]["resourceVersion"] = json!("2");
        track_update(Some(&created), &mut edited, &kind, "kubectl-edit", T1, None);
        let entries = read_managed_fields(&edited).unwrap_or_default();
        assert_eq!(entries.len(), 2);
        let edit = &entries[1];
        assert_eq!(
            (edit.manager.as_str(), edit.operation.as_str()),
            ("kubectl-edit", "Update")
        );
        let fields: Vec<String> = edit.fields.iter().map(|p| display_path(p)).collect();
        assert_eq!(fields, vec![".spec.containers[name=\"c\"].image"]);
        assert!(
            !entries[0]
                .fields
                .iter()
                .any(|p| display_path(p).ends_with(".image"))
        );

        // A status write tracks status only, under subresource "status".
        let mut with_status = edited.clone();
        with_status["status"] = json!({"phase": "Running"});
        track_update(
            Some(&edited),
            &mut with_status,
            &kind,
            "kubelet",
            T1,
            Some("status"),
        );
        let entries = read_managed_fields(&with_status).unwrap_or_default();
        let kubelet = entries.iter().find(|e| e.manager == "kubelet");
        assert_eq!(
            kubelet.and_then(|e| e.subresource.as_deref()),
            Some("status")
        );
        assert_eq!(kubelet.map(|e| e.fields.len()), Some(1));

        // A no-op write adds no entry.
        let mut same = with_status.clone();
        track_update(Some(&with_status), &mut same, &kind, "noop", T1, None);
        assert_eq!(same, with_status);
    }

    #[test]
    fn status_apply_touches_status_only() {
        let live =
            apply(None, &manifest(2, false), &opts("kubectl", false)).expect("apply succeeds");
        let mut status_config = manifest(9, false);
        status_config["status"] = json!({"readyReplicas": 2});
        let status_opts = ApplyOptions {
            subresource: Some("status"),
            ..opts("controller", false)
        };
        let updated = apply(Some(&live), &status_config, &status_opts).expect("apply succeeds");
        assert_eq!(
            updated["spec"]["replicas"], 2,
            "spec is not written by a status apply"
        );
        assert_eq!(updated["status"], json!({"readyReplicas": 2}));
        let entries = read_managed_fields(&updated).unwrap_or_default();
        let controller = entries.iter().find(|e| e.manager == "controller");
        assert_eq!(
            controller.and_then(|e| e.subresource.as_deref()),
            Some("status")
        );
    }

    #[test]
    fn custom_resource_lists_are_atomic() {
        let kind = TypeRef::new("example.com", "v1", "Widget");
        let applied = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"items": [{"name": "a"}, {"name": "b"}]}});
        let created =
            server_side_apply(None, &applied, &kind, &opts("m", false)).expect("apply succeeds");
        assert_eq!(
            created["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:spec": {"f:items": {}}})
        );
        let mut fewer = applied.clone();
        fewer["spec"]["items"] = json!([{"name": "c"}]);
        let updated = server_side_apply(Some(&created), &fewer, &kind, &opts("m", false))
            .expect("apply succeeds");
        assert_eq!(updated["spec"]["items"], json!([{"name": "c"}]));
    }

    #[test]
    fn invalid_apply_configurations() {
        let cases = vec![
            json!([1]),
            json!({"kind": "Deployment"}),
            json!({"apiVersion": "apps/v1"}),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet"}),
            json!({"apiVersion": "v1", "kind": "Deployment"}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": "x"}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"managedFields": []}}),
        ];
        for applied in cases {
            let got = apply(None, &applied, &opts("kubectl", false));
            assert!(matches!(got, Err(ApplyError::Invalid(_))), "{applied}");
        }
    }

    #[test]
    fn conflict_messages_group_by_manager() {
        let c = |m: &str, f: &str| ApplyConflict {
            manager: m.into(),
            api_version: "v1".into(),
            field: f.into(),
        };
        let err = ApplyError::Conflicts(vec![c("a", ".x"), c("a", ".y"), c("b", ".z")]);
        assert_eq!(
            err.to_string(),
            "Apply failed with 3 conflicts: conflicts with \"a\" using v1:\n- .x\n- .y\nconflict with \"b\" using v1: .z"
        );
    }
}
