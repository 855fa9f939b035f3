//! The bearer-token authenticator chain: a JWT-shaped token is tried as a service account
//! token; anything else as a bootstrap token, whose Secret the server looks up.

use serde_json::Value;

use super::bootstrap_token::{self, SECRET_NAMESPACE};
use super::error::{Error, Result};
use super::service_account::{Claims, TokenSigner, looks_like_jwt};
use super::user::UserInfo;

/// A successfully authenticated bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub user: UserInfo,
    /// The audiences the token is valid for (TokenReview `status.audiences`).
    pub audiences: Vec<String>,
    /// For service account tokens: the claims, so the server can check that the service
    /// account (and bound pod or node) still exist with the same uid.
    pub claims: Option<Claims>,
}

/// Authenticates a bearer token at `now` (unix seconds). `audiences` are the accepted
/// audiences (empty: the issuer); `secret(namespace, name)` returns a stored Secret as JSON.
pub fn authenticate(
    token: &str,
    signer: &TokenSigner,
    audiences: &[String],
    now: i64,
    secret: impl Fn(&str, &str) -> Option<Value>,
) -> Result<Authenticated> {
    if looks_like_jwt(token) {
        let verified = signer.verify(token, audiences, now)?;
        return Ok(Authenticated {
            user: verified.user(),
            audiences: verified.audiences.clone(),
            claims: Some(verified.claims),
        });
    }
    let parsed = bootstrap_token::parse_token(token)?;
    let stored = secret(SECRET_NAMESPACE, &parsed.secret_name())
        .ok_or_else(|| Error::token(format!("no secret for bootstrap token {:?}", parsed.id)))?;
    let user = bootstrap_token::user_from_bootstrap_secret(&stored, &parsed, now)?;
    let audiences = if audiences.is_empty() {
        vec![signer.issuer().to_string()]
    } else {
        audiences.to_vec()
    };
    Ok(Authenticated {
        user,
        audiences,
        claims: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::auth::service_account::{DEFAULT_ISSUER, ObjectRef, TokenRequest};
    use base64::Engine;
    use serde_json::json;

    fn signer() -> TokenSigner {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TokenSigner::from_pem(&key.serialize_pem(), DEFAULT_ISSUER).unwrap()
    }

    #[test]
    fn jwt_then_bootstrap_token() {
        let s = signer();
        let req = TokenRequest {
            namespace: "ns".into(),
            service_account: ObjectRef {
                name: "sa".into(),
                uid: "u".into(),
            },
            expiration_seconds: 600,
            now: 1000,
            ..TokenRequest::default()
        };
        let jwt = s.issue(&req).unwrap();
        let none = |_: &str, _: &str| None;
        let out = authenticate(&jwt, &s, &[], 1000, none).unwrap();
        assert_eq!(out.user.name, "system:serviceaccount:ns:sa");
        assert_eq!(out.claims.unwrap().kubernetes.serviceaccount.uid, "u");
        let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
        let secret = json!({
            "type": "bootstrap.kubernetes.io/token",
            "metadata": { "name": "bootstrap-token-abcdef", "namespace": "kube-system" },
            "data": { "token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"), "usage-bootstrap-authentication": b64("true") },
        });
        let lookup = |ns: &str, name: &str| {
            (ns == "kube-system" && name == "bootstrap-token-abcdef").then(|| secret.clone())
        };
        let out = authenticate("abcdef.0123456789abcdef", &s, &[], 1000, lookup).unwrap();
        assert_eq!(out.user.name, "system:bootstrap:abcdef");
        assert!(authenticate("abcdef.0123456789abcdee", &s, &[], 1000, lookup).is_err());
        assert!(authenticate("zzzzzz.0123456789abcdef", &s, &[], 1000, lookup).is_err());
        assert!(authenticate("garbage", &s, &[], 1000, lookup).is_err());
    }
}
