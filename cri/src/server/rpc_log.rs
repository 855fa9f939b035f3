//! The one tower layer every CRI call goes through: a debug line per call (method, duration) and
//! a warning per failed call (method, gRPC code, message), so that no service logs by itself.
//!
//! Failed unary calls come back from tonic as "trailers-only" responses, with `grpc-status` in
//! the headers: that is what this layer reads. It never changes a request or a response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;

/// Wraps a service in [`RpcLog`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcLogLayer;

impl<S> tower::Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;

    fn layer(&self, inner: S) -> RpcLog<S> {
        RpcLog { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RpcLog<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcLog<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let started = Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            let took = started.elapsed();
            if let Ok(resp) = &result {
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0);
                if code != 0 {
                    let message = resp
                        .headers()
                        .get("grpc-message")
                        .and_then(|v| v.to_str().ok())
                        .map(percent_decode)
                        .unwrap_or_default();
                    let code = tonic::Code::from_i32(code);
                    tracing::warn!(rpc = %method, ?took, ?code, "{message}");
                    return result;
                }
            }
            tracing::debug!(rpc = %method, ?took, "done");
            result
        })
    }
}

/// gRPC percent-encodes `grpc-message`; decode it for the log.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if let (b'%', Some(Ok(b))) = (bytes[i], hex.map(|h| u8::from_str_radix(h, 16))) {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_grpc_messages() {
        assert_eq!(percent_decode("image%20not%20found"), "image not found");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
        assert_eq!(percent_decode("é%"), "é%");
    }
}
