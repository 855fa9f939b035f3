//! The `bridge` CNI plugin binary: the skeleton around `keel_cni::bridge::Bridge`.

fn main() {
    std::process::exit(keel_cni::plugin::run(
        &keel_cni::bridge::Bridge,
        "Keel bridge plugin: connects containers to a Linux bridge through veth pairs (CNI 0.3.0 to 1.1.0)",
    ));
}
