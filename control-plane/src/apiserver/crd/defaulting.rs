//! Structural defaulting: `default` values of a schema are filled into a custom resource where a
//! field is missing (or `null` without `nullable: true`), recursively inside objects and arrays
//! that exist. A non-nullable `null` without a default is removed, as kube-apiserver does.
//! Run it after pruning, on write and on read from storage.

use serde_json::{Map, Value};

use super::schema::{AdditionalProperties, Schema};
use super::validate::ROOT_FIELDS;

/// Applies the defaults of `schema` to `obj` in place.
pub fn apply_schema_defaults(schema: &Schema, obj: &mut Value) {
    if let Value::Object(map) = obj {
        default_object(schema, map, true);
    }
}

fn default_value(s: &Schema, value: &mut Value) {
    match value {
        Value::Object(map) => default_object(s, map, false),
        Value::Array(items) => {
            if let Some(item_schema) = &s.items {
                for item in items.iter_mut() {
                    fill_null(item_schema, item);
                    default_value(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

/// Replaces a non-nullable `null` by the default, if there is one.
fn fill_null(s: &Schema, value: &mut Value) {
    if let (true, Some(d)) = (value.is_null() && !s.nullable, &s.default) {
        *value = d.clone();
    }
}

fn default_object(s: &Schema, map: &mut Map<String, Value>, root: bool) {
    for (key, prop) in &s.properties {
        if root && ROOT_FIELDS.contains(&key.as_str()) {
            continue;
        }
        default_field(prop, map, key);
    }
    if let Some(AdditionalProperties::Schema(ap)) = &s.additional_properties {
        let keys: Vec<String> = map
            .keys()
            .filter(|k| !s.properties.contains_key(*k))
            .cloned()
            .collect();
        for key in keys {
            default_field(ap, map, &key);
        }
    }
}

fn default_field(prop: &Schema, map: &mut Map<String, Value>, key: &str) {
    match map.get_mut(key) {
        None => {
            if let Some(d) = &prop.default {
                let mut v = d.clone();
                default_value(prop, &mut v);
                map.insert(key.to_string(), v);
            }
        }
        Some(v) if v.is_null() && !prop.nullable && prop.default.is_none() => {
            map.remove(key);
        }
        Some(v) => {
            fill_null(prop, v);
            default_value(prop, v);
        }
    }
}
