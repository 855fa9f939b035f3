//! The cluster PKI: a CA, the apiserver serving certificate, the service-account signing key
//! and the admin client certificate, kept as PEM files under `<dir>/pki/` (keys mode 0600).
//!
//! Everything is ECDSA P-256 signed with the aws-lc-rs provider. The first start generates the
//! files; later starts load them, and reissue the serving certificate when the requested SAN
//! list changed or it is about to expire. The same CA signs client certificates (see
//! [`Pki::issue_client_cert`] and [`Pki::sign_csr`]) and verifies them in the TLS handshake.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use x509_parser::extensions::GeneralName;

use super::error::{Error, Result};
use super::user::MASTERS;

/// Validity of the CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Validity of the serving and admin certificates.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// A serving certificate closer than this to expiry is reissued at start.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Common name of the admin client certificate.
pub const ADMIN_USER: &str = "kubernetes-admin";

const CA_CRT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVING_CRT: &str = "apiserver.crt";
const SERVING_KEY: &str = "apiserver.key";
const SA_KEY: &str = "sa.key";
const SA_PUB: &str = "sa.pub";
const ADMIN_CRT: &str = "admin.crt";
const ADMIN_KEY: &str = "admin.key";

/// What a certificate signed by the CA may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// TLS client authentication (kubelet client certificates, users).
    ClientAuth,
    /// TLS server authentication (kubelet serving certificates).
    ServerAuth,
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The loaded cluster PKI.
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    serving: CertPair,
    admin: CertPair,
    sa_key_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the PKI under `dir/pki/`, generating whatever is missing, and reissues the serving
    /// certificate when `serving_hosts` (IPs and DNS names) differ from its SANs.
    pub fn load_or_create(dir: &Path, serving_hosts: &[String]) -> Result<Pki> {
        let dir = dir.join("pki");
        fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let (ca_pem, ca_key_pem) = load_or_create_ca(&dir)?;
        let ca_key =
            KeyPair::from_pem(&ca_key_pem).map_err(|e| Error::rcgen("loading ca.key", e))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
            .map_err(|e| Error::rcgen("loading ca.crt", e))?;
        let ca_der = pem_to_der(&ca_pem, "CERTIFICATE")?;
        let mut pki = Pki {
            dir,
            ca_pem,
            ca_der: CertificateDer::from(ca_der),
            issuer,
            serving: CertPair {
                cert_pem: String::new(),
                key_pem: String::new(),
            },
            admin: CertPair {
                cert_pem: String::new(),
                key_pem: String::new(),
            },
            sa_key_pem: String::new(),
        };
        pki.serving = pki.load_or_issue_serving(serving_hosts)?;
        pki.admin = pki.load_or_issue_admin()?;
        pki.sa_key_pem = pki.load_or_create_sa_key()?;
        Ok(pki)
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The serving certificate and key, PEM.
    pub fn serving(&self) -> &CertPair {
        &self.serving
    }

    /// The admin client certificate (CN `kubernetes-admin`, O `system:masters`) and key, PEM.
    pub fn admin(&self) -> &CertPair {
        &self.admin
    }

    /// The service-account signing key (PKCS#8 PEM, ECDSA P-256).
    pub fn service_account_key_pem(&self) -> &str {
        &self.sa_key_pem
    }

    /// The serving chain (leaf, then CA), DER.
    pub fn serving_chain_der(&self) -> Result<Vec<CertificateDer<'static>>> {
        let leaf = pem_to_der(&self.serving.cert_pem, "CERTIFICATE")?;
        Ok(vec![CertificateDer::from(leaf), self.ca_der.clone()])
    }

    /// The serving key, DER (PKCS#8).
    pub fn serving_key_der(&self) -> Result<PrivateKeyDer<'static>> {
        let der = pem_to_der(&self.serving.key_pem, "PRIVATE KEY")?;
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
    }

    /// A rustls server configuration (aws-lc-rs provider): the serving chain, ALPN `h2` and
    /// `http/1.1`, and a client certificate requested (not required) and verified against the CA.
    pub fn server_tls_config(&self) -> Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(|source| Error::Tls {
                context: "adding the ca to the client roots",
                source,
            })?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| Error::Tls {
                context: "choosing tls versions",
                source,
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.serving_chain_der()?, self.serving_key_der()?)
            .map_err(|source| Error::Tls {
                context: "loading the serving certificate",
                source,
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Issues a client certificate (CN `cn`, O `orgs`) valid for `validity`.
    ///
    /// rcgen keeps one value per attribute type, so at most one organization is supported.
    pub fn issue_client_cert(
        &self,
        cn: &str,
        orgs: &[String],
        validity: Duration,
    ) -> Result<CertPair> {
        if orgs.len() > 1 {
            return Err(Error::Certificate(format!(
                "issuing a certificate for {cn}: only one organization is supported, got {}",
                orgs.len()
            )));
        }
        let mut params = leaf_params(validity, &[Usage::ClientAuth])?;
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(org) = orgs.first() {
            params
                .distinguished_name
                .push(DnType::OrganizationName, org.as_str());
        }
        let key = new_key()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| Error::rcgen(format!("signing the certificate of {cn}"), e))?;
        Ok(CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a PEM certificate signing request (its subject and SANs kept) for `usages`.
    pub fn sign_csr(&self, csr_pem: &str, usages: &[Usage], validity: Duration) -> Result<String> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| Error::rcgen("parsing the certificate signing request", e))?;
        let mut params = leaf_params(validity, usages)?;
        params.distinguished_name = csr.params.distinguished_name.clone();
        params.subject_alt_names = csr.params.subject_alt_names.clone();
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| Error::rcgen("signing the certificate signing request", e))?;
        Ok(cert.pem())
    }

    fn load_or_issue_serving(&self, hosts: &[String]) -> Result<CertPair> {
        if let Some(pair) = self.read_pair(SERVING_CRT, SERVING_KEY)?
            && serving_still_valid(&pair.cert_pem, &self.ca_der, hosts)?
        {
            return Ok(pair);
        }
        let mut params = leaf_params(LEAF_VALIDITY, &[Usage::ServerAuth])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.subject_alt_names = CertificateParams::new(hosts.to_vec())
            .map_err(|e| Error::rcgen("parsing the serving hosts", e))?
            .subject_alt_names;
        let key = new_key()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| Error::rcgen("signing the serving certificate", e))?;
        let pair = CertPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        self.write_pair(&pair, SERVING_CRT, SERVING_KEY)?;
        Ok(pair)
    }

    fn load_or_issue_admin(&self) -> Result<CertPair> {
        if let Some(pair) = self.read_pair(ADMIN_CRT, ADMIN_KEY)?
            && pem_signed_by_ca(&pair.cert_pem, &self.ca_der)?
        {
            return Ok(pair);
        }
        let pair = self.issue_client_cert(ADMIN_USER, &[MASTERS.to_string()], LEAF_VALIDITY)?;
        self.write_pair(&pair, ADMIN_CRT, ADMIN_KEY)?;
        Ok(pair)
    }

    fn load_or_create_sa_key(&self) -> Result<String> {
        let path = self.dir.join(SA_KEY);
        if let Some(pem) = read_optional(&path)? {
            return Ok(pem);
        }
        let key = new_key()?;
        write_file(&path, &key.serialize_pem(), true)?;
        write_file(&self.dir.join(SA_PUB), &key.public_key_pem(), false)?;
        Ok(key.serialize_pem())
    }

    fn read_pair(&self, crt: &str, key: &str) -> Result<Option<CertPair>> {
        let cert = read_optional(&self.dir.join(crt))?;
        let key = read_optional(&self.dir.join(key))?;
        Ok(cert
            .zip(key)
            .map(|(cert_pem, key_pem)| CertPair { cert_pem, key_pem }))
    }

    fn write_pair(&self, pair: &CertPair, crt: &str, key: &str) -> Result<()> {
        write_file(&self.dir.join(key), &pair.key_pem, true)?;
        write_file(&self.dir.join(crt), &pair.cert_pem, false)
    }
}

