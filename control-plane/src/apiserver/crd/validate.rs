//! Validation of a custom resource against its structural schema, with kube-apiserver's paths
//! and messages: `spec.replicas: Invalid value: "string": spec.replicas in body must be of type
//! integer: "string"`.
//!
//! `apiVersion`, `kind` and `metadata` at the root are the server's business; of the schema's
//! `metadata` only the restrictions on `metadata.name` and `metadata.generateName` are applied.

use serde_json::{Map, Value};

use super::schema::{AdditionalProperties, ListType, Schema, SchemaType};
use crate::apiserver::field_errors::{FieldError, FieldErrorKind};

/// Root fields the schema does not govern.
pub(crate) const ROOT_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Every schema violation of `obj`, a whole custom resource.
pub fn validate_custom_resource(schema: &Schema, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(map) = obj.as_object() else {
        type_error(&mut errs, "", "object", obj);
        return errs;
    };
    let mut body = map.clone();
    for key in ROOT_FIELDS {
        body.remove(key);
    }
    let root = Schema {
        properties: schema
            .properties
            .iter()
            .filter(|(k, _)| !ROOT_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        required: schema
            .required
            .iter()
            .filter(|k| !ROOT_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect(),
        ..schema.clone()
    };
    check(&root, &Value::Object(body), "", &mut errs);
    check_name_rules(schema, map, &mut errs);
    errs
}

/// Every violation of `value` at `path` (a whole subtree), e.g. for checking a `default`.
pub fn validate_value(schema: &Schema, value: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    check(schema, value, path, &mut errs);
    errs
}

fn check_name_rules(schema: &Schema, obj: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    let Some(meta_schema) = schema.properties.get("metadata") else {
        return;
    };
    let Some(meta) = obj.get("metadata").and_then(Value::as_object) else {
        return;
    };
    for key in ["name", "generateName"] {
        if let (Some(s), Some(v)) = (meta_schema.properties.get(key), meta.get(key)) {
            check(s, v, &format!("metadata.{key}"), errs);
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The JSON type name kube reports for a value.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) if is_integer(value) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_matches(t: SchemaType, value: &Value) -> bool {
    match t {
        SchemaType::Object => value.is_object(),
        SchemaType::Array => value.is_array(),
        SchemaType::String => value.is_string(),
        SchemaType::Integer => is_integer(value),
        SchemaType::Number => value.is_number(),
        SchemaType::Boolean => value.is_boolean(),
    }
}

fn invalid(errs: &mut Vec<FieldError>, path: &str, value: &Value, detail: String) {
    errs.push(FieldError::new(
        FieldErrorKind::Invalid,
        path,
        Some(value.to_string()),
        detail,
    ));
}

fn type_error(errs: &mut Vec<FieldError>, path: &str, expected: &str, value: &Value) {
    let actual = json_type(value);
    errs.push(FieldError::new(
        FieldErrorKind::TypeInvalid,
        path,
        Some(format!("{actual:?}")),
        format!("{path} in body must be of type {expected}: {actual:?}"),
    ));
}

/// Renders a schema bound as kube does: `10`, not `10.0`.
pub(crate) fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn check(s: &Schema, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if value.is_null() {
        check_null(s, value, path, errs);
        return;
    }
    if !check_type(s, value, path, errs) {
        return;
    }
    check_enum(s, value, path, errs);
    match value {
        Value::Number(_) => check_number(s, value, path, errs),
        Value::String(text) => check_string(s, value, text, path, errs),
        Value::Array(items) => check_array(s, value, items, path, errs),
        Value::Object(map) => check_object(s, value, map, path, errs),
        _ => {}
    }
    check_junctors(s, value, path, errs);
}

fn check_null(s: &Schema, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if s.nullable {
        return;
    }
    if s.int_or_string {
        type_error(errs, path, "integer,string", value);
    } else if let Some(t) = s.type_ {
        type_error(errs, path, t.name(), value);
    }
}

/// False when the value has the wrong type (nothing else is checked then).
fn check_type(s: &Schema, value: &Value, path: &str, errs: &mut Vec<FieldError>) -> bool {
    if s.int_or_string {
        if is_integer(value) || value.is_string() {
            return true;
        }
        type_error(errs, path, "integer,string", value);
        return false;
    }
    match s.type_ {
        Some(t) if !type_matches(t, value) => {
            type_error(errs, path, t.name(), value);
            false
        }
        _ => true,
    }
}

fn check_enum(s: &Schema, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(allowed) = &s.enum_values else {
        return;
    };
    if allowed.iter().any(|a| json_equal(a, value)) {
        return;
    }
    let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
    errs.push(FieldError::new(
        FieldErrorKind::NotSupported,
        path,
        Some(value.to_string()),
        format!("supported values: {}", list.join(", ")),
    ));
}

fn check_number(s: &Schema, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(n) = value.as_f64() else {
        return;
    };
    if let Some(max) = s.maximum {
        if s.exclusive_maximum && n >= max {
            let d = format!("{path} in body should be less than {}", number(max));
            invalid(errs, path, value, d);
        } else if n > max {
            let d = format!(
                "{path} in body should be less than or equal to {}",
                number(max)
            );
            invalid(errs, path, value, d);
        }
    }
    if let Some(min) = s.minimum {
        if s.exclusive_minimum && n <= min {
            let d = format!("{path} in body should be greater than {}", number(min));
            invalid(errs, path, value, d);
        } else if n < min {
            let d = format!(
                "{path} in body should be greater than or equal to {}",
                number(min)
            );
            invalid(errs, path, value, d);
        }
    }
    if let Some(m) = s.multiple_of {
        let q = n / m;
        if (q - q.round()).abs() > 1e-9 {
            let d = format!("{path} in body should be a multiple of {}", number(m));
            invalid(errs, path, value, d);
        }
    }
}

fn check_string(s: &Schema, value: &Value, text: &str, path: &str, errs: &mut Vec<FieldError>) {
    let len = text.chars().count() as u64;
    if let Some(max) = s.max_length.filter(|m| len > *m) {
        let detail = format!("may not be more than {max} bytes");
        errs.push(FieldError::new(FieldErrorKind::TooLong, path, None, detail));
    }
    if let Some(min) = s.min_length.filter(|m| len < *m) {
        let d = format!("{path} in body should be at least {min} chars long");
        invalid(errs, path, value, d);
    }
    if let Some((_, source)) = s.pattern.as_ref().filter(|(re, _)| !re.is_match(text)) {
        let d = format!("{path} in body should match '{source}'");
        invalid(errs, path, value, d);
    }
    let bad_format = s
        .format
        .as_ref()
        .filter(|f| !super::formats::conforms(f, text));
    if let Some(format) = bad_format {
        let d = format!("{path} in body must be of type {format}: {value}");
        invalid(errs, path, value, d);
    }
}

fn check_array(s: &Schema, value: &Value, items: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let n = items.len() as u64;
    if let Some(max) = s.max_items.filter(|m| n > *m) {
        let d = format!("{path} in body should have at most {max} items");
        invalid(errs, path, value, d);
    }
    if let Some(min) = s.min_items.filter(|m| n < *m) {
        let d = format!("{path} in body should have at least {min} items");
        invalid(errs, path, value, d);
    }
    if s.unique_items || s.list_type == Some(ListType::Set) {
        check_unique(items, path, errs, |v| v.clone());
    }
    if s.list_type == Some(ListType::Map) {
        check_unique(items, path, errs, |v| map_key(v, &s.list_map_keys));
    }
    if let Some(item_schema) = &s.items {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, &format!("{path}[{i}]"), errs);
        }
    }
}

/// The key object of a list-type map entry: its `x-kubernetes-list-map-keys` fields.
fn map_key(item: &Value, keys: &[String]) -> Value {
    let mut key = Map::new();
    for k in keys {
        if let Some(v) = item.get(k) {
            key.insert(k.clone(), v.clone());
        }
    }
    Value::Object(key)
}

fn check_unique(
    items: &[Value],
    path: &str,
    errs: &mut Vec<FieldError>,
    key: impl Fn(&Value) -> Value,
) {
    let keys: Vec<Value> = items.iter().map(key).collect();
    for (j, kj) in keys.iter().enumerate() {
        if keys[..j].iter().any(|ki| json_equal(ki, kj)) {
            errs.push(FieldError::new(
                FieldErrorKind::Duplicate,
                format!("{path}[{j}]"),
                Some(kj.to_string()),
                "",
            ));
        }
    }
}

fn check_object(
    s: &Schema,
    value: &Value,
    map: &Map<String, Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let n = map.len() as u64;
    if let Some(max) = s.max_properties.filter(|m| n > *m) {
        let d = format!("{path} in body should have at most {max} properties");
        invalid(errs, path, value, d);
    }
    if let Some(min) = s.min_properties.filter(|m| n < *m) {
        let d = format!("{path} in body should have at least {min} properties");
        invalid(errs, path, value, d);
    }
    for name in &s.required {
        if !map.contains_key(name) {
            errs.push(FieldError::new(
                FieldErrorKind::Required,
                join(path, name),
                None,
                "",
            ));
        }
    }
    for (key, v) in map {
        let p = join(path, key);
        match (s.properties.get(key), &s.additional_properties) {
            (Some(prop), _) => check(prop, v, &p, errs),
            (None, Some(AdditionalProperties::Schema(ap))) => check(ap, v, &p, errs),
            (None, Some(AdditionalProperties::Allowed(false))) => errs.push(FieldError::new(
                FieldErrorKind::Forbidden,
                p,
                None,
                "additional properties are not allowed",
            )),
            _ => {}
        }
    }
    if s.embedded_resource {
        check_embedded(map, path, errs);
    }
}

/// An embedded resource must say what it is.
fn check_embedded(map: &Map<String, Value>, path: &str, errs: &mut Vec<FieldError>) {
    for key in ["apiVersion", "kind"] {
        let present = map
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !present {
            let p = join(path, key);
            errs.push(FieldError::new(
                FieldErrorKind::Required,
                p,
                None,
                "must not be empty",
            ));
        }
    }
}

fn passes(s: &Schema, value: &Value, path: &str) -> bool {
    validate_value(s, value, path).is_empty()
}

fn check_junctors(s: &Schema, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    for sub in &s.all_of {
        check(sub, value, path, errs);
    }
    if !s.any_of.is_empty() && !s.any_of.iter().any(|sub| passes(sub, value, path)) {
        let d = format!("{path} in body must validate at least one schema (anyOf)");
        invalid(errs, path, value, d);
    }
    if !s.one_of.is_empty() {
        let count = s
            .one_of
            .iter()
            .filter(|sub| passes(sub, value, path))
            .count();
        if count != 1 {
            let d = format!("{path} in body must validate one and only one schema (oneOf)");
            invalid(errs, path, value, d);
        }
    }
    if s.not.as_ref().is_some_and(|not| passes(not, value, path)) {
        let d = format!("{path} in body must not validate the schema (not)");
        invalid(errs, path, value, d);
    }
}
