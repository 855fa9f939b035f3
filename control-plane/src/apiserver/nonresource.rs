//! Requests that are not about stored objects: health (/healthz, /livez, /readyz), /version,
//! discovery (/api, /apis, per group and group-version; aggregated when asked), OpenAPI v2/v3,
//! the service-account issuer documents and /metrics (rendered by `metrics`).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};

use super::auth::UserInfo;
use super::body::{self, Body};
use super::discovery;

use super::request::RequestInfo;
use super::state::ApiState;
use super::status::ApiError;

pub async fn serve(
    state: &Arc<ApiState>,
    info: &RequestInfo,
    headers: &HeaderMap,
    _user: &UserInfo,
    _body: Bytes,
) -> Result<Response<Body>, ApiError> {
    if info.verb != "get" && info.verb != "head" {
        return Err(ApiError::method_not_allowed(&info.verb, &info.path));
    }
    let catalog = state.catalog();
    let resources = catalog.all();
    let path = info.path.trim_end_matches('/');
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let aggregated = discovery::aggregated_version_accepted(accept);
    let not_found = || ApiError::path_not_found(path);
    let document = match (parts.as_slice(), aggregated) {
        (["healthz" | "livez" | "readyz", ..], _) => return health(state).await,
        (["version"], _) => discovery::version_info(),
        (["metrics"], _) => {
            return Ok(body::json_bytes(
                StatusCode::OK,
                Bytes::from(super::metrics::render(&state.cache)),
                "text/plain; version=0.0.4; charset=utf-8",
            ));
        }
        (["api"], Some(version)) => {
            return aggregated_response(discovery::aggregated_core(resources, version), version);
        }
        (["apis"], Some(version)) => {
            return aggregated_response(discovery::aggregated_apis(resources, version), version);
        }
        (["api"], None) => {
            let address = format!("{}:{}", state.config.bind_address, state.config.secure_port);
            discovery::api_versions(&address)
        }
        (["apis"], None) => discovery::api_group_list(resources),
        (["api", version], _) => {
            discovery::api_resource_list(resources, "", version).ok_or_else(not_found)?
        }
        (["apis", group], _) => discovery::api_group(resources, group).ok_or_else(not_found)?,
        (["apis", group, version], _) => {
            discovery::api_resource_list(resources, group, version).ok_or_else(not_found)?
        }
        (["openapi", "v2"], _) => {
            let docs = state.openapi();
            let (content_type, bytes) = docs.v2_for(accept);
            return Ok(body::json_bytes(
                StatusCode::OK,
                Bytes::copy_from_slice(bytes),
                content_type,
            ));
        }
        (["openapi", "v3"], _) => {
            let bytes = state.openapi().v3_index.clone();
            return Ok(body::json_bytes(
                StatusCode::OK,
                Bytes::from(bytes),
                "application/json",
            ));
        }
        (["openapi", "v3", rest @ ..], _) => {
            let docs = state.openapi();
            let bytes = docs.v3_document(&rest.join("/")).ok_or_else(not_found)?;
            return Ok(body::json_bytes(
                StatusCode::OK,
                Bytes::copy_from_slice(bytes),
                "application/json",
            ));
        }
        ([".well-known", "openid-configuration"], _) => {
            issuer(state, |s| s.openid_configuration())?
        }
        (["openid", "v1", "jwks"], _) => issuer(state, |s| s.jwks())?,
        _ => return Err(not_found()),
    };
    Ok(body::json_response(StatusCode::OK, &document))
}

fn aggregated_response(
    document: serde_json::Value,
    version: &str,
) -> Result<Response<Body>, ApiError> {
    let bytes = serde_json::to_vec(&document).unwrap_or_default();
    Ok(body::json_bytes(
        StatusCode::OK,
        Bytes::from(bytes),
        &discovery::aggregated_content_type(version),
    ))
}

fn issuer(
    state: &ApiState,
    document: impl Fn(&super::auth::TokenSigner) -> serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let security = state
        .security
        .as_ref()
        .ok_or_else(|| ApiError::path_not_found("no service-account issuer"))?;
    Ok(document(&security.signer))
}

/// ok when storage answers.
async fn health(state: &ApiState) -> Result<Response<Body>, ApiError> {
    match state.store.current_revision().await {
        Ok(_) => Ok(body::json_bytes(
            StatusCode::OK,
            Bytes::from_static(b"ok"),
            "text/plain; charset=utf-8",
        )),
        Err(error) => Err(ApiError::unavailable(format!(
            "storage is not answering: {error}"
        ))),
    }
}
