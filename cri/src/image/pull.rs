//! Talking to registries: which endpoints to try for a reference, with which credentials, and
//! fetching manifests and blobs from one endpoint with `oci-client`.
//!
//! Endpoints: for the reference's registry host, each mirror of `[registry."<host>"]` in order
//! (`http://` = plain HTTP, `https://` = TLS), then the registry itself over HTTPS. Plain HTTP
//! is never guessed, not even for `127.0.0.1:*` or `localhost:*` (containerd falls back to HTTP
//! for those; keel-cri does not, so a TLS registry is never silently downgraded): a plain-HTTP
//! registry is reached by listing it as its own mirror, e.g.
//! `[registry."127.0.0.1:5000"] mirrors = ["http://127.0.0.1:5000"]`; a registry listed as its
//! own mirror is then not tried again over HTTPS.
//!
//! Credentials (CRI `AuthConfig`) go to an endpoint only when the auth config names no server
//! or names that endpoint's host (so docker.io credentials are not sent to an unrelated mirror
//! named elsewhere). `registry_token` and `identity_token` are sent as bearer tokens
//! (`oci-client` cannot run the OAuth2 refresh-token exchange an identity token is meant for).
//!
//! Timeouts: every request, and every gap between two chunks of a blob, is bounded by the
//! progress timeout: a pull that transfers nothing for that long fails.
//! Owns no files: blobs are written through [`BlobWriter`], which verifies the digest.

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use k8s_cri::v1 as cri;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use super::reference::{DEFAULT_DOMAIN, ImageReference};
use super::store::BlobWriter;
use crate::config::RegistryConfig;

/// One place to fetch an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    pub plain_http: bool,
    pub mirror: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.plain_http { "http" } else { "https" };
        write!(f, "{scheme}://{}", self.host)
    }
}

/// The endpoints to try for a registry host, in order (pure).
pub fn endpoints(
    domain: &str,
    registries: &std::collections::BTreeMap<String, RegistryConfig>,
) -> Result<Vec<Endpoint>, String> {
    let mut out = Vec::new();
    if let Some(cfg) = registries.get(domain) {
        for m in &cfg.mirrors {
            let (plain_http, rest) = if let Some(r) = m.strip_prefix("http://") {
                (true, r)
            } else if let Some(r) = m.strip_prefix("https://") {
                (false, r)
            } else {
                return Err(format!(
                    "mirror {m:?} of {domain} must start with http:// or https://"
                ));
            };
            let host = rest.trim_end_matches('/');
            if host.is_empty() || host.contains('/') {
                return Err(format!(
                    "mirror {m:?} of {domain}: only scheme://host[:port] is supported, without a path"
                ));
            }
            out.push(Endpoint {
                host: host.to_string(),
                plain_http,
                mirror: true,
            });
        }
    }
    // A registry listed as its own mirror (how a plain-HTTP registry is configured) is not
    // tried a second time over HTTPS.
    if !out.iter().any(|e| e.host == domain) {
        out.push(Endpoint {
            host: domain.to_string(),
            plain_http: false,
            mirror: false,
        });
    }
    Ok(out)
}

/// Why one endpoint failed, coarsely (decides the CRI status of the whole pull).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The registry answered that the image (or a blob) does not exist.
    NotFound,
    Unauthorized,
    /// Could not connect, DNS failed, or the server failed (5xx).
    Unreachable,
    /// Nothing was transferred for the progress timeout.
    Timeout,
    /// The registry sent something wrong (bad digest, bad manifest, bad layer), or storing failed.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl fmt::Display) -> Failure {
        Failure {
            kind: FailureKind::Invalid,
            message: message.to_string(),
        }
    }
}

/// A pull that failed on every endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub reference: String,
    pub attempts: Vec<(String, Failure)>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pulling image {}: ", self.reference)?;
        if self.attempts.len() == 1 {
            write!(f, "endpoint ")?;
        } else {
            write!(f, "every endpoint failed: ")?;
        }
        for (i, (endpoint, failure)) in self.attempts.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{endpoint}: {}", failure.message)?;
        }
        Ok(())
    }
}

