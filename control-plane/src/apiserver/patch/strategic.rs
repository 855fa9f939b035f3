//! Strategic merge patch (`application/strategic-merge-patch+json`), what `kubectl edit`,
//! `kubectl patch` and client-side `kubectl apply` send for built-in types.
//!
//! Supported, driven by the schema facts of `merge_keys`:
//! - maps merge recursively; `null` deletes a member;
//! - lists of objects with a merge key merge item by item (new items are appended);
//!   lists of scalars with the merge strategy are unions; other lists are replaced;
//! - `$patch: replace` (in a map, or as a `{"$patch": "replace"}` list element), `$patch:
//!   delete` (a whole map, or a list element identified by its merge key), `$patch: merge`;
//! - `$retainKeys: [...]` (members not listed are cleared after merging);
//! - `$deleteFromPrimitiveList/<field>: [...]`;
//! - `$setElementOrder/<field>: [...]`: the listed items come first, in the listed order, and
//!   items the patch does not list keep their relative order after them. kube interleaves
//!   the latter more cleverly; the content is the same.
//!
//! Not supported: `$patch: delete` on elements of scalar lists (use
//! `$deleteFromPrimitiveList`), and validation that `$retainKeys` only appears where the
//! schema allows it (it is honoured anywhere).

use serde_json::{Map, Value};

use super::merge_keys::{FieldRule, ListType, Schema};
use super::{PatchError, TypeRef};

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch to `doc`, an object of type `kind`.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    kind: &TypeRef,
) -> Result<Value, PatchError> {
    let patch = patch.as_object().ok_or_else(|| {
        PatchError::InvalidDocument("a strategic merge patch must be a json object".to_string())
    })?;
    let original = doc.as_object().cloned().unwrap_or_default();
    let merged = merge_map(&original, patch, Schema::for_kind(kind))?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// What a `$patch` directive asks of the map carrying it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MapDirective {
    Merge,
    Replace,
    Delete,
}

fn map_directive(patch: &Map<String, Value>) -> Result<MapDirective, PatchError> {
    match patch.get(PATCH_DIRECTIVE) {
        None => Ok(MapDirective::Merge),
        Some(Value::String(s)) if s == "merge" => Ok(MapDirective::Merge),
        Some(Value::String(s)) if s == "replace" => Ok(MapDirective::Replace),
        Some(Value::String(s)) if s == "delete" => Ok(MapDirective::Delete),
        Some(other) => Err(bad_directive(
            PATCH_DIRECTIVE,
            &format!("unknown patch type {other}"),
        )),
    }
}

fn bad_directive(directive: &str, reason: &str) -> PatchError {
    PatchError::BadDirective {
        directive: directive.to_string(),
        reason: reason.to_string(),
    }
}

/// Merges `patch` into `original`; `None` means the map is deleted (`$patch: delete`).
fn merge_map(
    original: &Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Schema,
) -> Result<Option<Map<String, Value>>, PatchError> {
    let base = match map_directive(patch)? {
        MapDirective::Delete => return Ok(None),
        MapDirective::Replace => Map::new(),
        MapDirective::Merge => original.clone(),
    };
    let mut result = base;
    for (key, value) in patch {
        if key.starts_with('$') {
            check_directive_name(key)?;
            continue;
        }
        merge_field(&mut result, key, value, schema.field(key))?;
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            delete_from_primitive_list(&mut result, field, value, key)?;
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut result, keys)?;
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            set_element_order(&mut result, field, value, schema.field(field), key)?;
        }
    }
    Ok(Some(result))
}

fn check_directive_name(key: &str) -> Result<(), PatchError> {
    let known = key == PATCH_DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST);
    if known {
        Ok(())
    } else {
        Err(bad_directive(key, "unknown directive"))
    }
}

fn merge_field(
    result: &mut Map<String, Value>,
    key: &str,
    value: &Value,
    rule: FieldRule,
) -> Result<(), PatchError> {
    match value {
        Value::Null => {
            result.remove(key);
        }
        Value::Object(patch_map) => {
            let empty = Map::new();
            let original = result.get(key).and_then(Value::as_object).unwrap_or(&empty);
            match merge_map(original, patch_map, rule.schema())? {
                Some(merged) => {
                    result.insert(key.to_string(), Value::Object(merged));
                }
                None => {
                    result.remove(key);
                }
            }
        }
        Value::Array(patch_items) => {
            let original = result
                .get(key)
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            let merged = merge_list(original, patch_items, rule)?;
            result.insert(key.to_string(), Value::Array(merged));
        }
        scalar => {
            result.insert(key.to_string(), scalar.clone());
        }
    }
    Ok(())
}