fn load_or_create_ca(dir: &Path) -> Result<(String, String)> {
    let (crt, key) = (dir.join(CA_CRT), dir.join(CA_KEY));
    if let (Some(c), Some(k)) = (read_optional(&crt)?, read_optional(&key)?) {
        return Ok((c, k));
    }
    let mut params = validity_params(CA_VALIDITY)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "keel-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key_pair = new_key()?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| Error::rcgen("self-signing the ca", e))?;
    write_file(&key, &key_pair.serialize_pem(), true)?;
    write_file(&crt, &cert.pem(), false)?;
    Ok((cert.pem(), key_pair.serialize_pem()))
}

fn new_key() -> Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| Error::rcgen("generating a key", e))
}

/// Params valid from one hour ago (clock skew) for `validity`.
fn validity_params(validity: Duration) -> Result<CertificateParams> {
    let now = chrono::Utc::now().timestamp();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.not_before = asn1_time(now - 3600)?.to_datetime();
    params.not_after = asn1_time(now.saturating_add(validity.as_secs() as i64))?.to_datetime();
    Ok(params)
}

fn leaf_params(validity: Duration, usages: &[Usage]) -> Result<CertificateParams> {
    let mut params = validity_params(validity)?;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages
        .iter()
        .map(|u| match u {
            Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        })
        .collect();
    Ok(params)
}

