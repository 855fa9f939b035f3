//! The gRPC side of keel-cri: the CRI services on a unix socket. One file per service;
//! `status` holds the single error-to-Status mapping.

pub mod image;
pub mod runtime;
pub mod status;
