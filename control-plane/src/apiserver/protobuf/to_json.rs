//! One encoded message → the JSON kube would write for the same Go object: fields by the
//! schema table, unknown fields skipped, and the apimachinery types that have their own JSON
//! form (Time, MicroTime, Duration, IntOrString, Quantity, RawExtension, FieldsV1, string-list
//! wrappers, apiextensions' JSON and JSONSchemaProps* unions) converted to it.
//!
//! kubectl's encoder writes every non-pointer Go field, zero or not; Go's JSON drops those
//! zeros (`omitempty`), so a zero scalar is dropped unless the Go field is required or a
//! pointer (`go_pointer_fields.txt`), where an explicit zero is meant.

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::DecodeError;
use super::schema::{Cardinality, Field, FieldType, Message, Scalar, Schemas};
use super::wire::{Reader, WireValue};

/// How deep messages may nest (JSONSchemaProps is recursive).
const MAX_DEPTH: usize = 100;

const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
const QUANTITY_VALUE: &str = "k8s.io.apimachinery.pkg.api.resource.QuantityValue";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const APIEXTENSIONS: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.";

/// Decodes `bytes` as the message `name`; `None` when the value has no JSON form (a zero Time).
pub fn message_to_json(
    schemas: &Schemas,
    name: &str,
    bytes: &[u8],
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::malformed(format!(
            "messages nested deeper than {MAX_DEPTH} levels"
        )));
    }
    let message = schemas
        .message(name)
        .ok_or_else(|| DecodeError::malformed(format!("no schema for message {name}")))?;
    if let Some(special) = special_to_json(schemas, name, message, bytes, depth)? {
        return Ok(special);
    }
    let mut object = Map::new();
    let mut reader = Reader::new(bytes);
    while !reader.is_done() {
        let (number, wire) = reader.field()?;
        let Some(field) = message.fields.get(&number) else {
            continue;
        };
        let context = |e: DecodeError| e.within(&field.json);
        match &field.cardinality {
            Cardinality::Optional => {
                let value = value_to_json(schemas, field, wire, depth).map_err(context)?;
                match value {
                    Some(Value::Object(inner)) if field.inline => object.extend(inner),
                    Some(v) if keep(field, &v) => {
                        object.insert(field.json.clone(), v);
                    }
                    _ => {
                        object.remove(&field.json);
                    }
                }
            }
            Cardinality::Repeated => {
                let values = repeated_to_json(schemas, field, wire, depth).map_err(context)?;
                let entry = object
                    .entry(field.json.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(items) = entry {
                    items.extend(values);
                }
            }
            Cardinality::Map(key_type) => {
                let (key, value) =
                    map_entry_to_json(schemas, field, *key_type, wire, depth).map_err(context)?;
                let entry = object
                    .entry(field.json.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(entries) = entry {
                    entries.insert(key, value);
                }
            }
        }
    }
    Ok(Some(Value::Object(object)))
}

/// Whether an optional field's decoded value is part of the JSON (see the module doc).
fn keep(field: &Field, value: &Value) -> bool {
    if field.required || field.pointer {
        return true;
    }
    let zero = match value {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Bool(b) => !b,
        _ => false,
    };
    let is_int_or_string = field.value == FieldType::Message(INT_OR_STRING.to_string());
    !zero || !(matches!(field.value, FieldType::Scalar(_)) || is_int_or_string)
}

fn value_to_json(
    schemas: &Schemas,
    field: &Field,
    wire: WireValue<'_>,
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    match &field.value {
        FieldType::Scalar(scalar) => scalar_to_json(*scalar, wire).map(Some),
        FieldType::Message(name) => {
            let WireValue::Bytes(bytes) = wire else {
                return Err(wrong_wire("an embedded message", wire));
            };
            message_to_json(schemas, name, bytes, depth + 1)
        }
    }
}

fn repeated_to_json(
    schemas: &Schemas,
    field: &Field,
    wire: WireValue<'_>,
    depth: usize,
) -> Result<Vec<Value>, DecodeError> {
    if let (FieldType::Scalar(scalar), WireValue::Bytes(bytes)) = (&field.value, wire)
        && !matches!(scalar, Scalar::String | Scalar::Bytes)
    {
        // Packed: the values one after another, without keys.
        let mut values = Vec::new();
        let mut reader = Reader::new(bytes);
        while !reader.is_done() {
            let wire = match scalar_wire_size(*scalar) {
                Some(8) => WireValue::Fixed64(reader.fixed64()?),
                Some(_) => WireValue::Fixed32(reader.fixed32()?),
                None => WireValue::Varint(reader.varint()?),
            };
            values.push(scalar_to_json(*scalar, wire)?);
        }
        return Ok(values);
    }
    Ok(vec![
        value_to_json(schemas, field, wire, depth)?.unwrap_or(Value::Null),
    ])
}

fn map_entry_to_json(
    schemas: &Schemas,
    field: &Field,
    key_type: Scalar,
    wire: WireValue<'_>,
    depth: usize,
) -> Result<(String, Value), DecodeError> {
    let WireValue::Bytes(bytes) = wire else {
        return Err(wrong_wire("a map entry", wire));
    };
    let mut key = None;
    let mut value = None;
    let mut reader = Reader::new(bytes);
    while !reader.is_done() {
        match reader.field()? {
            (1, wire) => key = Some(scalar_to_json(key_type, wire)?),
            (2, wire) => value = Some(value_to_json(schemas, field, wire, depth)?),
            _ => {}
        }
    }
    let key = match key {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let value = match value {
        Some(v) => v.unwrap_or(Value::Null),
        None => match &field.value {
            FieldType::Scalar(scalar) => default_scalar(*scalar),
            FieldType::Message(name) => {
                message_to_json(schemas, name, &[], depth + 1)?.unwrap_or(Value::Null)
            }
        },
    };
    Ok((key, value))
}

fn default_scalar(scalar: Scalar) -> Value {
    match scalar {
        Scalar::String | Scalar::Bytes => Value::String(String::new()),
        Scalar::Bool => Value::Bool(false),
        _ => Value::Number(0.into()),
    }
}

/// 8 or 4 for fixed-size scalars, `None` for varints.
fn scalar_wire_size(scalar: Scalar) -> Option<usize> {
    match scalar {
        Scalar::Fixed64 | Scalar::Sfixed64 | Scalar::Double => Some(8),
        Scalar::Fixed32 | Scalar::Sfixed32 | Scalar::Float => Some(4),
        _ => None,
    }
}

fn wrong_wire(wanted: &str, got: WireValue<'_>) -> DecodeError {
    DecodeError::malformed(format!(
        "expected {wanted}, got a {} value",
        got.wire_name()
    ))
}

fn float_json(f: f64) -> Result<Value, DecodeError> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| DecodeError::malformed(format!("{f} has no JSON form")))
}