impl Error {
    /// The kind the caller sees: not found only when every endpoint said so.
    pub fn kind(&self) -> FailureKind {
        let kinds: Vec<FailureKind> = self.attempts.iter().map(|(_, f)| f.kind).collect();
        let any = |k| kinds.contains(&k);
        if !kinds.is_empty() && kinds.iter().all(|k| *k == FailureKind::NotFound) {
            FailureKind::NotFound
        } else if any(FailureKind::Unauthorized) {
            FailureKind::Unauthorized
        } else if any(FailureKind::Timeout) {
            FailureKind::Timeout
        } else if any(FailureKind::Unreachable) {
            FailureKind::Unreachable
        } else if any(FailureKind::NotFound) {
            FailureKind::NotFound
        } else {
            FailureKind::Invalid
        }
    }
}

/// The registry credentials for `host` from a CRI auth config.
pub fn registry_auth(auth: Option<&cri::AuthConfig>, host: &str) -> Result<RegistryAuth, String> {
    let Some(a) = auth else {
        return Ok(RegistryAuth::Anonymous);
    };
    if !a.server_address.is_empty() && server_host(&a.server_address) != canonical_host(host) {
        return Ok(RegistryAuth::Anonymous);
    }
    if !a.registry_token.is_empty() {
        return Ok(RegistryAuth::Bearer(a.registry_token.clone()));
    }
    if !a.username.is_empty() {
        return Ok(RegistryAuth::Basic(a.username.clone(), a.password.clone()));
    }
    if !a.auth.is_empty() {
        let decoded = base64_decode(a.auth.trim())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                "auth config: \"auth\" is not valid base64 of user:password".to_string()
            })?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| "auth config: \"auth\" does not decode to user:password".to_string())?;
        return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    if !a.identity_token.is_empty() {
        return Ok(RegistryAuth::Bearer(a.identity_token.clone()));
    }
    Ok(RegistryAuth::Anonymous)
}

/// `https://index.docker.io/v1/` → `docker.io`; `host:5000/path` → `host:5000`.
fn server_host(addr: &str) -> String {
    let rest = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr);
    canonical_host(rest.split('/').next().unwrap_or(rest))
}

fn canonical_host(h: &str) -> String {
    match h {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_DOMAIN.to_string(),
        other => other.to_string(),
    }
}

/// Standard base64 (padding optional).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.trim_end_matches('=').as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// A message with the whole chain of causes (reqwest hides "connection refused" in a source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !msg.contains(&m) {
            msg.push_str(": ");
            msg.push_str(&m);
        }
        cur = s.source();
    }
    msg
}

/// Classifies an `oci-client` error.
pub fn classify(e: &OciDistributionError) -> Failure {
    use FailureKind::*;
    let kind = match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            if envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                NotFound
            } else if envelope
                .errors
                .iter()
                .any(|x| matches!(x.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Unauthorized
            } else {
                Invalid
            }
        }
        OciDistributionError::ServerError { code, .. } => match code {
            404 => NotFound,
            401 | 403 => Unauthorized,
            c if *c >= 500 => Unreachable,
            _ => Invalid,
        },
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Unauthorized,
        OciDistributionError::ImageManifestNotFoundError(_) => NotFound,
        OciDistributionError::RequestError(r) if r.is_timeout() => Timeout,
        OciDistributionError::RequestError(_) => Unreachable,
        OciDistributionError::IoError(_) => Unreachable,
        _ => Invalid,
    };
    let message = match kind {
        NotFound => format!("not found ({})", chain(e)),
        _ => chain(e),
    };
    Failure { kind, message }
}

fn timeout_failure(what: &str, t: Duration) -> Failure {
    Failure {
        kind: FailureKind::Timeout,
        message: format!(
            "{what}: nothing received for {}s (image_pull_progress_timeout_secs)",
            t.as_secs()
        ),
    }
}

