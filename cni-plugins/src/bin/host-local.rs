//! The `host-local` IPAM plugin binary: the skeleton around [`keel_cni::ipam::host_local`].
//! Everything it does to the host is in the allocation store under the config's `dataDir`.

use keel_cni::ipam::host_local::HostLocal;

fn main() {
    std::process::exit(keel_cni::plugin::run(
        &HostLocal,
        "Keel host-local IPAM plugin (CNI 1.1): allocates addresses from ranges into <dataDir>/<network>",
    ));
}
