//! keel-cri as a whole: opens the image store, the pod network and the runtime over a parsed
//! [`Config`], and serves the CRI until told to stop. What the binary calls after parsing flags;
//! tests can run it in-process the same way.
//!
//! Stopping keel-cri stops serving only: containers and their monitors keep running, and the
//! next start finds them again from the checkpoints.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::image::ImageStore;
use crate::network::CniNetwork;
use crate::runtime::Runtime;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("opening the image store under {root}: {message}")]
    Images { root: String, message: String },
    #[error("opening the runtime: {0}")]
    Runtime(crate::runtime::Error),
    #[error(transparent)]
    Serve(#[from] crate::server::Error),
}

/// Runs keel-cri until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    let socket = config.listen_path().ok_or_else(|| {
        Error::Runtime(crate::runtime::Error::InvalidArgument(format!(
            "listen {:?} is not a unix:// socket path",
            config.listen
        )))
    })?;
    let images = ImageStore::open(
        &config.root,
        config.registry.clone(),
        Duration::from_secs(config.image_pull_progress_timeout_secs),
    )
    .await
    .map_err(|e| Error::Images {
        root: config.root.display().to_string(),
        message: e.to_string(),
    })?;
    let network = Arc::new(CniNetwork::new(&config.cni, config.cni_cache_dir()));
    let runtime = Runtime::open(config, images.clone(), network.clone())
        .await
        .map_err(Error::Runtime)?;
    // Attachments of sandboxes that no longer exist (a crash in the middle of a RunPodSandbox
    // or RemovePodSandbox) are detached now, so their IPs and veths do not leak.
    let live = runtime.sandbox_ids();
    match tokio::task::spawn_blocking(move || network.gc(&live)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!("CNI garbage collection: {e}"),
        Err(e) => tracing::warn!("CNI garbage collection task: {e}"),
    }
    crate::server::serve(
        &socket,
        runtime,
        crate::server::image::ImageServiceImpl::new(images),
        shutdown,
    )
    .await?;
    tracing::info!("keel-cri stopped; containers keep running");
    Ok(())
}
