//! The HTTPS front: accepts TLS connections (HTTP/1.1 and HTTP/2), authenticates each request,
//! authorizes it, and routes it to discovery/health/OpenAPI (`nonresource`) or to a resource
//! (`handlers`). Every error leaves here as a Status object.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::auth::UserInfo;
use super::body::{self, Body};
use super::handlers::{self, ResourceRequest};
use super::nonresource;
use super::request::{Query, RequestInfo};
use super::state::ApiState;
use super::status::ApiError;

/// Serves connections from `listener` until `shutdown`.
pub async fn serve(
    state: Arc<ApiState>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let user = super::authn::connection_user(stream.get_ref().1);
                        serve_connection(state, TokioIo::new(stream), user, peer, shutdown).await;
                    }
                    Err(error) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                },
                None => serve_connection(state, TokioIo::new(stream), None, peer, shutdown).await,
            }
        });
    }
}

async fn serve_connection<I>(
    state: Arc<ApiState>,
    io: I,
    cert_user: Option<UserInfo>,
    peer: SocketAddr,
    shutdown: CancellationToken,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let cert_user = Arc::new(cert_user);
    let service = service_fn(move |request| {
        let state = state.clone();
        let cert_user = cert_user.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                route(&state, cert_user.as_ref().as_ref(), request).await,
            )
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        }
        _ = shutdown.cancelled() => connection.as_mut().graceful_shutdown(),
    }
}

/// Authenticates, authorizes and answers one request.
async fn route(
    state: &Arc<ApiState>,
    cert_user: Option<&UserInfo>,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let (parts, incoming) = request.into_parts();
    let query = Query::parse(parts.uri.query());
    let info = RequestInfo::parse(parts.method.as_str(), parts.uri.path(), &query);
    let response = match answer(state, cert_user, &parts, &query, &info, incoming).await {
        Ok(response) => response,
        Err(error) => body::error_response(&error),
    };
    let elapsed = started.elapsed();
    super::metrics::observe_request(&info, response.status().as_u16(), elapsed);
    tracing::debug!(method = %parts.method, path = %info.path, status = response.status().as_u16(), elapsed_us = elapsed.as_micros() as u64, "request");
    response
}

async fn answer(
    state: &Arc<ApiState>,
    cert_user: Option<&UserInfo>,
    parts: &http::request::Parts,
    query: &Query,
    info: &RequestInfo,
    incoming: Incoming,
) -> Result<Response<Body>, ApiError> {
    let user = super::authn::authenticate(state, cert_user, &parts.headers).await?;
    super::authz::authorize(state, &user, info).await?;
    if !info.is_resource_request {
        let bytes = body::read_limited(incoming, state.config.max_request_body_bytes).await?;
        return nonresource::serve(state, info, &parts.headers, &user, bytes).await;
    }
    let bytes = body::read_limited(incoming, state.config.max_request_body_bytes).await?;
    handlers::serve(ResourceRequest {
        state,
        info,
        query,
        headers: &parts.headers,
        body: bytes,
        user: &user,
    })
    .await
}