/// A unix time as an ASN.1 time (whose `to_datetime` is the `time` type rcgen wants; keel
/// does not depend on `time` directly).
fn asn1_time(unix: i64) -> Result<x509_parser::time::ASN1Time> {
    x509_parser::time::ASN1Time::from_timestamp(unix)
        .map_err(|e| Error::Certificate(format!("time {unix} out of range: {e}")))
}

/// True when the serving certificate is signed by the current CA, has exactly the SANs asked
/// for and is not near expiry.
fn serving_still_valid(cert_pem: &str, ca_der: &[u8], hosts: &[String]) -> Result<bool> {
    let der = pem_to_der(cert_pem, "CERTIFICATE")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Error::Certificate(format!("parsing the serving certificate: {e}")))?;
    if !signed_by_ca(&cert, ca_der)? {
        return Ok(false);
    }
    let renew_at = cert.validity().not_after.timestamp() - RENEW_BEFORE.as_secs() as i64;
    if chrono::Utc::now().timestamp() >= renew_at {
        return Ok(false);
    }
    let wanted: BTreeSet<String> = hosts.iter().map(|h| normalize_host(h)).collect();
    Ok(cert_sans(&cert) == wanted)
}

/// True when `cert` carries a valid signature of the CA.
fn signed_by_ca(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    ca_der: &[u8],
) -> Result<bool> {
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der)
        .map_err(|e| Error::Certificate(format!("parsing the ca certificate: {e}")))?;
    Ok(cert.verify_signature(Some(ca.public_key())).is_ok())
}

/// True when a PEM certificate carries a valid signature of the CA.
fn pem_signed_by_ca(cert_pem: &str, ca_der: &[u8]) -> Result<bool> {
    let der = pem_to_der(cert_pem, "CERTIFICATE")?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| Error::Certificate(format!("parsing a certificate: {e}")))?;
    signed_by_ca(&cert, ca_der)
}

fn normalize_host(host: &str) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

/// The DNS and IP SANs of a certificate, normalized.
fn cert_sans(cert: &x509_parser::certificate::X509Certificate<'_>) -> BTreeSet<String> {
    let mut sans = BTreeSet::new();
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return sans;
    };
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(d) => {
                sans.insert(d.to_ascii_lowercase());
            }
            GeneralName::IPAddress(bytes) => {
                if let Some(ip) = ip_from_bytes(bytes) {
                    sans.insert(ip.to_string());
                }
            }
            _ => {}
        }
    }
    sans
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// Decodes the first PEM block, which must have the given tag.
pub(crate) fn pem_to_der(pem_text: &str, tag: &str) -> Result<Vec<u8>> {
    let block = pem_block(pem_text)?;
    if block.0 != tag {
        return Err(Error::Pem(format!(
            "expected a {tag} block, found {}",
            block.0
        )));
    }
    Ok(block.1)
}

/// The tag and decoded body of the first PEM block.
fn pem_block(text: &str) -> Result<(String, Vec<u8>)> {
    use base64::Engine;
    let begin = text
        .find("-----BEGIN ")
        .ok_or_else(|| Error::Pem("no begin line".into()))?;
    let rest = &text[begin + 11..];
    let tag_end = rest
        .find("-----")
        .ok_or_else(|| Error::Pem("unterminated begin line".into()))?;
    let tag = &rest[..tag_end];
    let end_marker = format!("-----END {tag}-----");
    let body_end = rest
        .find(&end_marker)
        .ok_or_else(|| Error::Pem(format!("no end line for {tag}")))?;
    let body: String = rest[tag_end + 5..body_end].split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| Error::Pem(format!("decoding the {tag} block: {e}")))?;
    Ok((tag.to_string(), der))
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

