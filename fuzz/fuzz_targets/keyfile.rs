//! Fuzzes keyfile parsing and `$NACL` opening: any bytes give a key or a clear error.
#![no_main]

use std::path::Path;

use ganglion_core::keyfile::{self, KdfParams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = keyfile::deserialize(data, Path::new("fuzz"));
    // Cheap KDF: the fuzzer explores the container format, not Argon2.
    let _ = keyfile::decrypt(data, "pw", KdfParams { memory_kib: 8, iterations: 1 }, Path::new("fuzz"));
});
