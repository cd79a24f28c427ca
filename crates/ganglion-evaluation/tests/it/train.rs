//! `ganglion miner model train`'s library: a short fine-tune of SmolLM2's last blocks on
//! corpus samples must beat the base model on the validator's loss over held-out samples, and
//! the output must be a model directory the validator takes (one GGUF passing the model
//! checks, loadable by the engine, hashable for a commitment).

use std::time::Instant;

use ganglion_engine::Engine;
use ganglion_evaluation::loss::chat_loss;
use ganglion_evaluation::round::Competition;
use ganglion_evaluation::train::{self, MODEL_FILE, Phase, Progress, TrainError, TrainSettings};

use crate::smollm2;

#[test]
fn a_short_fine_tune_beats_the_base_model_on_held_out_samples() {
    let Some(smol) = smollm2() else { return };
    let started = Instant::now();
    let corpus = ganglion_corpus::Corpus::locate().unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("trained");
    // One batch of all the training samples per step: the first step's loss is the base
    // model's own loss on them, before any update.
    let settings = TrainSettings {
        steps: 8,
        samples: 8,
        eval_samples: 8,
        batch: 8,
        layers: 2,
        learning_rate: 3e-4,
        seed: 7,
        threads: Some(2),
        ..TrainSettings::new(smol.clone(), out.clone())
    };
    let mut phases = Vec::new();
    let report = train::train(&settings, &corpus, &mut |p| {
        if let Progress::Start { phase, total } = p {
            phases.push((phase, total));
        }
    })
    .unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert_eq!(phases, [(Phase::BaseLoss, 8), (Phase::Activations, 8), (Phase::Training, 8), (Phase::TrainedLoss, 8)]);
    assert_eq!((report.eval_samples, report.train_samples, report.steps, report.threads), (8, 8, 8, 2));
    assert_eq!(report.out, out.join(MODEL_FILE));

    // The training forward (cached frozen blocks + the candle suffix) is the engine's: the
    // first step's loss equals the validator's loss of the base model on the same samples.
    let base = Engine::load(&smol).unwrap();
    let (train_samples, eval_samples) = train::draw_samples(&corpus, settings.seed, settings.samples, settings.eval_samples);
    let engine_train_loss = train_samples.iter().map(|s| chat_loss(&base, s, settings.max_len).unwrap()).sum::<f64>() / train_samples.len() as f64;
    assert!((report.first_train_loss - engine_train_loss).abs() < 1e-3, "training forward {} vs engine {}", report.first_train_loss, engine_train_loss);
    // Held out means held out.
    assert!(eval_samples.iter().all(|e| train_samples.iter().all(|t| t.response != e.response)));

    // The loss drop, measured with the validator's code on held-out samples (measured here:
    // 3.45 → 2.85 with these settings, 36 s for the whole test here; asked: at least 5%).
    assert!(report.trained_loss < report.base_loss * 0.95, "base {} trained {}", report.base_loss, report.trained_loss);
    assert!(report.last_train_loss < report.first_train_loss);

    // The output is a model directory the validator takes.
    let limits = Competition::default_schedule().remove(0).limits;
    let info = ganglion_evaluation::gguf::check_model(&report.out, &limits).unwrap();
    let base_info = ganglion_evaluation::gguf::check_model(&smol, &limits).unwrap();
    assert_eq!((info.architecture.as_str(), info.layers, info.parameters), (base_info.architecture.as_str(), base_info.layers, base_info.parameters));
    let trained = Engine::load(&report.out).unwrap();
    let again = eval_samples.iter().map(|s| chat_loss(&trained, s, settings.max_len).unwrap()).sum::<f64>() / eval_samples.len() as f64;
    assert!((again - report.trained_loss).abs() < 1e-6, "{again} vs {}", report.trained_loss);
    let ggufs: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.ends_with(".gguf")).collect();
    assert_eq!(ggufs, [MODEL_FILE]);
    assert!(out.join("config.json").is_file() && out.join(train::REPORT_FILE).is_file());
    assert!(!std::fs::read_dir(&out).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".partial")));
    ganglion_evaluation::dirhash::directory_hash(&out, &ganglion_evaluation::dirhash::HashLimits::default()).unwrap();
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn bad_settings_and_foreign_gguf_files_are_refused() {
    let corpus_missing = ganglion_corpus::Corpus::locate();
    let Ok(corpus) = corpus_missing else { return };
    let work = tempfile::tempdir().unwrap();
    let settings = TrainSettings { steps: 0, ..TrainSettings::new(work.path().join("none.gguf"), work.path().join("out")) };
    assert!(matches!(train::train(&settings, &corpus, &mut |_| {}), Err(TrainError::Settings(_))));
    let settings = TrainSettings { learning_rate: f64::NAN, ..TrainSettings::new(work.path().join("none.gguf"), work.path().join("out")) };
    assert!(matches!(train::train(&settings, &corpus, &mut |_| {}), Err(TrainError::Settings(_))));
    // A directory with another model in it would not be publishable.
    let out = work.path().join("taken");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("other.gguf"), b"x").unwrap();
    let settings = TrainSettings::new(work.path().join("none.gguf"), out);
    assert!(matches!(train::train(&settings, &corpus, &mut |_| {}), Err(TrainError::Settings(_))));
    // A base that is not a GGUF: a typed error, no panic.
    let bogus = work.path().join("bogus.gguf");
    std::fs::write(&bogus, b"not a model").unwrap();
    let settings = TrainSettings::new(bogus, work.path().join("out2"));
    assert!(matches!(train::train(&settings, &corpus, &mut |_| {}), Err(TrainError::Engine(_))));
}
