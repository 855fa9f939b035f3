//! Request authentication: the TLS client certificate of the connection (verified by rustls
//! against the cluster CA), else the bearer token (service account JWT, then bootstrap
//! token). Anonymous requests are refused with 401.

use http::{HeaderMap, header};

use super::auth::{self, UserInfo};
use super::objects;
use super::state::ApiState;
use super::status::ApiError;

/// The user of a TLS connection's client certificate, if it presented one.
pub fn connection_user(connection: &rustls::ServerConnection) -> Option<UserInfo> {
    let der = connection.peer_certificates()?.first()?;
    match auth::x509::user_from_client_cert(der.as_ref()) {
        Ok(user) => Some(user),
        Err(error) => {
            tracing::debug!(%error, "client certificate refused");
            None
        }
    }
}

/// Who is asking: the certificate's user, else the bearer token's.
pub async fn authenticate(
    state: &ApiState,
    cert_user: Option<&UserInfo>,
    headers: &HeaderMap,
) -> Result<UserInfo, ApiError> {
    if let Some(user) = cert_user {
        return Ok(user.clone());
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    let Some(security) = &state.security else {
        return Err(ApiError::unauthorized());
    };
    let now = chrono::Utc::now().timestamp();
    let secret = |namespace: &str, name: &str| {
        let key = format!(
            "{}{namespace}/{name}",
            objects::REGISTRY_PREFIX.to_string() + "core/secrets/"
        );
        state.cache.get(&key).map(|s| (*s).clone())
    };
    let authenticated = auth::bearer::authenticate(token, &security.signer, &[], now, secret)
        .map_err(|error| {
            tracing::debug!(%error, "bearer token refused");
            ApiError::unauthorized()
        })?;
    if let Some(claims) = &authenticated.claims {
        check_bound_objects(state, claims)?;
    }
    Ok(authenticated.user)
}

/// A service account token stays valid only while its service account (and bound pod) exist
/// with the uids it was issued for.
fn check_bound_objects(
    state: &ApiState,
    claims: &auth::service_account::Claims,
) -> Result<(), ApiError> {
    let value = serde_json::to_value(claims).unwrap_or_default();
    let k8s = &value["kubernetes.io"];
    let namespace = k8s["namespace"].as_str().unwrap_or("");
    let checks = [
        ("serviceaccounts", &k8s["serviceaccount"]),
        ("pods", &k8s["pod"]),
    ];
    for (plural, bound) in checks {
        let (Some(name), Some(uid)) = (bound["name"].as_str(), bound["uid"].as_str()) else {
            continue;
        };
        let key = format!(
            "{}core/{plural}/{namespace}/{name}",
            objects::REGISTRY_PREFIX
        );
        let alive = state
            .cache
            .get(&key)
            .is_some_and(|object| objects::uid(&object) == uid);
        if !alive {
            tracing::debug!(plural, name, "token bound to an object that is gone");
            return Err(ApiError::unauthorized());
        }
    }
    Ok(())
}
