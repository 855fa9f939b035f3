//! Field paths and field sets for server-side apply: which leaf fields an object sets (under
//! the schema's list semantics), the FieldsV1 encoding of a set (`f:name`, `k:{...}`,
//! `v:...`, `i:N`, `.`), finding and removing a path in an object, and reading and writing
//! the `metadata.managedFields` entries that carry those sets.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::merge_keys::{FieldRule, ListType, Schema};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A member of a map or struct: `f:name`.
    Field(String),
    /// An item of an associative list, by its key fields (canonical JSON object): `k:{...}`.
    Key(String),
    /// An item of a set, by its value (canonical JSON): `v:...`.
    Value(String),
    /// An item of a list by position: `i:N` (read from stored sets; never produced here).
    Index(usize),
}

pub type FieldPath = Vec<PathElement>;
pub type FieldSet = BTreeSet<FieldPath>;

/// The fields an object sets: a leaf path maps to its value; an associative-list item maps
/// to `None` (it is a member, but its content is compared field by field).
pub type FieldValues = BTreeMap<FieldPath, Option<Value>>;

/// List-map key fields that kube defaults when omitted, so that an applied item without
/// them identifies the same item as the defaulted live one.
fn defaulted_key(field: &str) -> Option<Value> {
    match field {
        "protocol" => Some(Value::String("TCP".to_string())),
        _ => None,
    }
}

/// The key object identifying `item` in a list-map with `keys`, if the item has a key.
fn key_of(item: &Value, keys: &[&str]) -> Option<Map<String, Value>> {
    let object = item.as_object()?;
    let mut key = Map::new();
    for field in keys {
        if let Some(value) = object.get(*field).cloned().or_else(|| defaulted_key(field)) {
            key.insert((*field).to_string(), value);
        }
    }
    if key.is_empty() { None } else { Some(key) }
}

/// Whether `item` is the list-map item identified by `key`.
pub fn item_matches_key(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter().all(|(field, expected)| {
        match item.get(field).cloned().or_else(|| defaulted_key(field)) {
            Some(actual) => &actual == expected,
            None => false,
        }
    })
}

/// The key object of an applied list-map item, for finding its live counterpart.
pub fn list_item_key(item: &Value, rule: FieldRule) -> Option<Map<String, Value>> {
    match rule.list {
        ListType::Map { keys, .. } => key_of(item, keys),
        ListType::Atomic | ListType::Set => None,
    }
}

/// Every field `object` sets, under `schema`. Nulls set nothing.
pub fn collect_fields(object: &Value, schema: Schema) -> FieldValues {
    let mut out = FieldValues::new();
    if let Value::Object(map) = object {
        collect_map(map, schema, &mut Vec::new(), &mut out);
    }
    out
}

fn collect_map(
    map: &Map<String, Value>,
    schema: Schema,
    path: &mut FieldPath,
    out: &mut FieldValues,
) {
    for (name, value) in map {
        if value.is_null() {
            continue;
        }
        path.push(PathElement::Field(name.clone()));
        collect_value(value, schema.field(name), path, out);
        path.pop();
    }
}

fn collect_value(value: &Value, rule: FieldRule, path: &mut FieldPath, out: &mut FieldValues) {
    match value {
        Value::Object(map) if !map.is_empty() => collect_map(map, rule.schema(), path, out),
        Value::Array(items) if !items.is_empty() => collect_list(items, rule, path, out),
        leaf => {
            out.insert(path.clone(), Some(leaf.clone()));
        }
    }
}

fn collect_list(items: &[Value], rule: FieldRule, path: &mut FieldPath, out: &mut FieldValues) {
    let elements = match rule.list {
        ListType::Map { keys, .. } => keyed_elements(items, keys),
        ListType::Set => set_elements(items),
        ListType::Atomic => None,
    };
    let Some(elements) = elements else {
        // Atomic, or a list that breaks its list-map/set rules: owned as a whole.
        out.insert(path.clone(), Some(Value::Array(items.to_vec())));
        return;
    };
    for (element, item) in elements.into_iter().zip(items) {
        path.push(element);
        match item {
            Value::Object(map) => {
                out.insert(path.clone(), None);
                collect_map(map, rule.schema(), path, out);
            }
            scalar => {
                out.insert(path.clone(), Some(scalar.clone()));
            }
        }
        path.pop();
    }
}

/// `k:` elements for every item, or `None` if an item has no key or two share one.
fn keyed_elements(items: &[Value], keys: &[&str]) -> Option<Vec<PathElement>> {
    let mut seen = BTreeSet::new();
    let mut elements = Vec::with_capacity(items.len());
    for item in items {
        let key = Value::Object(key_of(item, keys)?).to_string();
        if !seen.insert(key.clone()) {
            return None;
        }
        elements.push(PathElement::Key(key));
    }
    Some(elements)
}

