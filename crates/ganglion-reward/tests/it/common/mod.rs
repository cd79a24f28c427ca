//! Shared fixtures: the sentence-embedding model and the engine, each loaded once.

use std::sync::{Arc, OnceLock};

use ganglion_engine::Engine;
use ganglion_reward::embed::{SentenceEmbedder, default_model_dir};

/// all-MiniLM-L6-v2 from `$GANGLION_HOME/models` (`scripts/install-minilm`), loaded once.
pub(crate) fn embedder() -> Arc<SentenceEmbedder> {
    static MODEL: OnceLock<Arc<SentenceEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = default_model_dir().expect("HOME or GANGLION_HOME must be set");
            Arc::new(SentenceEmbedder::load(&dir).unwrap_or_else(|e| panic!("{e}")))
        })
        .clone()
}

/// The engine's SmolLM2 (`ganglion model pull smollm2`), loaded once.
pub(crate) fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let dir =
                ganglion_engine::store::models_dir().expect("HOME or GANGLION_HOME must be set");
            let known = ganglion_engine::store::known_model("smollm2").unwrap();
            let path = dir.join(known.file_name);
            assert!(
                path.is_file(),
                "{} is missing: run `ganglion model pull smollm2`",
                path.display()
            );
            Arc::new(Engine::load(&path).unwrap())
        })
        .clone()
}