fn scalar_to_json(scalar: Scalar, wire: WireValue<'_>) -> Result<Value, DecodeError> {
    let value = match (scalar, wire) {
        (Scalar::String, WireValue::Bytes(b)) => Value::String(String::from_utf8_lossy(b).into()),
        (Scalar::Bytes, WireValue::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Scalar::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        (Scalar::Int32, WireValue::Varint(v)) => Value::from(v as i32),
        (Scalar::Int64, WireValue::Varint(v)) => Value::from(v as i64),
        (Scalar::Uint32, WireValue::Varint(v)) => Value::from(v as u32),
        (Scalar::Uint64, WireValue::Varint(v)) => Value::from(v),
        (Scalar::Sint32, WireValue::Varint(v)) => Value::from(zigzag(v) as i32),
        (Scalar::Sint64, WireValue::Varint(v)) => Value::from(zigzag(v)),
        (Scalar::Fixed64, WireValue::Fixed64(v)) => Value::from(v),
        (Scalar::Sfixed64, WireValue::Fixed64(v)) => Value::from(v as i64),
        (Scalar::Double, WireValue::Fixed64(v)) => float_json(f64::from_bits(v))?,
        (Scalar::Fixed32, WireValue::Fixed32(v)) => Value::from(v),
        (Scalar::Sfixed32, WireValue::Fixed32(v)) => Value::from(v as i32),
        (Scalar::Float, WireValue::Fixed32(v)) => float_json(f64::from(f32::from_bits(v)))?,
        (scalar, wire) => {
            return Err(wrong_wire(&format!("a {scalar:?} value"), wire));
        }
    };
    Ok(value)
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The fields of a small message by number (last occurrence wins), for the special types.
fn raw_fields(bytes: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, DecodeError> {
    let mut fields = Vec::new();
    let mut reader = Reader::new(bytes);
    while !reader.is_done() {
        fields.push(reader.field()?);
    }
    Ok(fields)
}

fn last<'a>(fields: &[(u32, WireValue<'a>)], number: u32) -> Option<WireValue<'a>> {
    fields.iter().rev().find(|(n, _)| *n == number).map(|f| f.1)
}

