//! The hashcat backend against the real binary (mode 610 on the PoCL CPU device), when
//! installed (scripts/install-hashcat). One small challenge whose password contains `:`, so
//! hashcat answers `$HEX[...]`. The first run compiles the OpenCL kernel (about a minute on
//! two cores); later runs reuse hashcat's kernel cache.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use ganglion_compute::hashcat::{self, HashcatConfig};
use ganglion_compute::pow::ChallengeSpec;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashcat_solves_and_hex_answers_are_decoded() {
    if hashcat::find_binary(Path::new("hashcat")).is_none()
        && common::skip("hashcat is not installed (scripts/install-hashcat)") {
            return;
        }
    let password = "a:b";
    let salt = "0123456789abcdef";
    let spec = ChallengeSpec {
        hash_hex: ganglion_compute::pow::hash_hex(password, salt),
        salt: salt.into(),
        chars: "ab:cdefghi".into(),
        difficulty: 3,
    };
    let config = HashcatConfig::default();
    // Generous: the first run compiles the kernel.
    let found = hashcat::solve(&config, &spec, Instant::now() + Duration::from_secs(300)).await;
    assert_eq!(found.ok().as_deref(), Some(password));
    // A deadline in the past is refused without running anything.
    let late = hashcat::solve(&config, &spec, Instant::now()).await;
    assert!(late.is_err());
}