fn merge_list(
    original: &[Value],
    patch_items: &[Value],
    rule: FieldRule,
) -> Result<Vec<Value>, PatchError> {
    if patch_items.iter().any(is_replace_marker) {
        return replace_list(patch_items, rule);
    }
    match rule.list {
        ListType::Atomic
        | ListType::Map {
            merge_key: None, ..
        } => Ok(patch_items.to_vec()),
        ListType::Set => Ok(union(original, patch_items)),
        ListType::Map {
            merge_key: Some(merge_key),
            ..
        } => merge_keyed_list(original, patch_items, merge_key, rule.schema()),
    }
}

/// `{"$patch": "replace"}` as a list element: the rest of the patch list is the new list.
fn is_replace_marker(item: &Value) -> bool {
    item.as_object().is_some_and(|m| {
        m.len() == 1 && m.get(PATCH_DIRECTIVE) == Some(&Value::String("replace".to_string()))
    })
}

fn replace_list(patch_items: &[Value], rule: FieldRule) -> Result<Vec<Value>, PatchError> {
    let mut out = Vec::new();
    for item in patch_items.iter().filter(|i| !is_replace_marker(i)) {
        match item {
            Value::Object(m) => {
                if let Some(clean) = merge_map(&Map::new(), m, rule.schema())? {
                    out.push(Value::Object(clean));
                }
            }
            other => out.push(other.clone()),
        }
    }
    Ok(out)
}

