//! The `portmap` CNI plugin binary: the skeleton around `keel_cni::portmap::Portmap`.

fn main() {
    std::process::exit(keel_cni::plugin::run(
        &keel_cni::portmap::Portmap,
        "Keel portmap plugin: forwards host ports to containers with nf_tables rules (CNI 0.3.0 to 1.1.0)",
    ));
}
