//! Logging for the control-plane binaries: `tracing` to stderr, filtered by `--log-level`
//! (tracing's EnvFilter syntax) unless RUST_LOG is set.

/// Installs the subscriber; an invalid filter is an error naming it.
pub fn init(log_level: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(log_level))
        .map_err(|error| format!("--log-level {log_level:?}: {error}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
