//! Client certificate authentication: the verified leaf certificate of the TLS handshake
//! becomes a user (CN = name, each O = a group), as kube-apiserver's x509 authenticator does.
//!
//! rustls has already verified the chain against the cluster CA; this re-checks the validity
//! window (the certificate may have expired on a long-lived connection) and reads the subject.

use x509_parser::certificate::X509Certificate;

use super::error::{Error, Result};
use super::user::UserInfo;

/// The user of a client certificate (DER), checked against `now` (unix seconds).
pub fn user_from_client_cert_at(der: &[u8], now: i64) -> Result<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| Error::Certificate(format!("parsing the client certificate: {e}")))?;
    check_validity(&cert, now)?;
    let name = common_name(&cert)?;
    let groups = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Ok(UserInfo::authenticated(name, groups))
}

/// The user of a client certificate (DER), checked against the current time.
pub fn user_from_client_cert(der: &[u8]) -> Result<UserInfo> {
    user_from_client_cert_at(der, chrono::Utc::now().timestamp())
}

fn check_validity(cert: &X509Certificate<'_>, now: i64) -> Result<()> {
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(Error::Certificate(format!(
            "client certificate not valid before {}",
            validity.not_before
        )));
    }
    if now > validity.not_after.timestamp() {
        return Err(Error::Certificate(format!(
            "client certificate expired at {}",
            validity.not_after
        )));
    }
    Ok(())
}

fn common_name(cert: &X509Certificate<'_>) -> Result<String> {
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default();
    if cn.is_empty() {
        return Err(Error::Certificate(
            "client certificate has no common name".into(),
        ));
    }
    Ok(cn.to_string())
}
