//! Request and response bodies: reading a size-limited body, decoding JSON or YAML by
//! Content-Type, telling the patch types apart, reading what the client accepts (plain JSON,
//! a Table, aggregated discovery), and building JSON responses.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use serde_json::Value;

use super::status::ApiError;

/// The body type of every response.
pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// Reads the whole request body, refusing more than `limit` bytes.
pub async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::too_large(limit))
        }
        Err(error) => Err(ApiError::bad_request(format!(
            "reading the request body: {error}"
        ))),
    }
}

/// The media type of a request body, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Decodes an object body sent as JSON or YAML.
pub fn decode_object(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let value = match content_type {
        "application/yaml" | "application/apply-patch+yaml" | "text/yaml" => decode_yaml(bytes)?,
        ""
        | "application/json"
        | "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json"
        | "*/*" => serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}")))?,
        super::protobuf::MEDIA_TYPE => super::protobuf::decode_body(bytes)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    Ok(value)
}

fn decode_yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    let yaml: serde_yaml::Value = serde_yaml::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))?;
    serde_json::to_value(yaml)
        .map_err(|e| ApiError::bad_request(format!("error converting YAML body to JSON: {e}")))
}

/// What the client wants back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    Json,
    /// `application/json;as=Table;v=v1;g=meta.k8s.io`
    Table,
    /// `application/json;as=PartialObjectMetadata[List];v=v1;g=meta.k8s.io`
    Metadata,
    /// `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`
    AggregatedDiscovery,
}

/// Picks the first representation we can serve from the Accept header (order of preference as
/// the client listed it).
pub fn wanted(headers: &HeaderMap) -> Wanted {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    for choice in accept.split(',') {
        let params: Vec<&str> = choice.split(';').map(str::trim).collect();
        let has = |param: &str| params.iter().any(|p| p.eq_ignore_ascii_case(param));
        let media = params.first().copied().unwrap_or("");
        if !matches!(media, "application/json" | "*/*" | "application/*") {
            continue;
        }
        if has("as=Table") && has("g=meta.k8s.io") && has("v=v1") {
            return Wanted::Table;
        }
        if (has("as=PartialObjectMetadataList") || has("as=PartialObjectMetadata")) && has("v=v1") {
            return Wanted::Metadata;
        }
        if has("as=APIGroupDiscoveryList")
            && has("g=apidiscovery.k8s.io")
            && (has("v=v2") || has("v=v2beta1"))
        {
            return Wanted::AggregatedDiscovery;
        }
        if !params.iter().any(|p| p.starts_with("as=")) {
            return Wanted::Json;
        }
    }
    Wanted::Json
}

/// A JSON response with `status`.
pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    json_bytes(status, Bytes::from(bytes), "application/json")
}

pub fn json_bytes(status: StatusCode, bytes: Bytes, content_type: &str) -> Response<Body> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// The Status object of an error, with its HTTP code (and Retry-After when set).
pub fn error_response(error: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, &error.to_status());
    if let Some(seconds) = error.retry_after
        && let Ok(value) = seconds.to_string().parse()
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Wanted {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            value.parse().unwrap_or(http::HeaderValue::from_static("")),
        );
        wanted(&headers)
    }

    #[test]
    fn accept_headers_kubectl_sends() {
        assert_eq!(
            accept(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            ),
            Wanted::Table
        );
        assert_eq!(
            accept(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
            ),
            Wanted::AggregatedDiscovery
        );
        assert_eq!(accept("application/json, */*"), Wanted::Json);
        assert_eq!(accept(""), Wanted::Json);
    }

    #[test]
    fn yaml_and_json_bodies_decode() {
        let yaml = decode_object(
            "application/yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
        );
        assert_eq!(
            yaml.ok()
                .and_then(|v| v["metadata"]["name"].as_str().map(String::from)),
            Some("a".into())
        );
        assert_eq!(
            decode_object("application/json", b"{nope").map_err(|e| e.code),
            Err(400)
        );
        assert_eq!(
            decode_object("text/plain", b"{}").map_err(|e| e.code),
            Err(415)
        );
    }
}