/// Writes through a temporary file and a rename; `secret` files get mode 0600.
pub(crate) fn write_file(path: &Path, contents: &str, secret: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mode = if secret { 0o600 } else { 0o644 };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io("creating", &tmp, e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("renaming into", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::auth::x509::user_from_client_cert;
    use std::os::unix::fs::PermissionsExt;

    fn hosts() -> Vec<String> {
        [
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default.svc",
            "10.96.0.1",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn creates_then_reloads_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(dir.path(), &hosts()).unwrap();
        for key in [CA_KEY, SERVING_KEY, SA_KEY, ADMIN_KEY] {
            let mode = fs::metadata(first.dir().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        let again = Pki::load_or_create(dir.path(), &hosts()).unwrap();
        assert_eq!(first.ca_pem(), again.ca_pem());
        assert_eq!(first.serving().cert_pem, again.serving().cert_pem);
        assert_eq!(first.admin().cert_pem, again.admin().cert_pem);
        assert_eq!(
            first.service_account_key_pem(),
            again.service_account_key_pem()
        );
    }

    #[test]
    fn san_change_reissues_only_the_serving_cert() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(dir.path(), &hosts()).unwrap();
        let mut more = hosts();
        more.push("192.168.1.10".into());
        let second = Pki::load_or_create(dir.path(), &more).unwrap();
        assert_eq!(first.ca_pem(), second.ca_pem());
        assert_ne!(first.serving().cert_pem, second.serving().cert_pem);
        let der = pem_to_der(&second.serving().cert_pem, "CERTIFICATE").unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert_sans(&cert).contains("192.168.1.10"));
        assert!(cert_sans(&cert).contains("kubernetes.default.svc"));
    }

    #[test]
    fn new_ca_reissues_the_serving_and_admin_certs() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(dir.path(), &hosts()).unwrap();
        fs::remove_file(first.dir().join(CA_CRT)).unwrap();
        fs::remove_file(first.dir().join(CA_KEY)).unwrap();
        let second = Pki::load_or_create(dir.path(), &hosts()).unwrap();
        assert_ne!(first.ca_pem(), second.ca_pem());
        assert_ne!(first.serving().cert_pem, second.serving().cert_pem);
        assert_ne!(first.admin().cert_pem, second.admin().cert_pem);
    }

    #[test]
    fn admin_cert_verifies_against_the_ca_and_names_the_admin() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &hosts()).unwrap();
        pki.server_tls_config().unwrap();
        let der = pem_to_der(&pki.admin().cert_pem, "CERTIFICATE").unwrap();
        let ca = pem_to_der(pki.ca_pem(), "CERTIFICATE").unwrap();
        let (_, ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        let user = user_from_client_cert(&der).unwrap();
        assert_eq!(user.name, ADMIN_USER);
        assert_eq!(user.groups, [MASTERS, "system:authenticated"]);
    }

    #[test]
    fn signs_a_kubelet_csr_keeping_its_subject() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &hosts()).unwrap();
        let key = new_key().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "system:node:n1");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "system:nodes");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let pem = pki
            .sign_csr(&csr, &[Usage::ClientAuth], Duration::from_secs(3600))
            .unwrap();
        let user = user_from_client_cert(&pem_to_der(&pem, "CERTIFICATE").unwrap()).unwrap();
        assert_eq!(user.name, "system:node:n1");
        assert_eq!(user.node_name(), Some("n1"));
        let issued = pki
            .issue_client_cert("system:kube-scheduler", &[], Duration::from_secs(60))
            .unwrap();
        let user =
            user_from_client_cert(&pem_to_der(&issued.cert_pem, "CERTIFICATE").unwrap()).unwrap();
        assert_eq!(user.name, "system:kube-scheduler");
        assert!(
            pki.issue_client_cert("x", &["a".into(), "b".into()], Duration::from_secs(60))
                .is_err()
        );
    }

    #[test]
    fn expired_client_cert_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &hosts()).unwrap();
        let der = pem_to_der(&pki.admin().cert_pem, "CERTIFICATE").unwrap();
        let later = chrono::Utc::now().timestamp() + 3 * 365 * 24 * 3600;
        let err = crate::apiserver::auth::x509::user_from_client_cert_at(&der, later).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    /// A client config trusting the CA, optionally presenting a client certificate.
    fn client_config(pki: &Pki, cert: Option<&CertPair>) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca_der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        match cert {
            Some(pair) => {
                let chain = vec![CertificateDer::from(
                    pem_to_der(&pair.cert_pem, "CERTIFICATE").unwrap(),
                )];
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    pem_to_der(&pair.key_pem, "PRIVATE KEY").unwrap(),
                ));
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        }
    }

    /// Handshakes once over loopback and returns the user of the peer certificate, if any.
    async fn handshake(
        pki: &Pki,
        cert: Option<&CertPair>,
    ) -> Option<crate::apiserver::auth::UserInfo> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_tls_config().unwrap()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.unwrap();
            let (_, conn) = tls.get_ref();
            assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
            let user = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| user_from_client_cert(c).unwrap());
            tls.write_all(b"ok").await.unwrap();
            tls.shutdown().await.unwrap();
            user
        });
        let mut config = client_config(pki, cert);
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.unwrap();
        assert_eq!(buf, b"ok");
        server.await.unwrap()
    }

    #[tokio::test]
    async fn tls_handshake_with_and_without_client_cert() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &hosts()).unwrap();
        let user = handshake(&pki, Some(pki.admin())).await.unwrap();
        assert_eq!(user.name, ADMIN_USER);
        assert!(user.in_group(MASTERS));
        assert!(handshake(&pki, None).await.is_none());
    }
}
