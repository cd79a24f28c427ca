//! The model-evaluation subnet end to end on the embedded local chain: five model miners
//! publish (hash + commit) and serve their directories on real axons (Epistula, validator
//! permit required), and `ModelValidator` runs on the neuron runtime against them with
//! fresh corpus samples each step:
//!
//! - `degraded`: SmolLM2 with noised weights, committed **first** (so it holds the time
//!   advantage: the base model must beat it on loss by more than epsilon);
//! - `base`: SmolLM2 itself;
//! - `copier`: the base model's files, committed later (same plain hash → a duplicate of the
//!   earlier commit: no loss, no weight);
//! - `oversized`: the base model plus padding, over the competition's byte cap (refused from
//!   the manifest, before any download);
//! - `mismatch`: commits the base model's hash (bound to its own hotkey) but serves the
//!   degraded files (refused: the served files do not hash to the commitment);
//! - `garbage`: commits a string that is not a commitment and serves nothing (refused,
//!   with the parse error).
//!
//! Asserted: the weights the validator set on chain (base > degraded, the others 0), the
//! records store (one row per uid with its status and cause), a restart from the saved
//! state (same step count and weights), and a step after it that evaluates only the kept
//! leader (keep 1: the degraded model lost and is not retried).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ganglion_chain::HyperparamUpdate;
use ganglion_chain_node::testkit::{Neuron, SubnetBuilder};
use ganglion_core::keys::Keypair;
use ganglion_evaluation::miner::{self, Publication, PublishTarget, ServeSettings};
use ganglion_evaluation::round::Competition;
use ganglion_evaluation::store::{FetchLimits, MinerStore, ModelStore};
use ganglion_evaluation::validator::{DataSource, EvaluationSettings, ModelValidator};
use ganglion_neuron::validator::{NodeSettings, run_node};
use ganglion_neuron::config::AxonConfig;
use ganglion_neuron::signals::Shutdown;
use ganglion_protocol::policy::PolicyConfig;
use ganglion_records::Records;

use crate::smollm2;

/// A model directory: the GGUF (hard-linked, or copied across devices) and a config file.
fn model_dir(dir: &Path, gguf: &Path) -> PathBuf {
    ganglion_evaluation::demo::model_dir(dir, gguf).unwrap()
}

