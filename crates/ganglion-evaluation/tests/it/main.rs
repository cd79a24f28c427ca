//! The integration tests of `ganglion-evaluation`, as one test binary.
#![allow(clippy::unwrap_used)]

mod interop_taoverse;
mod data;
mod loss;
mod model_check;
mod round;
mod store;
mod train;
mod validator_e2e;

/// SmolLM2 from the model cache; `None` (skip) unless `GANGLION_REQUIRE_ALL=1`.
pub(crate) fn smollm2() -> Option<std::path::PathBuf> {
    let found = ganglion_engine::store::models_dir().ok().and_then(|d| ganglion_engine::store::resolve_model("smollm2", &d).ok()).filter(|p| p.is_file());
    if found.is_none() {
        assert!(std::env::var("GANGLION_REQUIRE_ALL").as_deref() != Ok("1"), "GANGLION_REQUIRE_ALL=1 but SmolLM2 is not in the model cache: ganglion model pull smollm2");
        eprintln!("skipped: SmolLM2 is not in the model cache (ganglion model pull smollm2)");
    }
    found
}
