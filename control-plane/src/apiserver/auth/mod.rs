//! Authentication and authorization of apiserver requests (a library; the server calls it).
//!
//! Authentication, first match wins; anonymous is off, so no match is a 401:
//! 1. the TLS client certificate verified against the cluster CA ([`x509`]);
//! 2. a bearer token ([`bearer`]): a service account JWT ([`service_account`]), then a
//!    bootstrap token ([`bootstrap_token`]) looked up as a Secret in kube-system.
//!
//! Authorization ([`authorizer`]): `system:masters` is always allowed, then the Node
//! authorizer ([`node`]), then RBAC ([`rbac`]); the first Allow or Deny decides, and no
//! opinion from all of them is a 403. [`bootstrap_policy`] holds the default roles, [`pki`] the
//! CA and certificates, [`kubeconfig`] the client configs, and [`reviews`] the
//! authentication/authorization review APIs.

// Tests unwrap freely; the library itself is linted without this (clippy --all-targets checks both).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod authorizer;
pub mod bearer;
pub mod bootstrap_policy;
pub mod bootstrap_token;
pub mod error;
pub mod kubeconfig;
pub mod node;
pub mod pki;
pub mod rbac;
pub mod reviews;
pub mod service_account;
pub mod user;
pub mod x509;

pub use authorizer::{Attributes, Authorizer, Chain, Decision, authorize};
pub use error::{Error, Result};
pub use node::{NodeGraph, admit_node_write};
pub use pki::Pki;
pub use rbac::{PolicyRule, RbacObjects};
pub use service_account::{TokenSigner, VerifiedToken};
pub use user::UserInfo;
