//! The apiserver's security set-up at start: the PKI (CA, serving and admin certificates,
//! service-account key) under the data dir, `admin.kubeconfig`, the TLS acceptor, and the
//! task that keeps the Node authorizer's graph in step with pods.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Error;
use super::auth::{self, Pki, TokenSigner};
use super::config::Config;
use super::objects::{self, REGISTRY_PREFIX};
use super::state::{ApiState, Security};
use super::watch_cache::EventType;

/// Loads (or creates on first start) the PKI and writes `DATA_DIR/admin.kubeconfig`.
pub fn load_or_create(config: &Config, address: SocketAddr) -> Result<Security, Error> {
    let setup = |what: &str, e: auth::Error| Error::Setup(format!("{what}: {e}"));
    let mut hosts = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ];
    let bind = address.ip().to_string();
    if !address.ip().is_unspecified() && !hosts.contains(&bind) {
        hosts.push(bind);
    }
    if let Some(first) = config.service_cluster_ip_range.hosts().next() {
        hosts.push(first.to_string());
    }
    let advertised = config.advertise_address().to_string();
    if !hosts.contains(&advertised) {
        hosts.push(advertised);
    }
    let pki =
        Pki::load_or_create(&config.data_dir, &hosts).map_err(|e| setup("loading the PKI", e))?;
    let signer = TokenSigner::from_pem(
        pki.service_account_key_pem(),
        auth::service_account::DEFAULT_ISSUER,
    )
    .map_err(|e| setup("loading the service-account key", e))?;
    let host = if address.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        address.ip().to_string()
    };
    let server = auth::kubeconfig::server_url(&host, address.port());
    let path = auth::kubeconfig::write_admin(&config.data_dir, &pki, &server)
        .map_err(|e| setup("writing admin.kubeconfig", e))?;
    tracing::info!(kubeconfig = %path.display(), "admin kubeconfig written");
    Ok(Security { pki, signer })
}

pub fn tls_acceptor(pki: &Pki) -> Result<tokio_rustls::TlsAcceptor, Error> {
    let config = pki
        .server_tls_config()
        .map_err(|e| Error::Setup(format!("TLS configuration: {e}")))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Follows pods in the watch cache into the Node authorizer's graph, until `cancel`.
pub async fn feed_node_graph(state: Arc<ApiState>, cancel: CancellationToken) {
    let prefix = format!("{REGISTRY_PREFIX}core/pods/");
    loop {
        let Ok(mut subscription) = state.cache.subscribe(&prefix, None) else {
            return;
        };
        for event in &subscription.initial {
            state.update_node_graph(|graph| graph.apply_pod(&event.object));
        }
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                event = subscription.live.recv() => event,
            };
            match event {
                Ok(event)
                    if event.revision <= subscription.after || !event.key.starts_with(&prefix) => {}
                Ok(event) => state.update_node_graph(|graph| match event.event_type {
                    EventType::Deleted => graph.remove_pod(
                        objects::namespace(&event.object),
                        objects::name(&event.object),
                    ),
                    _ => graph.apply_pod(&event.object),
                }),
                // Lagged or reset: rebuild from a fresh snapshot.
                Err(_) => break,
            }
        }
        state.update_node_graph(|graph| *graph = auth::NodeGraph::new());
    }
}
