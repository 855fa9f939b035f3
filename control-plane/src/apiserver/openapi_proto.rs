//! `/openapi/v2` as protobuf: client-go only asks for the v2 document as
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` (gnostic's `openapi.v2.Document`)
//! and cannot read JSON there, so `kubectl explain --output=plaintext-openapiv2` and kubectl's
//! client-side schema validation need this encoding.
//!
//! A hand-written encoder for the subset of the message our JSON document uses: info, paths
//! with their operations and query parameters, and definitions (schemas with their `x-`
//! extensions, carried as YAML text, of which JSON is a subset). Field numbers are those of
//! gnostic's `OpenAPIv2.proto`.

use serde_json::{Map, Value};

/// The media type client-go sends in `Accept` for `/openapi/v2`.
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// A protobuf message being written.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn tag(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.tag(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn message(&mut self, field: u32, m: Pb) {
        self.bytes(field, &m.0);
    }

    fn boolean(&mut self, field: u32, b: bool) {
        if b {
            self.tag(field, 0);
            self.varint(1);
        }
    }

    fn int(&mut self, field: u32, i: i64) {
        if i != 0 {
            self.tag(field, 0);
            self.varint(i as u64);
        }
    }

    fn double(&mut self, field: u32, d: f64) {
        self.tag(field, 1);
        self.0.extend_from_slice(&d.to_bits().to_le_bytes());
    }

    /// String fields of `v` (when present) at the given field numbers.
    fn strings_from(&mut self, v: &Value, fields: &[(&str, u32)]) {
        for (key, field) in fields {
            if let Some(s) = v.get(key).and_then(Value::as_str) {
                self.string(*field, s);
            }
        }
    }

    fn repeated_strings(&mut self, field: u32, v: Option<&Value>) {
        for s in v.and_then(Value::as_array).into_iter().flatten() {
            if let Some(s) = s.as_str() {
                self.bytes(field, s.as_bytes());
            }
        }
    }
}

/// gnostic `Any`: the value as YAML text (field 2).
fn any(v: &Value) -> Pb {
    let mut m = Pb::default();
    m.bytes(2, v.to_string().as_bytes());
    m
}

/// `NamedAny` entries for every `x-` key of an object, at `field`.
fn vendor_extensions(out: &mut Pb, field: u32, obj: &Map<String, Value>) {
    for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
        let mut named = Pb::default();
        named.string(1, k);
        named.message(2, any(v));
        out.message(field, named);
    }
}

fn schema(v: &Value) -> Pb {
    let mut m = Pb::default();
    let Some(obj) = v.as_object() else {
        return m;
    };
    m.strings_from(
        v,
        &[
            ("$ref", 1),
            ("format", 2),
            ("title", 3),
            ("description", 4),
            ("pattern", 13),
        ],
    );
    if let Some(d) = obj.get("default") {
        m.message(5, any(d));
    }
    for (key, field) in [("maximum", 7), ("minimum", 9)] {
        if let Some(x) = obj.get(key).and_then(Value::as_f64) {
            m.double(field, x);
        }
    }
    for (key, field) in [
        ("exclusiveMaximum", 8),
        ("exclusiveMinimum", 10),
        ("uniqueItems", 16),
        ("readOnly", 27),
    ] {
        m.boolean(
            field,
            obj.get(key).and_then(Value::as_bool).unwrap_or(false),
        );
    }
    for (key, field) in [
        ("maxLength", 11),
        ("minLength", 12),
        ("maxItems", 14),
        ("minItems", 15),
        ("maxProperties", 17),
        ("minProperties", 18),
    ] {
        m.int(field, obj.get(key).and_then(Value::as_i64).unwrap_or(0));
    }
    m.repeated_strings(19, obj.get("required"));
    for e in obj
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(20, any(e));
    }
    match obj.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Pb::default();
            item.tag(2, 0);
            item.varint(u64::from(*b));
            m.message(21, item);
        }
        Some(s @ Value::Object(_)) => {
            let mut item = Pb::default();
            item.message(1, schema(s));
            m.message(21, item);
        }
        _ => {}
    }
    match obj.get("type") {
        Some(Value::String(t)) => {
            let mut item = Pb::default();
            item.string(1, t);
            m.message(22, item);
        }
        Some(t @ Value::Array(_)) => {
            let mut item = Pb::default();
            item.repeated_strings(1, Some(t));
            m.message(22, item);
        }
        _ => {}
    }
    let items: Vec<&Value> = match obj.get("items") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => vec![],
    };
    if !items.is_empty() {
        let mut item = Pb::default();
        items.into_iter().for_each(|s| item.message(1, schema(s)));
        m.message(23, item);
    }
    for s in obj
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(24, schema(s));
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        m.message(25, named_schemas(props));
    }
    if let Some(e) = obj.get("example") {
        m.message(30, any(e));
    }
    vendor_extensions(&mut m, 31, obj);
    m
}

/// `Properties` / `Definitions`: repeated `NamedSchema` at field 1.
fn named_schemas(map: &Map<String, Value>) -> Pb {
    let mut m = Pb::default();
    for (name, s) in map {
        let mut named = Pb::default();
        named.string(1, name);
        named.message(2, schema(s));
        m.message(1, named);
    }
    m
}

/// A query (or path) parameter as `ParametersItem{Parameter{NonBodyParameter{...}}}`.
fn parameter(p: &Value) -> Pb {
    let mut sub = Pb::default();
    let is_query = p.get("in").and_then(Value::as_str) != Some("path");
    sub.boolean(
        1,
        p.get("required").and_then(Value::as_bool).unwrap_or(false),
    );
    sub.strings_from(p, &[("in", 2), ("description", 3), ("name", 4)]);
    if is_query {
        sub.strings_from(p, &[("type", 6)]);
        sub.boolean(
            20,
            p.get("uniqueItems")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        );
    } else {
        sub.strings_from(p, &[("type", 5)]);
    }
    let mut non_body = Pb::default();
    non_body.message(if is_query { 3 } else { 4 }, sub);
    let mut param = Pb::default();
    param.message(2, non_body);
    let mut item = Pb::default();
    item.message(1, param);
    item
}

fn operation(op: &Value) -> Pb {
    let mut m = Pb::default();
    m.strings_from(
        op,
        &[("summary", 2), ("description", 3), ("operationId", 5)],
    );
    m.repeated_strings(6, op.get("produces"));
    m.repeated_strings(7, op.get("consumes"));
    for p in op
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.message(8, parameter(p));
    }
    if let Some(obj) = op.as_object() {
        vendor_extensions(&mut m, 13, obj);
    }
    m
}

const METHODS: &[(&str, u32)] = &[
    ("get", 2),
    ("put", 3),
    ("post", 4),
    ("delete", 5),
    ("options", 6),
    ("head", 7),
    ("patch", 8),
];

fn path_item(item: &Value) -> Pb {
    let mut m = Pb::default();
    for (method, field) in METHODS {
        if let Some(op) = item.get(method) {
            m.message(*field, operation(op));
        }
    }
    m
}

/// Encodes a Swagger 2.0 JSON document (as [`super::openapi::openapi_v2`] builds it) as a
/// gnostic `openapi.v2.Document`.
pub fn openapi_v2_protobuf(doc: &Value) -> Vec<u8> {
    let mut m = Pb::default();
    m.strings_from(doc, &[("swagger", 1)]);
    if let Some(info) = doc.get("info") {
        let mut i = Pb::default();
        i.strings_from(info, &[("title", 1), ("version", 2), ("description", 3)]);
        m.message(2, i);
    }
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        let mut p = Pb::default();
        for (path, item) in paths {
            let mut named = Pb::default();
            named.string(1, path);
            named.message(2, path_item(item));
            p.message(2, named);
        }
        m.message(8, p);
    }
    if let Some(defs) = doc.get("definitions").and_then(Value::as_object) {
        m.message(9, named_schemas(defs));
    }
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_known_bytes() {
        let doc = json!({"swagger": "2.0", "definitions": {"A": {"type": "string"}}});
        let bytes = openapi_v2_protobuf(&doc);
        // swagger = "2.0"
        assert_eq!(&bytes[..5], &[0x0a, 3, b'2', b'.', b'0']);
        // definitions { additional_properties { name "A" value { type { value "string" } } } }
        let tail = [
            0x4a, 18, 0x0a, 16, 0x0a, 1, b'A', 0x12, 11, 0xb2, 0x01, 8, 0x0a, 6, b's', b't', b'r',
            b'i', b'n', b'g',
        ];
        assert_eq!(&bytes[5..], &tail);
    }

    #[test]
    fn varints_span_bytes() {
        let mut pb = Pb::default();
        pb.varint(300);
        assert_eq!(pb.0, vec![0xac, 0x02]);
    }
}
