//! keel-cri-monitor: the per-container monitor started by keel-cri (see `keel_cri::monitor`).
//! Not meant to be run by hand.

fn main() {
    let args = match keel_cri::monitor::process::Args::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("keel-cri-monitor: {e}");
            eprintln!(
                "usage: keel-cri-monitor --id ID --dir DIR --sync-fd N [--log-path FILE] -- RUNTIME ARGS..."
            );
            std::process::exit(2);
        }
    };
    std::process::exit(keel_cri::monitor::process::run(args));
}
