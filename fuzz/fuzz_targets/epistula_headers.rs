//! Fuzzes Epistula header parsing and verification: any header values and body must give
//! `Ok` or a `Rejection`, never a panic.
#![no_main]

use std::sync::OnceLock;

use ganglion_protocol::epistula::{Verifier, VerifierConfig, header, parse_headers};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 6] =
    [header::VERSION, header::TIMESTAMP, header::UUID, header::SIGNED_BY, header::SIGNED_FOR, header::SIGNATURE];

fuzz_target!(|data: &[u8]| {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    let verifier = VERIFIER.get_or_init(|| Verifier::allow_all(VerifierConfig::default()));
    // Layout: repeated [name index byte, length byte, value bytes...], rest is the body.
    let mut headers = HeaderMap::new();
    let mut rest = data;
    while rest.len() >= 2 && rest[0] < 12 {
        let name = NAMES[(rest[0] % 6) as usize];
        let len = (rest[1] as usize).min(rest.len() - 2);
        if let Ok(value) = HeaderValue::from_bytes(&rest[2..2 + len]) {
            headers.append(HeaderName::from_static(name), value);
        }
        rest = &rest[2 + len..];
    }
    let _ = parse_headers(&headers);
    let _ = verifier.verify(&headers, rest, 1_700_000_000_000);
});
