//! Evaluation samples from the inference subnet's records: only verified answers of the asked
//! subnet within the window, the prompt's last user message, refusals and empty pairs
//! filtered out, each pair once.

use ganglion_evaluation::data::record_samples;
use ganglion_evaluation::loss::Sample;
use ganglion_records::Records;
use ganglion_records::synthetic::SyntheticSubnet;

#[tokio::test]
async fn record_samples_take_verified_wanted_pairs_of_the_subnet_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::open(&Records::default_url(dir.path())).await.unwrap();
    let now = ganglion_records::now_ms();
    let subnet = SyntheticSubnet::ending_at(1, 1, 4, 16, now, 1_000);
    let chat = |user: &str| serde_json::json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": user}]);
    let row = |i: u64, prompt: serde_json::Value, response: &str, verified: bool| {
        let mut r = subnet.inference(i);
        r.created_at_ms = now - 1_000 * i as i64;
        (r.prompt, r.response, r.verified) = (prompt, response.to_string(), verified);
        r.cause = (!verified).then(|| "UNLIKELY_TOKEN".to_string());
        r
    };
    let mut rows = vec![
        row(0, chat("What is a lexicon?"), "A dictionary of a language's words.", true),
        row(1, chat("What is a gloss?"), "A short explanation of a word.", false),
        row(2, chat("What is a synset?"), "As an AI language model, I cannot say.", true),
        row(3, serde_json::json!("Complete: the hypernym of dog is"), " canine, then animal.", true),
        row(4, chat("What is a lexicon?"), "A dictionary of a language's words.", true),
        row(5, chat("   "), "An empty question.", true),
    ];
    let mut other = row(6, chat("What is a morpheme?"), "The smallest meaningful unit.", true);
    other.netuid = 2;
    rows.push(other);
    let mut old = row(7, chat("What is a phoneme?"), "The smallest unit of sound.", true);
    old.created_at_ms = now - 10 * 3_600_000;
    rows.push(old);
    records.insert_inference(&rows).await.unwrap();

    let since = now - 3_600_000;
    let got = record_samples(&records, 1, Some(since), 10).await.unwrap();
    let want = vec![
        Sample { prompt: "What is a lexicon?".into(), response: "A dictionary of a language's words.".into() },
        Sample { prompt: "Complete: the hypernym of dog is".into(), response: " canine, then animal.".into() },
    ];
    assert_eq!(got, want);
    // At most n, newest first; the older window takes the phoneme too.
    assert_eq!(record_samples(&records, 1, Some(since), 1).await.unwrap(), want[..1]);
    let all = record_samples(&records, 1, None, 10).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[2].prompt, "What is a phoneme?");
}
