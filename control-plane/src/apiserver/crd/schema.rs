//! The structural schema model: `openAPIV3Schema` of one CRD version parsed into a typed tree.
//!
//! Parsing never panics on user input: a keyword of the wrong JSON type, an unknown `type`, a
//! pattern that does not compile, or a keyword Kubernetes does not support becomes a `FieldError`
//! at its path (`spec.versions[0].schema.openAPIV3Schema.properties[spec].minimum`). Whether the
//! parsed tree is *structural* is a separate check (`structural.rs`).
//!
//! `x-kubernetes-validations` (CEL rules) and documentation keywords (`description`, `title`,
//! `example`, `externalDocs`) are accepted and ignored.
//!
//! `pattern` is compiled with the `regex` crate, whose syntax matches Go's RE2 for what CRDs use;
//! one difference: `\d`, `\w` and `\s` are Unicode-aware here and ASCII-only in Go.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use crate::apiserver::field_errors::{FieldError, FieldErrorKind};

/// The JSON type a node declares with `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaType {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl SchemaType {
    fn parse(name: &str) -> Option<SchemaType> {
        match name {
            "object" => Some(SchemaType::Object),
            "array" => Some(SchemaType::Array),
            "string" => Some(SchemaType::String),
            "integer" => Some(SchemaType::Integer),
            "number" => Some(SchemaType::Number),
            "boolean" => Some(SchemaType::Boolean),
            _ => None,
        }
    }

    /// The name as written in a schema.
    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Object => "object",
            SchemaType::Array => "array",
            SchemaType::String => "string",
            SchemaType::Integer => "integer",
            SchemaType::Number => "number",
            SchemaType::Boolean => "boolean",
        }
    }
}

/// `additionalProperties`: a boolean or a schema for every value of a map.
#[derive(Clone, Debug)]
pub enum AdditionalProperties {
    Allowed(bool),
    Schema(Box<Schema>),
}

/// `x-kubernetes-list-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map,
}

/// `x-kubernetes-map-type` (only affects server-side apply merging; recorded, not enforced).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    Granular,
    Atomic,
}

/// One node of an OpenAPI v3 schema as Kubernetes accepts it in a CRD.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    pub type_: Option<SchemaType>,
    pub format: Option<String>,
    pub properties: BTreeMap<String, Schema>,
    pub required: Vec<String>,
    pub items: Option<Box<Schema>>,
    pub additional_properties: Option<AdditionalProperties>,
    pub enum_values: Option<Vec<Value>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    /// The compiled `pattern` and its source text (for messages).
    pub pattern: Option<(Regex, String)>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub unique_items: bool,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    pub nullable: bool,
    pub default: Option<Value>,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    pub preserve_unknown_fields: bool,
    /// Kept to report `x-kubernetes-preserve-unknown-fields: false`, which kube rejects.
    pub preserve_unknown_fields_false: bool,
    pub int_or_string: bool,
    pub embedded_resource: bool,
    pub list_type: Option<ListType>,
    pub list_map_keys: Vec<String>,
    pub map_type: Option<MapType>,
    /// Whether `description` was set (forbidden inside logical junctors).
    pub has_description: bool,
}

/// Keywords Kubernetes refuses in a CRD schema.
const UNSUPPORTED: &[&str] = &[
    "$ref",
    "$schema",
    "id",
    "definitions",
    "dependencies",
    "patternProperties",
    "additionalItems",
];

/// Keywords accepted and ignored.
const IGNORED: &[&str] = &[
    "description",
    "title",
    "example",
    "externalDocs",
    "x-kubernetes-validations",
];

/// Parses `openAPIV3Schema`; `path` names it in errors.
pub fn parse_schema(value: &Value, path: &str) -> Result<Schema, Vec<FieldError>> {
    let mut errs = Vec::new();
    let schema = Parser { errs: &mut errs }.node(value, path);
    if errs.is_empty() {
        Ok(schema)
    } else {
        Err(errs)
    }
}

struct Parser<'a> {
    errs: &'a mut Vec<FieldError>,
}

