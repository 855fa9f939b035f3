//! Request bodies sent as `application/vnd.kubernetes.protobuf` (what kubectl's typed clients
//! send): decoded into the same `serde_json::Value` the JSON path produces, so everything after
//! `body::decode_object` sees no difference. Responses stay JSON (clients list it as a fallback).
//!
//! The wire form is the magic `k8s\0` followed by a `runtime.Unknown` message: 1 `typeMeta`
//! (1 apiVersion, 2 kind), 2 `raw` (the encoded object), 3 `contentEncoding`, 4 `contentType`.
//! The object itself carries no TypeMeta; `apiVersion` and `kind` come from `typeMeta`.
//!
//! Message schemas (field numbers, types, JSON names, which fields are required, and the
//! apiVersion+kind → message index) are the generated table `kube_messages.txt`, made from the
//! prost source of the `k8s-pb` crate and the source of `k8s-openapi` (both from the Cargo
//! registry; k8s-pb is a dev-dependency). To regenerate it after bumping either crate:
//!
//! ```text
//! cargo test -p keel-control-plane --lib apiserver::protobuf::generate -- --ignored
//! ```
//!
//! (`committed_table_is_current` fails while the committed table is stale.) The hand-kept
//! `go_pointer_fields.txt` lists the Go pointer scalars, whose explicit zeros are kept.
//!
//! Errors: a kind the table does not know → 415 naming it; anything malformed → 400.

#[cfg(test)]
mod generate;
pub mod schema;
#[cfg(test)]
mod tests;
mod to_json;
mod wire;

use serde_json::Value;

use super::status::ApiError;
use schema::Schemas;
use wire::{Reader, WireValue};

/// The media type this module decodes.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = [b'k', b'8', b's', 0];

/// Why a body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Truncated or garbled bytes (400).
    #[error("{0}")]
    Malformed(String),
    /// Well-formed, but of a kind or encoding we do not decode (415).
    #[error("{0}")]
    Unsupported(String),
}

impl DecodeError {
    pub fn malformed(message: impl Into<String>) -> Self {
        DecodeError::Malformed(message.into())
    }

    /// Prefixes the message with the JSON field it happened in.
    fn within(self, field: &str) -> Self {
        match self {
            DecodeError::Malformed(m) => DecodeError::Malformed(format!("{field}: {m}")),
            DecodeError::Unsupported(m) => DecodeError::Unsupported(m),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::Malformed(m) => {
                ApiError::bad_request(format!("error decoding protobuf body: {m}"))
            }
            DecodeError::Unsupported(m) => {
                let mut api_error = ApiError::unsupported_media_type(MEDIA_TYPE);
                api_error.message = m;
                api_error
            }
        }
    }
}

/// Decodes a whole protobuf request body into its JSON object.
pub fn decode_body(bytes: &[u8]) -> Result<Value, ApiError> {
    Ok(decode_envelope(schema::schemas(), bytes, 0)?)
}

/// Magic + `runtime.Unknown` → the object's JSON with `apiVersion` and `kind`.
fn decode_envelope(schemas: &Schemas, bytes: &[u8], depth: usize) -> Result<Value, DecodeError> {
    let Some(unknown) = bytes.strip_prefix(&MAGIC) else {
        return Err(DecodeError::malformed(
            "the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"",
        ));
    };
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    let mut reader = Reader::new(unknown);
    while !reader.is_done() {
        match reader.field()? {
            (1, WireValue::Bytes(type_meta)) => {
                let mut fields = Reader::new(type_meta);
                while !fields.is_done() {
                    match fields.field()? {
                        (1, WireValue::Bytes(b)) => api_version = utf8(b, "typeMeta.apiVersion")?,
                        (2, WireValue::Bytes(b)) => kind = utf8(b, "typeMeta.kind")?,
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(b)) => raw = b,
            (3, WireValue::Bytes(b)) => content_encoding = utf8(b, "contentEncoding")?,
            (1..=3, other) => {
                return Err(DecodeError::malformed(format!(
                    "runtime.Unknown field with a {} value where length-delimited belongs",
                    other.wire_name()
                )));
            }
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(DecodeError::Unsupported(format!(
            "protobuf content encoding {content_encoding:?} is not supported"
        )));
    }
    if kind.is_empty() {
        return Err(DecodeError::malformed("typeMeta has no kind"));
    }
    let Some(message) = schemas.message_for_kind(&api_version, &kind) else {
        return Err(DecodeError::Unsupported(format!(
            "no kind {kind:?} is registered for version {api_version:?} in the protobuf \
             serializer; send it as application/json"
        )));
    };
    let mut object = match to_json::message_to_json(schemas, message, raw, depth)? {
        Some(Value::Object(object)) => object,
        _ => serde_json::Map::new(),
    };
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(Value::Object(object))
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, DecodeError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| DecodeError::malformed(format!("{what} is not UTF-8")))
}
