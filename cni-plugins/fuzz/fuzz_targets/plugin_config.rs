//! Fuzz target: one plugin invocation's stdin: the skeleton, prevResult and every plugin's config type (body: `keel_cni::fuzz::plugin_config`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keel_cni::fuzz::plugin_config(data);
});
