//! The CSR approver ("csrapproving"): auto-approves kubelet client certificate requests
//! (signer `kubernetes.io/kube-apiserver-client-kubelet`, subject `system:node:<name>` in
//! organization `system:nodes`, no SANs, usages digital signature + client auth with key
//! encipherment optional) once a SubjectAccessReview says the requester may create
//! `certificatesigningrequests/selfnodeclient` (a node renewing its own certificate) or
//! `certificatesigningrequests/nodeclient` (a bootstrapper asking for a node's). Anything else
//! waits for a person (`kubectl certificate approve`).
//!
//! Also the request parsing and kubelet-certificate rules the signer shares.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::Context;
use super::informer::{self, WorkQueue, now_time};

pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
pub const APISERVER_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";

/// What a certificate request asks for, as read from its PEM.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RequestedCert {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("the request is not a PEM-encoded CERTIFICATE REQUEST")]
    NotPem,
    #[error("the certificate request could not be parsed: {0}")]
    Parse(String),
    #[error("the certificate request's signature does not verify")]
    Signature,
}

/// Parses and checks the signature of a PEM certificate request (`spec.request`).
pub fn parse_request(pem: &[u8]) -> Result<RequestedCert, RequestError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| RequestError::NotPem)?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(RequestError::NotPem);
    }
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| RequestError::Parse(e.to_string()))?;
    csr.verify_signature()
        .map_err(|_| RequestError::Signature)?;
    let subject = &csr.certification_request_info.subject;
    let text = |a: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        a.as_str().map(str::to_string).unwrap_or_default()
    };
    let mut requested = RequestedCert {
        common_name: subject
            .iter_common_name()
            .next()
            .map(text)
            .unwrap_or_default(),
        organizations: subject.iter_organization().map(text).collect(),
        ..Default::default()
    };
    for extension in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = extension {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => requested.dns_names.push(d.to_string()),
                    GeneralName::RFC822Name(e) => requested.emails.push(e.to_string()),
                    GeneralName::URI(u) => requested.uris.push(u.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes)
                                .map(|b| std::net::IpAddr::from(b).to_string())
                                .ok(),
                            16 => <[u8; 16]>::try_from(*bytes)
                                .map(|b| std::net::IpAddr::from(b).to_string())
                                .ok(),
                            _ => None,
                        };
                        requested
                            .ip_addresses
                            .push(ip.unwrap_or_else(|| format!("{bytes:?}")));
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(requested)
}

fn usage_set(usages: &[String]) -> BTreeSet<&str> {
    usages.iter().map(String::as_str).collect()
}

/// kube's kubelet client rules: `system:node:<name>`, organization exactly `system:nodes`, no
/// SANs, usages digital signature + client auth (key encipherment optional).
pub fn validate_kubelet_client(req: &RequestedCert, usages: &[String]) -> Result<(), String> {
    if req.organizations != [NODES_GROUP] {
        return Err(format!(
            "subject organization is not system:nodes: {:?}",
            req.organizations
        ));
    }
    if !req.dns_names.is_empty()
        || !req.emails.is_empty()
        || !req.ip_addresses.is_empty()
        || !req.uris.is_empty()
    {
        return Err("a kubelet client certificate may not have subject alternative names".into());
    }
    if !req.common_name.starts_with(NODE_USER_PREFIX) {
        return Err(format!(
            "subject common name does not begin with system:node: {:?}",
            req.common_name
        ));
    }
    let set = usage_set(usages);
    let with_key = BTreeSet::from(["digital signature", "key encipherment", "client auth"]);
    let without_key = BTreeSet::from(["digital signature", "client auth"]);
    if set != with_key && set != without_key {
        return Err(format!(
            "usages did not match [client auth digital signature] or [client auth digital signature key encipherment]: {usages:?}"
        ));
    }
    Ok(())
}

fn condition_set(csr: &CertificateSigningRequest, type_: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == type_ && c.status != "False"))
}

pub fn is_approved(csr: &CertificateSigningRequest) -> bool {
    condition_set(csr, "Approved")
}

pub fn is_denied_or_failed(csr: &CertificateSigningRequest) -> bool {
    condition_set(csr, "Denied") || condition_set(csr, "Failed")
}