/// Fetches from one endpoint.
pub struct Fetcher {
    client: oci_client::Client,
    reference: oci_client::Reference,
    auth: RegistryAuth,
    progress: Duration,
}

impl Fetcher {
    pub fn new(
        endpoint: &Endpoint,
        image: &ImageReference,
        auth: RegistryAuth,
        progress: Duration,
    ) -> Fetcher {
        let config = ClientConfig {
            protocol: if endpoint.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            platform_resolver: None,
            read_timeout: Some(progress),
            connect_timeout: Some(progress.min(Duration::from_secs(30))),
            ..Default::default()
        };
        let tag_or_digest = |d: Option<&String>| {
            d.cloned()
                .unwrap_or_else(|| image.tag.clone().unwrap_or_else(|| "latest".into()))
        };
        let reference = match &image.digest {
            Some(d) => oci_client::Reference::with_digest(
                endpoint.host.clone(),
                image.path.clone(),
                d.clone(),
            ),
            None => oci_client::Reference::with_tag(
                endpoint.host.clone(),
                image.path.clone(),
                tag_or_digest(None),
            ),
        };
        Fetcher {
            client: oci_client::Client::new(config),
            reference,
            auth,
            progress,
        }
    }

    /// The manifest the reference names (`digest = None`) or the one with `digest`: its bytes
    /// and digest (checked against the reference's digest by oci-client).
    pub async fn manifest(&self, digest: Option<&str>) -> Result<(Vec<u8>, String), Failure> {
        let r = match digest {
            Some(d) => self.reference.clone_with_digest(d.to_string()),
            None => self.reference.clone(),
        };
        let what = format!("fetching manifest {}", digest.unwrap_or("by reference"));
        let fut = self
            .client
            .pull_manifest_raw(&r, &self.auth, super::manifest::ACCEPTED);
        match tokio::time::timeout(self.progress, fut).await {
            Err(_) => Err(timeout_failure(&what, self.progress)),
            Ok(Err(e)) => {
                let mut f = classify(&e);
                f.message = format!("{what}: {}", f.message);
                Err(f)
            }
            Ok(Ok((bytes, got))) => {
                if let Some(d) = digest
                    && d != got
                {
                    return Err(Failure::invalid(format!(
                        "{what}: the registry sent a manifest with digest {got}"
                    )));
                }
                Ok((bytes.to_vec(), got))
            }
        }
    }