fn int_field(fields: &[(u32, WireValue<'_>)], number: u32) -> Result<i64, DecodeError> {
    match last(fields, number) {
        None => Ok(0),
        Some(WireValue::Varint(v)) => Ok(v as i64),
        Some(other) => Err(wrong_wire("a varint", other)),
    }
}

fn bytes_field<'a>(fields: &[(u32, WireValue<'a>)], number: u32) -> Result<&'a [u8], DecodeError> {
    match last(fields, number) {
        None => Ok(&[]),
        Some(WireValue::Bytes(b)) => Ok(b),
        Some(other) => Err(wrong_wire("length-delimited bytes", other)),
    }
}

fn string_field(fields: &[(u32, WireValue<'_>)], number: u32) -> Result<String, DecodeError> {
    Ok(String::from_utf8_lossy(bytes_field(fields, number)?).into_owned())
}

/// Raw JSON bytes (RawExtension, FieldsV1, apiextensions JSON); a nested protobuf envelope
/// inside a RawExtension is decoded too.
fn embedded_json(schemas: &Schemas, raw: &[u8], depth: usize) -> Result<Value, DecodeError> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(&super::MAGIC) {
        return super::decode_envelope(schemas, raw, depth + 1);
    }
    serde_json::from_slice(raw)
        .map_err(|e| DecodeError::malformed(format!("embedded JSON does not parse: {e}")))
}

/// The JSON of the messages kube writes in their own form; `Ok(None)` for ordinary messages.
#[allow(clippy::option_option)]
fn special_to_json(
    schemas: &Schemas,
    name: &str,
    message: &Message,
    bytes: &[u8],
    depth: usize,
) -> Result<Option<Option<Value>>, DecodeError> {
    let value = match name {
        TIME | MICRO_TIME => {
            let fields = raw_fields(bytes)?;
            let (seconds, nanos) = (int_field(&fields, 1)?, int_field(&fields, 2)?);
            if seconds == 0 && nanos == 0 {
                return Ok(Some(None));
            }
            let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000);
            let time = nanos
                .and_then(|n| chrono::DateTime::from_timestamp(seconds, n))
                .ok_or_else(|| {
                    DecodeError::malformed(format!("time {seconds}s is out of range"))
                })?;
            let format = if name == TIME {
                "%Y-%m-%dT%H:%M:%SZ"
            } else {
                "%Y-%m-%dT%H:%M:%S%.6fZ"
            };
            Value::String(time.format(format).to_string())
        }
        DURATION => Value::String(go_duration(int_field(&raw_fields(bytes)?, 1)?)),
        INT_OR_STRING => {
            let fields = raw_fields(bytes)?;
            if int_field(&fields, 1)? == 1 {
                Value::String(string_field(&fields, 3)?)
            } else {
                Value::from(int_field(&fields, 2)? as i32)
            }
        }
        QUANTITY | QUANTITY_VALUE => Value::String(string_field(&raw_fields(bytes)?, 1)?),
        RAW_EXTENSION | FIELDS_V1 => {
            embedded_json(schemas, bytes_field(&raw_fields(bytes)?, 1)?, depth)?
        }
        _ if name.starts_with(APIEXTENSIONS) => {
            match apiextensions_to_json(schemas, name, bytes, depth)? {
                Some(value) => value,
                None => return Ok(None),
            }
        }
        _ if is_string_list_wrapper(message) => {
            let mut items = Vec::new();
            for (_, wire) in raw_fields(bytes)? {
                items.push(scalar_to_json(Scalar::String, wire)?);
            }
            Value::Array(items)
        }
        _ => return Ok(None),
    };
    Ok(Some(Some(value)))
}