/// `v:` elements for a list of distinct scalars, or `None`.
fn set_elements(items: &[Value]) -> Option<Vec<PathElement>> {
    let mut seen = BTreeSet::new();
    let mut elements = Vec::with_capacity(items.len());
    for item in items {
        if item.is_object() || item.is_array() || !seen.insert(item.to_string()) {
            return None;
        }
        elements.push(PathElement::Value(item.to_string()));
    }
    Some(elements)
}

/// Whether `element` selects `item` of a list.
fn element_selects(element: &PathElement, index: usize, item: &Value) -> bool {
    match element {
        PathElement::Key(key) => match serde_json::from_str::<Map<String, Value>>(key) {
            Ok(key) => item_matches_key(item, &key),
            Err(_) => false,
        },
        PathElement::Value(value) => &item.to_string() == value,
        PathElement::Index(i) => *i == index,
        PathElement::Field(_) => false,
    }
}

fn child<'a>(value: &'a Value, element: &PathElement) -> Option<&'a Value> {
    match (value, element) {
        (Value::Object(map), PathElement::Field(name)) => map.get(name),
        (Value::Array(items), element) => items
            .iter()
            .enumerate()
            .find(|(i, item)| element_selects(element, *i, item))
            .map(|(_, item)| item),
        _ => None,
    }
}

fn child_mut<'a>(value: &'a mut Value, element: &PathElement) -> Option<&'a mut Value> {
    match (value, element) {
        (Value::Object(map), PathElement::Field(name)) => map.get_mut(name),
        (Value::Array(items), element) => items
            .iter_mut()
            .enumerate()
            .find(|(i, item)| element_selects(element, *i, item))
            .map(|(_, item)| item),
        _ => None,
    }
}

/// The value at `path` in `root`, if there is one.
pub fn value_at<'a>(root: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    path.iter().try_fold(root, child)
}

/// Removes the value at `path` from `root`; a missing path is left alone.
pub fn remove_at(root: &mut Value, path: &[PathElement]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let parent = parents.iter().try_fold(root, child_mut);
    match (parent, last) {
        (Some(Value::Object(map)), PathElement::Field(name)) => {
            map.remove(name);
        }
        (Some(Value::Array(items)), element) => {
            let mut index = 0;
            items.retain(|item| {
                let selected = element_selects(element, index, item);
                index += 1;
                !selected
            });
        }
        _ => {}
    }
}

