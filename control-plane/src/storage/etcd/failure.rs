//! What an etcd error means to the storage contract: compacted or future revision (from the
//! server's message), transient (worth a retry: transport, unavailable, leader change) or a
//! rejection, and the `storage::Error` each becomes.

use crate::storage::Error;

/// gRPC status codes (the standard numbering) that a retry may cure.
const GRPC_CANCELLED: i32 = 1;
const GRPC_UNKNOWN: i32 = 2;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;
const GRPC_ABORTED: i32 = 10;
const GRPC_INTERNAL: i32 = 13;
const GRPC_UNAVAILABLE: i32 = 14;

/// Why an etcd request failed, as far as the contract cares.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
    Compacted,
    FutureRevision,
    Transient(String),
    Rejected(String),
}

pub(super) fn classify(err: etcd_client::Error) -> Failure {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("required revision has been compacted") {
                Failure::Compacted
            } else if message.contains("required revision is a future revision") {
                Failure::FutureRevision
            } else if is_transient_code(status.code() as i32) {
                Failure::Transient(status.to_string())
            } else {
                Failure::Rejected(status.to_string())
            }
        }
        err @ (etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_)) => {
            Failure::Transient(err.to_string())
        }
        other => Failure::Rejected(other.to_string()),
    }
}

fn is_transient_code(code: i32) -> bool {
    matches!(
        code,
        GRPC_CANCELLED
            | GRPC_UNKNOWN
            | GRPC_DEADLINE_EXCEEDED
            | GRPC_RESOURCE_EXHAUSTED
            | GRPC_ABORTED
            | GRPC_INTERNAL
            | GRPC_UNAVAILABLE
    )
}

/// The error for a failure outside reads at a revision.
pub(super) fn failure_error(what: &str, failure: Failure) -> Error {
    match failure {
        Failure::Transient(reason) => Error::Unavailable(format!("etcd {what}: {reason}")),
        Failure::Rejected(reason) => Error::Corrupt(format!("etcd {what} rejected: {reason}")),
        Failure::Compacted => Error::Corrupt(format!("etcd {what}: unexpected compacted revision")),
        Failure::FutureRevision => {
            Error::Corrupt(format!("etcd {what}: unexpected future revision"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_become_unavailable() {
        let err = failure_error("get", Failure::Transient("connection refused".into()));
        assert!(err.is_transient());
        assert!(!failure_error("get", Failure::Rejected("bad".into())).is_transient());
    }
}
