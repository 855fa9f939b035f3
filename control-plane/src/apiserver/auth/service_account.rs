//! Service account tokens: ES256 JWTs with the claims kube-apiserver puts in them (`iss`,
//! `sub`, `aud`, `exp`, `iat`, `nbf`, `jti` and the `kubernetes.io` private claim binding the
//! token to its service account and optionally a pod or node), their verification, and the
//! OIDC discovery documents (`/.well-known/openid-configuration`, `/openid/v1/jwks`).
//!
//! Verification checks the signature, the time window and the audience; whether the bound
//! service account / pod / node still exist (uid match) is the server's check, made on the
//! [`Claims`] of the [`VerifiedToken`].

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rcgen::PublicKeyData;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{Error, Result};
use super::pki::pem_to_der;
use super::user::{
    SERVICE_ACCOUNTS, UserInfo, service_account_namespace_group, service_account_user,
};

/// The issuer kube-apiserver uses by default, and keel's.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Extra keys a service account user carries (as kube-apiserver sets them).
pub const EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
pub const EXTRA_POD_UID: &str = "authentication.kubernetes.io/pod-uid";
pub const EXTRA_NODE_NAME: &str = "authentication.kubernetes.io/node-name";
pub const EXTRA_NODE_UID: &str = "authentication.kubernetes.io/node-uid";
pub const EXTRA_CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";
/// Tolerated clock skew when checking `nbf` and `exp`.
const LEEWAY_SECONDS: i64 = 60;

/// A name and uid, as the `kubernetes.io` claim references objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` private claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    /// For a kubelet's pod-bound token whose lifetime the server extended: when the token
    /// would have expired (unix seconds); using it later is still accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// The claims of a service account token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Aud::deserialize(d)? {
        Aud::One(s) => vec![s],
        Aud::Many(v) => v,
    })
}

/// What to issue a token for (a TokenRequest, or the kubelet's projected volume).
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    pub namespace: String,
    pub service_account: ObjectRef,
    /// Audiences; empty means the issuer.
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    /// Issue time, unix seconds.
    pub now: i64,
    pub pod: Option<ObjectRef>,
    /// The pod's node (pod-bound tokens), or the node a token is bound to.
    pub node: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    /// Seconds after `now` for the `warnafter` claim of an extended token.
    pub warn_after_seconds: Option<i64>,
}

/// A token whose signature, time window and audience were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    pub claims: Claims,
    /// The accepted audiences the token was issued for.
    pub audiences: Vec<String>,
}

impl VerifiedToken {
    /// The service account user, as kube-apiserver builds it.
    pub fn user(&self) -> UserInfo {
        let k = &self.claims.kubernetes;
        let groups = vec![
            SERVICE_ACCOUNTS.to_string(),
            service_account_namespace_group(&k.namespace),
        ];
        let mut user = UserInfo::authenticated(
            service_account_user(&k.namespace, &k.serviceaccount.name),
            groups,
        );
        user.uid = k.serviceaccount.uid.clone();
        let mut extra = |key: &str, value: &str| {
            user.extra.insert(key.to_string(), vec![value.to_string()]);
        };
        if let Some(pod) = &k.pod {
            extra(EXTRA_POD_NAME, &pod.name);
            extra(EXTRA_POD_UID, &pod.uid);
        }
        if let Some(node) = &k.node {
            extra(EXTRA_NODE_NAME, &node.name);
            if !node.uid.is_empty() {
                extra(EXTRA_NODE_UID, &node.uid);
            }
        }
        extra(EXTRA_CREDENTIAL_ID, &format!("JTI={}", self.claims.jti));
        user
    }
}

