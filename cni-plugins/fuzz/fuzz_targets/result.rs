//! Fuzz target: results of every CNI version and the error object, with their round trips (body: `keel_cni::fuzz::result`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    keel_cni::fuzz::result(data);
});