pub fn has_certificate(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

struct Approver {
    client: Client,
    csrs: Store<CertificateSigningRequest>,
    queue: Arc<WorkQueue>,
}

/// Runs until `shutdown`.
pub async fn run(context: Arc<Context>, shutdown: CancellationToken) {
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
    let approver = Arc::new(Approver {
        client,
        csrs,
        queue,
    });
    let worker = tokio::spawn(work(approver));
    shutdown.cancelled().await;
    csrs_task.abort();
    worker.abort();
}

const ALL: &str = "\u{0}all";

async fn work(approver: Arc<Approver>) {
    let _ = approver.csrs.wait_until_ready().await;
    loop {
        let key = approver.queue.next().await;
        if key == ALL {
            for csr in approver.csrs.state() {
                approver
                    .queue
                    .add(csr.metadata.name.clone().unwrap_or_default());
            }
            continue;
        }
        let Some(csr) = approver.csrs.get(&ObjectRef::new(&key)) else {
            continue;
        };
        if let Err(error) = approver.handle(&csr).await {
            tracing::warn!(csr = %key, %error, "auto-approval failed; retrying");
            approver.queue.add_after(key, Duration::from_secs(2));
        }
    }
}

/// The node-client permission a request needs and the message it is approved with.
struct Recognized {
    subresource: &'static str,
    message: &'static str,
}

fn recognize(csr: &CertificateSigningRequest) -> Vec<Recognized> {
    if csr.spec.signer_name != KUBELET_CLIENT_SIGNER {
        return Vec::new();
    }
    let Ok(requested) = parse_request(&csr.spec.request.0) else {
        return Vec::new();
    };
    let usages = csr.spec.usages.clone().unwrap_or_default();
    if validate_kubelet_client(&requested, &usages).is_err() {
        return Vec::new();
    }
    let mut recognized = Vec::new();
    if csr.spec.username.as_deref() == Some(requested.common_name.as_str()) {
        recognized.push(Recognized {
            subresource: "selfnodeclient",
            message: "Auto approving self kubelet client certificate after SubjectAccessReview.",
        });
    }
    recognized.push(Recognized {
        subresource: "nodeclient",
        message: "Auto approving kubelet client certificate after SubjectAccessReview.",
    });
    recognized
}

impl Approver {
    async fn handle(&self, csr: &CertificateSigningRequest) -> Result<(), kube::Error> {
        if is_approved(csr) || is_denied_or_failed(csr) || has_certificate(csr) {
            return Ok(());
        }
        let name = csr.metadata.name.clone().unwrap_or_default();
        for recognized in recognize(csr) {
            if !self.allowed(csr, recognized.subresource).await? {
                continue;
            }
            let mut approved = csr.clone();
            let now = now_time();
            approved
                .status
                .get_or_insert_default()
                .conditions
                .get_or_insert_default()
                .push(CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    reason: Some("AutoApproved".into()),
                    message: Some(recognized.message.into()),
                    last_update_time: Some(now.clone()),
                    last_transition_time: Some(now),
                });
            let api: Api<CertificateSigningRequest> = Api::all(self.client.clone());
            api.replace_subresource("approval", &name, &PostParams::default(), &approved)
                .await?;
            tracing::info!(csr = %name, "approved a kubelet client certificate request");
            return Ok(());
        }
        Ok(())
    }

    /// Asks the apiserver whether the requester may create the CSR subresource.
    async fn allowed(
        &self,
        csr: &CertificateSigningRequest,
        subresource: &str,
    ) -> Result<bool, kube::Error> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: csr.spec.username.clone(),
                uid: csr.spec.uid.clone(),
                groups: csr.spec.groups.clone(),
                extra: csr.spec.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("certificates.k8s.io".into()),
                    resource: Some("certificatesigningrequests".into()),
                    verb: Some("create".into()),
                    subresource: Some(subresource.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cn: &str, org: &str, sans: &[&str]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        let key = rcgen::KeyPair::generate().expect("key");
        params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
            .into_bytes()
    }

    #[test]
    fn kubelet_client_requests_follow_kubes_rules() {
        let usages = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let good = parse_request(&request("system:node:n1", "system:nodes", &[])).expect("parse");
        assert_eq!(good.common_name, "system:node:n1");
        assert!(
            validate_kubelet_client(&good, &usages(&["digital signature", "client auth"])).is_ok()
        );
        assert!(
            validate_kubelet_client(
                &good,
                &usages(&["digital signature", "key encipherment", "client auth"])
            )
            .is_ok()
        );
        assert!(validate_kubelet_client(&good, &usages(&["server auth"])).is_err());
        let other_org = parse_request(&request("system:node:n1", "admins", &[])).expect("parse");
        assert!(
            validate_kubelet_client(&other_org, &usages(&["digital signature", "client auth"]))
                .is_err()
        );
        let with_san = parse_request(&request("system:node:n1", "system:nodes", &["n1.example"]))
            .expect("parse");
        assert_eq!(with_san.dns_names, ["n1.example"]);
        assert!(
            validate_kubelet_client(&with_san, &usages(&["digital signature", "client auth"]))
                .is_err()
        );
        assert!(parse_request(b"not a pem").is_err());
    }
}
