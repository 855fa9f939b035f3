//! The gRPC side of keel-cri: the CRI services on a unix socket. One file per service;
//! `status` holds the single error-to-Status mapping and `rpc_log` the one tower layer that logs
//! every call. This module owns the socket (creating it, refusing to steal a live one, removing it
//! on shutdown); it holds no runtime state.

pub mod image;
pub mod rpc_log;
pub mod runtime;
pub mod status;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio_stream::wrappers::UnixListenerStream;

use crate::runtime::Runtime;

/// The largest CRI message accepted or sent (containerd uses 16 MiB as well).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("socket {path}: {message}")]
    Socket { path: PathBuf, message: String },
    #[error("serving on {path}: {source}")]
    Serve {
        path: PathBuf,
        source: tonic::transport::Error,
    },
}

/// Serves the CRI RuntimeService (over `runtime`) and `images` on the unix socket `socket` until
/// `shutdown` resolves; the socket file is removed when serving ends.
pub async fn serve<I: ImageService>(
    socket: &Path,
    runtime: Arc<Runtime>,
    images: I,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let listener = bind(socket)?;
    tracing::info!(socket = %socket.display(), "serving CRI v1");
    let runtime_service = RuntimeServiceServer::new(runtime::RuntimeServiceImpl::new(runtime))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let image_service = ImageServiceServer::new(images)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let served = tonic::transport::Server::builder()
        .layer(rpc_log::RpcLogLayer)
        .add_service(runtime_service)
        .add_service(image_service)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(socket);
    served.map_err(|source| Error::Serve {
        path: socket.to_path_buf(),
        source,
    })
}

/// Binds the socket: creates its directory, removes a stale socket file left by a crash, and
/// refuses to take over a socket on which another server still answers.
fn bind(socket: &Path) -> Result<tokio::net::UnixListener, Error> {
    let err = |message: String| Error::Socket {
        path: socket.to_path_buf(),
        message,
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    }
    if socket.exists() {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(err(
                "another server is listening on it (is keel-cri already running?)".to_string(),
            ));
        }
        std::fs::remove_file(socket).map_err(|e| err(format!("removing the stale socket: {e}")))?;
    }
    let listener = tokio::net::UnixListener::bind(socket).map_err(|e| err(e.to_string()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| err(format!("setting its mode: {e}")))?;
    Ok(listener)
}
