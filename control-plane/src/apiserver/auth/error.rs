//! The one error type of the auth module: every failure of PKI, token or certificate handling,
//! with a lowercase message that names what was being done.

use std::path::PathBuf;

/// An authentication, PKI or token failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a PKI file failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Certificate or key generation, parsing or signing failed.
    #[error("{context}: {source}")]
    Rcgen {
        context: String,
        source: rcgen::Error,
    },
    /// rustls rejected a certificate, key or configuration.
    #[error("{context}: {source}")]
    Tls {
        context: &'static str,
        source: rustls::Error,
    },
    /// The client certificate verifier could not be built.
    #[error("building the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A certificate could not be parsed or is unusable.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A PEM document was malformed or of the wrong kind.
    #[error("pem: {0}")]
    Pem(String),
    /// A key could not be used with aws-lc-rs.
    #[error("key: {0}")]
    Key(String),
    /// A bearer token was rejected (malformed, bad signature, expired, wrong audience...).
    #[error("invalid token: {0}")]
    Token(String),
    /// JSON (de)serialization failed.
    #[error("{context}: {source}")]
    Json {
        context: &'static str,
        source: serde_json::Error,
    },
}

/// Result alias of the auth module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn rcgen(context: impl Into<String>, source: rcgen::Error) -> Self {
        Error::Rcgen {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn token(msg: impl Into<String>) -> Self {
        Error::Token(msg.into())
    }
}