/// Issues and verifies service account tokens with one ECDSA P-256 key.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
    issuer: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenSigner {
    /// A signer from a PKCS#8 PEM P-256 key (see `Pki::service_account_key_pem`).
    pub fn from_pem(key_pem: &str, issuer: &str) -> Result<TokenSigner> {
        let der = pem_to_der(key_pem, "PRIVATE KEY")?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|e| Error::Key(format!("loading the service account key: {e}")))?;
        let spki = rcgen::KeyPair::from_pem(key_pem)
            .map_err(|e| Error::rcgen("loading the service account key", e))?
            .subject_public_key_info();
        let kid =
            URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki));
        Ok(TokenSigner {
            key,
            kid,
            issuer: issuer.to_string(),
        })
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs a token for `req`.
    pub fn issue(&self, req: &TokenRequest) -> Result<String> {
        let audiences = if req.audiences.is_empty() {
            vec![self.issuer.clone()]
        } else {
            req.audiences.clone()
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: service_account_user(&req.namespace, &req.service_account.name),
            aud: audiences,
            exp: req.now.saturating_add(req.expiration_seconds),
            iat: req.now,
            nbf: req.now,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaim {
                namespace: req.namespace.clone(),
                serviceaccount: req.service_account.clone(),
                pod: req.pod.clone(),
                node: req.node.clone(),
                secret: req.secret.clone(),
                warnafter: req.warn_after_seconds.map(|s| req.now.saturating_add(s)),
            },
        };
        self.sign(&claims)
    }

    fn sign(&self, claims: &Claims) -> Result<String> {
        let header = json!({ "alg": "ES256", "kid": self.kid });
        let claims = serde_json::to_vec(claims).map_err(|source| Error::Json {
            context: "serializing claims",
            source,
        })?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .map_err(|e| Error::Key(format!("signing a token: {e}")))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// Verifies a token: signature, issuer, `nbf`/`exp` against `now` (unix seconds), and that
    /// one of its audiences is in `audiences` (empty means the issuer).
    pub fn verify(&self, token: &str, audiences: &[String], now: i64) -> Result<VerifiedToken> {
        let claims = self.verify_signature(token)?;
        if claims.iss != self.issuer {
            return Err(Error::token(format!(
                "issuer {:?} is not {:?}",
                claims.iss, self.issuer
            )));
        }
        if now + LEEWAY_SECONDS < claims.nbf {
            return Err(Error::token("token is not valid yet"));
        }
        if now - LEEWAY_SECONDS >= claims.exp {
            return Err(Error::token("token has expired"));
        }
        let accepted: Vec<String> = if audiences.is_empty() {
            vec![self.issuer.clone()]
        } else {
            audiences.to_vec()
        };
        let matched: Vec<String> = claims
            .aud
            .iter()
            .filter(|a| accepted.contains(a))
            .cloned()
            .collect();
        if matched.is_empty() {
            return Err(Error::token("token audiences are not accepted"));
        }
        Ok(VerifiedToken {
            claims,
            audiences: matched,
        })
    }

    fn verify_signature(&self, token: &str) -> Result<Claims> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::token("not a jwt"));
        };
        let header: Value = decode_json(header, "header")?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(Error::token("unsupported signing algorithm"));
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Error::token("signature is not base64url"))?;
        let public =
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref());
        let signed = &token[..header_and_payload_len(token)];
        public
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| Error::token("signature does not verify"))?;
        decode_json(payload, "claims")
    }

    /// The JWK set served at `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        let point = self.key.public_key().as_ref();
        // An uncompressed P-256 point: 0x04, then 32 bytes of x and 32 of y.
        let (x, y) = if point.len() == 65 {
            (&point[1..33], &point[33..65])
        } else {
            (&[][..], &[][..])
        };
        json!({ "keys": [{
            "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]})
    }

    /// The document served at `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/openid/v1/jwks", self.issuer.trim_end_matches('/')),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }
}

/// Length of `header.payload`, the signed part of a JWT.
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Error::token(format!("{what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::token(format!("{what}: {e}")))
}

/// True when a bearer token looks like a JWT (three dot-separated parts), so the server
/// tries the service account authenticator before bootstrap tokens.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        TokenSigner::from_pem(&key.serialize_pem(), DEFAULT_ISSUER).unwrap()
    }

    fn request(now: i64) -> TokenRequest {
        TokenRequest {
            namespace: "default".into(),
            service_account: ObjectRef {
                name: "builder".into(),
                uid: "sa-uid".into(),
            },
            audiences: vec!["api".into()],
            expiration_seconds: 3600,
            now,
            pod: Some(ObjectRef {
                name: "p".into(),
                uid: "pod-uid".into(),
            }),
            node: None,
            secret: None,
            warn_after_seconds: None,
        }
    }

    #[test]
    fn issued_token_verifies_and_yields_the_service_account_user() {
        let s = signer();
        let now = 1_800_000_000;
        let token = s.issue(&request(now)).unwrap();
        assert!(looks_like_jwt(&token));
        let v = s
            .verify(&token, &["api".into(), "other".into()], now + 10)
            .unwrap();
        assert_eq!(v.audiences, ["api"]);
        assert_eq!(v.claims.sub, "system:serviceaccount:default:builder");
        assert_eq!(v.claims.exp, now + 3600);
        let user = v.user();
        assert_eq!(user.name, "system:serviceaccount:default:builder");
        assert_eq!(user.uid, "sa-uid");
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated"
            ]
        );
        assert_eq!(user.extra[EXTRA_POD_NAME], ["p"]);
        assert_eq!(user.extra[EXTRA_POD_UID], ["pod-uid"]);
        assert!(user.extra[EXTRA_CREDENTIAL_ID][0].starts_with("JTI="));
    }

    #[test]
    fn expired_wrong_audience_and_tampered_tokens_fail() {
        let s = signer();
        let now = 1_800_000_000;
        let token = s.issue(&request(now)).unwrap();
        let err = s.verify(&token, &["api".into()], now + 7200).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let err = s.verify(&token, &["elsewhere".into()], now).unwrap_err();
        assert!(err.to_string().contains("audience"), "{err}");
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = "system:serviceaccount:kube-system:admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        let err = s.verify(&forged, &["api".into()], now).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
        let other = signer();
        assert!(other.verify(&token, &["api".into()], now).is_err());
        assert!(s.verify("a.b", &[], now).is_err());
    }

    #[test]
    fn default_audience_is_the_issuer_and_discovery_documents() {
        let s = signer();
        let mut req = request(100);
        req.audiences.clear();
        let token = s.issue(&req).unwrap();
        assert!(s.verify(&token, &[], 100).is_ok());
        let jwks = s.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(key["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["kid"], key["kid"]);
        let oidc = s.openid_configuration();
        assert_eq!(oidc["issuer"], DEFAULT_ISSUER);
        assert_eq!(oidc["jwks_uri"], format!("{DEFAULT_ISSUER}/openid/v1/jwks"));
    }
}
