//! Request authentication: the TLS client certificate of the connection (verified by rustls
//! against the cluster CA), else the bearer token (service account JWT, then bootstrap
//! token). Anonymous requests are refused with 401. [`authenticate_token`] is also the
//! TokenReview API's authenticator.

use std::sync::Arc;

use http::{HeaderMap, header};
use serde_json::Value;

use super::auth::{self, UserInfo, bearer::Authenticated, service_account::Claims};
use super::objects::{self, REGISTRY_PREFIX};
use super::state::ApiState;
use super::status::ApiError;

/// How long after its deletion time a pod or secret still backs the tokens bound to it (kube's
/// grace, so a terminating pod's containers keep working).
const BOUND_OBJECT_GRACE_SECONDS: i64 = 60;

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
    match authenticate_token(state, token, &[]).await {
        Ok(authenticated) => Ok(authenticated.user),
        Err(error) => {
            tracing::debug!(%error, "bearer token refused");
            Err(ApiError::unauthorized())
        }
    }
}

/// Authenticates a bearer token for `audiences` (empty: the apiserver's own, its issuer):
/// a service account JWT whose service account and bound pod, secret or node still exist
/// with the uids it was issued for, else a bootstrap token.
pub async fn authenticate_token(
    state: &ApiState,
    token: &str,
    audiences: &[String],
) -> Result<Authenticated, auth::Error> {
    let Some(security) = &state.security else {
        return Err(auth::Error::Token(
            "this server has no token signer".to_string(),
        ));
    };
    let now = chrono::Utc::now().timestamp();
    let secret = |namespace: &str, name: &str| {
        let key = format!("{REGISTRY_PREFIX}core/secrets/{namespace}/{name}");
        state.cache.get(&key).map(|s| (*s).clone())
    };
    let authenticated =
        auth::bearer::authenticate(token, &security.signer, audiences, now, secret)?;
    if let Some(claims) = &authenticated.claims {
        check_bound_objects(state, claims, now).await?;
    }
    Ok(authenticated)
}

/// One object a token names, to be found alive with the same uid.
struct BoundObject<'a> {
    plural: &'static str,
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
}

/// A service account token stays valid only while its service account and the pod, secret or
/// node it is bound to exist with the uids it was issued for. (A pod-bound token also names the
/// pod's node; that node is informational, as in kube.)
async fn check_bound_objects(
    state: &ApiState,
    claims: &Claims,
    now: i64,
) -> Result<(), auth::Error> {
    let k8s = &claims.kubernetes;
    let ns = k8s.namespace.as_str();
    let mut bound = vec![BoundObject {
        plural: "serviceaccounts",
        namespace: ns,
        name: &k8s.serviceaccount.name,
        uid: &k8s.serviceaccount.uid,
    }];
    if let Some(pod) = &k8s.pod {
        bound.push(BoundObject {
            plural: "pods",
            namespace: ns,
            name: &pod.name,
            uid: &pod.uid,
        });
    } else if let Some(node) = &k8s.node {
        bound.push(BoundObject {
            plural: "nodes",
            namespace: "",
            name: &node.name,
            uid: &node.uid,
        });
    }
    if let Some(secret) = &k8s.secret {
        bound.push(BoundObject {
            plural: "secrets",
            namespace: ns,
            name: &secret.name,
            uid: &secret.uid,
        });
    }
    for object in bound {
        check_alive(state, &object, now).await?;
    }
    Ok(())
}

async fn check_alive(
    state: &ApiState,
    bound: &BoundObject<'_>,
    now: i64,
) -> Result<(), auth::Error> {
    let key = if bound.namespace.is_empty() {
        format!("{REGISTRY_PREFIX}core/{}/{}", bound.plural, bound.name)
    } else {
        format!(
            "{REGISTRY_PREFIX}core/{}/{}/{}",
            bound.plural, bound.namespace, bound.name
        )
    };
    let matches = |object: &Value| bound.uid.is_empty() || objects::uid(object) == bound.uid;
    // The watch cache answers almost always; storage settles a miss (an object created a
    // moment ago, or one just deleted).
    let mut found: Option<Arc<Value>> = state.cache.get(&key).filter(|o| matches(o));
    if found.is_none() {
        found = match state.store.get(&key).await {
            Ok(Some(kv)) => objects::decode(&kv).ok().map(Arc::new),
            Ok(None) => None,
            Err(error) => {
                return Err(auth::Error::Token(format!(
                    "checking the {} the token is bound to: {error}",
                    bound.plural
                )));
            }
        };
    }
    let what = match bound.plural {
        "serviceaccounts" => "service account",
        "pods" => "pod",
        "nodes" => "node",
        _ => "secret",
    };
    let Some(object) = found else {
        return Err(auth::Error::Token(format!(
            "the {what} {:?} the token was issued for no longer exists",
            bound.name
        )));
    };
    if !matches(&object) {
        return Err(auth::Error::Token(format!(
            "the {what} {:?} the token was issued for (uid {}) was deleted and recreated with uid {}",
            bound.name,
            bound.uid,
            objects::uid(&object)
        )));
    }
    let deleted_at = objects::meta_str(&object, "deletionTimestamp");
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(deleted_at)
        && at.timestamp() + BOUND_OBJECT_GRACE_SECONDS < now
    {
        return Err(auth::Error::Token(format!(
            "the {what} {:?} the token is bound to has been deleted",
            bound.name
        )));
    }
    Ok(())
}