fn union(original: &[Value], patch_items: &[Value]) -> Vec<Value> {
    let mut out = original.to_vec();
    for item in patch_items {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    out
}

fn merge_keyed_list(
    original: &[Value],
    patch_items: &[Value],
    merge_key: &str,
    item_schema: Schema,
) -> Result<Vec<Value>, PatchError> {
    let mut result = original.to_vec();
    for item in patch_items {
        let patch_map = item.as_object().ok_or_else(|| {
            PatchError::InvalidDocument(format!(
                "list element {item} must be an object with merge key {merge_key:?}"
            ))
        })?;
        let key_value = patch_map
            .get(merge_key)
            .ok_or_else(|| PatchError::MissingMergeKey {
                key: merge_key.to_string(),
                item: item.to_string(),
            })?;
        let position = result
            .iter()
            .position(|existing| existing.get(merge_key) == Some(key_value));
        let empty = Map::new();
        let base = position
            .and_then(|i| result.get(i))
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        match (merge_map(base, patch_map, item_schema)?, position) {
            (Some(merged), Some(i)) => result[i] = Value::Object(merged),
            (Some(merged), None) => result.push(Value::Object(merged)),
            (None, Some(i)) => {
                result.remove(i);
            }
            (None, None) => {}
        }
    }
    Ok(result)
}

fn delete_from_primitive_list(
    result: &mut Map<String, Value>,
    field: &str,
    values: &Value,
    directive: &str,
) -> Result<(), PatchError> {
    let values = values
        .as_array()
        .ok_or_else(|| bad_directive(directive, "value must be a list"))?;
    if let Some(Value::Array(items)) = result.get_mut(field) {
        items.retain(|item| !values.contains(item));
    }
    Ok(())
}

fn retain_keys(result: &mut Map<String, Value>, keys: &Value) -> Result<(), PatchError> {
    let keys = keys
        .as_array()
        .ok_or_else(|| bad_directive(RETAIN_KEYS, "value must be a list of strings"))?;
    let mut retained = Vec::with_capacity(keys.len());
    for key in keys {
        let key = key
            .as_str()
            .ok_or_else(|| bad_directive(RETAIN_KEYS, "value must be a list of strings"))?;
        retained.push(key);
    }
    result.retain(|key, _| retained.contains(&key.as_str()));
    Ok(())
}

/// Puts the items named by a `$setElementOrder/<field>` list first, in that order.
fn set_element_order(
    result: &mut Map<String, Value>,
    field: &str,
    order: &Value,
    rule: FieldRule,
    directive: &str,
) -> Result<(), PatchError> {
    let order = order
        .as_array()
        .ok_or_else(|| bad_directive(directive, "value must be a list"))?;
    let Some(Value::Array(items)) = result.get_mut(field) else {
        return Ok(());
    };
    let merge_key = match rule.list {
        ListType::Map { merge_key, .. } => merge_key,
        ListType::Set | ListType::Atomic => None,
    };
    let identity = |v: &Value| -> Value {
        match merge_key {
            Some(key) => v.get(key).cloned().unwrap_or(Value::Null),
            None => v.clone(),
        }
    };
    let mut remaining: Vec<Value> = std::mem::take(items);
    let mut ordered = Vec::with_capacity(remaining.len());
    for wanted in order {
        let wanted = identity(wanted);
        if let Some(i) = remaining.iter().position(|item| identity(item) == wanted) {
            ordered.push(remaining.remove(i));
        }
    }
    ordered.extend(remaining);
    *items = ordered;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> TypeRef {
        TypeRef::new("", "v1", "Pod")
    }

    fn deployment() -> TypeRef {
        TypeRef::new("apps", "v1", "Deployment")
    }

    fn web_deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "nginx:1",
                             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                             "ports": [{"containerPort": 80}]},
                            {"name": "sidecar", "image": "busybox"}
                        ],
                        "tolerations": [{"key": "k", "operator": "Exists"}],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            }
        })
    }

    /// (name, kind, doc, patch, expected).
    fn cases() -> Vec<(&'static str, TypeRef, Value, Value, Value)> {
        vec![
            (
                "kubectl edit: change one container's image",
                pod(),
                json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]}}),
                json!({"spec": {"containers": [{"name": "b", "image": "y:2"}]}}),
                json!({"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"}]}}),
            ),
            (
                "new keyed item is appended",
                pod(),
                json!({"spec": {"containers": [{"name": "a"}]}}),
                json!({"spec": {"containers": [{"name": "b", "image": "y"}]}}),
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "image": "y"}]}}),
            ),
            (
                "$patch: delete removes a keyed item",
                pod(),
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}),
                json!({"spec": {"containers": [{"name": "b"}]}}),
            ),
            (
                "$patch: replace element replaces the list",
                pod(),
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}),
                json!({"spec": {"containers": [{"name": "c"}]}}),
            ),
            (
                "$patch: replace on a map",
                pod(),
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
                json!({"metadata": {"labels": {"c": "3"}}}),
            ),
            (
                "$patch: delete on a map",
                pod(),
                json!({"spec": {"securityContext": {"runAsUser": 1}, "x": 1}}),
                json!({"spec": {"securityContext": {"$patch": "delete"}}}),
                json!({"spec": {"x": 1}}),
            ),
            (
                "tolerations have no merge key: replaced",
                pod(),
                json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
                json!({"spec": {"tolerations": [{"key": "c"}]}}),
                json!({"spec": {"tolerations": [{"key": "c"}]}}),
            ),
            (
                "listType=map without patch strategy (resources.claims) is replaced",
                pod(),
                json!({"spec": {"containers": [{"name": "a", "resources": {"claims": [{"name": "x"}]}}]}}),
                json!({"spec": {"containers": [{"name": "a", "resources": {"claims": [{"name": "y"}]}}]}}),
                json!({"spec": {"containers": [{"name": "a", "resources": {"claims": [{"name": "y"}]}}]}}),
            ),
            (
                "finalizers merge as a set",
                pod(),
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["b", "c"]}}),
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            ),
            (
                "$deleteFromPrimitiveList",
                pod(),
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": ["b"]}}),
            ),
            (
                "primitive lists without strategy are replaced",
                pod(),
                json!({"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}}),
                json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
                json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
            ),
            (
                "kubectl label via SMP, null removes",
                pod(),
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"a": null, "c": "3"}}}),
                json!({"metadata": {"labels": {"b": "2", "c": "3"}}}),
            ),
            (
                "service ports merge by port",
                TypeRef::new("", "v1", "Service"),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
            ),
            (
                "node status conditions merge by type",
                TypeRef::new("", "v1", "Node"),
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "status": "False"}]}}),
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]}}),
            ),
            (
                "custom resources (untyped): lists replace, maps merge",
                TypeRef::new("example.com", "v1", "Widget"),
                json!({"spec": {"items": [{"name": "a"}], "m": {"x": 1}}}),
                json!({"spec": {"items": [{"name": "b"}], "m": {"y": 2}}}),
                json!({"spec": {"items": [{"name": "b"}], "m": {"x": 1, "y": 2}}}),
            ),
            (
                "$setElementOrder for scalars",
                pod(),
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}),
                json!({"metadata": {"finalizers": ["b", "a"]}}),
            ),
            (
                "kubectl rollout undo: template replaced with $patch: replace",
                deployment(),
                json!({"spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "2"}},
                       "spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}}),
                json!({"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "web"}},
                       "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}}),
                json!({"spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": "web"}},
                       "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}}}),
            ),
        ]
    }

    #[test]
    fn strategic_merge_cases() {
        for (name, kind, doc, patch, expected) in cases() {
            assert_eq!(
                strategic_merge_patch(&doc, &patch, &kind),
                Ok(expected),
                "{name}"
            );
        }
    }

    #[test]
    fn kubectl_client_side_apply_patch() {
        // What `kubectl apply` sends after the manifest changed the web image, dropped env B,
        // removed the sidecar, switched to Recreate and added a label.
        let patch = json!({
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "labels": {"tier": "front"},
                "$deleteFromPrimitiveList/finalizers": ["a"]
            },
            "spec": {
                "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null},
                "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "containers": [
                        {"name": "web", "image": "nginx:2",
                         "$setElementOrder/env": [{"name": "A"}],
                         "env": [{"name": "B", "$patch": "delete"}]},
                        {"name": "sidecar", "$patch": "delete"}
                    ],
                    "$setElementOrder/volumes": [{"name": "data"}],
                    "volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"],
                                 "hostPath": {"path": "/d"}, "emptyDir": null}]
                }}
            }
        });
        let got = strategic_merge_patch(&web_deployment(), &patch, &deployment());
        let mut expected = web_deployment();
        expected["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
        expected["metadata"]["labels"]["tier"] = json!("front");
        expected["metadata"]["finalizers"] = json!([]);
        expected["spec"]["strategy"] = json!({"type": "Recreate"});
        expected["spec"]["template"]["spec"]["containers"] = json!([
            {"name": "web", "image": "nginx:2", "env": [{"name": "A", "value": "1"}],
             "ports": [{"containerPort": 80}]}
        ]);
        expected["spec"]["template"]["spec"]["volumes"] =
            json!([{"name": "data", "hostPath": {"path": "/d"}}]);
        assert_eq!(got, Ok(expected));
    }

    #[test]
    fn set_element_order_orders_keyed_items() {
        let doc = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch =
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}});
        let got = strategic_merge_patch(&doc, &patch, &pod());
        let expected =
            json!({"spec": {"containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}});
        assert_eq!(got, Ok(expected));
    }

    #[test]
    fn invalid_patches_are_errors() {
        let doc = json!({"spec": {"containers": [{"name": "a"}]}});
        let cases = vec![
            ("not an object", json!([1])),
            (
                "missing merge key",
                json!({"spec": {"containers": [{"image": "x"}]}}),
            ),
            (
                "scalar in keyed list",
                json!({"spec": {"containers": ["a"]}}),
            ),
            ("unknown $patch", json!({"spec": {"$patch": "explode"}})),
            ("unknown directive", json!({"spec": {"$frobnicate": 1}})),
            ("bad $retainKeys", json!({"spec": {"$retainKeys": "a"}})),
            (
                "bad $retainKeys item",
                json!({"spec": {"$retainKeys": [1]}}),
            ),
            (
                "bad $setElementOrder",
                json!({"spec": {"$setElementOrder/containers": 1}}),
            ),
            (
                "bad $deleteFromPrimitiveList",
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            ),
        ];
        for (name, patch) in cases {
            assert!(
                strategic_merge_patch(&doc, &patch, &pod()).is_err(),
                "{name}"
            );
        }
        let missing = strategic_merge_patch(
            &doc,
            &json!({"spec": {"containers": [{"image": "x"}]}}),
            &pod(),
        );
        assert_eq!(
            missing.map_err(|e| e.to_string()),
            Err("map {\"image\":\"x\"} does not contain declared merge key: name".to_string())
        );
    }
}
