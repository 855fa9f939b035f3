//! keel-cri: the CRI v1 server binary. Parses flags, loads the config file, sets up logging and
//! runs `keel_cri::daemon::run` until SIGTERM or SIGINT.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// A CRI v1 container runtime: images, pod sandboxes and containers on a unix socket.
///
/// Every setting is in the TOML config file (see README.md for each key); a missing file means
/// all defaults. Containers keep running when keel-cri stops and are found again when it starts.
#[derive(Debug, Parser)]
#[command(name = "keel-cri", version)]
struct Flags {
    /// The TOML config file.
    #[arg(long, default_value = keel_cri::config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Log filter (tracing's EnvFilter syntax); RUST_LOG, when set, wins.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Print the effective config (the file's keys over the defaults) as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let config = keel_cri::config::Config::load(&flags.config)?;
    if flags.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&flags.log_level))
        .with_context(|| format!("--log-level {:?}", flags.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        keel_cri::daemon::run(config, shutdown_signal())
            .await
            .context("keel-cri")
    })
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT: stop keel-cri with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}