/// How kube prints a path in conflict messages: `.spec.containers[name="web"].image`.
pub fn display_path(path: &[PathElement]) -> String {
    let mut out = String::new();
    for element in path {
        match element {
            PathElement::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            PathElement::Key(key) => {
                let parts: Vec<String> = match serde_json::from_str::<Map<String, Value>>(key) {
                    Ok(map) => map.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    Err(_) => vec![key.clone()],
                };
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(value) => out.push_str(&format!("[={value}]")),
            PathElement::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn encode_element(element: &PathElement) -> String {
    match element {
        PathElement::Field(name) => format!("f:{name}"),
        PathElement::Key(key) => format!("k:{key}"),
        PathElement::Value(value) => format!("v:{value}"),
        PathElement::Index(i) => format!("i:{i}"),
    }
}

fn decode_element(encoded: &str) -> Option<PathElement> {
    let (prefix, rest) = encoded.split_at_checked(2)?;
    match prefix {
        "f:" => Some(PathElement::Field(rest.to_string())),
        "k:" => serde_json::from_str::<Value>(rest)
            .ok()
            .filter(Value::is_object)
            .map(|key| PathElement::Key(key.to_string())),
        "v:" => serde_json::from_str::<Value>(rest)
            .ok()
            .map(|value| PathElement::Value(value.to_string())),
        "i:" => rest.parse().ok().map(PathElement::Index),
        _ => None,
    }
}

/// The FieldsV1 object of a set: members with descendants carry `".": {}`.
pub fn encode_fields_v1(set: &FieldSet) -> Value {
    let mut root = Value::Object(Map::new());
    for path in set {
        let mut node = &mut root;
        for element in path {
            let Value::Object(map) = node else { break };
            node = map
                .entry(encode_element(element))
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    for path in set {
        if let Some(Value::Object(map)) = node_mut(&mut root, path)
            && !map.is_empty()
        {
            map.insert(".".to_string(), Value::Object(Map::new()));
        }
    }
    root
}

fn node_mut<'a>(root: &'a mut Value, path: &[PathElement]) -> Option<&'a mut Value> {
    path.iter().try_fold(root, |node, element| match node {
        Value::Object(map) => map.get_mut(&encode_element(element)),
        _ => None,
    })
}

/// The set a FieldsV1 object encodes; malformed parts are skipped.
pub fn decode_fields_v1(fields: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(map) = fields {
        decode_node(map, &mut Vec::new(), &mut out);
    }
    out
}

fn decode_node(node: &Map<String, Value>, path: &mut FieldPath, out: &mut FieldSet) {
    if !path.is_empty() && (node.is_empty() || node.contains_key(".")) {
        out.insert(path.clone());
    }
    for (encoded, child) in node {
        let (Some(element), Value::Object(child)) = (decode_element(encoded), child) else {
            continue;
        };
        path.push(element);
        decode_node(child, path, out);
        path.pop();
    }
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedEntry {
    pub manager: String,
    /// "Apply" or "Update".
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn from_json(entry: &Value) -> Option<ManagedEntry> {
        let text = |name: &str| entry.get(name).and_then(Value::as_str).map(str::to_string);
        Some(ManagedEntry {
            manager: text("manager").unwrap_or_default(),
            operation: text("operation")?,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time").unwrap_or_default(),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields: entry
                .get("fieldsV1")
                .map(decode_fields_v1)
                .unwrap_or_default(),
        })
    }

    fn to_json(&self) -> Value {
        let mut entry = Map::new();
        let mut put = |name: &str, value: Value| {
            entry.insert(name.to_string(), value);
        };
        put("manager", Value::String(self.manager.clone()));
        put("operation", Value::String(self.operation.clone()));
        put("apiVersion", Value::String(self.api_version.clone()));
        put("time", Value::String(self.time.clone()));
        put("fieldsType", Value::String("FieldsV1".to_string()));
        put("fieldsV1", encode_fields_v1(&self.fields));
        if let Some(subresource) = &self.subresource {
            put("subresource", Value::String(subresource.clone()));
        }
        Value::Object(entry)
    }
}

/// The managedFields entries of `object`, or `None` if it has no `metadata.managedFields`.
pub fn read_managed_fields(object: &Value) -> Option<Vec<ManagedEntry>> {
    let entries = object.get("metadata")?.get("managedFields")?.as_array()?;
    Some(entries.iter().filter_map(ManagedEntry::from_json).collect())
}

/// Stores `entries` (those owning something) as `metadata.managedFields` of `object`.
pub fn write_managed_fields(object: &mut Value, entries: &[ManagedEntry]) {
    let Value::Object(map) = object else {
        return;
    };
    let metadata = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(metadata) = metadata else {
        return;
    };
    let kept: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(ManagedEntry::to_json)
        .collect();
    if kept.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".to_string(), Value::Array(kept));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::patch::TypeRef;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_string())
    }

    #[test]
    fn collects_leaves_items_and_set_members() {
        let deploy = json!({
            "metadata": {"labels": {"app": "web"}, "finalizers": ["a"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}
            ], "tolerations": [{"key": "k"}]}}}
        });
        let fields = collect_fields(
            &deploy,
            Schema::for_kind(&TypeRef::new("apps", "v1", "Deployment")),
        );
        let encoded = encode_fields_v1(&fields.keys().cloned().collect());
        let expected = json!({
            "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {"v:\"a\"": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {
                    "f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:name": {}, "f:image": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }},
                    "f:tolerations": {}
                }}
            }
        });
        assert_eq!(encoded, expected);
        assert_eq!(decode_fields_v1(&encoded), fields.keys().cloned().collect());
        let replicas = vec![field("spec"), field("replicas")];
        assert_eq!(fields.get(&replicas), Some(&Some(json!(2))));
    }

    #[test]
    fn paths_find_and_remove_values() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b"}]}});
        let image = vec![
            field("spec"),
            field("containers"),
            PathElement::Key("{\"name\":\"a\"}".to_string()),
            field("image"),
        ];
        assert_eq!(value_at(&pod, &image), Some(&json!("x")));
        assert_eq!(display_path(&image), ".spec.containers[name=\"a\"].image");
        remove_at(&mut pod, &image[..3]);
        assert_eq!(pod, json!({"spec": {"containers": [{"name": "b"}]}}));
        remove_at(&mut pod, &image);
        assert_eq!(pod, json!({"spec": {"containers": [{"name": "b"}]}}));
    }

    #[test]
    fn malformed_fields_v1_is_skipped() {
        let set =
            decode_fields_v1(&json!({"x:bad": {}, "k:notjson": {}, "f:ok": {}, "f:s": "str"}));
        assert_eq!(set, [vec![field("ok")]].into_iter().collect());
        assert!(
            read_managed_fields(&json!({"metadata": {"managedFields": [1, {"manager": "m"}]}}))
                .is_some_and(|entries| entries.is_empty())
        );
    }
}
