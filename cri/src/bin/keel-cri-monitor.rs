//! keel-cri-monitor: the per-container monitor started by keel-cri (see `keel_cri::monitor`),
//! and, with `--pause`, the holder of a pod's shared PID namespace
//! (see `keel_cri::sandbox::pidns`). Not meant to be run by hand.

fn main() {
    let mut argv = std::env::args_os().skip(1).peekable();
    if argv.peek().is_some_and(|a| a == "--pause") {
        std::process::exit(keel_cri::sandbox::pidns::run_holder());
    }
    let args = match keel_cri::monitor::process::Args::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("keel-cri-monitor: {e}");
            eprintln!(
                "usage: keel-cri-monitor --id ID --dir DIR --sync-fd N [--log-path FILE] -- RUNTIME ARGS...\n       keel-cri-monitor --pause"
            );
            std::process::exit(2);
        }
    };
    std::process::exit(keel_cri::monitor::process::run(args));
}
