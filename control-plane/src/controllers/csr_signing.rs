//! The CSR signer ("csrsigning"): signs approved requests of the signers
//! `kubernetes.io/kube-apiserver-client-kubelet`, `kubernetes.io/kubelet-serving` and
//! `kubernetes.io/kube-apiserver-client` with the cluster CA (`--cluster-signing-cert-file`,
//! `--cluster-signing-key-file`), after checking each request is what its signer issues — a
//! kubelet serving certificate may only name its node's addresses. The certificate lives
//! `spec.expirationSeconds` (at least 600 s) but no longer than `--cluster-signing-duration` nor
//! the CA, backdated 5 minutes for clock skew, and is written to `status.certificate` through the
//! `status` subresource; a request that fails the checks gets the `Failed` condition
//! (SignerValidationFailure) instead.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use tokio_util::sync::CancellationToken;

use super::Context;
use super::csr_approving::{
    APISERVER_CLIENT_SIGNER, KUBELET_CLIENT_SIGNER, KUBELET_SERVING_SIGNER, NODE_USER_PREFIX,
    NODES_GROUP, RequestedCert, has_certificate, is_approved, is_denied_or_failed, parse_request,
    validate_kubelet_client,
};
use super::informer::{self, WorkQueue, now_time};

/// The shortest certificate a request may ask for (kube's minimum expirationSeconds).
pub const MIN_DURATION: Duration = Duration::from_secs(600);
/// How far before now a certificate starts, for clocks that run behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Why the signing CA could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("--cluster-signing-cert-file and --cluster-signing-key-file are not set")]
    NotConfigured,
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("loading the signing CA: {0}")]
    Ca(String),
    #[error("signing: {0}")]
    Sign(String),
}

/// The CA that signs.
pub struct SigningCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's own expiry, unix seconds: no certificate outlives it.
    not_after: i64,
}

