//! Pruning: fields a structural schema does not specify are dropped from a custom resource, as
//! kube-apiserver does on create, update and when reading from storage. `apiVersion`, `kind` and
//! `metadata` survive at the root and in `x-kubernetes-embedded-resource` objects; subtrees with
//! `x-kubernetes-preserve-unknown-fields: true` (or `additionalProperties: true`) keep unknown fields.

use serde_json::{Map, Value};

use super::schema::{AdditionalProperties, Schema};
use super::validate::ROOT_FIELDS;

/// Drops unknown fields from `obj` in place and returns their paths (`spec.foo`,
/// `spec.ports[1].bar`), from which the server builds `unknown field "spec.foo"` warnings.
pub fn prune(schema: &Schema, obj: &mut Value) -> Vec<String> {
    let mut pruned = Vec::new();
    if let Value::Object(map) = obj {
        prune_object(schema, map, "", true, &mut pruned);
    }
    pruned
}

/// Prunes one value (not a whole resource) by its schema; `path` names it in the result.
pub fn prune_value_at(schema: &Schema, value: &mut Value, path: &str) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_value(schema, value, path, &mut pruned);
    pruned
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_value(s: &Schema, value: &mut Value, path: &str, pruned: &mut Vec<String>) {
    match value {
        Value::Object(map) => prune_object(s, map, path, s.embedded_resource, pruned),
        Value::Array(items) => {
            if let Some(item_schema) = &s.items {
                for (i, item) in items.iter_mut().enumerate() {
                    prune_value(item_schema, item, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// `keep_resource_fields`: the object is a resource (root or embedded), whose apiVersion, kind
/// and metadata are not the schema's to prune.
fn prune_object(
    s: &Schema,
    map: &mut Map<String, Value>,
    path: &str,
    keep_resource_fields: bool,
    pruned: &mut Vec<String>,
) {
    let mut unknown = Vec::new();
    for (key, v) in map.iter_mut() {
        if keep_resource_fields && ROOT_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let p = join(path, key);
        match (s.properties.get(key), &s.additional_properties) {
            (Some(prop), _) => prune_value(prop, v, &p, pruned),
            (None, Some(AdditionalProperties::Schema(ap))) => prune_value(ap, v, &p, pruned),
            _ if s.keeps_unknown() => {}
            _ => unknown.push((key.clone(), p)),
        }
    }
    for (key, p) in unknown {
        map.remove(&key);
        pruned.push(p);
    }
}
