//! Bootstrap tokens (`[a-z0-9]{6}.[a-z0-9]{16}`), the credentials a new kubelet uses for its
//! first certificate signing request. The server stores each as the Secret
//! `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`; this module
//! parses a presented token and checks it against that Secret.

use base64::Engine;
use serde_json::Value;

use super::error::{Error, Result};
use super::user::UserInfo;

/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// Namespace of bootstrap token Secrets.
pub const SECRET_NAMESPACE: &str = "kube-system";
/// Prefix of the Secret name; the token id follows.
pub const SECRET_NAME_PREFIX: &str = "bootstrap-token-";
/// Group of every bootstrap token user.
pub const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// Prefix of the user name; the token id follows.
pub const USER_PREFIX: &str = "system:bootstrap:";

/// A parsed bootstrap token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl BootstrapToken {
    /// The name of the Secret that holds this token.
    pub fn secret_name(&self) -> String {
        format!("{SECRET_NAME_PREFIX}{}", self.id)
    }
}

/// Parses `<6 chars>.<16 chars>` of `[a-z0-9]`.
pub fn parse_token(token: &str) -> Result<BootstrapToken> {
    let (id, secret) = token
        .split_once('.')
        .ok_or_else(|| Error::token("bootstrap token has no '.'"))?;
    let valid = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if !valid(id, 6) || !valid(secret, 16) {
        return Err(Error::token(
            "bootstrap token is not [a-z0-9]{6}.[a-z0-9]{16}",
        ));
    }
    Ok(BootstrapToken {
        id: id.to_string(),
        secret: secret.to_string(),
    })
}

/// The user of `token` when `secret` (the Secret object as JSON, data base64) holds it, allows
/// authentication and has not expired at `now` (unix seconds).
pub fn user_from_bootstrap_secret(
    secret: &Value,
    token: &BootstrapToken,
    now: i64,
) -> Result<UserInfo> {
    check_secret_object(secret, token)?;
    let data = |key: &str| secret_data(secret, key);
    if data("token-id")?.as_deref() != Some(token.id.as_str()) {
        return Err(Error::token("bootstrap token id does not match its secret"));
    }
    let stored = data("token-secret")?.unwrap_or_default();
    if !constant_time_eq(stored.as_bytes(), token.secret.as_bytes()) {
        return Err(Error::token("bootstrap token secret does not match"));
    }
    if data("usage-bootstrap-authentication")?.as_deref() != Some("true") {
        return Err(Error::token(
            "bootstrap token is not usable for authentication",
        ));
    }
    if let Some(expiration) = data("expiration")? {
        check_expiration(&expiration, now)?;
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    groups.extend(extra_groups(data("auth-extra-groups")?.as_deref())?);
    Ok(UserInfo::authenticated(
        format!("{USER_PREFIX}{}", token.id),
        groups,
    ))
}

fn check_secret_object(secret: &Value, token: &BootstrapToken) -> Result<()> {
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return Err(Error::token("bootstrap token secret has the wrong type"));
    }
    let meta = &secret["metadata"];
    if meta.get("name").and_then(Value::as_str) != Some(token.secret_name().as_str()) {
        return Err(Error::token("bootstrap token secret has the wrong name"));
    }
    if meta.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        return Err(Error::token("bootstrap token secret is being deleted"));
    }
    Ok(())
}

/// One decoded `data` value; `None` when absent.
fn secret_data(secret: &Value, key: &str) -> Result<Option<String>> {
    let Some(encoded) = secret["data"].get(key).and_then(Value::as_str) else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| Error::token(format!("bootstrap token secret field {key} is not base64")))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Error::token(format!("bootstrap token secret field {key} is not utf-8")))
}

fn check_expiration(expiration: &str, now: i64) -> Result<()> {
    let at = chrono::DateTime::parse_from_rfc3339(expiration)
        .map_err(|_| Error::token("bootstrap token expiration is not rfc3339"))?;
    if now >= at.timestamp() {
        return Err(Error::token("bootstrap token has expired"));
    }
    Ok(())
}

/// `auth-extra-groups`: comma-separated, each must start with `system:bootstrappers:`.
fn extra_groups(value: Option<&str>) -> Result<Vec<String>> {
    let groups: Vec<String> = value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(bad) = groups
        .iter()
        .find(|g| !g.starts_with("system:bootstrappers:"))
    {
        return Err(Error::token(format!(
            "bootstrap token extra group {bad:?} is not allowed"
        )));
    }
    Ok(groups)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(expiration: &str) -> Value {
        json!({
            "type": SECRET_TYPE,
            "metadata": { "name": "bootstrap-token-abcdef", "namespace": "kube-system" },
            "data": {
                "token-id": b64("abcdef"),
                "token-secret": b64("0123456789abcdef"),
                "expiration": b64(expiration),
                "usage-bootstrap-authentication": b64("true"),
                "auth-extra-groups": b64("system:bootstrappers:keel:default-node-token"),
            }
        })
    }

    #[test]
    fn parses_well_formed_tokens_only() {
        let t = parse_token("abcdef.0123456789abcdef").unwrap();
        assert_eq!(t.id, "abcdef");
        assert_eq!(t.secret_name(), "bootstrap-token-abcdef");
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdeF",
        ] {
            assert!(parse_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn valid_secret_yields_bootstrap_user() {
        let t = parse_token("abcdef.0123456789abcdef").unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .timestamp();
        let user = user_from_bootstrap_secret(&secret("2030-01-02T00:00:00Z"), &t, now).unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            [
                "system:bootstrappers",
                "system:bootstrappers:keel:default-node-token",
                "system:authenticated"
            ]
        );
    }

    #[test]
    fn expired_or_wrong_secret_is_rejected() {
        let t = parse_token("abcdef.0123456789abcdef").unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2030-01-03T00:00:00Z")
            .unwrap()
            .timestamp();
        let err = user_from_bootstrap_secret(&secret("2030-01-02T00:00:00Z"), &t, now).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let wrong = parse_token("abcdef.0123456789abcdee").unwrap();
        assert!(user_from_bootstrap_secret(&secret("2031-01-01T00:00:00Z"), &wrong, now).is_err());
        let mut no_auth = secret("2031-01-01T00:00:00Z");
        no_auth["data"]["usage-bootstrap-authentication"] = json!(b64("false"));
        assert!(user_from_bootstrap_secret(&no_auth, &t, now).is_err());
    }
}