impl SigningCa {
    pub fn load(
        cert_file: &std::path::Path,
        key_file: &std::path::Path,
    ) -> Result<Self, SignerError> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path).map_err(|source| SignerError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let cert_pem = read(cert_file)?;
        let key_pem = read(key_file)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| SignerError::Ca(e.to_string()))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| SignerError::Ca(e.to_string()))?;
        let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| SignerError::Ca(e.to_string()))?;
        let cert = block
            .parse_x509()
            .map_err(|e| SignerError::Ca(e.to_string()))?;
        Ok(SigningCa {
            issuer,
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// Signs `request_pem` for `usages` (kube's usage names), valid for `ttl`.
    pub fn sign(
        &self,
        request_pem: &str,
        usages: &[String],
        ttl: Duration,
    ) -> Result<String, SignerError> {
        let request = CertificateSigningRequestParams::from_pem(request_pem)
            .map_err(|e| SignerError::Sign(e.to_string()))?;
        let now = chrono::Utc::now().timestamp();
        let not_after = (now.saturating_add(ttl.as_secs() as i64)).min(self.not_after);
        let mut params = CertificateParams::default();
        params.distinguished_name = request.params.distinguished_name.clone();
        params.subject_alt_names = request.params.subject_alt_names.clone();
        params.not_before = asn1(now - BACKDATE.as_secs() as i64)?.to_datetime();
        params.not_after = asn1(not_after)?.to_datetime();
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let mut serial = [0u8; 16];
        rand::Rng::fill(&mut rand::rng(), &mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let (key_usages, extended) = usages_of(usages).map_err(SignerError::Sign)?;
        params.key_usages = key_usages;
        params.extended_key_usages = extended;
        let cert = params
            .signed_by(&request.public_key, &self.issuer)
            .map_err(|e| SignerError::Sign(e.to_string()))?;
        Ok(cert.pem())
    }
}

fn asn1(unix: i64) -> Result<x509_parser::time::ASN1Time, SignerError> {
    x509_parser::time::ASN1Time::from_timestamp(unix)
        .map_err(|e| SignerError::Sign(format!("time {unix} out of range: {e}")))
}

/// kube's usage names as key usages and extended key usages.
fn usages_of(
    usages: &[String],
) -> Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>), String> {
    let mut key = Vec::new();
    let mut extended = Vec::new();
    for usage in usages {
        match usage.as_str() {
            "signing" | "digital signature" => key.push(KeyUsagePurpose::DigitalSignature),
            "content commitment" => key.push(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => key.push(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => key.push(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => key.push(KeyUsagePurpose::DataEncipherment),
            "cert sign" => key.push(KeyUsagePurpose::KeyCertSign),
            "crl sign" => key.push(KeyUsagePurpose::CrlSign),
            "encipher only" => key.push(KeyUsagePurpose::EncipherOnly),
            "decipher only" => key.push(KeyUsagePurpose::DecipherOnly),
            "any" => extended.push(ExtendedKeyUsagePurpose::Any),
            "server auth" => extended.push(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => extended.push(ExtendedKeyUsagePurpose::ClientAuth),
            "code signing" => extended.push(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" | "s/mime" => {
                extended.push(ExtendedKeyUsagePurpose::EmailProtection)
            }
            "timestamping" => extended.push(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => extended.push(ExtendedKeyUsagePurpose::OcspSigning),
            other => return Err(format!("unsupported usage {other:?}")),
        }
    }
    key.dedup();
    extended.dedup();
    Ok((key, extended))
}

/// The lifetime of the certificate: what the request asks (at least [`MIN_DURATION`]), at
/// most `max`.
pub fn certificate_ttl(expiration_seconds: Option<i32>, max: Duration) -> Duration {
    match expiration_seconds {
        Some(seconds) => Duration::from_secs(seconds.max(0) as u64)
            .max(MIN_DURATION)
            .min(max),
        None => max,
    }
}

/// kube's kubelet serving rules, plus: every SAN is one of the node's names or addresses.
fn validate_kubelet_serving(
    req: &RequestedCert,
    usages: &[String],
    node: Option<&Node>,
) -> Result<(), String> {
    if req.organizations != [NODES_GROUP] {
        return Err(format!(
            "subject organization is not system:nodes: {:?}",
            req.organizations
        ));
    }
    let Some(node_name) = req.common_name.strip_prefix(NODE_USER_PREFIX) else {
        return Err(format!(
            "subject common name does not begin with system:node: {:?}",
            req.common_name
        ));
    };
    if !req.emails.is_empty() || !req.uris.is_empty() {
        return Err("email and URI subjectAltNames are not allowed".into());
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("at least one DNS or IP subjectAltName is required".into());
    }
    let set: BTreeSet<&str> = usages.iter().map(String::as_str).collect();
    let with_key = BTreeSet::from(["digital signature", "key encipherment", "server auth"]);
    let without_key = BTreeSet::from(["digital signature", "server auth"]);
    if set != with_key && set != without_key {
        return Err(format!(
            "usages did not match [digital signature server auth] or [digital signature key encipherment server auth]: {usages:?}"
        ));
    }
    let Some(node) = node else {
        return Err(format!("node {node_name:?} does not exist"));
    };
    let mut known: BTreeSet<String> = BTreeSet::from([node_name.to_ascii_lowercase()]);
    for address in node
        .status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
    {
        known.insert(address.address.to_ascii_lowercase());
    }
    for san in req.dns_names.iter().chain(&req.ip_addresses) {
        if !known.contains(&san.to_ascii_lowercase()) {
            return Err(format!(
                "subjectAltName {san:?} is not an address or name of node {node_name:?}"
            ));
        }
    }
    Ok(())
}

/// The kube-apiserver-client rules: client auth, with digital signature and key encipherment
/// allowed.
fn validate_apiserver_client(usages: &[String]) -> Result<(), String> {
    let allowed = ["client auth", "digital signature", "key encipherment"];
    if let Some(bad) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!("invalid usage for client certificate: {bad}"));
    }
    if !usages.iter().any(|u| u == "client auth") {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

struct Signer {
    client: Client,
    ca: SigningCa,
    max_duration: Duration,
    csrs: Store<CertificateSigningRequest>,
    nodes: Store<Node>,
    queue: Arc<WorkQueue>,
}

const ALL: &str = "\u{0}all";

/// Runs until `shutdown`; without a loadable CA it logs why and signs nothing.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
    let config = &context.config;
    let loaded = match (
        &config.cluster_signing_cert_file,
        &config.cluster_signing_key_file,
    ) {
        (Some(cert), Some(key)) => SigningCa::load(cert, key),
        _ => Err(SignerError::NotConfigured),
    };
    let ca = match loaded {
        Ok(ca) => ca,
        Err(error) => {
            tracing::error!(%error, "csrsigning cannot sign");
            shutdown.cancelled().await;
            return;
        }
    };
    let client = context.client.clone();
    let queue = WorkQueue::new();
    let q = queue.clone();
    let (csrs, csrs_task) = informer::watch(
        Api::<CertificateSigningRequest>::all(client.clone()),
        move |c| match c {
            Some(c) => q.add(c.metadata.name.clone().unwrap_or_default()),
            None => q.add(ALL),
        },
    );
    let (nodes, nodes_task) = informer::watch(Api::<Node>::all(client.clone()), |_| {});
    let signer = Arc::new(Signer {
        client,
        ca,
        max_duration: config.cluster_signing_duration,
        csrs,
        nodes,
        queue,
    });
    let worker = tokio::spawn(work(signer));
    shutdown.cancelled().await;
    for task in [csrs_task, nodes_task, worker] {
        task.abort();
    }
}

async fn work(signer: Arc<Signer>) {
    let _ = signer.csrs.wait_until_ready().await;
    let _ = signer.nodes.wait_until_ready().await;
    loop {
        let key = signer.queue.next().await;
        if key == ALL {
            for csr in signer.csrs.state() {
                signer
                    .queue
                    .add(csr.metadata.name.clone().unwrap_or_default());
            }
            continue;
        }
        let Some(csr) = signer.csrs.get(&ObjectRef::new(&key)) else {
            continue;
        };
        if let Err(error) = signer.handle(&csr).await {
            tracing::warn!(csr = %key, %error, "signing failed; retrying");
            signer.queue.add_after(key, Duration::from_secs(2));
        }
    }
}

impl Signer {
    async fn handle(&self, csr: &CertificateSigningRequest) -> Result<(), kube::Error> {
        let signer = csr.spec.signer_name.as_str();
        if ![
            KUBELET_CLIENT_SIGNER,
            KUBELET_SERVING_SIGNER,
            APISERVER_CLIENT_SIGNER,
        ]
        .contains(&signer)
        {
            return Ok(());
        }
        if !is_approved(csr) || is_denied_or_failed(csr) || has_certificate(csr) {
            return Ok(());
        }
        let usages = csr.spec.usages.clone().unwrap_or_default();
        let outcome = self.check(csr, &usages).and_then(|pem| {
            let ttl = certificate_ttl(csr.spec.expiration_seconds, self.max_duration);
            self.ca.sign(&pem, &usages, ttl).map_err(|e| e.to_string())
        });
        let mut updated = csr.clone();
        let name = csr.metadata.name.clone().unwrap_or_default();
        match outcome {
            Ok(certificate) => {
                updated.status.get_or_insert_default().certificate =
                    Some(ByteString(certificate.into_bytes()));
                tracing::info!(csr = %name, signer, "signed a certificate");
            }
            Err(message) => {
                let now = now_time();
                updated
                    .status
                    .get_or_insert_default()
                    .conditions
                    .get_or_insert_default()
                    .push(CertificateSigningRequestCondition {
                        type_: "Failed".into(),
                        status: "True".into(),
                        reason: Some("SignerValidationFailure".into()),
                        message: Some(message),
                        last_update_time: Some(now.clone()),
                        last_transition_time: Some(now),
                    });
                tracing::info!(csr = %name, signer, "refused to sign");
            }
        }
        let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
        api.replace_status(&name, &PostParams::default(), &updated)
            .await?;
        Ok(())
    }

    /// The request's PEM when it is what its signer issues, else why not.
    fn check(&self, csr: &CertificateSigningRequest, usages: &[String]) -> Result<String, String> {
        let pem = String::from_utf8(csr.spec.request.0.clone())
            .map_err(|_| "the request is not PEM text".to_string())?;
        let requested = parse_request(pem.as_bytes()).map_err(|e| e.to_string())?;
        match csr.spec.signer_name.as_str() {
            KUBELET_CLIENT_SIGNER => validate_kubelet_client(&requested, usages)?,
            KUBELET_SERVING_SIGNER => {
                let node = requested
                    .common_name
                    .strip_prefix(NODE_USER_PREFIX)
                    .and_then(|n| self.nodes.get(&ObjectRef::new(n)));
                validate_kubelet_serving(&requested, usages, node.as_deref())?
            }
            _ => validate_apiserver_client(usages)?,
        }
        Ok(pem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_clamped_between_the_minimum_and_the_maximum() {
        let year = Duration::from_secs(8760 * 3600);
        assert_eq!(certificate_ttl(None, year), year);
        assert_eq!(certificate_ttl(Some(60), year), MIN_DURATION);
        assert_eq!(certificate_ttl(Some(3600), year), Duration::from_secs(3600));
        assert_eq!(
            certificate_ttl(Some(i32::MAX), Duration::from_secs(7200)),
            Duration::from_secs(7200)
        );
    }

    #[test]
    fn apiserver_client_usages() {
        let u = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(validate_apiserver_client(&u(&["client auth", "digital signature"])).is_ok());
        assert!(validate_apiserver_client(&u(&["server auth"])).is_err());
        assert!(validate_apiserver_client(&u(&["digital signature"])).is_err());
    }
}