/// A message whose only field is `repeated string items` (ExtraValue, Verbs, ...): JSON writes
/// the list itself.
fn is_string_list_wrapper(message: &Message) -> bool {
    message.fields.len() == 1
        && message.fields.values().all(|f| {
            f.json == "items"
                && f.cardinality == Cardinality::Repeated
                && f.value == FieldType::Scalar(Scalar::String)
        })
}

/// apiextensions' `JSON` and the JSONSchemaProps unions.
fn apiextensions_to_json(
    schemas: &Schemas,
    name: &str,
    bytes: &[u8],
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    let (package, short) = name.rsplit_once('.').unwrap_or(("", name));
    let props = format!("{package}.JSONSchemaProps");
    let schema_at = |fields: &[(u32, WireValue<'_>)], number: u32| match last(fields, number) {
        Some(WireValue::Bytes(b)) => message_to_json(schemas, &props, b, depth + 1),
        Some(other) => Err(wrong_wire("an embedded message", other)),
        None => Ok(None),
    };
    let value = match short {
        "JSON" => embedded_json(schemas, bytes_field(&raw_fields(bytes)?, 1)?, depth)?,
        "JSONSchemaPropsOrArray" => {
            let fields = raw_fields(bytes)?;
            match schema_at(&fields, 1)? {
                Some(schema) => schema,
                None => {
                    let mut items = Vec::new();
                    for (_, wire) in fields.iter().filter(|(n, _)| *n == 2) {
                        let WireValue::Bytes(b) = wire else {
                            return Err(wrong_wire("an embedded message", *wire));
                        };
                        items.push(
                            message_to_json(schemas, &props, b, depth + 1)?.unwrap_or_default(),
                        );
                    }
                    Value::Array(items)
                }
            }
        }
        "JSONSchemaPropsOrBool" => {
            let fields = raw_fields(bytes)?;
            match schema_at(&fields, 2)? {
                Some(schema) => schema,
                None => Value::Bool(int_field(&fields, 1)? != 0),
            }
        }
        "JSONSchemaPropsOrStringArray" => {
            let fields = raw_fields(bytes)?;
            match schema_at(&fields, 1)? {
                Some(schema) => schema,
                None => {
                    let mut items = Vec::new();
                    for (_, wire) in fields.iter().filter(|(n, _)| *n == 2) {
                        items.push(scalar_to_json(Scalar::String, *wire)?);
                    }
                    Value::Array(items)
                }
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let with_fraction = |value: u64, digits: u32| -> String {
        let scale = 10u64.pow(digits);
        let (whole, fraction) = (value / scale, value % scale);
        if fraction == 0 {
            return whole.to_string();
        }
        let fraction = format!("{fraction:0width$}", width = digits as usize);
        format!("{whole}.{}", fraction.trim_end_matches('0'))
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", with_fraction(n, 3));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", with_fraction(n, 6));
    }
    let total_seconds = n / 1_000_000_000;
    let seconds = with_fraction(n % 60_000_000_000, 9);
    let minutes = (total_seconds / 60) % 60;
    let hours = total_seconds / 3600;
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{seconds}s")
    } else {
        format!("{sign}{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_does() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (1_500_000, "1.5ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(nanos), text);
        }
    }
}
