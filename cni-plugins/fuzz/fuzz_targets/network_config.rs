//! Fuzz target: network config lists and single configs (.conflist/.conf), with their round trip (body: `keel_cni::fuzz::network_config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keel_cni::fuzz::network_config(data);
});
