//! Whether a parsed schema is *structural*, as apiextensions.k8s.io/v1 requires: every specified
//! field and array item has a `type` (unless int-or-string or preserve-unknown-fields), value
//! validations in `allOf`/`anyOf`/`oneOf`/`not` only restrict fields specified outside them and
//! set no `type`, `default`, `additionalProperties`, `nullable` or `description`, `metadata`
//! only restricts `name` and `generateName`, and the Kubernetes extensions are used consistently.
//! `default`s must validate against their own schema and have no field pruning would drop.

use super::prune::prune_value_at;
use super::schema::{AdditionalProperties, ListType, Schema, SchemaType};
use super::validate::validate_value;
use crate::apiserver::field_errors::{FieldError, FieldErrorKind};

/// Every structural violation of the root schema at `path`.
pub fn check_structural(root: &Schema, path: &str) -> Vec<FieldError> {
    let mut c = Checker { errs: Vec::new() };
    c.root(root, path);
    c.errs
}

/// Where a node sits, which decides the message for a missing `type`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Field,
    Item,
}

struct Checker {
    errs: Vec<FieldError>,
}

fn child(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn prop_path(path: &str, name: &str) -> String {
    format!("{path}.properties[{name}]")
}

impl Checker {
    fn push(&mut self, kind: FieldErrorKind, path: String, value: Option<String>, detail: &str) {
        self.errs.push(FieldError::new(kind, path, value, detail));
    }

    fn root(&mut self, s: &Schema, path: &str) {
        match s.type_ {
            None => self.push(
                FieldErrorKind::Required,
                child(path, "type"),
                None,
                "must not be empty at the root",
            ),
            Some(SchemaType::Object) => {}
            Some(t) => self.push(
                FieldErrorKind::Invalid,
                child(path, "type"),
                Some(format!("{:?}", t.name())),
                "must be object at the root",
            ),
        }
        for (flag, set) in [
            ("nullable", s.nullable),
            ("x-kubernetes-int-or-string", s.int_or_string),
            ("x-kubernetes-embedded-resource", s.embedded_resource),
        ] {
            if set {
                self.push(
                    FieldErrorKind::Forbidden,
                    child(path, flag),
                    None,
                    "must be false at the root",
                );
            }
        }
        if let Some(meta) = s.properties.get("metadata") {
            self.metadata(meta, &prop_path(path, "metadata"));
        }
        self.node_rules(s, path);
        self.children(s, path, true);
        self.junctors(s, path);
    }

    /// `metadata` at the root or in an embedded resource: an object restricting name rules only.
    fn metadata(&mut self, meta: &Schema, path: &str) {
        if let Some(t) = meta.type_.filter(|t| *t != SchemaType::Object) {
            let p = child(path, "type");
            self.push(
                FieldErrorKind::Invalid,
                p,
                Some(format!("{:?}", t.name())),
                "must be object",
            );
        }
        let only_names = meta
            .properties
            .keys()
            .all(|k| k == "name" || k == "generateName");
        let restricted = !only_names
            || meta.additional_properties.is_some()
            || !meta.required.is_empty()
            || meta.default.is_some()
            || meta.nullable
            || meta.preserve_unknown_fields
            || has_junctors(meta);
        if restricted {
            self.push(
                FieldErrorKind::Forbidden,
                path.to_string(),
                None,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            );
        }
        for (name, sub) in &meta.properties {
            if sub.type_.is_some_and(|t| t != SchemaType::String) {
                let p = child(&prop_path(path, name), "type");
                self.push(FieldErrorKind::Invalid, p, None, "must be string");
            }
        }
    }

    fn node(&mut self, s: &Schema, path: &str, place: Place) {
        if s.type_.is_none() && !s.int_or_string && !s.preserve_unknown_fields {
            let detail = match place {
                Place::Field => "must not be empty for specified object fields",
                Place::Item => "must not be empty for specified array items",
            };
            self.push(FieldErrorKind::Required, child(path, "type"), None, detail);
        }
        if let (true, Some(t)) = (s.int_or_string, s.type_) {
            let p = child(path, "type");
            let v = Some(format!("{:?}", t.name()));
            let d = "must be empty if x-kubernetes-int-or-string is true";
            self.push(FieldErrorKind::Invalid, p, v, d);
        }
        if s.embedded_resource {
            self.embedded(s, path);
        }
        self.node_rules(s, path);
        self.children(s, path, false);
        self.junctors(s, path);
    }

    fn embedded(&mut self, s: &Schema, path: &str) {
        if s.type_ != Some(SchemaType::Object) {
            let p = child(path, "type");
            let v = s.type_.map(|t| format!("{:?}", t.name()));
            let d = "must be object if x-kubernetes-embedded-resource is true";
            self.push(FieldErrorKind::Invalid, p, v, d);
        }
        if s.properties.is_empty() && !s.preserve_unknown_fields {
            let p = child(path, "properties");
            let d = "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields";
            self.push(FieldErrorKind::Required, p, None, d);
        }
        if let Some(meta) = s.properties.get("metadata") {
            self.metadata(meta, &prop_path(path, "metadata"));
        }
    }

    /// Rules every node outside junctors follows, root included.
    fn node_rules(&mut self, s: &Schema, path: &str) {
        self.additional_properties(s, path);
        if s.unique_items {
            let p = child(path, "uniqueItems");
            let d =
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic";
            self.push(FieldErrorKind::Forbidden, p, None, d);
        }
        if s.preserve_unknown_fields_false {
            let p = child(path, "x-kubernetes-preserve-unknown-fields");
            let d = "must be true or undefined";
            self.push(FieldErrorKind::Invalid, p, Some("false".into()), d);
        }
        self.list_type(s, path);
        if s.map_type.is_some() && s.type_ != Some(SchemaType::Object) {
            let p = child(path, "x-kubernetes-map-type");
            self.push(
                FieldErrorKind::Invalid,
                p,
                None,
                "must only be used on type object",
            );
        }
        self.default(s, path);
    }

    fn additional_properties(&mut self, s: &Schema, path: &str) {
        let p = child(path, "additionalProperties");
        match &s.additional_properties {
            Some(AdditionalProperties::Allowed(false)) => self.push(
                FieldErrorKind::Forbidden,
                p,
                None,
                "additionalProperties cannot be set to false",
            ),
            Some(_) if !s.properties.is_empty() => self.push(
                FieldErrorKind::Forbidden,
                p,
                None,
                "additionalProperties and properties are mutual exclusive",
            ),
            _ => {}
        }
    }

    fn list_type(&mut self, s: &Schema, path: &str) {
        let p = child(path, "x-kubernetes-list-type");
        if s.list_type.is_some() && s.type_ != Some(SchemaType::Array) {
            self.push(
                FieldErrorKind::Invalid,
                p.clone(),
                None,
                "must only be used on type array",
            );
        }
        let keys_path = child(path, "x-kubernetes-list-map-keys");
        match s.list_type {
            Some(ListType::Map) => self.list_map(s, &keys_path),
            _ if !s.list_map_keys.is_empty() => {
                let d = "must be map if x-kubernetes-list-map-keys is non-empty";
                self.push(FieldErrorKind::Invalid, p, None, d);
            }
            _ => {}
        }
    }

    fn list_map(&mut self, s: &Schema, keys_path: &str) {
        if s.list_map_keys.is_empty() {
            let d = "must not be empty if x-kubernetes-list-type is map";
            self.push(FieldErrorKind::Required, keys_path.to_string(), None, d);
            return;
        }
        let Some(items) = &s.items else {
            return;
        };
        if items.type_ != Some(SchemaType::Object) {
            let d = "must only be used on lists of objects (items.type object)";
            self.push(FieldErrorKind::Invalid, keys_path.to_string(), None, d);
            return;
        }
        for (i, key) in s.list_map_keys.iter().enumerate() {
            if !items.properties.contains_key(key) {
                let p = format!("{keys_path}[{i}]");
                let d = "entries must all be names of item properties";
                self.push(FieldErrorKind::Invalid, p, Some(format!("{key:?}")), d);
            }
        }
    }

    fn default(&mut self, s: &Schema, path: &str) {
        let Some(d) = &s.default else {
            return;
        };
        let p = child(path, "default");
        let mut pruned_copy = d.clone();
        if !prune_value_at(s, &mut pruned_copy, "default").is_empty() {
            let detail = "must not have unknown fields";
            self.push(
                FieldErrorKind::Invalid,
                p.clone(),
                Some(d.to_string()),
                detail,
            );
        }
        for e in validate_value(s, d, "default") {
            let detail = if e.detail.is_empty() {
                e.to_string()
            } else {
                e.detail
            };
            self.push(
                FieldErrorKind::Invalid,
                p.clone(),
                Some(d.to_string()),
                &detail,
            );
        }
    }

    fn children(&mut self, s: &Schema, path: &str, root: bool) {
        for (name, prop) in &s.properties {
            if root && name == "metadata" {
                continue;
            }
            self.node(prop, &prop_path(path, name), Place::Field);
        }
        if let Some(AdditionalProperties::Schema(ap)) = &s.additional_properties {
            self.node(ap, &child(path, "additionalProperties"), Place::Field);
        }
        if let Some(items) = &s.items {
            self.node(items, &child(path, "items"), Place::Item);
        }
        if s.type_ == Some(SchemaType::Array) && s.items.is_none() {
            let d = "must be specified";
            self.push(FieldErrorKind::Required, child(path, "items"), None, d);
        }
    }

    fn junctors(&mut self, s: &Schema, path: &str) {
        for (name, subs) in [
            ("allOf", &s.all_of),
            ("anyOf", &s.any_of),
            ("oneOf", &s.one_of),
        ] {
            for (i, sub) in subs.iter().enumerate() {
                self.in_junctor(sub, s, &format!("{path}.{name}[{i}]"), s.int_or_string);
            }
        }
        if let Some(not) = &s.not {
            self.in_junctor(not, s, &child(path, "not"), s.int_or_string);
        }
    }

    /// A value-validation schema inside a junctor; `outer` is the structural node it restricts.
    fn in_junctor(&mut self, sub: &Schema, outer: &Schema, path: &str, int_or_string: bool) {
        let int_or_string_type =
            matches!(sub.type_, Some(SchemaType::Integer | SchemaType::String));
        let forbidden = [
            (
                "type",
                sub.type_.is_some() && !(int_or_string && int_or_string_type),
            ),
            ("default", sub.default.is_some()),
            ("additionalProperties", sub.additional_properties.is_some()),
            ("nullable", sub.nullable),
            ("description", sub.has_description),
        ];
        for (key, set) in forbidden {
            if set {
                let d = "must be empty to be structural";
                self.push(FieldErrorKind::Forbidden, child(path, key), None, d);
            }
        }
        self.junctor_children(sub, outer, path, int_or_string);
    }

    fn junctor_children(&mut self, sub: &Schema, outer: &Schema, path: &str, ios: bool) {
        for (name, prop) in &sub.properties {
            let p = prop_path(path, name);
            match outer.properties.get(name) {
                Some(o) => self.in_junctor(prop, o, &p, o.int_or_string),
                None => {
                    let d = "must be specified outside of allOf, anyOf, oneOf and not as well";
                    self.push(FieldErrorKind::Forbidden, p, None, d);
                }
            }
        }
        match (&sub.items, &outer.items) {
            (Some(i), Some(o)) => self.in_junctor(i, o, &child(path, "items"), o.int_or_string),
            (Some(_), None) => {
                let d = "must be specified outside of allOf, anyOf, oneOf and not as well";
                self.push(FieldErrorKind::Forbidden, child(path, "items"), None, d);
            }
            _ => {}
        }
        for (name, subs) in [
            ("allOf", &sub.all_of),
            ("anyOf", &sub.any_of),
            ("oneOf", &sub.one_of),
        ] {
            for (i, s) in subs.iter().enumerate() {
                self.in_junctor(s, outer, &format!("{path}.{name}[{i}]"), ios);
            }
        }
        if let Some(not) = &sub.not {
            self.in_junctor(not, outer, &child(path, "not"), ios);
        }
    }
}

fn has_junctors(s: &Schema) -> bool {
    !s.all_of.is_empty() || !s.any_of.is_empty() || !s.one_of.is_empty() || s.not.is_some()
}
