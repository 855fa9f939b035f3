//! Requests that are not about stored objects: health (/healthz, /livez, /readyz), /version,
//! discovery (/api, /apis, per group and group-version, legacy and aggregated), OpenAPI, and
//! the service-account issuer documents.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};

use super::body::{self, Body, Wanted};
use super::discovery;
use super::request::RequestInfo;
use super::state::ApiState;
use super::status::ApiError;
use super::auth::UserInfo;

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
    let aggregated = body::wanted(headers) == Wanted::AggregatedDiscovery;
    let document = match parts.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => return health(state).await,
        ["version"] => discovery::version_info(),
        ["api"] => {
            let address = format!("{}:{}", state.config.bind_address, state.config.secure_port);
            let _ = aggregated;
            discovery::api_versions(&address)
        }
        ["apis"] => discovery::api_group_list(resources),
        ["api", version] => discovery::resource_list(resources, "", version)
            .ok_or_else(|| ApiError::path_not_found(path))?,
        ["apis", group] => {
            discovery::api_group(resources, group).ok_or_else(|| ApiError::path_not_found(path))?
        }
        ["apis", group, version] => discovery::resource_list(resources, group, version)
            .ok_or_else(|| ApiError::path_not_found(path))?,
        _ => return Err(ApiError::path_not_found(path)),
    };
    Ok(body::json_response(StatusCode::OK, &document))
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