fn weight_of(row: &[(u16, u16)], uid: u16) -> u16 {
    row.iter().find(|(u, _)| *u == uid).map_or(0, |(_, w)| *w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_model_wins_copies_and_bad_models_get_nothing() {
    let Some(smol) = smollm2() else { return };
    ganglion_tls::install_crypto_provider();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();

    // The models.
    let degraded_gguf = work.path().join("degraded.gguf");
    ganglion_evaluation::demo::noised_copy(&smol, &degraded_gguf, 0.2, 11).unwrap();
    let base_dir = model_dir(&work.path().join("base"), &smol);
    let copier_dir = model_dir(&work.path().join("copier"), &smol);
    let degraded_dir = model_dir(&work.path().join("degraded"), &degraded_gguf);
    let oversized_dir = model_dir(&work.path().join("oversized"), &smol);
    std::fs::write(oversized_dir.join("padding.bin"), vec![7u8; 2 * 1024 * 1024]).unwrap();
    let mismatch_dir = model_dir(&work.path().join("mismatch"), &degraded_gguf);
    let base_bytes: u64 = std::fs::read_dir(&base_dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    eprintln!("fixtures ready after {:.1}s", started.elapsed().as_secs_f64());

    // The chain: a staked validator and five miners.
    let miners = ["degraded", "base", "copier", "oversized", "mismatch"];
    let mut builder = SubnetBuilder::new()
        .data_dir(work.path().join("chain"))
        .block_time(Duration::from_millis(100))
        .tempo(10)
        .hyperparams(HyperparamUpdate { weights_rate_limit: Some(0), ..Default::default() })
        .neuron(Neuron::new("//EvalVCold", "//EvalVHot").stake(2_000).validator());
    for m in miners.iter().chain(&["garbage"]) {
        builder = builder.neuron(Neuron::new(&format!("//{m}Cold"), &format!("//{m}Hot")));
    }
    let subnet = builder.build().await;
    let (chain, netuid) = (subnet.chain.clone(), subnet.netuid);
    let hot = |m: &str| subnet.neuron(&format!("//{m}Hot")).hotkey.clone();
    let uid = |m: &str| subnet.uid(&format!("//{m}Hot"));

    // Miners serve on loopback axons (published by the runtime), callers need a permit.
    let (stop_miners, miner_token) = Shutdown::new();
    let served = |m: &str| match m {
        "degraded" => degraded_dir.clone(),
        "mismatch" => mismatch_dir.clone(),
        "base" => base_dir.clone(),
        "copier" => copier_dir.clone(),
        _ => oversized_dir.clone(),
    };
    let mut serving = Vec::new();
    for m in miners {
        let settings = ServeSettings {
            netuid,
            axon: AxonConfig { ip: [127, 0, 0, 1].into(), port: 0, external_ip: None, external_port: None, serve: true },
            policy: PolicyConfig { require_validator_permit: true, ..PolicyConfig::default() },
            sync_interval: Duration::from_millis(500),
            drain: Duration::from_secs(1),
        };
        serving.push(miner::serve(&settings, &served(m), hot(m), chain.clone(), miner_token.clone()).await.unwrap());
    }

    // Commitments: degraded first, then base, then (a block later) the rest.
    let publication = |m: &str| Publication {
        dir: if m == "mismatch" { base_dir.clone() } else { served(m) },
        target: PublishTarget::Axon { name: m.to_string() },
        competition: "g1".into(),
        bind_to_hotkey: true,
    };
    let mut blocks = Vec::new();
    for m in miners {
        let (rendered, _plain, receipt) = miner::publish(chain.as_ref(), netuid, &hot(m), &publication(m)).await.unwrap();
        assert!(rendered.starts_with(&format!("axon:{m}:None:")) && rendered.ends_with(":g1"), "{rendered}");
        blocks.push(receipt.block);
        subnet.wait_block(receipt.block + 1).await;
    }
    assert!(blocks.windows(2).all(|w| w[0] < w[1]), "commit blocks {blocks:?}");
    chain.set_commitment(&hot("garbage"), netuid, "definitely not a model".into()).await.unwrap();
    // Every axon on chain before the validator looks.
    let deadline = Instant::now() + Duration::from_secs(30);
    while subnet.metagraph().await.neurons().iter().filter(|n| n.axon.is_some()).count() < miners.len() {
        assert!(Instant::now() < deadline, "the miners' axons were not published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The validator.
    let vhot: Keypair = subnet.neuron("//EvalVHot").hotkey.clone();
    let mut competition = Competition::default_schedule().remove(0);
    competition.limits.max_bytes = base_bytes + 1024 * 1024;
    competition.sequence_length = 96;
    let data_dir = work.path().join("validator");
    let records_url = Records::default_url(&data_dir);
    std::fs::create_dir_all(&data_dir).unwrap();
    let records = Records::open(&records_url).await.unwrap();
    let settings = EvaluationSettings {
        netuid,
        data_dir: data_dir.clone(),
        competitions: vec![competition],
        samples: 6,
        alpha: 0.9,
        fetch: FetchLimits { deadline: Duration::from_secs(60), ..FetchLimits::default() },
        seed: Some(5),
        // One leader kept: a later step evaluates it alone, the degraded model having lost.
        keep: 1,
        max_models: EvaluationSettings::DEFAULT_MAX_MODELS,
    };
    let corpus = Arc::new(ganglion_corpus::Corpus::locate().unwrap());
    let store: Arc<dyn ModelStore> = Arc::new(MinerStore::new(vhot.clone(), &ganglion_tls::ClientTls::system()).unwrap());
    let make = |records: Option<Records>| {
        ModelValidator::new(settings.clone(), vhot.public().to_ss58(), DataSource::Corpus(corpus.clone()), store.clone(), None, records).unwrap()
    };
    let node = NodeSettings { subnet: "evaluation", netuid, epoch_length: 2, version_key: None, metrics_listen: None, step_interval: Duration::from_millis(200), idle_interval: Duration::from_secs(1), data_dir: data_dir.clone() };
    let (stop_validator, token) = Shutdown::new();
    let running = tokio::spawn(run_node(node, vhot.clone(), chain.clone(), make(Some(records.clone())), token));

    // Until the validator's weights are on chain.
    let vuid = subnet.uid("//EvalVHot");
    let deadline = Instant::now() + Duration::from_secs(150);
    let row = loop {
        let weights = chain.weights(netuid).await.unwrap();
        if let Some(row) = weights.get(usize::from(vuid)).filter(|r| r.iter().any(|(_, w)| *w > 0)) {
            break row.clone();
        }
        assert!(Instant::now() < deadline && !running.is_finished(), "no weights on chain after {:?}", started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop_validator.trigger();
    let validator = running.await.unwrap().unwrap();
    stop_miners.trigger();
    for s in serving {
        s.wait().await;
    }
    let summary = validator.summary().cloned();
    eprintln!("weights {row:?}; last step {summary:?}; total {:.1}s", started.elapsed().as_secs_f64());

    // Weights on chain.
    let w = |m: &str| weight_of(&row, uid(m));
    assert!(w("base") > 0 && w("base") > w("degraded"), "base {} degraded {}", w("base"), w("degraded"));
    for m in ["copier", "oversized", "mismatch", "garbage"] {
        assert_eq!(w(m), 0, "{m} got weight");
    }

    // The records: every uid with its status and cause.
    let rows = records.model_evaluations(Some(netuid), None, 0, 1000).await.unwrap();
    let first_step = |m: &str| {
        rows.iter().map(|(_, r)| r).find(|r| r.uid == uid(m) && r.step == 1).unwrap_or_else(|| panic!("no step-1 record of {m}: {rows:?}")).clone()
    };
    let (base, degraded) = (first_step("base"), first_step("degraded"));
    assert_eq!((base.status.as_str(), degraded.status.as_str()), ("evaluated", "evaluated"));
    let (lb, ld) = (base.mean_loss.unwrap(), degraded.mean_loss.unwrap());
    eprintln!("mean loss: base {lb:.4}, degraded {ld:.4}; win rates {:?} {:?}", base.win_rate, degraded.win_rate);
    assert!(lb * 1.01 < ld, "base {lb} vs degraded {ld}");
    assert!(base.win_rate > degraded.win_rate && base.weight > degraded.weight);
    let copier = first_step("copier");
    assert_eq!(copier.status, "duplicate");
    assert_eq!(copier.reason.as_deref(), Some(format!("a copy of uid {}'s earlier commit", uid("base")).as_str()));
    assert_eq!(copier.model_hash, base.model_hash);
    let oversized = first_step("oversized");
    assert_eq!(oversized.status, "rejected");
    assert!(oversized.reason.as_deref().unwrap_or_default().contains("bytes"), "{oversized:?}");
    let mismatch = first_step("mismatch");
    assert_eq!(mismatch.status, "rejected");
    assert!(mismatch.reason.as_deref().unwrap_or_default().contains("does not match the commitment"), "{mismatch:?}");
    let garbage = first_step("garbage");
    assert_eq!(garbage.status, "rejected");
    assert!(garbage.reason.as_deref().unwrap_or_default().starts_with("bad commitment"), "{garbage:?}");
    assert_eq!(garbage.commitment, "definitely not a model");
    for r in [&copier, &oversized, &mismatch, &garbage] {
        assert_eq!((r.weight, r.mean_loss), (0.0, None), "{r:?}");
    }
    // Rejected downloads left nothing behind.
    assert!(!data_dir.join("models").join(format!("uid{}", uid("oversized"))).exists());

    // A restart resumes from the saved state.
    let steps = validator.steps();
    let weights = validator.weights();
    drop(validator);
    let again = make(None);
    assert_eq!((again.steps(), again.weights()), (steps, weights));
    assert!(steps >= 1);

    // One more step on the restarted validator (the miners are gone; nothing needs fetching):
    // the kept leader is evaluated again, the degraded model, which lost and did not change,
    // is not (pretraining's retry rule), and the copy is still a copy.
    let mut again = again;
    let metagraph = ganglion_chain::Metagraph::fetch(chain.as_ref(), netuid).await.unwrap();
    let block = chain.block_number().await.unwrap();
    let (_keep_running, token) = Shutdown::new();
    let step = again.run_step(&chain, &metagraph, Some(vuid), block, token).await.unwrap();
    assert_eq!(step.evaluated, 1, "{step:?}");
    let last = again.last_evaluations();
    assert_eq!((last[&uid("base")].step, last[&uid("base")].status.as_str()), (steps + 1, "evaluated"));
    assert!(last[&uid("degraded")].step <= steps, "{:?}", last[&uid("degraded")]);
    assert_eq!((last[&uid("copier")].step, last[&uid("copier")].status.as_str()), (steps + 1, "duplicate"));
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
}