    /// Streams blob `digest` into `w` (which verifies it when committed).
    pub async fn blob(&self, digest: &str, w: &mut BlobWriter) -> Result<(), Failure> {
        let what = format!("fetching blob {digest}");
        let fail = |e: &OciDistributionError| {
            let mut f = classify(e);
            f.message = format!("{what}: {}", f.message);
            f
        };
        let mut stream = match tokio::time::timeout(
            self.progress,
            self.client.pull_blob_stream(&self.reference, digest),
        )
        .await
        {
            Err(_) => return Err(timeout_failure(&what, self.progress)),
            Ok(Err(e)) => return Err(fail(&e)),
            Ok(Ok(s)) => s,
        };
        loop {
            match tokio::time::timeout(self.progress, stream.next()).await {
                Err(_) => return Err(timeout_failure(&what, self.progress)),
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => {
                    return Err(Failure {
                        kind: FailureKind::Unreachable,
                        message: format!("{what}: {}", chain(&e)),
                    });
                }
                Ok(Some(Ok(chunk))) => w
                    .write(&chunk)
                    .map_err(|e| Failure::invalid(format!("{what}: {e}")))?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn endpoints_in_order() {
        let mut regs = BTreeMap::new();
        regs.insert(
            "example.invalid".to_string(),
            RegistryConfig {
                mirrors: vec![
                    "http://127.0.0.1:5000/".into(),
                    "https://mirror.example".into(),
                ],
            },
        );
        let shown = |d: &str, regs: &BTreeMap<String, RegistryConfig>| {
            endpoints(d, regs)
                .expect("endpoints")
                .iter()
                .map(|e| format!("{e}{}", if e.mirror { " (mirror)" } else { "" }))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shown("example.invalid", &regs),
            [
                "http://127.0.0.1:5000 (mirror)",
                "https://mirror.example (mirror)",
                "https://example.invalid"
            ]
        );
        // No automatic plain HTTP for loopback registries.
        assert_eq!(shown("127.0.0.1:5000", &regs), ["https://127.0.0.1:5000"]);
        // A registry that is its own (plain HTTP) mirror is tried once.
        regs.insert(
            "127.0.0.1:5000".to_string(),
            RegistryConfig {
                mirrors: vec!["http://127.0.0.1:5000".into()],
            },
        );
        assert_eq!(
            shown("127.0.0.1:5000", &regs),
            ["http://127.0.0.1:5000 (mirror)"]
        );
        regs.insert(
            "bad".to_string(),
            RegistryConfig {
                mirrors: vec!["http://m/path".into()],
            },
        );
        assert!(
            endpoints("bad", &regs)
                .expect_err("path")
                .contains("without a path")
        );
    }

    #[test]
    fn credentials() {
        let base = cri::AuthConfig::default();
        let cases: Vec<(cri::AuthConfig, &str, RegistryAuth)> = vec![
            (base.clone(), "docker.io", RegistryAuth::Anonymous),
            (
                cri::AuthConfig {
                    username: "u".into(),
                    password: "p".into(),
                    ..base.clone()
                },
                "docker.io",
                RegistryAuth::Basic("u".into(), "p".into()),
            ),
            (
                // base64("user:pa:ss")
                cri::AuthConfig {
                    auth: "dXNlcjpwYTpzcw==".into(),
                    ..base.clone()
                },
                "r.example",
                RegistryAuth::Basic("user".into(), "pa:ss".into()),
            ),
            (
                cri::AuthConfig {
                    registry_token: "tok".into(),
                    ..base.clone()
                },
                "r.example",
                RegistryAuth::Bearer("tok".into()),
            ),
            (
                cri::AuthConfig {
                    identity_token: "id".into(),
                    ..base.clone()
                },
                "r.example",
                RegistryAuth::Bearer("id".into()),
            ),
            (
                cri::AuthConfig {
                    server_address: "https://index.docker.io/v1/".into(),
                    username: "u".into(),
                    password: "p".into(),
                    ..base.clone()
                },
                "docker.io",
                RegistryAuth::Basic("u".into(), "p".into()),
            ),
            (
                cri::AuthConfig {
                    server_address: "other.example".into(),
                    username: "u".into(),
                    ..base.clone()
                },
                "127.0.0.1:5000",
                RegistryAuth::Anonymous,
            ),
        ];
        for (a, host, want) in cases {
            assert_eq!(
                registry_auth(Some(&a), host).expect("auth"),
                want,
                "{a:?} {host}"
            );
        }
        let bad = cri::AuthConfig {
            auth: "!!".into(),
            ..base
        };
        assert!(registry_auth(Some(&bad), "x").is_err());
        assert_eq!(base64_decode("YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(base64_decode("YQ").as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn error_kind_and_message() {
        let f = |kind, m: &str| Failure {
            kind,
            message: m.into(),
        };
        let e = Error {
            reference: "example.invalid/x:latest".into(),
            attempts: vec![
                (
                    "http://127.0.0.1:1".into(),
                    f(FailureKind::Unreachable, "connection refused"),
                ),
                (
                    "https://example.invalid".into(),
                    f(FailureKind::NotFound, "not found"),
                ),
            ],
        };
        assert_eq!(e.kind(), FailureKind::Unreachable);
        assert_eq!(
            e.to_string(),
            "pulling image example.invalid/x:latest: every endpoint failed: http://127.0.0.1:1: \
             connection refused; https://example.invalid: not found"
        );
        let nf = Error {
            reference: "r".into(),
            attempts: vec![("e".into(), f(FailureKind::NotFound, "nope"))],
        };
        assert_eq!(nf.kind(), FailureKind::NotFound);
    }
}