fn child(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

impl Parser<'_> {
    fn invalid(&mut self, path: String, value: &Value, detail: &str) {
        self.errs.push(FieldError::new(
            FieldErrorKind::Invalid,
            path,
            Some(value.to_string()),
            detail,
        ));
    }

    fn forbidden(&mut self, path: String, detail: String) {
        self.errs.push(FieldError::new(
            FieldErrorKind::Forbidden,
            path,
            None,
            detail,
        ));
    }

    fn node(&mut self, value: &Value, path: &str) -> Schema {
        let mut schema = Schema::default();
        let Some(map) = value.as_object() else {
            self.invalid(path.to_string(), value, "must be an object");
            return schema;
        };
        for (key, val) in map {
            self.keyword(&mut schema, key, val, path);
        }
        schema
    }

    fn keyword(&mut self, s: &mut Schema, key: &str, val: &Value, path: &str) {
        let p = child(path, key);
        match key {
            "type" => s.type_ = self.type_(val, p),
            "format" => s.format = self.string(val, p),
            "properties" => s.properties = self.properties(val, path),
            "required" => s.required = self.string_list(val, p),
            "items" => s.items = self.items(val, p),
            "additionalProperties" => s.additional_properties = self.additional(val, p),
            "enum" => s.enum_values = self.array(val, p).map(<[Value]>::to_vec),
            "minimum" => s.minimum = self.number(val, p),
            "maximum" => s.maximum = self.number(val, p),
            "exclusiveMinimum" => s.exclusive_minimum = self.boolean(val, p),
            "exclusiveMaximum" => s.exclusive_maximum = self.boolean(val, p),
            "multipleOf" => s.multiple_of = self.multiple_of(val, p),
            "minLength" => s.min_length = self.count(val, p),
            "maxLength" => s.max_length = self.count(val, p),
            "pattern" => s.pattern = self.pattern(val, p),
            "minItems" => s.min_items = self.count(val, p),
            "maxItems" => s.max_items = self.count(val, p),
            "uniqueItems" => s.unique_items = self.boolean(val, p),
            "minProperties" => s.min_properties = self.count(val, p),
            "maxProperties" => s.max_properties = self.count(val, p),
            "nullable" => s.nullable = self.boolean(val, p),
            "default" => s.default = Some(val.clone()),
            "allOf" => s.all_of = self.schema_list(val, p),
            "anyOf" => s.any_of = self.schema_list(val, p),
            "oneOf" => s.one_of = self.schema_list(val, p),
            "not" => s.not = Some(Box::new(self.node(val, &p))),
            "x-kubernetes-preserve-unknown-fields" => {
                let set = self.boolean(val, p);
                s.preserve_unknown_fields = set;
                s.preserve_unknown_fields_false = !set && val.is_boolean();
            }
            "x-kubernetes-int-or-string" => s.int_or_string = self.boolean(val, p),
            "x-kubernetes-embedded-resource" => s.embedded_resource = self.boolean(val, p),
            "x-kubernetes-list-type" => s.list_type = self.list_type(val, p),
            "x-kubernetes-list-map-keys" => s.list_map_keys = self.string_list(val, p),
            "x-kubernetes-map-type" => s.map_type = self.map_type(val, p),
            "description" => s.has_description = true,
            _ if IGNORED.contains(&key) => {}
            _ if UNSUPPORTED.contains(&key) => self.forbidden(p, format!("{key} is not supported")),
            _ => self.forbidden(p, format!("unknown schema keyword {key:?}")),
        }
    }

    fn type_(&mut self, val: &Value, p: String) -> Option<SchemaType> {
        let name = self.string(val, p.clone())?;
        let parsed = SchemaType::parse(&name);
        if parsed.is_none() && !name.is_empty() {
            self.errs.push(FieldError::new(
                FieldErrorKind::NotSupported,
                p,
                Some(val.to_string()),
                "supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\"",
            ));
        }
        parsed
    }

    fn string(&mut self, val: &Value, p: String) -> Option<String> {
        match val.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.invalid(p, val, "must be a string");
                None
            }
        }
    }

    fn boolean(&mut self, val: &Value, p: String) -> bool {
        match val.as_bool() {
            Some(b) => b,
            None => {
                self.invalid(p, val, "must be a boolean");
                false
            }
        }
    }

    fn number(&mut self, val: &Value, p: String) -> Option<f64> {
        let n = val.as_f64();
        if n.is_none() {
            self.invalid(p, val, "must be a number");
        }
        n
    }

    fn multiple_of(&mut self, val: &Value, p: String) -> Option<f64> {
        let n = self.number(val, p.clone())?;
        if n <= 0.0 {
            self.invalid(p, val, "must be greater than zero");
            return None;
        }
        Some(n)
    }

    fn count(&mut self, val: &Value, p: String) -> Option<u64> {
        let n = val.as_u64();
        if n.is_none() {
            self.invalid(p, val, "must be a non-negative integer");
        }
        n
    }

    fn array<'v>(&mut self, val: &'v Value, p: String) -> Option<&'v [Value]> {
        let a = val.as_array().map(Vec::as_slice);
        if a.is_none() {
            self.invalid(p, val, "must be an array");
        }
        a
    }

    fn string_list(&mut self, val: &Value, p: String) -> Vec<String> {
        let Some(items) = self.array(val, p.clone()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.string(item, format!("{p}[{i}]")) {
                out.push(s);
            }
        }
        out
    }

    fn schema_list(&mut self, val: &Value, p: String) -> Vec<Schema> {
        let Some(items) = self.array(val, p.clone()) else {
            return Vec::new();
        };
        let items: Vec<Value> = items.to_vec();
        items
            .iter()
            .enumerate()
            .map(|(i, v)| self.node(v, &format!("{p}[{i}]")))
            .collect()
    }

    fn properties(&mut self, val: &Value, path: &str) -> BTreeMap<String, Schema> {
        let Some(map) = val.as_object() else {
            self.invalid(child(path, "properties"), val, "must be an object");
            return BTreeMap::new();
        };
        map.iter()
            .map(|(k, v)| (k.clone(), self.node(v, &format!("{path}.properties[{k}]"))))
            .collect()
    }

    fn items(&mut self, val: &Value, p: String) -> Option<Box<Schema>> {
        if val.is_array() {
            self.forbidden(p, "items must be a schema object and not an array".into());
            return None;
        }
        Some(Box::new(self.node(val, &p)))
    }

    fn additional(&mut self, val: &Value, p: String) -> Option<AdditionalProperties> {
        match val {
            Value::Bool(b) => Some(AdditionalProperties::Allowed(*b)),
            _ => Some(AdditionalProperties::Schema(Box::new(self.node(val, &p)))),
        }
    }

    fn pattern(&mut self, val: &Value, p: String) -> Option<(Regex, String)> {
        let source = self.string(val, p.clone())?;
        match Regex::new(&source) {
            Ok(re) => Some((re, source)),
            Err(e) => {
                let detail = format!("must be a valid regular expression, but isn't: {e}");
                self.invalid(p, val, &detail);
                None
            }
        }
    }

    fn list_type(&mut self, val: &Value, p: String) -> Option<ListType> {
        let name = self.string(val, p.clone())?;
        let parsed = match name.as_str() {
            "atomic" => Some(ListType::Atomic),
            "set" => Some(ListType::Set),
            "map" => Some(ListType::Map),
            _ => None,
        };
        if parsed.is_none() {
            self.not_supported(p, val, "\"atomic\", \"set\", \"map\"");
        }
        parsed
    }

    fn map_type(&mut self, val: &Value, p: String) -> Option<MapType> {
        let name = self.string(val, p.clone())?;
        let parsed = match name.as_str() {
            "granular" => Some(MapType::Granular),
            "atomic" => Some(MapType::Atomic),
            _ => None,
        };
        if parsed.is_none() {
            self.not_supported(p, val, "\"granular\", \"atomic\"");
        }
        parsed
    }

    fn not_supported(&mut self, p: String, val: &Value, supported: &str) {
        self.errs.push(FieldError::new(
            FieldErrorKind::NotSupported,
            p,
            Some(val.to_string()),
            format!("supported values: {supported}"),
        ));
    }
}

impl Schema {
    /// The schema a property `name` of an object node follows, if any: `properties[name]`, else
    /// a schema-valued `additionalProperties`.
    pub fn property(&self, name: &str) -> Option<&Schema> {
        self.properties
            .get(name)
            .or(match &self.additional_properties {
                Some(AdditionalProperties::Schema(s)) => Some(s),
                _ => None,
            })
    }

    /// Whether unknown fields of this object node are kept (preserve-unknown-fields or
    /// `additionalProperties: true`).
    pub fn keeps_unknown(&self) -> bool {
        self.preserve_unknown_fields
            || matches!(
                self.additional_properties,
                Some(AdditionalProperties::Allowed(true))
            )
    }

    /// The node at a simple dotted path (`.spec.replicas`), following `properties`.
    pub fn at_path(&self, segments: &[String]) -> Option<&Schema> {
        match segments.split_first() {
            None => Some(self),
            Some((first, rest)) => self.properties.get(first)?.at_path(rest),
        }
    }
}
